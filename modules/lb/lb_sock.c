// SPDX-License-Identifier: Apache-2.0
/*
 * lb_sock.c - load lb_sock.bpf.c with its maps pointed at the registry's
 * pinned maps and attach its eight programs to the node cgroup through the
 * hook registry. The registry keeps its own reference to each program, so
 * the skeleton is freed once everything is attached; the attachments (and
 * so socket LB) outlive the agent.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/vfs.h>

#include <linux/magic.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "lb.h"
#include "lb_sock.skel.h"

/*
 * Is cg the root of its cgroup2 hierarchy? (its parent directory is not on
 * cgroup2: /sys/fs/cgroup on a hybrid system, / on a unified one).
 */
static bool cgroup_is_root(const char *cg)
{
	char parent[PATH_MAX];
	struct statfs sf;

	if (snprintf(parent, sizeof(parent), "%s/..", cg) >= (int)sizeof(parent))
		return false;
	return statfs(parent, &sf) == 0 && sf.f_type != CGROUP2_SUPER_MAGIC;
}

int lb_sock_attach(struct lb *lb)
{
	struct axn_mod *self = lb->self;
	struct lb_sock *skel;
	const char *step;
	int r;

	skel = lb_sock__open();
	if (!skel) {
		r = -errno;
		axn_err(self, "socket LB: opening the BPF object failed: %s", strerror(-r));
		return r;
	}
	struct {
		struct bpf_map *map;
		enum lb_map_id id;
	} maps[] = {
		{skel->maps.lb4_services, LBM_SVC4}, {skel->maps.lb6_services, LBM_SVC6},
		{skel->maps.lb_slots, LBM_SLOTS},
		{skel->maps.lb4_backends, LBM_BE4},  {skel->maps.lb6_backends, LBM_BE6},
		{skel->maps.lb4_sk_revnat, LBM_SK4}, {skel->maps.lb6_sk_revnat, LBM_SK6},
		{skel->maps.lb_affinity, LBM_AFF},
	};
	struct {
		struct bpf_program *prog;
		enum bpf_attach_type type;
	} progs[] = {
		{skel->progs.lb_connect4, BPF_CGROUP_INET4_CONNECT},
		{skel->progs.lb_connect6, BPF_CGROUP_INET6_CONNECT},
		{skel->progs.lb_sendmsg4, BPF_CGROUP_UDP4_SENDMSG},
		{skel->progs.lb_sendmsg6, BPF_CGROUP_UDP6_SENDMSG},
		{skel->progs.lb_recvmsg4, BPF_CGROUP_UDP4_RECVMSG},
		{skel->progs.lb_recvmsg6, BPF_CGROUP_UDP6_RECVMSG},
		{skel->progs.lb_getpeername4, BPF_CGROUP_INET4_GETPEERNAME},
		{skel->progs.lb_getpeername6, BPF_CGROUP_INET6_GETPEERNAME},
	};

	step = "reusing the pinned maps";
	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		if ((r = bpf_map__reuse_fd(maps[i].map, lb->fd[maps[i].id])) < 0)
			goto fail;
	step = "loading";
	if ((r = lb_sock__load(skel)) < 0)
		goto fail;
	step = "attaching";
	for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
		struct axn_hook_spec spec = {
			.size = sizeof(spec),
			.kind = AXN_HOOK_CGROUP,
			.cgroup = lb->cgroup,
			.attach_type = progs[i].type,
			.band = AXN_BAND_SERVICE,
			.prio = 0,
			.name = bpf_program__name(progs[i].prog),
		};

		r = self->host->hook_attach(self, &spec, bpf_program__fd(progs[i].prog),
					    &lb->hooks[i]);
		if (r < 0) {
			axn_err(self, "socket LB: attaching %s to %s failed: %s", spec.name,
				lb->cgroup, strerror(-r));
			lb_sock__destroy(skel);
			return r;
		}
	}
	lb_sock__destroy(skel);
	if (cgroup_is_root(lb->cgroup))
		/* Right for a node agent (Cilium does the same); worth saying for anything else. */
		axn_info(self, "socket LB attached to %s, the cgroup root: every process on this "
			       "host is load-balanced, also after the agent stops (axonemed --purge "
			       "detaches)", lb->cgroup);
	else
		axn_info(self, "socket LB attached to %s", lb->cgroup);
	return 0;
fail:
	axn_err(self, "socket LB: %s failed: %s", step, strerror(-r));
	lb_sock__destroy(skel);
	return r;
}

void lb_reap_open(struct lb *lb)
{
	const char *step = "";
	int r = lb_reaper_new(lb->fd[LBM_SK4], lb->fd[LBM_SK6], &lb->reaper, &step);

	if (r < 0)
		axn_warn(lb->self,
			 "connected UDP sockets stay connected when their backend is removed "
			 "(terminate_udp): %s failed: %s",
			 step, strerror(-r));
}
