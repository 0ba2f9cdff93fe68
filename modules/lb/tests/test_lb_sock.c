// SPDX-License-Identifier: Apache-2.0
/*
 * test_lb_sock.c - lb_sock.bpf.c for real: the programs are loaded on maps
 * that the writer fills, attached to a private cgroup v2 directory, and the
 * test process moves itself into it and uses plain sockets on loopback (VIPs
 * and backends in 127/8 and ::1, so nothing can leave the machine even if a
 * rewrite failed). sock_addr programs have no BPF_PROG_TEST_RUN on every
 * kernel, so this is the test. Needs root and cgroup v2; skipped otherwise.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>

#include <bpf/libbpf.h>

#include "lb_reap.h"
#include "lb_shared.h"
#include "lb_sock.skel.h"
#include "lb_test.h"
#include "lb_translate.h"

struct fx {
	int fd[LBM_N];
	uint32_t max[LBM_N];
	struct lb_maps *m;
	struct lb_sock *skel;
	char cg[256], home[1024];
	int cgfd;
	int tcp[2], udp[2], tcp6, udp6; /* backends */
	uint16_t port, port6;
	char *owners[32]; /* claims name their owner until the maps are freed */
	int n_owners;
};

static const char *cg_root(void)
{
	if (access("/sys/fs/cgroup/unified/cgroup.procs", F_OK) == 0)
		return "/sys/fs/cgroup/unified";
	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0)
		return "/sys/fs/cgroup";
	return NULL;
}

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, s, strlen(s)) < 0)
		r = -errno;
	close(fd);
	return r;
}

static int listener(int fam, int type, const char *ip, uint16_t *port)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int s = socket(fam, type | SOCK_CLOEXEC, 0), one = 1;

	assert_true(s >= 0);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fam == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(*port);
		inet_pton(AF_INET, ip, &a->sin_addr);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(*port);
		inet_pton(AF_INET6, ip, &a->sin6_addr);
		len = sizeof(*a);
	}
	if (bind(s, (struct sockaddr *)&ss, len) < 0)
		fail_msg("bind %s:%u: %s", ip, *port, strerror(errno));
	if (type == SOCK_STREAM)
		assert_int_equal(listen(s, 64), 0);
	len = sizeof(ss);
	getsockname(s, (struct sockaddr *)&ss, &len);
	*port = ntohs(fam == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
				     : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return s;
}

static void program(struct fx *fx, const char *name, const char *vip, int port, const char *proto,
		    const char *base, int first, int n, int bport, const char *extra)
{
	struct lb_translate_conf conf = {.node_name = "node1", .default_algorithm = LB_ALG_RANDOM};
	json_t *s = lbt_service("ns", name, vip, port, proto, extra);
	json_t *sl = lbt_slice("ns", name, "sl", strchr(vip, ':') != NULL, base, first, n, bport,
			       proto, "node1");
	const json_t *sls[1] = {sl};
	struct lb_svc *svc;
	char *err = NULL, owner[64];

	snprintf(owner, sizeof(owner), "ns/%s", name);
	assert_int_equal(lb_translate(&conf, s, sls, n ? 1 : 0, &svc), 0);
	/* The owner string must outlive the claim: the fixture keeps it. */
	assert_true(fx->n_owners < (int)(sizeof(fx->owners) / sizeof(fx->owners[0])));
	fx->owners[fx->n_owners] = strdup(owner);
	assert_int_equal(lb_maps_service_set(fx->m, fx->owners[fx->n_owners++], NULL, svc, &err), 0);
	assert_int_equal(lb_maps_flush(fx->m, NULL), 0);
	lb_svc_free(svc);
	json_decref(s);
	json_decref(sl);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));
	const char *root = cg_root();
	enum bpf_attach_type types[] = {BPF_CGROUP_INET4_CONNECT, BPF_CGROUP_INET6_CONNECT,
					BPF_CGROUP_UDP4_SENDMSG, BPF_CGROUP_UDP6_SENDMSG,
					BPF_CGROUP_UDP4_RECVMSG, BPF_CGROUP_UDP6_RECVMSG,
					BPF_CGROUP_INET4_GETPEERNAME, BPF_CGROUP_INET6_GETPEERNAME};
	struct bpf_program *progs[8];
	char path[1200], line[512];
	FILE *f;
	int r;

	*state = NULL;
	for (int i = 0; i < LBM_N; i++)
		fx->max[i] = 1024;
	if (!root || (r = lbt_maps_create(fx->fd, fx->max)) < 0) {
		print_message("needs root and cgroup v2: skipped\n");
		free(fx);
		return 0;
	}
	assert_int_equal(lb_maps_new(fx->fd, fx->max, &fx->m), 0);
	fx->skel = lb_sock__open();
	assert_non_null(fx->skel);
	assert_int_equal(bpf_map__reuse_fd(fx->skel->maps.lb4_services, fx->fd[LBM_SVC4]), 0);
	assert_int_equal(bpf_map__reuse_fd(fx->skel->maps.lb_slots, fx->fd[LBM_SLOTS]), 0);
	assert_int_equal(bpf_map__reuse_fd(fx->skel->maps.lb6_services, fx->fd[LBM_SVC6]), 0);
	assert_int_equal(bpf_map__reuse_fd(fx->skel->maps.lb4_backends, fx->fd[LBM_BE4]), 0);
	assert_int_equal(bpf_map__reuse_fd(fx->skel->maps.lb6_backends, fx->fd[LBM_BE6]), 0);
	assert_int_equal(bpf_map__reuse_fd(fx->skel->maps.lb4_sk_revnat, fx->fd[LBM_SK4]), 0);
	assert_int_equal(bpf_map__reuse_fd(fx->skel->maps.lb6_sk_revnat, fx->fd[LBM_SK6]), 0);
	assert_int_equal(bpf_map__reuse_fd(fx->skel->maps.lb_affinity, fx->fd[LBM_AFF]), 0);
	assert_int_equal(lb_sock__load(fx->skel), 0);

	snprintf(fx->cg, sizeof(fx->cg), "%s/lbsock%d", root, (int)getpid());
	assert_int_equal(mkdir(fx->cg, 0755), 0);
	fx->cgfd = open(fx->cg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fx->cgfd >= 0);
	progs[0] = fx->skel->progs.lb_connect4;
	progs[1] = fx->skel->progs.lb_connect6;
	progs[2] = fx->skel->progs.lb_sendmsg4;
	progs[3] = fx->skel->progs.lb_sendmsg6;
	progs[4] = fx->skel->progs.lb_recvmsg4;
	progs[5] = fx->skel->progs.lb_recvmsg6;
	progs[6] = fx->skel->progs.lb_getpeername4;
	progs[7] = fx->skel->progs.lb_getpeername6;
	for (int i = 0; i < 8; i++)
		assert_int_equal(bpf_prog_attach(bpf_program__fd(progs[i]), fx->cgfd, types[i],
						 BPF_F_ALLOW_MULTI), 0);

	/* Where we are now, to go back before removing the cgroup. */
	f = fopen("/proc/self/cgroup", "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(fx->home, sizeof(fx->home), "%s%s", root, line + 3);
		}
	fclose(f);
	snprintf(path, sizeof(path), "%s/cgroup.procs", fx->cg);
	snprintf(line, sizeof(line), "%d", (int)getpid());
	assert_int_equal(write_str(path, line), 0);

	fx->port = 0;
	fx->tcp[0] = listener(AF_INET, SOCK_STREAM, "127.0.0.2", &fx->port);
	fx->tcp[1] = listener(AF_INET, SOCK_STREAM, "127.0.0.3", &fx->port);
	fx->udp[0] = listener(AF_INET, SOCK_DGRAM, "127.0.0.2", &fx->port);
	fx->udp[1] = listener(AF_INET, SOCK_DGRAM, "127.0.0.3", &fx->port);
	fx->port6 = 0;
	fx->tcp6 = listener(AF_INET6, SOCK_STREAM, "::1", &fx->port6);
	fx->udp6 = listener(AF_INET6, SOCK_DGRAM, "::1", &fx->port6);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	char path[1200], pid[32];

	if (!fx)
		return 0;
	snprintf(path, sizeof(path), "%s/cgroup.procs", fx->home);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (write_str(path, pid) < 0)
		print_message("cannot move back to %s\n", fx->home);
	close(fx->cgfd);
	rmdir(fx->cg);
	for (int i = 0; i < 2; i++) {
		close(fx->tcp[i]);
		close(fx->udp[i]);
	}
	close(fx->tcp6);
	close(fx->udp6);
	lb_sock__destroy(fx->skel);
	lb_maps_free(fx->m);
	for (int i = 0; i < fx->n_owners; i++)
		free(fx->owners[i]);
	lbt_maps_close(fx->fd);
	free(fx);
	return 0;
}

#define NEED_ROOT(fx)                                                                              \
	do {                                                                                       \
		if (!(fx))                                                                         \
			skip();                                                                    \
	} while (0)

/* connect() to ip:port; the errno on failure (0 = connected). Sets *ret_fd. */
static int tcp_connect(int fam, const char *ip, uint16_t port, int *ret_fd)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int s = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	if (fam == AF_INET) {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		inet_pton(AF_INET, ip, &a->sin_addr);
		len = sizeof(*a);
	} else {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		inet_pton(AF_INET6, ip, &a->sin6_addr);
		len = sizeof(*a);
	}
	r = connect(s, (struct sockaddr *)&ss, len) < 0 ? errno : 0;
	*ret_fd = s;
	return r;
}

/* Which of the two IPv4 backends accepted the connection just made. */
static int accepted_by(struct fx *fx)
{
	for (int i = 0; i < 2; i++) {
		int c = accept4(fx->tcp[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (c >= 0) {
			close(c);
			return i;
		}
	}
	return -1;
}

static void test_tcp4_random(void **state)
{
	struct fx *fx = *state;
	int hits[2] = {0}, s;

	NEED_ROOT(fx);
	for (int i = 0; i < 2; i++)
		fcntl(fx->tcp[i], F_SETFL, O_NONBLOCK);
	program(fx, "web", "127.77.0.1", 80, "TCP", "127.0.0.", 2, 2, fx->port, NULL);
	for (int i = 0; i < 40; i++) {
		struct sockaddr_in peer;
		socklen_t len = sizeof(peer);
		char ip[32];
		int b;

		assert_int_equal(tcp_connect(AF_INET, "127.77.0.1", 80, &s), 0);
		/* getpeername shows what the application asked for. */
		assert_int_equal(getpeername(s, (struct sockaddr *)&peer, &len), 0);
		inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
		assert_string_equal(ip, "127.77.0.1");
		assert_int_equal(ntohs(peer.sin_port), 80);
		b = accepted_by(fx);
		assert_true(b >= 0);
		hits[b]++;
		close(s);
	}
	print_message("random over 2 backends, 40 connects: %d / %d\n", hits[0], hits[1]);
	assert_true(hits[0] > 0 && hits[1] > 0);
	/* Something that is not a service is left alone. */
	assert_int_equal(tcp_connect(AF_INET, "127.0.0.2", fx->port, &s), 0);
	close(s);
	assert_int_equal(accepted_by(fx), 0);
}

static void test_no_backends_refused(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(53)};
	int s, u;

	NEED_ROOT(fx);
	program(fx, "empty", "127.77.0.2", 80, "TCP", "127.0.0.", 2, 0, fx->port, NULL);
	assert_int_equal(tcp_connect(AF_INET, "127.77.0.2", 80, &s), ECONNREFUSED);
	close(s);
	program(fx, "empty6", "fd00:77::2", 80, "TCP", "::", 1, 0, fx->port6, NULL);
	assert_int_equal(tcp_connect(AF_INET6, "fd00:77::2", 80, &s), ECONNREFUSED);
	close(s);
	program(fx, "emptyu", "127.77.0.2", 53, "UDP", "127.0.0.", 2, 0, fx->port, NULL);
	u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "127.77.0.2", &to.sin_addr);
	assert_int_equal(sendto(u, "x", 1, 0, (struct sockaddr *)&to, sizeof(to)), -1);
	assert_int_equal(errno, ECONNREFUSED);
	close(u);
}

static void test_udp4(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(53)}, from, peer;
	socklen_t len;
	char buf[16], ip[32];
	int u, got = -1;

	NEED_ROOT(fx);
	program(fx, "dns", "127.77.0.3", 53, "UDP", "127.0.0.", 2, 2, fx->port, NULL);
	inet_pton(AF_INET, "127.77.0.3", &to.sin_addr);

	/* Unconnected: sendmsg translates, recvmsg shows the VIP as the source. */
	u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(sendto(u, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)), 4);
	for (int i = 0; i < 2 && got < 0; i++) {
		len = sizeof(peer);
		if (recvfrom(fx->udp[i], buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&peer, &len) == 4) {
			got = i;
			assert_int_equal(sendto(fx->udp[i], "pong", 4, 0, (struct sockaddr *)&peer, len), 4);
		}
	}
	assert_true(got >= 0);
	len = sizeof(from);
	assert_int_equal(recvfrom(u, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len), 4);
	inet_ntop(AF_INET, &from.sin_addr, ip, sizeof(ip));
	assert_string_equal(ip, "127.77.0.3");
	assert_int_equal(ntohs(from.sin_port), 53);
	close(u);

	/* Connected UDP: connect translates, getpeername shows the VIP. */
	u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(u, (struct sockaddr *)&to, sizeof(to)), 0);
	len = sizeof(peer);
	assert_int_equal(getpeername(u, (struct sockaddr *)&peer, &len), 0);
	inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
	assert_string_equal(ip, "127.77.0.3");
	assert_int_equal(send(u, "ping", 4, 0), 4);
	got = -1;
	for (int i = 0; i < 2 && got < 0; i++) {
		len = sizeof(peer);
		if (recvfrom(fx->udp[i], buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&peer, &len) == 4) {
			got = i;
			assert_int_equal(sendto(fx->udp[i], "pong", 4, 0, (struct sockaddr *)&peer, len), 4);
		}
	}
	assert_true(got >= 0);
	assert_int_equal(recv(u, buf, sizeof(buf), 0), 4);
	close(u);
}

/* A UDP socket connected to ip:port (through socket LB when ip is a VIP). */
static int udp_connected(const char *ip, uint16_t port)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
	int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(u >= 0);
	inet_pton(AF_INET, ip, &to.sin_addr);
	assert_int_equal(connect(u, (struct sockaddr *)&to, sizeof(to)), 0);
	return u;
}

/* What recv() on a connected UDP socket says now: 0, or the errno. */
static int recv_errno(int u)
{
	char buf[8];

	return recv(u, buf, sizeof(buf), MSG_DONTWAIT) < 0 ? errno : 0;
}

static void test_udp_reap(void **state)
{
	struct fx *fx = *state;
	struct lb_reaper *rp = NULL;
	const char *step = NULL;
	struct lb_reap_key gone = {.port = 0, .family = 4};
	uint64_t closed = 0;
	uint32_t n_ns = 0;
	char buf[8];
	int via_a, direct, via_b, r;

	NEED_ROOT(fx);
	/* Two UDP services, one backend each: 127.0.0.2 (a) and 127.0.0.3 (b). */
	program(fx, "a", "127.77.0.5", 53, "UDP", "127.0.0.", 2, 1, fx->port, NULL);
	program(fx, "b", "127.77.0.6", 53, "UDP", "127.0.0.", 3, 1, fx->port, NULL);
	via_a = udp_connected("127.77.0.5", 53);
	direct = udp_connected("127.0.0.2", fx->port); /* to the pod itself: not ours */
	via_b = udp_connected("127.77.0.6", 53);
	assert_int_equal(send(via_a, "x", 1, 0), 1);
	assert_int_equal(recv(fx->udp[0], buf, sizeof(buf), 0), 1);

	r = lb_reaper_new(fx->fd[LBM_SK4], fx->fd[LBM_SK6], &rp, &step);
	if (r < 0)
		fail_msg("reaper: %s: %s (Linux %s)", step, strerror(-r), "6.5+ needed");
	/* Backend 127.0.0.2 is gone: only the socket LB connected to it is closed. */
	inet_pton(AF_INET, "127.0.0.2", gone.addr);
	gone.port = htons(fx->port);
	assert_int_equal(lb_reaper_run(rp, &gone, 1, &closed, &n_ns), 0);
	assert_int_equal(closed, 1);
	assert_true(n_ns >= 1);
	assert_int_equal(recv_errno(via_a), ECONNABORTED);
	assert_int_equal(recv_errno(direct), EAGAIN);
	assert_int_equal(recv_errno(via_b), EAGAIN);
	assert_int_equal(send(via_b, "y", 1, 0), 1);
	assert_int_equal(recv(fx->udp[1], buf, sizeof(buf), 0), 1);
	/* The application connects again: through the service, as before. */
	close(via_a);
	via_a = udp_connected("127.77.0.5", 53);
	assert_int_equal(send(via_a, "z", 1, 0), 1);
	assert_int_equal(recv(fx->udp[0], buf, sizeof(buf), 0), 1);
	/* Run again: nothing left to close. */
	assert_int_equal(lb_reaper_run(rp, &gone, 1, &closed, &n_ns), 0);
	assert_int_equal(closed, 1); /* the new socket, connected to the same backend */
	assert_int_equal(lb_reaper_run(rp, &gone, 1, &closed, &n_ns), 0);
	assert_int_equal(closed, 0);
	lb_reaper_free(rp);
	close(via_a);
	close(direct);
	close(via_b);
}

static void test_ipv6(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_port = htons(53)}, from, peer;
	socklen_t len = sizeof(peer);
	char buf[16], ip[64];
	int s, c, u;

	NEED_ROOT(fx);
	program(fx, "web6", "fd00:77::1", 80, "TCP", "::", 1, 1, fx->port6, NULL);
	assert_int_equal(tcp_connect(AF_INET6, "fd00:77::1", 80, &s), 0);
	assert_int_equal(getpeername(s, (struct sockaddr *)&peer, &len), 0);
	inet_ntop(AF_INET6, &peer.sin6_addr, ip, sizeof(ip));
	assert_string_equal(ip, "fd00:77::1");
	c = accept4(fx->tcp6, NULL, NULL, SOCK_CLOEXEC);
	assert_true(c >= 0);
	close(c);
	close(s);

	program(fx, "dns6", "fd00:77::3", 53, "UDP", "::", 1, 1, fx->port6, NULL);
	inet_pton(AF_INET6, "fd00:77::3", &to.sin6_addr);
	u = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_int_equal(sendto(u, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)), 4);
	len = sizeof(peer);
	assert_int_equal(recvfrom(fx->udp6, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &len), 4);
	assert_int_equal(sendto(fx->udp6, "pong", 4, 0, (struct sockaddr *)&peer, len), 4);
	len = sizeof(from);
	assert_int_equal(recvfrom(u, buf, sizeof(buf), 0, (struct sockaddr *)&from, &len), 4);
	inet_ntop(AF_INET6, &from.sin6_addr, ip, sizeof(ip));
	assert_string_equal(ip, "fd00:77::3");
	close(u);
}

static void test_affinity(void **state)
{
	struct fx *fx = *state;
	struct lb_aff_key ak = {0};
	struct lb_aff_val av;
	int first = -1, s, changed = 0;
	char next[sizeof(ak)];

	NEED_ROOT(fx);
	for (int i = 0; i < 2; i++)
		fcntl(fx->tcp[i], F_SETFL, O_NONBLOCK);
	program(fx, "sticky", "127.77.0.4", 80, "TCP", "127.0.0.", 2, 2, fx->port,
		"{\"sessionAffinity\": \"ClientIP\", \"sessionAffinityConfig\": {\"clientIP\": {\"timeoutSeconds\": 30}}}");
	for (int i = 0; i < 30; i++) {
		int b;

		assert_int_equal(tcp_connect(AF_INET, "127.77.0.4", 80, &s), 0);
		b = accepted_by(fx);
		close(s);
		if (first < 0)
			first = b;
		assert_int_equal(b, first);
	}
	/* One entry, keyed by our netns cookie; expire it and the choice is made again. */
	assert_int_equal(bpf_map_get_next_key(fx->fd[LBM_AFF], NULL, next), 0);
	memcpy(&ak, next, sizeof(ak));
	assert_int_not_equal(ak.netns_cookie, 0);
	for (int round = 0; round < 40 && !changed; round++) {
		assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_AFF], &ak, &av), 0);
		av.last_used_ns = 0; /* long ago */
		assert_int_equal(bpf_map_update_elem(fx->fd[LBM_AFF], &ak, &av, BPF_ANY), 0);
		assert_int_equal(tcp_connect(AF_INET, "127.77.0.4", 80, &s), 0);
		changed = accepted_by(fx) != first;
		close(s);
	}
	assert_true(changed);

	/*
	 * A fresh entry whose slot no longer holds its backend (the backend left
	 * the service, or the frontend's rev_nat_id belonged to another one
	 * before) is not honoured either: the client is not sent elsewhere.
	 */
	first = !first; /* the backend it sticks to now */
	changed = 0;
	for (int round = 0; round < 40 && !changed; round++) {
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		assert_int_equal(bpf_map_lookup_elem(fx->fd[LBM_AFF], &ak, &av), 0);
		av.slot ^= 1; /* the other backend's slot */
		av.last_used_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		assert_int_equal(bpf_map_update_elem(fx->fd[LBM_AFF], &ak, &av, BPF_ANY), 0);
		assert_int_equal(tcp_connect(AF_INET, "127.77.0.4", 80, &s), 0);
		changed = accepted_by(fx) != first;
		close(s);
	}
	assert_true(changed);
}

/* A dual-stack AF_INET6 socket (IPV6_V6ONLY off, whatever the sysctl says). */
static int sock6_dual(int type)
{
	int s = socket(AF_INET6, type | SOCK_CLOEXEC, 0), off = 0;

	assert_true(s >= 0);
	assert_int_equal(setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off)), 0);
	return s;
}

static struct sockaddr_in6 mapped(const char *ip4, uint16_t port)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
	char ip[64];

	snprintf(ip, sizeof(ip), "::ffff:%s", ip4);
	assert_int_equal(inet_pton(AF_INET6, ip, &a.sin6_addr), 1);
	return a;
}

static void assert_peer6(const struct sockaddr_in6 *a, const char *ip6, uint16_t port)
{
	char ip[64];

	inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
	assert_string_equal(ip, ip6);
	assert_int_equal(ntohs(a->sin6_port), port);
}

/* One of the two IPv4 UDP backends got "ping" from us: it answers "pong". */
static int udp4_echo(struct fx *fx)
{
	struct sockaddr_in peer;
	socklen_t len;
	char buf[16];

	for (int i = 0; i < 2; i++) {
		len = sizeof(peer);
		if (recvfrom(fx->udp[i], buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&peer,
			     &len) == 4) {
			assert_int_equal(sendto(fx->udp[i], "pong", 4, 0, (struct sockaddr *)&peer, len),
					 4);
			return i;
		}
	}
	return -1;
}

/*
 * IPv4 services through IPv4-mapped IPv6 addresses on dual-stack sockets:
 * the IPv4 maps translate, the application only ever sees ::ffff:<VIP>.
 */
static void test_v4mapped(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in6 to, peer;
	socklen_t len;
	char buf[16];
	int hits[2] = {0}, s, u, b;

	NEED_ROOT(fx);
	for (int i = 0; i < 2; i++)
		fcntl(fx->tcp[i], F_SETFL, O_NONBLOCK);
	program(fx, "web4m", "127.77.0.5", 80, "TCP", "127.0.0.", 2, 2, fx->port, NULL);
	to = mapped("127.77.0.5", 80);
	for (int i = 0; i < 20; i++) {
		s = sock6_dual(SOCK_STREAM);
		assert_int_equal(connect(s, (struct sockaddr *)&to, sizeof(to)), 0);
		len = sizeof(peer);
		assert_int_equal(getpeername(s, (struct sockaddr *)&peer, &len), 0);
		assert_peer6(&peer, "::ffff:127.77.0.5", 80);
		b = accepted_by(fx);
		assert_true(b >= 0);
		hits[b]++;
		close(s);
	}
	print_message("v4-mapped TCP, 20 connects: %d / %d\n", hits[0], hits[1]);
	assert_true(hits[0] > 0 && hits[1] > 0);

	/* No backend: refused, as on an AF_INET socket. */
	program(fx, "empty4m", "127.77.0.7", 80, "TCP", "127.0.0.", 2, 0, fx->port, NULL);
	to = mapped("127.77.0.7", 80);
	s = sock6_dual(SOCK_STREAM);
	assert_int_equal(connect(s, (struct sockaddr *)&to, sizeof(to)), -1);
	assert_int_equal(errno, ECONNREFUSED);
	close(s);

	/* A mapped address that is no service is left alone. */
	to = mapped("127.0.0.2", fx->port);
	s = sock6_dual(SOCK_STREAM);
	assert_int_equal(connect(s, (struct sockaddr *)&to, sizeof(to)), 0);
	len = sizeof(peer);
	assert_int_equal(getpeername(s, (struct sockaddr *)&peer, &len), 0);
	assert_peer6(&peer, "::ffff:127.0.0.2", fx->port);
	close(s);
	assert_int_equal(accepted_by(fx), 0);

	/* UDP unconnected: recvmsg shows the mapped VIP as the source. */
	program(fx, "dns4m", "127.77.0.6", 53, "UDP", "127.0.0.", 2, 2, fx->port, NULL);
	to = mapped("127.77.0.6", 53);
	u = sock6_dual(SOCK_DGRAM);
	assert_int_equal(sendto(u, "ping", 4, 0, (struct sockaddr *)&to, sizeof(to)), 4);
	assert_true(udp4_echo(fx) >= 0);
	len = sizeof(peer);
	assert_int_equal(recvfrom(u, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &len), 4);
	assert_peer6(&peer, "::ffff:127.77.0.6", 53);
	close(u);

	/* UDP connected: connect6 translates, getpeername and recvmsg show the VIP. */
	u = sock6_dual(SOCK_DGRAM);
	assert_int_equal(connect(u, (struct sockaddr *)&to, sizeof(to)), 0);
	len = sizeof(peer);
	assert_int_equal(getpeername(u, (struct sockaddr *)&peer, &len), 0);
	assert_peer6(&peer, "::ffff:127.77.0.6", 53);
	assert_int_equal(send(u, "ping", 4, 0), 4);
	assert_true(udp4_echo(fx) >= 0);
	len = sizeof(peer);
	assert_int_equal(recvfrom(u, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &len), 4);
	assert_peer6(&peer, "::ffff:127.77.0.6", 53);
	close(u);
}

/* IPv6, and an IPv4 service reached from a dual-stack socket (::ffff:a.b.c.d). */
static void test_udp_reap6(void **state)
{
	struct fx *fx = *state;
	struct sockaddr_in6 to6 = {.sin6_family = AF_INET6, .sin6_port = htons(53)};
	struct sockaddr_in6 to4m;
	struct lb_reap_key gone[2] = {{.family = 6}, {.family = 4}};
	struct lb_reaper *rp = NULL;
	const char *step = NULL;
	uint64_t closed = 0;
	uint32_t n_ns = 0;
	int v6, v4m, r;

	NEED_ROOT(fx);
	program(fx, "c6", "fd00:77::5", 53, "UDP", "::", 1, 1, fx->port6, NULL);
	program(fx, "c4", "127.77.0.8", 53, "UDP", "127.0.0.", 3, 1, fx->port, NULL);
	v6 = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET6, "fd00:77::5", &to6.sin6_addr);
	assert_int_equal(connect(v6, (struct sockaddr *)&to6, sizeof(to6)), 0);
	v4m = sock6_dual(SOCK_DGRAM);
	to4m = mapped("127.77.0.8", 53);
	assert_int_equal(connect(v4m, (struct sockaddr *)&to4m, sizeof(to4m)), 0);

	r = lb_reaper_new(fx->fd[LBM_SK4], fx->fd[LBM_SK6], &rp, &step);
	if (r < 0)
		fail_msg("reaper: %s: %s (Linux %s)", step, strerror(-r), "6.5+ needed");
	inet_pton(AF_INET6, "::1", gone[0].addr);
	gone[0].port = htons(fx->port6);
	inet_pton(AF_INET, "127.0.0.3", gone[1].addr);
	gone[1].port = htons(fx->port);
	assert_int_equal(lb_reaper_run(rp, gone, 2, &closed, &n_ns), 0);
	assert_int_equal(closed, 2);
	assert_int_equal(recv_errno(v6), ECONNABORTED);
	assert_int_equal(recv_errno(v4m), ECONNABORTED);
	lb_reaper_free(rp);
	close(v6);
	close(v4m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tcp4_random, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_backends_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_udp4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ipv6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_udp_reap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_udp_reap6, setup, teardown),
		cmocka_unit_test_setup_teardown(test_affinity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v4mapped, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
