// SPDX-License-Identifier: Apache-2.0
/*
 * lb-bench - numbers for the lb module, printed, never asserted (run by
 * bench/run.sh -- what `make bench` runs --, bench/lb-agent.sh,
 * bench/lb-program.sh and bench/lb-connect.sh; needs root for BPF).
 *
 *   lb-bench program N B [MODE]
 *                            N services x B backends: from the store (the
 *                            testhost's) into real maps through the module's
 *                            own code path; MODE replay (the store holds them
 *                            when the module starts) or incremental (they
 *                            arrive while it runs). Prints the time from the
 *                            first store event to the maps holding all, with
 *                            the module's read / translate / write split.
 *   lb-bench docmem DIR      what DIR's *.json manifests weigh as jansson
 *                            trees (RSS per document).
 *   lb-bench connect N CG    N services in the maps, the socket LB attached to
 *                            cgroup dir CG; connect() p50/p99 to the last one
 *                            (VIP 10.96.x.x:80 -> 127.0.0.1:PORT) and, as the
 *                            "no rules" floor, straight to 127.0.0.1:PORT.
 *   lb-bench connect-raw IP DPORT LPORT COUNT
 *                            connect() p50/p99 to IP:DPORT with a listener on
 *                            127.0.0.1:LPORT (the iptables runs).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include <axoneme/testhost.h>

#include "lb_shared.h"
#include "lb_sock.skel.h"
#include "tests/lb_test.h"

extern const struct axn_module_desc axn_module_lb_desc;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static long rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

/*
 * The process's CPU time (all threads, ms) and minor faults so far: a large
 * sync on this VM waits on fresh pages (each one a fault, and on a host
 * that took the page back, a fault of the host's too), so the count of
 * pages it touched is the steadier number to compare two builds by.
 */
static void usage_now(double *cpu_ms, long *faults)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	*cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
		  (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
	*faults = ru.ru_minflt;
}

/*
 * Time the host ran something else on this VM's CPUs (all of them, ms):
 * two threads do most of a large sync, and a stolen CPU slows it by as
 * much. /proc/stat counts in 10 ms ticks.
 */
static double steal_ms(void)
{
	char line[512];
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	double ms = 0;

	if (f && fgets(line, sizeof(line), f) &&
	    sscanf(line, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
		   &v[4], &v[5], &v[6], &v[7]) == 8)
		ms = (double)v[7] * 1000.0 / (double)sysconf(_SC_CLK_TCK);
	if (f)
		fclose(f);
	return ms;
}

static void ip4(char *buf, size_t len, uint32_t base, uint32_t i)
{
	uint32_t a = base + i;

	snprintf(buf, len, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

static json_t *service(uint32_t i)
{
	char name[32], ip[32];

	snprintf(name, sizeof(name), "svc%u", i);
	ip4(ip, sizeof(ip), 0x0a600000u, i); /* 10.96.0.0 + i */
	return lbt_service("bench", name, ip, 80, "TCP", NULL);
}

static json_t *slice(uint32_t i, uint32_t nb, uint32_t be_base, uint16_t port)
{
	char name[32], sl[40];
	json_t *eps = json_array();

	snprintf(name, sizeof(name), "svc%u", i);
	snprintf(sl, sizeof(sl), "svc%u-x", i);
	for (uint32_t b = 0; b < nb; b++) {
		char ip[32];

		ip4(ip, sizeof(ip), be_base, i * nb + b);
		json_array_append_new(eps, json_pack("{s:[s], s:s, s:{s:b}}", "addresses", ip,
						     "nodeName", "n1", "conditions", "ready", 1));
	}
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i, s:s}], s:o}",
			 "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata",
			 "name", sl, "namespace", "bench", "labels", "kubernetes.io/service-name",
			 name, "addressType", "IPv4", "ports", "name", "p", "port", port, "protocol",
			 "TCP", "endpoints", eps);
}

/* LB_PERF_CTL=fifo: "perf record -D -1 --control fifo:FIFO" profiles only the timed part. */
static void perf_ctl(const char *cmd)
{
	const char *path = getenv("LB_PERF_CTL");
	int fd;

	if (!path || !*path || (fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return;
	if (write(fd, cmd, strlen(cmd)) < 0)
		perror("lb-bench: perf control");
	close(fd);
}

static void inject_all(struct axn_testhost *th, uint32_t n, uint32_t nb)
{
	for (uint32_t i = 0; i < n; i++) {
		axn_testhost_inject(th, AXN_EV_ADDED, service(i));
		axn_testhost_inject(th, AXN_EV_ADDED, slice(i, nb, 0x0b000000u, 8080));
	}
}

/* Run queued deliveries and deferred calls until nothing is left. */
static int drain(struct axn_testhost *th)
{
	int r;

	while ((r = axn_testhost_run_pending(th)) > 0)
		;
	return r;
}

/* The module's breakdown of the flush that wrote the N services (its log line). */
static void flush_breakdown(struct axn_testhost *th, double *read, double *tr, double *wr)
{
	const char *line = NULL, *p;

	*read = *tr = *wr = -1;
	for (size_t i = 0; axn_testhost_log_line(th, i); i++)
		if (strstr(axn_testhost_log_line(th, i), " services, ") &&
		    !strstr(axn_testhost_log_line(th, i), ": 0 services"))
			line = axn_testhost_log_line(th, i);
	if (line && (p = strstr(line, "(read ")))
		sscanf(p, "(read %lf ms, translate %lf ms, write %lf ms", read, tr, wr);
}

/*
 * N services x NB backends from the store into the maps, through the module
 * on the testhost. mode "replay": the store holds everything when the module
 * starts (an agent start); "incremental": the module is live on an empty
 * store and the objects arrive (a cluster that grows, or a source that
 * syncs late). `ms` is from the first store event delivered to the module
 * until the maps hold everything (the flush done): every delivery, read,
 * translation and map write -- not building the documents, nor the store's
 * own puts and replay (the testhost's, not the agent's: store_put_ms,
 * start_ms).
 */
#define UPDATES 200

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int bench_program(uint32_t n, uint32_t nb, const char *mode)
{
	uint32_t max[LBM_N], want_svc = n, want_be = n * nb, got_svc, got_be, range = 1;
	int fd[LBM_N], r;
	char svcmax[32], slotsmax[32], bemax[32], rnmax[32];
	const char *conf[] = {"socket_lb", "false", "services_max", svcmax, "slots_max", slotsmax,
			      "backends_max", bemax, "revnat_max", rnmax, NULL};
	struct axn_testhost *th;
	bool replay = !strcmp(mode, "replay");
	long rss1, rss2;
	size_t heap1, heap2;
	double t_put0, t_put1, t_start0, t0, t1, rd, tr, wr, upd50 = 0, upd99 = 0, st0, st1;
	double cpu0, cpu1;
	long flt0, flt1;

	if (!replay && strcmp(mode, "incremental")) {
		fprintf(stderr, "lb-bench: mode is replay or incremental\n");
		return 2;
	}
	for (int i = 0; i < LBM_N; i++)
		max[i] = 1024;
	while (range < nb)
		range *= 2; /* a frontend's slots are a power of two */
	max[LBM_SVC4] = want_svc + 16;
	max[LBM_SLOTS] = n * range + 16;
	max[LBM_BE4] = want_be + 16 + 1; /* ids index the arrays; 0 is never used */
	max[LBM_RN4] = n + 16 + 1;
	max[LBM_SK4] = max[LBM_SK6] = 262144;
	max[LBM_AFF] = 65536;
	snprintf(svcmax, sizeof(svcmax), "%u", max[LBM_SVC4]);
	snprintf(slotsmax, sizeof(slotsmax), "%u", max[LBM_SLOTS]);
	snprintf(bemax, sizeof(bemax), "%u", max[LBM_BE4] - 1);
	snprintf(rnmax, sizeof(rnmax), "%u", max[LBM_RN4] - 1);
	/* The module requests the same size for both families. */
	max[LBM_SVC6] = max[LBM_SVC4];
	max[LBM_BE6] = max[LBM_BE4];
	max[LBM_RN6] = max[LBM_RN4];
	if ((r = lbt_maps_create(fd, max)) < 0) {
		fprintf(stderr, "lb-bench: cannot create maps: %s\n", strerror(-r));
		return 77;
	}
	th = axn_testhost_new(&axn_module_lb_desc, conf);
	if (!th || axn_testhost_init(th) < 0)
		return 1;
	for (int i = 0; i < LBM_N; i++)
		axn_testhost_set_map(th, lb_map_defs[i].name, fd[i]);
	if (replay) {
		t_put0 = now_ms();
		inject_all(th, n, nb);
		axn_testhost_inject(th, AXN_EV_SYNCED, NULL);
		t_put1 = now_ms();
		rss1 = rss_kb();
		heap1 = mallinfo2().uordblks;
		perf_ctl("enable\n");
		st0 = steal_ms();
		/* start: adopt the (empty) maps, watch: the store queues its replay. */
		t_start0 = now_ms();
		if (axn_testhost_start(th) < 0)
			return 1;
		usage_now(&cpu0, &flt0);
		t0 = now_ms();
	} else {
		axn_testhost_inject(th, AXN_EV_SYNCED, NULL);
		if (axn_testhost_start(th) < 0 || drain(th) < 0)
			return 1;
		t_put0 = now_ms();
		inject_all(th, n, nb);
		t_put1 = now_ms();
		rss1 = rss_kb();
		heap1 = mallinfo2().uordblks;
		perf_ctl("enable\n");
		st0 = steal_ms();
		usage_now(&cpu0, &flt0);
		t_start0 = t0 = now_ms();
	}
	r = drain(th);
	t1 = now_ms();
	st1 = steal_ms();
	usage_now(&cpu1, &flt1);
	perf_ctl("disable\n");
	if (r < 0)
		return 1;
	rss2 = rss_kb();
	heap2 = mallinfo2().uordblks;
	flush_breakdown(th, &rd, &tr, &wr);
	got_svc = lbt_count(fd[LBM_SVC4]);
	got_be = lbt_count(fd[LBM_BE4]);
	/*
	 * Then one service at a time, as a live cluster changes: its slice gains
	 * a backend or loses it again (a scale event), each change delivered and
	 * flushed on its own. A flush should cost what changed, not what exists.
	 */
	{
		double up[UPDATES];

		for (int k = 0; k < UPDATES; k++) {
			uint32_t i = (uint32_t)((k * 7919u) % n);
			double u0;

			u0 = now_ms();
			axn_testhost_inject(th, AXN_EV_MODIFIED,
					    slice(i, k % 2 ? nb : nb + 1, 0x0b000000u, 8080));
			if (drain(th) < 0)
				return 1;
			up[k] = (now_ms() - u0) * 1000.0;
		}
		qsort(up, UPDATES, sizeof(up[0]), cmp_double);
		upd50 = up[UPDATES / 2];
		upd99 = up[UPDATES * 99 / 100];
	}
	printf("program mode=%s services=%u backends_per_service=%u ms=%.1f read_ms=%.1f "
	       "translate_ms=%.1f write_ms=%.1f start_ms=%.1f store_put_ms=%.1f entries_svc=%u "
	       "entries_be=%u maps=%s rss_module_kb=%ld heap_module_kb=%ld update_p50_us=%.0f "
	       "update_p99_us=%.0f steal_ms=%.0f cpu_ms=%.0f faults=%ld\n",
	       mode, n, nb, t1 - t0, rd, tr, wr, t0 - t_start0, t_put1 - t_put0, got_svc, got_be,
	       got_svc == want_svc && got_be == want_be ? "ok" : "INCOMPLETE", rss2 - rss1,
	       ((long)heap2 - (long)heap1) / 1024, upd50, upd99, st1 - st0, cpu1 - cpu0, flt1 - flt0);
	axn_testhost_free(th);
	lbt_maps_close(fd);
	return got_svc == want_svc && got_be == want_be ? 0 : 1;
}

/*
 * What the manifests of DIR (*.json, one or more documents each) weigh as
 * jansson trees, the form the agent's store and statedir hold them in: the
 * RSS that loading them adds, per document.
 */
static int bench_docmem(const char *dir)
{
	char cmd[1024], path[1024];
	long rss0 = rss_kb(), rss1;
	json_t *all = json_array();
	size_t n = 0, bytes = 0;
	FILE *ls;

	snprintf(cmd, sizeof(cmd), "ls -1 '%s' 2>/dev/null", dir);
	ls = popen(cmd, "r");
	while (ls && fgets(path, sizeof(path), ls)) {
		char full[2048];
		json_error_t err;
		json_t *doc;
		FILE *f;

		path[strcspn(path, "\n")] = '\0';
		if (!strstr(path, ".json"))
			continue;
		snprintf(full, sizeof(full), "%s/%s", dir, path);
		if (!(f = fopen(full, "r")))
			continue;
		fseek(f, 0, SEEK_END);
		bytes += (size_t)ftell(f);
		rewind(f);
		while ((doc = json_loadf(f, JSON_DISABLE_EOF_CHECK, &err))) {
			json_array_append_new(all, doc);
			n++;
		}
		fclose(f);
	}
	if (ls)
		pclose(ls);
	rss1 = rss_kb();
	printf("docmem documents=%zu file_kb=%zu rss_kb=%ld bytes_per_doc=%.0f\n", n, bytes / 1024,
	       rss1 - rss0, n ? (double)(rss1 - rss0) * 1024 / (double)n : 0.0);
	json_decref(all);
	return 0;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* COUNT connects to ip:port; p50/p99 in microseconds. Each connection is accepted and closed by `lfd`. */
static int measure(const char *ip, uint16_t port, int count, int lfd, double *p50, double *p99)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	double *t = calloc((size_t)count, sizeof(*t));

	inet_pton(AF_INET, ip, &a.sin_addr);
	for (int i = 0; i < count; i++) {
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), c;
		double t0 = now_ms();

		if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
			fprintf(stderr, "lb-bench: connect %s:%u: %s\n", ip, port, strerror(errno));
			free(t);
			return -1;
		}
		t[i] = (now_ms() - t0) * 1e3;
		close(s);
		if (lfd >= 0 && (c = accept(lfd, NULL, NULL)) >= 0)
			close(c);
	}
	qsort(t, (size_t)count, sizeof(*t), cmp_d);
	*p50 = t[count / 2];
	*p99 = t[count * 99 / 100];
	free(t);
	return 0;
}

static int listen_lo(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
	a.sin_port = htons(*port);
	if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 4096) < 0)
		return -1;
	getsockname(s, (struct sockaddr *)&a, &len);
	*port = ntohs(a.sin_port);
	return s;
}

static int bench_connect(uint32_t n, const char *cg)
{
	uint32_t max[LBM_N];
	int fd[LBM_N], r, cgfd, lfd;
	struct lb_translate_conf conf = {.default_algorithm = LB_ALG_RANDOM};
	struct lb_maps *m;
	struct lb_sock *skel;
	uint16_t port = 0;
	char path[512], pid[32], vip[32];
	double p50, p99, f50, f99;
	FILE *f;

	lfd = listen_lo(&port);
	for (int i = 0; i < LBM_N; i++)
		max[i] = 1024;
	max[LBM_SVC4] = n + 16;
	max[LBM_SLOTS] = n + 16;
	max[LBM_BE4] = max[LBM_RN4] = n + 16 + 1;
	max[LBM_SK4] = 262144;
	max[LBM_AFF] = 65536;
	if ((r = lbt_maps_create(fd, max)) < 0) {
		fprintf(stderr, "lb-bench: cannot create maps: %s\n", strerror(-r));
		return 77;
	}
	lb_maps_new(fd, max, &m);
	/* Every service has one backend: 127.0.0.1:port (the listener). */
	for (uint32_t i = 0; i < n; i++) {
		json_t *s = service(i), *sl = slice(0, 1, 0x7f000001u, port);
		const json_t *sls[1] = {sl};
		struct lb_svc *svc;
		char *err = NULL, *owner = malloc(24);

		snprintf(owner, 24, "bench/svc%u", i);
		if (lb_translate(&conf, s, sls, 1, &svc) < 0 ||
		    lb_maps_service_set(m, owner, NULL, svc, &err) < 0) {
			fprintf(stderr, "lb-bench: service %u: %s\n", i, err ? err : "?");
			return 1;
		}
		lb_svc_free(svc);
		json_decref(s);
		json_decref(sl);
	}
	if (lb_maps_flush(m, NULL) < 0)
		return 1;
	skel = lb_sock__open();
	bpf_map__reuse_fd(skel->maps.lb4_services, fd[LBM_SVC4]);
	bpf_map__reuse_fd(skel->maps.lb6_services, fd[LBM_SVC6]);
	bpf_map__reuse_fd(skel->maps.lb_slots, fd[LBM_SLOTS]);
	bpf_map__reuse_fd(skel->maps.lb4_backends, fd[LBM_BE4]);
	bpf_map__reuse_fd(skel->maps.lb6_backends, fd[LBM_BE6]);
	bpf_map__reuse_fd(skel->maps.lb4_sk_revnat, fd[LBM_SK4]);
	bpf_map__reuse_fd(skel->maps.lb6_sk_revnat, fd[LBM_SK6]);
	bpf_map__reuse_fd(skel->maps.lb_affinity, fd[LBM_AFF]);
	if (lb_sock__load(skel) < 0)
		return 1;
	cgfd = open(cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgfd < 0 || bpf_prog_attach(bpf_program__fd(skel->progs.lb_connect4), cgfd,
					BPF_CGROUP_INET4_CONNECT, BPF_F_ALLOW_MULTI) < 0) {
		fprintf(stderr, "lb-bench: attach to %s: %s\n", cg, strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	f = fopen(path, "w");
	if (!f || fputs(pid, f) < 0 || fclose(f) != 0)
		return 1;
	ip4(vip, sizeof(vip), 0x0a600000u, n - 1);
	/* Warm up, then alternate so both see the same machine state. */
	measure("127.0.0.1", port, 500, lfd, &f50, &f99);
	measure(vip, 80, 500, lfd, &p50, &p99);
	if (measure("127.0.0.1", port, 5000, lfd, &f50, &f99) < 0 ||
	    measure(vip, 80, 5000, lfd, &p50, &p99) < 0)
		return 1;
	printf("connect services=%u socketlb_p50_us=%.1f socketlb_p99_us=%.1f "
	       "norules_p50_us=%.1f norules_p99_us=%.1f\n",
	       n, p50, p99, f50, f99);
	bpf_prog_detach2(bpf_program__fd(skel->progs.lb_connect4), cgfd, BPF_CGROUP_INET4_CONNECT);
	close(cgfd);
	lb_sock__destroy(skel);
	lb_maps_free(m);
	lbt_maps_close(fd);
	return 0;
}

/*
 * How fast this machine is right now, printed next to the numbers: on a
 * shared VM both the CPU and the cost of a fresh page (memory the host backs
 * lazily) change from minute to minute, and a sync of a million backends
 * is CPU-bound with ~100 MB of fresh memory and cache misses on cold
 * documents. loop_ms: a fixed dependent integer workload; page_us: the first
 * write to each page of 64 MB of fresh anonymous memory; miss_ns: a load
 * that depends on the previous one, at random over 128 MB.
 */
static int bench_calibrate(void)
{
	const size_t len = 64u << 20, n_idx = 32u << 20;
	volatile uint64_t sink;
	uint64_t x = 88172645463325252ull;
	double t0, loop_ms, page_us, miss_ns;
	uint32_t *idx, at = 0;
	char *p;

	t0 = now_ms();
	for (int i = 0; i < 50000000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	sink = x;
	(void)sink;
	loop_ms = now_ms() - t0;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	t0 = now_ms();
	for (size_t off = 0; off < len; off += 4096)
		p[off] = 1;
	page_us = (now_ms() - t0) * 1000.0 / (double)(len / 4096);
	munmap(p, len);
	/* One random cycle through all indexes (Sattolo), then 5M dependent loads along it. */
	if (!(idx = malloc(n_idx * sizeof(*idx))))
		return 1;
	for (uint32_t i = 0; i < n_idx; i++)
		idx[i] = i;
	for (uint32_t i = (uint32_t)n_idx - 1; i > 0; i--) {
		uint32_t j, t;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		j = (uint32_t)(x % i);
		t = idx[i];
		idx[i] = idx[j];
		idx[j] = t;
	}
	t0 = now_ms();
	for (int i = 0; i < 5000000; i++)
		at = idx[at];
	miss_ns = (now_ms() - t0) * 1e6 / 5000000.0;
	sink = at;
	(void)sink;
	free(idx);
	printf("calibrate loop_ms=%.1f page_us=%.2f miss_ns=%.1f\n", loop_ms, page_us, miss_ns);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "program"))
		return bench_program((uint32_t)atoi(argv[2]), (uint32_t)atoi(argv[3]),
				     argc == 5 ? argv[4] : "replay");
	if (argc == 2 && !strcmp(argv[1], "calibrate"))
		return bench_calibrate();
	if (argc == 3 && !strcmp(argv[1], "docmem"))
		return bench_docmem(argv[2]);
	if (argc == 4 && !strcmp(argv[1], "connect"))
		return bench_connect((uint32_t)atoi(argv[2]), argv[3]);
	if (argc == 6 && !strcmp(argv[1], "connect-raw")) {
		uint16_t dport = (uint16_t)atoi(argv[3]), port = (uint16_t)atoi(argv[4]);
		int lfd = listen_lo(&port);
		double p50, p99;

		if (lfd < 0 || measure(argv[2], dport, 500, lfd, &p50, &p99) < 0 ||
		    measure(argv[2], dport, atoi(argv[5]), lfd, &p50, &p99) < 0)
			return 1;
		printf("connect-raw %s p50_us=%.1f p99_us=%.1f\n", argv[2], p50, p99);
		return 0;
	}
	fprintf(stderr, "usage: lb-bench program N B [replay|incremental] | calibrate | docmem DIR | connect N CGROUP | connect-raw IP DPORT LPORT COUNT\n");
	return 2;
}
