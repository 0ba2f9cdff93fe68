/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb_reap.h - close the connected UDP sockets that socket LB pointed at a
 * backend that is gone (lb_reap.bpf.c says why). Independent of the module:
 * the socket reverse-NAT maps in, sockets closed out.
 */
#ifndef LB_REAP_H
#define LB_REAP_H

#include <stddef.h>
#include <stdint.h>

#include "lb_shared.h"

struct lb_reaper;

/*
 * Load the iterator on the socket reverse-NAT maps sk4_fd / sk6_fd. Fails on
 * kernels without bpf_sock_destroy() (before 6.5) or UDP iterators; *ret_step
 * then says which step failed.
 */
int lb_reaper_new(int sk4_fd, int sk6_fd, struct lb_reaper **ret_reaper, const char **ret_step);

/*
 * In every network namespace that a process of this host is in, destroy the
 * UDP sockets that socket LB connected to one of keys[0 .. n): they are
 * disconnected, recv() fails with ECONNABORTED and send() with EDESTADDRREQ. *ret_closed: how many;
 * *ret_netns: namespaces visited. Runs on a thread of its own (it enters
 * the namespaces) and returns when it is done.
 */
int lb_reaper_run(struct lb_reaper *rp, const struct lb_reap_key *keys, size_t n,
		  uint64_t *ret_closed, uint32_t *ret_netns);

void lb_reaper_free(struct lb_reaper *rp);

#endif /* LB_REAP_H */
