// SPDX-License-Identifier: Apache-2.0
/*
 * lb_reap.c - run lb_reap.bpf.c's UDP socket iterator in every network
 * namespace of the host. A socket iterator walks the namespace of the
 * thread that creates it, and pods' sockets live in the pods' namespaces:
 * a thread of our own enters each namespace that some process is in
 * (/proc/PID/ns/net; a namespace no process is in holds no socket anybody
 * reads), creates the iterator there and reads it to the end. The agent's
 * own thread never changes namespace.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* setns */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "lb_reap.h"
#include "lb_reap.skel.h"
#include "lb_thread.h"

#define REAP_BATCH 4096 /* lb_reap's max_entries (lb_reap.bpf.c) */

struct lb_reaper {
	struct lb_reap *skel;
	struct bpf_link *link;
};

int lb_reaper_new(int sk4_fd, int sk6_fd, struct lb_reaper **ret_reaper, const char **ret_step)
{
	struct lb_reaper *rp = calloc(1, sizeof(*rp));
	const char *step = "opening the BPF object";
	int r = -ENOMEM;

	if (!rp)
		goto fail;
	if (!(rp->skel = lb_reap__open())) {
		r = -errno;
		goto fail;
	}
	step = "reusing the socket reverse-NAT maps";
	if ((r = bpf_map__reuse_fd(rp->skel->maps.lb4_sk_revnat, sk4_fd)) < 0 ||
	    (r = bpf_map__reuse_fd(rp->skel->maps.lb6_sk_revnat, sk6_fd)) < 0)
		goto fail;
	step = "loading (bpf_sock_destroy needs Linux 6.5)";
	if ((r = lb_reap__load(rp->skel)) < 0)
		goto fail;
	step = "attaching the UDP socket iterator";
	if (!(rp->link = bpf_program__attach_iter(rp->skel->progs.lb_reap_udp, NULL))) {
		r = -errno;
		goto fail;
	}
	*ret_reaper = rp;
	return 0;
fail:
	*ret_step = step;
	lb_reaper_free(rp);
	return r < 0 ? r : -EINVAL;
}

void lb_reaper_free(struct lb_reaper *rp)
{
	if (!rp)
		return;
	bpf_link__destroy(rp->link);
	lb_reap__destroy(rp->skel);
	free(rp);
}

/* A network namespace, and a process in it to reach it through. */
struct ns_ref {
	dev_t dev;
	ino_t ino;
	int pid;
};

static int ns_cmp(const void *a, const void *b)
{
	const struct ns_ref *x = a, *y = b;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->ino < y->ino ? -1 : x->ino > y->ino;
}

struct walk {
	int link_fd;
	int r;	       /* the first error */
	uint32_t n_ns; /* namespaces the iterator ran in */
};

/* Run the iterator once in the namespace this thread is in. */
static int iterate_here(int link_fd)
{
	char buf[64];
	int fd = bpf_iter_create(link_fd), r = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	if (n < 0)
		r = -errno;
	close(fd);
	return r;
}

static void *walk_thread(void *arg)
{
	struct walk *w = arg;
	struct ns_ref *v = NULL, *nv;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d = opendir("/proc");

	if (!d) {
		w->r = -errno;
		return NULL;
	}
	while ((de = readdir(d))) {
		char path[64], *end;
		long pid = strtol(de->d_name, &end, 10);
		struct stat st;

		if (*end || pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/ns/net", pid);
		if (stat(path, &st) < 0)
			continue; /* gone, or a kernel thread */
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			if (!(nv = realloc(v, cap * sizeof(*v)))) {
				w->r = -ENOMEM;
				goto out;
			}
			v = nv;
		}
		v[n++] = (struct ns_ref){.dev = st.st_dev, .ino = st.st_ino, .pid = (int)pid};
	}
	qsort(v, n, sizeof(*v), ns_cmp);
	for (size_t i = 0; i < n; i++) {
		char path[64];
		struct stat st;
		int fd, r;

		if (i && !ns_cmp(&v[i - 1], &v[i]))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/ns/net", v[i].pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue; /* the process ended: another one may be in it (next) */
		/* Still that namespace (the pid was not reused meanwhile)? Then enter it. */
		if (fstat(fd, &st) < 0 || st.st_dev != v[i].dev || st.st_ino != v[i].ino ||
		    setns(fd, CLONE_NEWNET) < 0) {
			close(fd);
			continue;
		}
		close(fd);
		if ((r = iterate_here(w->link_fd)) < 0 && !w->r)
			w->r = r;
		w->n_ns++;
	}
out:
	free(v);
	closedir(d);
	return NULL;
}

int lb_reaper_run(struct lb_reaper *rp, const struct lb_reap_key *keys, size_t n,
		  uint64_t *ret_closed, uint32_t *ret_netns)
{
	static const uint8_t ones[REAP_BATCH] = {[0 ... REAP_BATCH - 1] = 1};
	uint64_t before = __atomic_load_n(&rp->skel->bss->reaped, __ATOMIC_RELAXED);
	uint32_t n_ns = 0;
	int r = 0;

	for (size_t off = 0; off < n && r == 0; off += REAP_BATCH) {
		struct walk w = {.link_fd = bpf_link__fd(rp->link)};
		__u32 m = (__u32)(n - off < REAP_BATCH ? n - off : REAP_BATCH), k = m;
		pthread_t t;

		if (bpf_map_update_batch(bpf_map__fd(rp->skel->maps.lb_reap), keys + off, ones, &k,
					 NULL) < 0) {
			r = -errno;
			m = k; /* the ones that went in are taken out again */
		} else if (!lb_thread_spawn(&t, walk_thread, &w)) {
			r = -EAGAIN;
		} else {
			pthread_join(t, NULL);
			r = w.r;
			if (w.n_ns > n_ns)
				n_ns = w.n_ns;
		}
		k = m;
		(void)bpf_map_delete_batch(bpf_map__fd(rp->skel->maps.lb_reap), keys + off, &k,
					   NULL);
	}
	if (r < 0)
		return r;
	*ret_closed = __atomic_load_n(&rp->skel->bss->reaped, __ATOMIC_RELAXED) - before;
	*ret_netns = n_ns;
	return 0;
}
