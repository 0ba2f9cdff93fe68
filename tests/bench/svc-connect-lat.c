// SPDX-License-Identifier: Apache-2.0
/*
 * svc-connect-lat.c - TCP connect() latency, for tests/bench/svc-connect.sh.
 *
 * Client: connects COUNT times to ADDR PORT (IPv4 or IPv6), timing each
 * connect() alone with CLOCK_MONOTONIC, and closes each socket with
 * SO_LINGER 0 (an RST, so neither side keeps TIME_WAIT and ports do not run
 * out). A blocking connect() returns when the SYN-ACK is in, so a sample is
 * socket layer + route + netfilter/BPF + one round trip to the backend.
 * Prints one machine-readable line and one for humans:
 *
 *   RESULT label=L addr=A port=P n=N ok=N err=N min_us=.. p50_us=.. p90_us=.. p99_us=.. max_us=.. mean_us=..
 *   L: 20000 connects to A:P  min 20.1  p50 24.3  p90 27.0  p99 41.2  max 310.0 us (mean 25.0)
 *
 *   svc-connect-lat [-n COUNT] [-w WARMUP] [-t TIMEOUT_MS] [-C CPU] [-L LABEL] [-o FILE] ADDR PORT
 *       -o FILE: also append every sample (ns, one a line) to FILE, so that
 *       runs interleaved with other modes can be pooled with -R
 *   svc-connect-lat -R [-L LABEL] FILE...
 *       the same two lines for the samples in FILEs (addr=- port=- err=0)
 *   svc-connect-lat -x BANNER [-t TIMEOUT_MS] ADDR PORT
 *       one connect; read what the server sends and compare with BANNER
 *       (proves the connection reached that server); exit 0 if equal
 *
 * Server: accept-and-close loop; with -b, BANNER is sent first. The server
 * closes normally: the client's RST usually got there first, so nothing is
 * left behind, and an RST from the server side (SO_LINGER 0 here too) was
 * seen to reset a later connect() that reused the port (ECONNRESET, about
 * 1 in 5000 on loopback).
 *
 *   svc-connect-lat -s [-b BANNER] [-C CPU] [-P SPIN_MS] ADDR PORT
 *       -P: busy-poll accept() until nothing came for SPIN_MS, then sleep (see serve())
 *
 * Exit status: 0 ok; 1 failure (no successful connect, banner mismatch,
 * socket errors); 2 usage. Errors of single connects are counted (err=),
 * the first one is reported on stderr; the run stops after 100 in a row.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_setaffinity, CPU_SET */
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONSECUTIVE_ERRORS 100

static void usage(void)
{
	fprintf(stderr,
		"usage: svc-connect-lat [-n COUNT] [-w WARMUP] [-t TIMEOUT_MS] [-C CPU] [-L LABEL] [-o FILE] ADDR PORT\n"
		"       svc-connect-lat -R [-L LABEL] FILE...\n"
		"       svc-connect-lat -x BANNER [-t TIMEOUT_MS] ADDR PORT\n"
		"       svc-connect-lat -s [-b BANNER] [-C CPU] [-P SPIN_MS] ADDR PORT\n");
	exit(2);
}

static long num(const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "svc-connect-lat: bad number '%s' (%ld..%ld)\n", s, lo, hi);
		exit(2);
	}
	return v;
}

static int resolve(const char *addr, const char *port, int passive, struct sockaddr_storage *ss,
		   socklen_t *len)
{
	struct addrinfo hints = {0}, *ai;
	int r;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	r = getaddrinfo(addr, port, &hints, &ai);
	if (r) {
		fprintf(stderr, "svc-connect-lat: %s port %s: %s\n", addr, port, gai_strerror(r));
		return -1;
	}
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

static void pin(int cpu)
{
	cpu_set_t set;

	if (cpu < 0)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0)
		fprintf(stderr, "svc-connect-lat: cannot pin to CPU %d: %s (not pinned)\n", cpu,
			strerror(errno));
}

static void set_linger0(int fd)
{
	struct linger l = {.l_onoff = 1, .l_linger = 0};

	(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
}

static uint64_t now_ns(void);

/*
 * Accept loop. With spin_ms > 0 the listener is non-blocking and the loop
 * busy-polls accept() until nothing came for spin_ms, then sleeps in poll():
 * while a client runs, the server's CPU never idles, so the wake-up in the
 * client's connect() path (the handshake's last ACK is processed there and
 * wakes the listener) never has to bring an idle CPU back (an IPI, and on a
 * VM an exit), which otherwise comes and goes with the timing.
 */
static int serve(const struct sockaddr_storage *ss, socklen_t len, const char *banner, long spin_ms)
{
	int one = 1, lfd;
	uint64_t last = 0;

	signal(SIGPIPE, SIG_IGN);
	lfd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC | (spin_ms ? SOCK_NONBLOCK : 0), 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (const struct sockaddr *)ss, len) < 0 || listen(lfd, 4096) < 0) {
		fprintf(stderr, "svc-connect-lat: server socket: %s\n", strerror(errno));
		return 1;
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		if (fd < 0 && errno == EAGAIN) {
			struct pollfd pfd = {.fd = lfd, .events = POLLIN};

			if (now_ns() - last < (uint64_t)spin_ms * 1000000u)
				continue;
			(void)poll(&pfd, 1, -1);
			last = now_ns();
			continue;
		}
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE ||
			    errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				continue;
			fprintf(stderr, "svc-connect-lat: accept: %s\n", strerror(errno));
			return 1;
		}
		if (banner)
			(void)send(fd, banner, strlen(banner), MSG_NOSIGNAL);
		close(fd);
		if (spin_ms)
			last = now_ns();
	}
}

static int open_client(int family, int timeout_ms)
{
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	set_linger0(fd);
	/* A blocking connect() gives up after SO_SNDTIMEO (EINPROGRESS). */
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static int check_banner(const struct sockaddr_storage *ss, socklen_t len, int timeout_ms,
			const char *want)
{
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	char buf[256];
	size_t got = 0;
	int fd = open_client(ss->ss_family, timeout_ms);

	if (fd < 0 || connect(fd, (const struct sockaddr *)ss, len) < 0) {
		fprintf(stderr, "svc-connect-lat: connect: %s\n", strerror(errno));
		return 1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = 0;
	close(fd);
	if (strcmp(buf, want)) {
		fprintf(stderr, "svc-connect-lat: expected banner '%s', got '%s'\n", want, buf);
		return 1;
	}
	printf("banner ok: %s\n", buf);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest sample with at least p% of samples <= it. */
static double pct_us(const uint64_t *v, size_t n, double p)
{
	size_t i = (size_t)((p / 100.0) * (double)n + 0.999999);

	if (i < 1)
		i = 1;
	if (i > n)
		i = n;
	return (double)v[i - 1] / 1000.0;
}

static int report(const char *label, const char *addr, const char *port, long count, uint64_t *lat,
		  size_t ok, size_t err)
{
	double sum = 0;

	if (!ok) {
		printf("RESULT label=%s addr=%s port=%s n=%ld ok=0 err=%zu\n", label, addr, port, count, err);
		return 1;
	}
	qsort(lat, ok, sizeof(*lat), cmp_u64);
	for (size_t i = 0; i < ok; i++)
		sum += (double)lat[i];
	double mn = pct_us(lat, ok, 0), p50 = pct_us(lat, ok, 50), p90 = pct_us(lat, ok, 90),
	       p99 = pct_us(lat, ok, 99), mx = (double)lat[ok - 1] / 1000.0,
	       mean = sum / (double)ok / 1000.0;

	printf("RESULT label=%s addr=%s port=%s n=%ld ok=%zu err=%zu min_us=%.1f p50_us=%.1f "
	       "p90_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f\n",
	       label, addr, port, count, ok, err, mn, p50, p90, p99, mx, mean);
	printf("%s: %zu connects%s%s%s%s  min %.1f  p50 %.1f  p90 %.1f  p99 %.1f  max %.1f us "
	       "(mean %.1f)%s\n",
	       label, ok, strcmp(addr, "-") ? " to " : " (pooled)", strcmp(addr, "-") ? addr : "",
	       strcmp(addr, "-") ? " port " : "", strcmp(addr, "-") ? port : "", mn, p50, p90, p99,
	       mx, mean, err ? "  SOME FAILED" : "");
	return 0;
}

/* -R: pool the samples of earlier runs (-o) and report them. */
static int report_files(const char *label, char **files, int n)
{
	size_t len = 0, cap = 1 << 16;
	uint64_t *lat = malloc(cap * sizeof(*lat));
	unsigned long long v;
	int r;

	if (!lat) {
		perror("svc-connect-lat: malloc");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		FILE *f = fopen(files[i], "r");

		if (!f) {
			fprintf(stderr, "svc-connect-lat: %s: %s\n", files[i], strerror(errno));
			free(lat);
			return 1;
		}
		while (fscanf(f, "%llu", &v) == 1) {
			if (len == cap) {
				uint64_t *nl = realloc(lat, 2 * cap * sizeof(*lat));

				if (!nl) {
					perror("svc-connect-lat: realloc");
					fclose(f);
					free(lat);
					return 1;
				}
				lat = nl;
				cap *= 2;
			}
			lat[len++] = v;
		}
		fclose(f);
	}
	r = report(label, "-", "-", (long)len, lat, len, 0);
	free(lat);
	return r;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	const char *banner = NULL, *expect = NULL, *label = "connect", *out = NULL;
	long count = 20000, warmup = 100, timeout_ms = 2000, spin_ms = 0;
	int server = 0, pool = 0, cpu = -1, c, r;
	struct sockaddr_storage ss;
	socklen_t len;

	while ((c = getopt(argc, argv, "n:w:t:C:L:x:sb:o:RP:h")) != -1) {
		switch (c) {
		case 'n': count = num(optarg, 1, 100000000); break;
		case 'w': warmup = num(optarg, 0, 100000000); break;
		case 't': timeout_ms = num(optarg, 1, 600000); break;
		case 'C': cpu = (int)num(optarg, 0, 4095); break;
		case 'L': label = optarg; break;
		case 'x': expect = optarg; break;
		case 's': server = 1; break;
		case 'b': banner = optarg; break;
		case 'o': out = optarg; break;
		case 'R': pool = 1; break;
		case 'P': spin_ms = num(optarg, 0, 3600000); break;
		default: usage();
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (pool)
		return optind < argc ? report_files(label, argv + optind, argc - optind) : (usage(), 2);
	if (argc - optind != 2)
		usage();
	if (resolve(argv[optind], argv[optind + 1], server, &ss, &len) < 0)
		return 1;
	pin(cpu);
	if (server)
		return serve(&ss, len, banner, spin_ms);
	if (expect)
		return check_banner(&ss, len, (int)timeout_ms, expect);

	uint64_t *lat = calloc((size_t)count, sizeof(*lat));
	size_t ok = 0, err = 0, run = 0;
	int first_errno = 0;

	if (!lat) {
		perror("svc-connect-lat: calloc");
		return 1;
	}
	for (long i = 0; i < warmup + count; i++) {
		int fd = open_client(ss.ss_family, (int)timeout_ms);
		uint64_t t0, t1;

		if (fd < 0) {
			fprintf(stderr, "svc-connect-lat: socket: %s\n", strerror(errno));
			return 1;
		}
		t0 = now_ns();
		r = connect(fd, (const struct sockaddr *)&ss, len);
		t1 = now_ns();
		if (r < 0) {
			if (!first_errno) {
				first_errno = errno;
				fprintf(stderr, "svc-connect-lat: %s: connect %s port %s: %s\n", label,
					argv[optind], argv[optind + 1], strerror(errno));
			}
			close(fd);
			if (i >= warmup)
				err++;
			if (++run >= MAX_CONSECUTIVE_ERRORS) {
				fprintf(stderr, "svc-connect-lat: %s: %d connects in a row failed, giving up\n",
					label, MAX_CONSECUTIVE_ERRORS);
				break;
			}
			continue;
		}
		run = 0;
		close(fd);
		if (i >= warmup)
			lat[ok++] = t1 - t0;
	}
	if (out) {
		FILE *f = fopen(out, "a");

		if (!f) {
			fprintf(stderr, "svc-connect-lat: %s: %s\n", out, strerror(errno));
			return 1;
		}
		for (size_t i = 0; i < ok; i++)
			fprintf(f, "%llu\n", (unsigned long long)lat[i]);
		if (fclose(f) != 0) {
			fprintf(stderr, "svc-connect-lat: %s: %s\n", out, strerror(errno));
			return 1;
		}
	}
	r = report(label, argv[optind], argv[optind + 1], count, lat, ok, err);
	free(lat);
	return r;
}
