// SPDX-License-Identifier: Apache-2.0
/*
 * The hook registry: the only place that attaches programs to the kernel's
 * tc, XDP and cgroup hooks.
 *
 * tc and XDP: one chain per hook (interface + direction), built as drawn in
 * axoneme/bpf/chain.h. The core attaches a small root program per hook; the
 * modules' programs sit in a PROG_ARRAY window of 2 banks x AXN_CHAIN_SLOTS
 * slots, ordered by (band, prio, module, name). A change is written into the
 * idle bank, the slot after the last program is left empty, and then one
 * update of axn_chain_bank[hook_id] flips the hook to it: a packet sees the
 * old chain or the new one, never a mix. The previously active bank is left
 * as it is until the next change, so packets still walking it finish on it.
 *
 * A PROG_ARRAY takes the type of the first program that uses it and then
 * refuses programs of another type, so there is one chain map per program
 * type: "axn_chain_tc" (sched_cls) and "axn_chain_xdp". Bank and scratch
 * maps are shared; hook ids are unique across both.
 *
 * tc roots are cls_bpf direct-action filters on clsact at handle
 * AXN_TC_HANDLE, priority AXN_TC_PRIO (1: before anything a user adds with
 * a higher number), protocol all. XDP roots go in native (driver) mode and
 * fall back to generic (skb) mode; a foreign XDP program is never replaced.
 * A new agent run loads a fresh root and swaps it in atomically
 * (BPF_TC_F_REPLACE / XDP_FLAGS_REPLACE), so an upgrade changes the root
 * without a gap.
 *
 * cgroup: bpf_prog_attach(BPF_F_ALLOW_MULTI); programs run in attach order
 * (the kernel's rule), not by band. Re-attaching a name swaps the program
 * in place with BPF_F_REPLACE, keeping its position.
 *
 * Everything attached persists after the agent exits: tc filters, XDP
 * programs and non-link cgroup attachments stay, and the chain entries stay
 * while the chain maps are pinned. Freeing a hook handle (module stop, agent
 * exit) therefore only forgets it; hooks_detach() removes a program.
 * An empty chain keeps its root (one failed tail call per packet) and its
 * hook id, so a later attach needs no new filter.
 *
 * What was attached is written to <rundir>/hooks.json after every change
 * (temp file + rename): per hook its kind, interface (or cgroup), hook id,
 * active bank, whether we created the clsact qdisc, the root's program id
 * and the ordered entries (module, name, band, prio, prog_id). A restarted
 * agent loads it, lets modules re-attach (same module + name replaces), and
 * hooks_prune() then drops what no module claimed. `--purge` reads it to
 * remove everything we attached. Without a usable hooks.json the roots of
 * an earlier run are removed at start (see sweep_orphans()).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/if_link.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <axoneme/bpf/chain.h>

#include "axn_root.skel.h"
#include "core.h"

#define AXN_TC_HANDLE 0xa8e /* "axe": our filter handle on clsact */
#define AXN_TC_PRIO 1
#define HOOKS_STATE_VERSION 1
#define HOOK_NAME_MAX 64
#define ROOT_TC_NAME "axn_root_tc"
#define ROOT_XDP_NAME "axn_root_xdp"

enum { CHAIN_TC, CHAIN_XDP, CHAIN_N };

struct hook_point;
struct hook_handle;

/* One program on a hook, identified by (module, name). */
struct hook_entry {
	struct hook_point *hp;
	char *module;
	char *name;
	uint32_t band;
	int32_t prio;
	uint32_t prog_id;
	int prog_fd;	       /* our own reference, -1 if the program is gone */
	bool seen;	       /* attached (or re-attached) in this run */
	struct hook_handle *h; /* the module's handle; NULL once freed */
};

/* A hook: tc ingress/egress or XDP of one interface, or (cgroup, attach type). */
struct hook_point {
	TAILQ_ENTRY(hook_point) link;
	uint32_t kind; /* AXN_HOOK_* */
	char ifname[IF_NAMESIZE];
	int ifindex;
	char *cgroup;
	uint32_t attach_type;
	uint32_t hook_id; /* tc/XDP: window in the chain map */
	uint32_t bank;	  /* active bank */
	bool created_qdisc;
	bool root_ready; /* root loaded and attached in this run */
	uint32_t root_prog_id;
	uint32_t xdp_mode;	  /* XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE */
	struct hook_entry **ents; /* chain order (tc/XDP) or attach order (cgroup) */
	size_t n_ents;
};
TAILQ_HEAD(hook_point_list, hook_point);

struct hooks {
	int chain_fd[CHAIN_N];
	int bank_fd;
	int pos_fd;
	char *state_path; /* NULL: nothing persisted */
	struct hook_point_list points;
};

struct hook_handle {
	struct axn_handle h;  /* first: handle_new() returns this */
	struct hook_entry *e; /* NULL once superseded, removed or forgotten */
};

/* --- small helpers (no logging) -------------------------------------------- */

static bool kind_is_chain(uint32_t kind)
{
	return kind == AXN_HOOK_TC_INGRESS || kind == AXN_HOOK_TC_EGRESS || kind == AXN_HOOK_XDP;
}

static const char *kind_name(uint32_t kind)
{
	switch (kind) {
	case AXN_HOOK_TC_INGRESS:
		return "tc-ingress";
	case AXN_HOOK_TC_EGRESS:
		return "tc-egress";
	case AXN_HOOK_XDP:
		return "xdp";
	case AXN_HOOK_CGROUP:
		return "cgroup";
	default:
		return "?";
	}
}

static uint32_t kind_parse(const char *s)
{
	for (uint32_t k = AXN_HOOK_TC_INGRESS; k <= AXN_HOOK_CGROUP; k++)
		if (!strcmp(s, kind_name(k)))
			return k;
	return 0;
}

static const char *attach_name(uint32_t type)
{
	const char *s = libbpf_bpf_attach_type_str(type);

	return s ? s : "unknown";
}

/* "tc-ingress eth0", "cgroup:cgroup_inet4_connect /sys/fs/cgroup/x" */
static const char *hook_desc(const struct hook_point *hp, char *buf, size_t len)
{
	if (hp->kind == AXN_HOOK_CGROUP)
		snprintf(buf, len, "cgroup:%s %s", attach_name(hp->attach_type), hp->cgroup);
	else
		snprintf(buf, len, "%s %s", kind_name(hp->kind), hp->ifname);
	return buf;
}

static int chain_of(uint32_t kind)
{
	return kind == AXN_HOOK_XDP ? CHAIN_XDP : CHAIN_TC;
}

static uint32_t slot_base(uint32_t hook_id, uint32_t bank)
{
	return hook_id * 2 * AXN_CHAIN_SLOTS + bank * AXN_CHAIN_SLOTS;
}

static int dup_fd(int fd)
{
	int r = fcntl(fd, F_DUPFD_CLOEXEC, 3);

	return r < 0 ? -errno : r;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int prog_info(int fd, struct bpf_prog_info *info)
{
	__u32 len = sizeof(*info);

	memset(info, 0, sizeof(*info));
	return bpf_obj_get_info_by_fd(fd, info, &len);
}

/* Is program `id` one of our roots (by name)? A vanished program is not. */
static bool prog_is_named(uint32_t id, const char *name)
{
	struct bpf_prog_info info;
	bool match = false;
	int fd;

	fd = bpf_prog_get_fd_by_id(id);
	if (fd < 0)
		return false;
	if (!prog_info(fd, &info))
		match = !strncmp(info.name, name, sizeof(info.name));
	close(fd);
	return match;
}

/*
 * libbpf prints the kernel's netlink error text at WARN level for every
 * failure, also for the ones we expect and handle (clsact exists, no filter
 * yet), which would put false alarms in the agent's log. These wrappers mute
 * it for one call; the error code still tells us everything. (libbpf's
 * print hook is global: fine on the single loop thread.)
 */
static int quiet_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	return 0;
}

static int tc_hook_create_quiet(struct bpf_tc_hook *th)
{
	libbpf_print_fn_t old = libbpf_set_print(quiet_print);
	int r = bpf_tc_hook_create(th);

	libbpf_set_print(old);
	return r;
}

static int tc_query_quiet(const struct bpf_tc_hook *th, struct bpf_tc_opts *q)
{
	libbpf_print_fn_t old = libbpf_set_print(quiet_print);
	int r = bpf_tc_query(th, q);

	libbpf_set_print(old);
	return r;
}

static int tc_hook_destroy_quiet(struct bpf_tc_hook *th)
{
	libbpf_print_fn_t old = libbpf_set_print(quiet_print);
	int r = bpf_tc_hook_destroy(th);

	libbpf_set_print(old);
	return r;
}

static int open_cgroup(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

static void entry_free(struct hook_entry *e)
{
	if (!e)
		return;
	if (e->h)
		e->h->e = NULL;
	close_fd(&e->prog_fd);
	free(e->module);
	free(e->name);
	free(e);
}

static struct hook_entry *entry_new(const char *module, const char *name, uint32_t band,
				    int32_t prio, uint32_t prog_id)
{
	struct hook_entry *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	e->prog_fd = -1;
	e->module = strdup(module);
	e->name = strdup(name);
	e->band = band;
	e->prio = prio;
	e->prog_id = prog_id;
	if (!e->module || !e->name) {
		entry_free(e);
		return NULL;
	}
	return e;
}

static int entry_cmp(const void *pa, const void *pb)
{
	const struct hook_entry *a = *(struct hook_entry *const *)pa;
	const struct hook_entry *b = *(struct hook_entry *const *)pb;
	int r;

	if (a->band != b->band)
		return a->band < b->band ? -1 : 1;
	if (a->prio != b->prio)
		return a->prio < b->prio ? -1 : 1;
	r = strcmp(a->module, b->module);
	return r ? r : strcmp(a->name, b->name);
}

static struct hook_entry *entry_find(const struct hook_point *hp, const char *module,
				     const char *name, size_t *ret_idx)
{
	for (size_t i = 0; i < hp->n_ents; i++)
		if (!strcmp(hp->ents[i]->module, module) && !strcmp(hp->ents[i]->name, name)) {
			if (ret_idx)
				*ret_idx = i;
			return hp->ents[i];
		}
	return NULL;
}

static void point_free(struct hook_point *hp)
{
	if (!hp)
		return;
	for (size_t i = 0; i < hp->n_ents; i++)
		entry_free(hp->ents[i]);
	free(hp->ents);
	free(hp->cgroup);
	free(hp);
}

static struct hook_point *point_find(struct hooks *hs, uint32_t kind, const char *ifname,
				     const char *cgroup, uint32_t attach_type)
{
	struct hook_point *hp;

	TAILQ_FOREACH(hp, &hs->points, link) {
		if (hp->kind != kind)
			continue;
		if (kind == AXN_HOOK_CGROUP ? !strcmp(hp->cgroup, cgroup) &&
						      hp->attach_type == attach_type
					    : !strcmp(hp->ifname, ifname))
			return hp;
	}
	return NULL;
}

static int hook_id_alloc(struct hooks *hs, uint32_t *ret_id)
{
	uint8_t used[AXN_CHAIN_MAX_HOOKS] = {0};
	struct hook_point *hp;

	TAILQ_FOREACH(hp, &hs->points, link)
		if (kind_is_chain(hp->kind))
			used[hp->hook_id] = 1;
	for (uint32_t id = 0; id < AXN_CHAIN_MAX_HOOKS; id++)
		if (!used[id]) {
			*ret_id = id;
			return 0;
		}
	return -ENOSPC;
}

/* --- the chain ------------------------------------------------------------- */

/*
 * Write `ents` into the idle bank, empty every slot after them, then flip
 * the hook to that bank. Until the flip nothing a packet can see changed,
 * so a failure halfway leaves the datapath as it was.
 */
static int chain_publish(struct hooks *hs, struct hook_point *hp, struct hook_entry **ents,
			 size_t n)
{
	int chain = hs->chain_fd[chain_of(hp->kind)];
	uint32_t idle = !hp->bank, base = slot_base(hp->hook_id, idle);
	int r;

	if (n > AXN_CHAIN_SLOTS - 1)
		return -ENOSPC;
	for (size_t i = 0; i < n; i++) {
		uint32_t key = base + (uint32_t)i;

		if (ents[i]->prog_fd < 0)
			return -ENOENT;
		r = bpf_map_update_elem(chain, &key, &ents[i]->prog_fd, BPF_ANY);
		if (r)
			return r;
	}
	for (uint32_t i = (uint32_t)n; i < AXN_CHAIN_SLOTS; i++) {
		uint32_t key = base + i;

		r = bpf_map_delete_elem(chain, &key);
		if (r && r != -ENOENT)
			return r;
	}
	r = bpf_map_update_elem(hs->bank_fd, &hp->hook_id, &idle, BPF_ANY);
	if (r)
		return r;
	hp->bank = idle;
	return 0;
}

/* A fresh hook id may carry leftovers from a hook forgotten earlier. */
static int chain_reset(struct hooks *hs, struct hook_point *hp)
{
	int chain = hs->chain_fd[chain_of(hp->kind)];
	uint32_t zero = 0;
	int r;

	r = bpf_map_update_elem(hs->bank_fd, &hp->hook_id, &zero, BPF_ANY);
	if (r)
		return r;
	hp->bank = 0;
	for (uint32_t i = 0; i < 2 * AXN_CHAIN_SLOTS; i++) {
		uint32_t key = slot_base(hp->hook_id, 0) + i;

		r = bpf_map_delete_elem(chain, &key);
		if (r && r != -ENOENT)
			return r;
	}
	return 0;
}

/* --- roots ----------------------------------------------------------------- */

static int root_load(struct hooks *hs, struct hook_point *hp, struct axn_root **ret_skel)
{
	bool xdp = hp->kind == AXN_HOOK_XDP;
	struct axn_root *skel;
	int r;

	skel = axn_root__open();
	if (!skel)
		return -errno;
	skel->rodata->hook_id = hp->hook_id;
	/* The two roots cannot share a PROG_ARRAY: load only this kind's. */
	r = bpf_program__set_autoload(xdp ? skel->progs.axn_root_tc : skel->progs.axn_root_xdp,
				      false);
	if (!r)
		r = bpf_map__reuse_fd(skel->maps.axn_chain, hs->chain_fd[chain_of(hp->kind)]);
	if (!r)
		r = bpf_map__reuse_fd(skel->maps.axn_chain_bank, hs->bank_fd);
	if (!r)
		r = bpf_map__reuse_fd(skel->maps.axn_chain_pos, hs->pos_fd);
	if (!r)
		r = axn_root__load(skel);
	if (r) {
		axn_root__destroy(skel);
		return r;
	}
	*ret_skel = skel;
	return 0;
}

static enum bpf_tc_attach_point tc_point(uint32_t kind)
{
	return kind == AXN_HOOK_TC_INGRESS ? BPF_TC_INGRESS : BPF_TC_EGRESS;
}

/* Attach (or atomically replace) the root filter; -EBUSY if the slot is foreign. */
static int root_attach_tc(struct hook_point *hp, int prog_fd, uint32_t *ret_id)
{
	LIBBPF_OPTS(bpf_tc_hook, th, .ifindex = hp->ifindex, .attach_point = tc_point(hp->kind));
	LIBBPF_OPTS(bpf_tc_opts, q, .handle = AXN_TC_HANDLE, .priority = AXN_TC_PRIO);
	LIBBPF_OPTS(bpf_tc_opts, o, .handle = AXN_TC_HANDLE, .priority = AXN_TC_PRIO,
		    .prog_fd = prog_fd, .flags = BPF_TC_F_REPLACE);
	int r;

	/* No filter at all is -EINVAL ("Cannot find specified filter chain"). */
	r = tc_query_quiet(&th, &q);
	if (!r && !prog_is_named(q.prog_id, ROOT_TC_NAME))
		return -EBUSY;
	if (r && r != -ENOENT && r != -EINVAL)
		return r;
	r = bpf_tc_attach(&th, &o);
	if (r)
		return r;
	*ret_id = o.prog_id;
	return 0;
}

static int root_attach_xdp(struct hook_point *hp, int prog_fd, uint32_t *ret_mode)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	LIBBPF_OPTS(bpf_xdp_attach_opts, o);
	uint32_t old_id = 0, mode = 0;
	int r;

	r = bpf_xdp_query(hp->ifindex, 0, &q);
	if (r)
		return r;
	if (q.hw_prog_id)
		return -EBUSY;
	if (q.skb_prog_id) {
		if (!prog_is_named(q.skb_prog_id, ROOT_XDP_NAME))
			return -EBUSY;
		old_id = q.skb_prog_id;
		mode = XDP_FLAGS_SKB_MODE;
	}
	if (q.drv_prog_id) {
		if (!prog_is_named(q.drv_prog_id, ROOT_XDP_NAME))
			return -EBUSY;
		old_id = q.drv_prog_id;
		mode = XDP_FLAGS_DRV_MODE;
	}

	if (old_id) {
		/* Ours from an earlier run: swap it, in the mode it has. */
		o.old_prog_fd = bpf_prog_get_fd_by_id(old_id);
		if (o.old_prog_fd < 0)
			return o.old_prog_fd;
		r = bpf_xdp_attach(hp->ifindex, prog_fd, mode | XDP_FLAGS_REPLACE, &o);
		close(o.old_prog_fd);
		if (r)
			return r;
		*ret_mode = mode;
		return 0;
	}

	/* UPDATE_IF_NOEXIST: never clobber a program that appeared meanwhile. */
	mode = XDP_FLAGS_DRV_MODE;
	r = bpf_xdp_attach(hp->ifindex, prog_fd, mode | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
	if (r && r != -EBUSY && r != -EEXIST) {
		mode = XDP_FLAGS_SKB_MODE;
		r = bpf_xdp_attach(hp->ifindex, prog_fd, mode | XDP_FLAGS_UPDATE_IF_NOEXIST, NULL);
	}
	if (r)
		return r == -EEXIST ? -EBUSY : r;
	*ret_mode = mode;
	return 0;
}

/* Make sure this run's root is attached to the hook. */
static int root_ensure(struct hooks *hs, struct hook_point *hp)
{
	struct axn_root *skel = NULL;
	struct bpf_prog_info info;
	uint32_t id = 0, mode = 0;
	int r, fd;

	if (hp->root_ready)
		return 0;

	if (hp->kind != AXN_HOOK_XDP) {
		LIBBPF_OPTS(bpf_tc_hook, th, .ifindex = hp->ifindex,
			    .attach_point = BPF_TC_INGRESS);

		/* Creates clsact; it serves both directions. */
		r = tc_hook_create_quiet(&th);
		if (r && r != -EEXIST)
			return r;
		if (!r)
			hp->created_qdisc = true;
	}

	r = root_load(hs, hp, &skel);
	if (r)
		return r;
	if (hp->kind == AXN_HOOK_XDP) {
		fd = bpf_program__fd(skel->progs.axn_root_xdp);
		r = prog_info(fd, &info);
		if (!r)
			r = root_attach_xdp(hp, fd, &mode);
		if (!r)
			id = info.id;
	} else {
		fd = bpf_program__fd(skel->progs.axn_root_tc);
		r = root_attach_tc(hp, fd, &id);
	}
	/* The hook holds the program now; the skeleton is not needed. */
	axn_root__destroy(skel);
	if (r)
		return r;
	hp->root_prog_id = id;
	hp->xdp_mode = mode;
	hp->root_ready = true;
	return 0;
}

/* --- persistence ----------------------------------------------------------- */

static json_t *point_json(const struct hook_point *hp)
{
	json_t *o, *ents;

	o = json_object();
	ents = json_array();
	if (!o || !ents)
		goto fail;
	if (json_object_set_new(o, "kind", json_string(kind_name(hp->kind))))
		goto fail;
	if (hp->kind == AXN_HOOK_CGROUP) {
		if (json_object_set_new(o, "cgroup", json_string(hp->cgroup)) ||
		    json_object_set_new(o, "attach_type", json_integer(hp->attach_type)) ||
		    json_object_set_new(o, "attach", json_string(attach_name(hp->attach_type))))
			goto fail;
	} else {
		if (json_object_set_new(o, "ifname", json_string(hp->ifname)) ||
		    json_object_set_new(o, "ifindex", json_integer(hp->ifindex)) ||
		    json_object_set_new(o, "hook_id", json_integer(hp->hook_id)) ||
		    json_object_set_new(o, "bank", json_integer(hp->bank)) ||
		    json_object_set_new(o, "root_prog_id", json_integer(hp->root_prog_id)))
			goto fail;
		if (hp->kind == AXN_HOOK_XDP &&
		    json_object_set_new(
			o, "xdp_mode",
			json_string(hp->xdp_mode == XDP_FLAGS_SKB_MODE ? "skb" : "drv")))
			goto fail;
		if (hp->kind != AXN_HOOK_XDP &&
		    json_object_set_new(o, "created_qdisc", json_boolean(hp->created_qdisc)))
			goto fail;
	}
	for (size_t i = 0; i < hp->n_ents; i++) {
		const struct hook_entry *e = hp->ents[i];

		if (json_array_append_new(ents, json_pack("{s:s, s:s, s:I, s:I, s:I}", "module",
							  e->module, "name", e->name, "band",
							  (json_int_t)e->band, "prio",
							  (json_int_t)e->prio, "prog_id",
							  (json_int_t)e->prog_id)))
			goto fail;
	}
	if (json_object_set_new(o, "entries", ents))
		goto fail_o;
	return o;
fail:
	json_decref(ents);
fail_o:
	json_decref(o);
	return NULL;
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Replace hooks.json atomically: a crash leaves the old or the new file. */
static int state_save(struct hooks *hs)
{
	struct hook_point *hp;
	char *tmp = NULL, *buf = NULL;
	json_t *root, *arr;
	int fd = -1, r;

	if (!hs->state_path)
		return 0;
	root = json_pack("{s:i, s:[]}", "version", HOOKS_STATE_VERSION, "hooks");
	if (!root)
		return -ENOMEM;
	arr = json_object_get(root, "hooks");
	r = -ENOMEM;
	TAILQ_FOREACH(hp, &hs->points, link)
		if (json_array_append_new(arr, point_json(hp)))
			goto out;
	buf = json_dumps(root, JSON_INDENT(2));
	if (!buf || asprintf(&tmp, "%s.tmp", hs->state_path) < 0) {
		tmp = NULL;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	r = write_all(fd, buf, strlen(buf));
	if (!r && write_all(fd, "\n", 1) < 0)
		r = -EIO;
	if (!r && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && !r)
		r = -errno;
	fd = -1;
	if (!r && rename(tmp, hs->state_path) < 0)
		r = -errno;
	if (r)
		unlink(tmp);
out:
	free(buf);
	free(tmp);
	json_decref(root);
	return r;
}

static int entry_from_json(json_t *je, struct hook_entry **ret)
{
	const char *module, *name;
	json_int_t band, prio, prog_id;
	struct hook_entry *e;

	if (json_unpack(je, "{s:s, s:s, s:I, s:I, s:I}", "module", &module, "name", &name, "band",
			&band, "prio", &prio, "prog_id", &prog_id))
		return -EINVAL;
	if (!*module || !*name || band < 0 || band > UINT32_MAX || prio < INT32_MIN ||
	    prio > INT32_MAX || prog_id <= 0 || prog_id > UINT32_MAX)
		return -EINVAL;
	e = entry_new(module, name, (uint32_t)band, (int32_t)prio, (uint32_t)prog_id);
	if (!e)
		return -ENOMEM;
	*ret = e;
	return 0;
}

static int point_from_json(json_t *jh, struct hook_point **ret)
{
	const char *kind = NULL, *ifname = NULL, *cgroup = NULL, *xdp_mode = NULL;
	json_int_t ifindex = 0, hook_id = 0, bank = 0, root_id = 0, attach_type = 0;
	int created = 0;
	json_t *ents = NULL, *je;
	struct hook_point *hp;
	size_t i;
	int r;

	if (json_unpack(jh, "{s:s, s?s, s?I, s?s, s?I, s?I, s?I, s?b, s?I, s?s, s:o}", "kind",
			&kind, "ifname", &ifname, "ifindex", &ifindex, "cgroup", &cgroup,
			"attach_type", &attach_type, "hook_id", &hook_id, "bank", &bank,
			"created_qdisc", &created, "root_prog_id", &root_id, "xdp_mode", &xdp_mode,
			"entries", &ents) ||
	    !json_is_array(ents))
		return -EINVAL;
	hp = calloc(1, sizeof(*hp));
	if (!hp)
		return -ENOMEM;
	r = -EINVAL;
	hp->kind = kind_parse(kind);
	if (!hp->kind)
		goto fail;
	if (hp->kind == AXN_HOOK_CGROUP) {
		if (!cgroup || !*cgroup || attach_type < 0 || attach_type >= __MAX_BPF_ATTACH_TYPE)
			goto fail;
		hp->cgroup = strdup(cgroup);
		if (!hp->cgroup) {
			r = -ENOMEM;
			goto fail;
		}
		hp->attach_type = (uint32_t)attach_type;
	} else {
		if (!ifname || !*ifname || strlen(ifname) >= IF_NAMESIZE || hook_id < 0 ||
		    hook_id >= AXN_CHAIN_MAX_HOOKS || (bank != 0 && bank != 1) || ifindex < 0 ||
		    ifindex > INT32_MAX || root_id < 0 || root_id > UINT32_MAX)
			goto fail;
		strcpy(hp->ifname, ifname);
		hp->ifindex = (int)ifindex;
		hp->hook_id = (uint32_t)hook_id;
		hp->bank = (uint32_t)bank;
		hp->created_qdisc = created;
		hp->root_prog_id = (uint32_t)root_id;
		hp->xdp_mode = xdp_mode && !strcmp(xdp_mode, "skb") ? XDP_FLAGS_SKB_MODE
								    : XDP_FLAGS_DRV_MODE;
	}
	if (json_array_size(ents)) {
		hp->ents = calloc(json_array_size(ents), sizeof(*hp->ents));
		if (!hp->ents) {
			r = -ENOMEM;
			goto fail;
		}
	}
	json_array_foreach(ents, i, je) {
		r = entry_from_json(je, &hp->ents[hp->n_ents]);
		if (r)
			goto fail;
		hp->ents[hp->n_ents]->hp = hp;
		hp->n_ents++;
	}
	if (kind_is_chain(hp->kind) && hp->n_ents > AXN_CHAIN_SLOTS - 1) {
		r = -EINVAL;
		goto fail;
	}
	*ret = hp;
	return 0;
fail:
	point_free(hp);
	return r;
}

/* Read hooks.json into `list`. A missing file is an empty registry. */
static int state_load(const char *path, struct hook_point_list *list)
{
	struct hook_point *hp, *other;
	json_t *root, *arr, *jh;
	json_int_t version;
	json_error_t jerr;
	size_t i;
	FILE *f;
	int r = 0;

	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	root = json_loadf(f, 0, &jerr);
	fclose(f);
	if (!root)
		return -EINVAL;
	if (json_unpack(root, "{s:I, s:o}", "version", &version, "hooks", &arr) ||
	    version != HOOKS_STATE_VERSION || !json_is_array(arr)) {
		r = -EINVAL;
		goto out;
	}
	json_array_foreach(arr, i, jh) {
		r = point_from_json(jh, &hp);
		if (r)
			goto out;
		/* Two hooks on one window would run each other's chains. */
		TAILQ_FOREACH(other, list, link)
			if (kind_is_chain(hp->kind) && kind_is_chain(other->kind) &&
			    (other->hook_id == hp->hook_id ||
			     (other->kind == hp->kind && !strcmp(other->ifname, hp->ifname))))
				r = -EINVAL;
		if (r) {
			point_free(hp);
			goto out;
		}
		TAILQ_INSERT_TAIL(list, hp, link);
	}
out:
	json_decref(root);
	return r;
}

static void points_free(struct hook_point_list *list)
{
	struct hook_point *hp;

	while ((hp = TAILQ_FIRST(list))) {
		TAILQ_REMOVE(list, hp, link);
		point_free(hp);
	}
}

/* --- init / fini ----------------------------------------------------------- */

static int open_shared_map(struct agent *a, const char *name, uint32_t type, uint32_t value_size,
			   uint32_t max_entries, int *ret_fd)
{
	struct axn_map_spec spec = {
		.size = sizeof(spec),
		.type = type,
		.key_size = sizeof(uint32_t),
		.value_size = value_size,
		.max_entries = max_entries,
		.layout = 1,
	};
	int fd, r;

	r = maps_open(a, a->core_mod, name, &spec, &fd);
	if (r)
		return r;
	/* Our own reference: the registry's fd belongs to its map handle. */
	r = dup_fd(fd);
	if (r < 0)
		return r;
	*ret_fd = r;
	return 0;
}

static void hooks_free(struct hooks *hs)
{
	struct hook_point *hp;

	if (!hs)
		return;
	/* Handles may outlive us (reclaimed later): cut them loose. */
	TAILQ_FOREACH(hp, &hs->points, link)
		for (size_t i = 0; i < hp->n_ents; i++)
			if (hp->ents[i]->h) {
				hp->ents[i]->h->e = NULL;
				hp->ents[i]->h = NULL;
			}
	points_free(&hs->points);
	for (int i = 0; i < CHAIN_N; i++)
		close_fd(&hs->chain_fd[i]);
	close_fd(&hs->bank_fd);
	close_fd(&hs->pos_fd);
	free(hs->state_path);
	free(hs);
}

static struct hooks *hooks_alloc(const char *rundir)
{
	struct hooks *hs = calloc(1, sizeof(*hs));

	if (!hs)
		return NULL;
	TAILQ_INIT(&hs->points);
	for (int i = 0; i < CHAIN_N; i++)
		hs->chain_fd[i] = -1;
	hs->bank_fd = hs->pos_fd = -1;
	if (rundir && asprintf(&hs->state_path, "%s/hooks.json", rundir) < 0) {
		free(hs);
		return NULL;
	}
	return hs;
}

/* Remove our root from a hook; -EBUSY if the slot holds a foreign program. */
static int root_remove_tc(const struct hook_point *hp)
{
	LIBBPF_OPTS(bpf_tc_hook, th, .ifindex = hp->ifindex, .attach_point = tc_point(hp->kind));
	LIBBPF_OPTS(bpf_tc_opts, q, .handle = AXN_TC_HANDLE, .priority = AXN_TC_PRIO);
	LIBBPF_OPTS(bpf_tc_opts, o, .handle = AXN_TC_HANDLE, .priority = AXN_TC_PRIO);
	int r;

	r = tc_query_quiet(&th, &q);
	if (r)
		return r;
	if (!prog_is_named(q.prog_id, ROOT_TC_NAME))
		return -EBUSY;
	return bpf_tc_detach(&th, &o);
}

static int root_remove_xdp(const struct hook_point *hp)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	LIBBPF_OPTS(bpf_xdp_attach_opts, o);
	uint32_t ids[2], modes[2] = {XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
	int r, found = 0;

	r = bpf_xdp_query(hp->ifindex, 0, &q);
	if (r)
		return r;
	ids[0] = q.drv_prog_id;
	ids[1] = q.skb_prog_id;
	for (int i = 0; i < 2; i++) {
		if (!ids[i] || !prog_is_named(ids[i], ROOT_XDP_NAME))
			continue;
		o.old_prog_fd = bpf_prog_get_fd_by_id(ids[i]);
		if (o.old_prog_fd < 0)
			return o.old_prog_fd;
		/* REPLACE + expected fd: never remove a program that is not ours. */
		r = bpf_xdp_detach(hp->ifindex, modes[i] | XDP_FLAGS_REPLACE, &o);
		close(o.old_prog_fd);
		if (r)
			return r;
		found++;
	}
	return found ? 0 : -ENOENT;
}

/*
 * Without hooks.json nothing says which hook id an earlier run's root
 * carries, and such a root would run whatever chain next gets its id.
 * Remove every root of ours in this netns and empty the chains: traffic
 * passes untouched until the modules re-attach, moments later. On a first
 * start this finds nothing. (cgroup programs of a lost state cannot be told
 * from others' and stay.)
 */
static int sweep_orphans(struct hooks *hs, int *ret_n)
{
	struct if_nameindex *ifs, *i;
	uint32_t zero = 0;
	int n = 0;

	ifs = if_nameindex();
	if (!ifs)
		return -errno;
	for (i = ifs; i->if_index; i++) {
		for (uint32_t kind = AXN_HOOK_TC_INGRESS; kind <= AXN_HOOK_XDP; kind++) {
			struct hook_point hp = {.kind = kind, .ifindex = (int)i->if_index};

			if (!(kind == AXN_HOOK_XDP ? root_remove_xdp(&hp) : root_remove_tc(&hp)))
				n++;
		}
	}
	if_freenameindex(ifs);
	for (uint32_t id = 0; id < AXN_CHAIN_MAX_HOOKS; id++)
		bpf_map_update_elem(hs->bank_fd, &id, &zero, BPF_ANY);
	for (uint32_t key = 0; key < AXN_CHAIN_ENTRIES; key++)
		for (int c = 0; c < CHAIN_N; c++)
			bpf_map_delete_elem(hs->chain_fd[c], &key);
	*ret_n = n;
	return 0;
}

/*
 * Bring restored hooks in line with the kernel: the pinned bank map, not the
 * file, says which bank is live (a crash can fall between flip and save),
 * and each program is re-opened by id so the chain can be re-published
 * before its module re-attaches.
 */
static bool restore_point(struct hooks *hs, struct hook_point *hp)
{
	char desc[128];
	bool changed = false;
	size_t n = 0;

	if (kind_is_chain(hp->kind)) {
		uint32_t bank;

		if (!bpf_map_lookup_elem(hs->bank_fd, &hp->hook_id, &bank) && bank <= 1 &&
		    bank != hp->bank) {
			hp->bank = bank;
			changed = true;
		}
	}
	for (size_t i = 0; i < hp->n_ents; i++) {
		struct hook_entry *e = hp->ents[i];

		e->prog_fd = bpf_prog_get_fd_by_id(e->prog_id);
		if (e->prog_fd >= 0) {
			hp->ents[n++] = e;
			continue;
		}
		log_warn("hook %s: forgetting program %s of module %s (prog id %u is gone)",
			 hook_desc(hp, desc, sizeof(desc)), e->name, e->module, e->prog_id);
		e->prog_fd = -1;
		entry_free(e);
		changed = true;
	}
	hp->n_ents = n;
	return changed;
}

int hooks_init(struct agent *a)
{
	struct hooks *hs;
	struct hook_point *hp;
	bool changed = false;
	int r;

	hs = hooks_alloc(a->conf.rundir);
	if (!hs) {
		log_err("hook registry: out of memory");
		return -ENOMEM;
	}
	r = open_shared_map(a, "axn_chain_tc", BPF_MAP_TYPE_PROG_ARRAY, sizeof(uint32_t),
			    AXN_CHAIN_ENTRIES, &hs->chain_fd[CHAIN_TC]);
	if (!r)
		r = open_shared_map(a, "axn_chain_xdp", BPF_MAP_TYPE_PROG_ARRAY, sizeof(uint32_t),
				    AXN_CHAIN_ENTRIES, &hs->chain_fd[CHAIN_XDP]);
	if (!r)
		r = open_shared_map(a, "axn_chain_bank", BPF_MAP_TYPE_ARRAY, sizeof(uint32_t),
				    AXN_CHAIN_MAX_HOOKS, &hs->bank_fd);
	if (!r)
		r = open_shared_map(a, "axn_chain_pos", BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(uint32_t),
				    1, &hs->pos_fd);
	if (r) {
		log_err("hook registry: cannot open the chain maps: %s", strerror(-r));
		goto fail;
	}

	if (hs->state_path) {
		bool have_state = !access(hs->state_path, F_OK);

		r = state_load(hs->state_path, &hs->points);
		/* Write even an empty state: the sweep below is for lost state only. */
		changed = !have_state;
		if (!have_state || r) {
			int n = 0;

			if (!sweep_orphans(hs, &n) && n)
				log_warn(
				    "hook registry: no saved state, removed %d root program(s) "
				    "left by an earlier run",
				    n);
		}
		if (r) {
			char *bad = NULL;

			/*
			 * Refusing to start would keep traffic on a stale chain
			 * forever; start empty and keep the file for a human.
			 */
			points_free(&hs->points);
			if (asprintf(&bad, "%s.bad", hs->state_path) >= 0)
				(void)!rename(hs->state_path, bad);
			log_err("hook registry: %s unreadable (%s), moved to %s; starting empty",
				hs->state_path, strerror(-r), bad ? bad : "-");
			free(bad);
			changed = true;
		}
	}
	TAILQ_FOREACH(hp, &hs->points, link)
		changed |= restore_point(hs, hp);

	a->hooks = hs;
	if (changed) {
		r = state_save(hs);
		if (r)
			log_warn("hook registry: cannot write %s: %s", hs->state_path,
				 strerror(-r));
	}
	return 0;
fail:
	hooks_free(hs);
	return r;
}

void hooks_fini(struct agent *a)
{
	hooks_free(a->hooks);
	a->hooks = NULL;
}

int hooks_chain_fd(struct agent *a, uint32_t kind, int *ret_fd)
{
	if (!kind_is_chain(kind))
		return -EINVAL;
	if (!a->hooks)
		return -ENODEV;
	*ret_fd = a->hooks->chain_fd[chain_of(kind)];
	return 0;
}

/* --- attach / detach ------------------------------------------------------- */

/* What a validated spec resolves to. */
struct target {
	struct axn_hook_spec spec; /* copied: the module's struct may be older or newer */
	int ifindex;
	const char *cgroup;
	char cgroup_path[PATH_MAX]; /* canonical, so one directory is one hook */
};

static int spec_check(struct agent *a, const struct axn_hook_spec *spec, int prog_fd,
		      struct target *t, uint32_t *ret_prog_id)
{
	size_t need = offsetof(struct axn_hook_spec, name) + sizeof(spec->name);
	struct bpf_prog_info info;
	int r;

	if (!spec || spec->size < need || prog_fd < 0)
		return -EINVAL;
	memset(t, 0, sizeof(*t));
	memcpy(&t->spec, spec, sizeof(t->spec) < spec->size ? sizeof(t->spec) : spec->size);
	if (!t->spec.name || !*t->spec.name || strlen(t->spec.name) >= HOOK_NAME_MAX)
		return -EINVAL;

	switch (t->spec.kind) {
	case AXN_HOOK_TC_INGRESS:
	case AXN_HOOK_TC_EGRESS:
	case AXN_HOOK_XDP:
		if (!t->spec.ifname || !*t->spec.ifname || strlen(t->spec.ifname) >= IF_NAMESIZE)
			return -EINVAL;
		t->ifindex = (int)if_nametoindex(t->spec.ifname);
		if (!t->ifindex)
			return -ENODEV;
		break;
	case AXN_HOOK_CGROUP:
		t->cgroup = t->spec.cgroup ? t->spec.cgroup : a->conf.cgroup;
		if (!t->cgroup || *t->cgroup != '/' || t->spec.attach_type >= __MAX_BPF_ATTACH_TYPE)
			return -EINVAL;
		break;
	default:
		return -EINVAL;
	}

	r = prog_info(prog_fd, &info);
	if (r)
		return r == -EBADF ? -EINVAL : r;
	if ((t->spec.kind == AXN_HOOK_XDP && info.type != BPF_PROG_TYPE_XDP) ||
	    ((t->spec.kind == AXN_HOOK_TC_INGRESS || t->spec.kind == AXN_HOOK_TC_EGRESS) &&
	     info.type != BPF_PROG_TYPE_SCHED_CLS))
		return -EINVAL;
	*ret_prog_id = info.id;
	return 0;
}

/* Find the hook for a target, or make it (fresh hook id, clean window). */
static int point_get(struct hooks *hs, const struct target *t, struct hook_point **ret_hp,
		     bool *ret_new)
{
	struct hook_point *hp;
	int r;

	hp = point_find(hs, t->spec.kind, t->spec.ifname, t->cgroup, t->spec.attach_type);
	if (hp) {
		if (kind_is_chain(hp->kind) && hp->ifindex != t->ifindex) {
			/* The interface was re-created: its old root went with it. */
			hp->ifindex = t->ifindex;
			hp->root_ready = false;
			hp->created_qdisc = false;
		}
		*ret_hp = hp;
		*ret_new = false;
		return 0;
	}

	hp = calloc(1, sizeof(*hp));
	if (!hp)
		return -ENOMEM;
	hp->kind = t->spec.kind;
	if (hp->kind == AXN_HOOK_CGROUP) {
		hp->cgroup = strdup(t->cgroup);
		hp->attach_type = t->spec.attach_type;
		if (!hp->cgroup) {
			point_free(hp);
			return -ENOMEM;
		}
	} else {
		strcpy(hp->ifname, t->spec.ifname);
		hp->ifindex = t->ifindex;
		r = hook_id_alloc(hs, &hp->hook_id);
		if (!r)
			r = chain_reset(hs, hp);
		if (r) {
			point_free(hp);
			return r;
		}
	}
	TAILQ_INSERT_TAIL(&hs->points, hp, link);
	*ret_hp = hp;
	*ret_new = true;
	return 0;
}

/*
 * A hook we just made and could not use leaves no trace. A clsact we just
 * created cannot carry anyone else's root yet (it did not exist), so it goes.
 */
static void point_drop_unused(struct hooks *hs, struct hook_point *hp, bool created)
{
	if (!created || hp->n_ents || hp->root_ready)
		return;
	if (hp->created_qdisc) {
		LIBBPF_OPTS(bpf_tc_hook, th, .ifindex = hp->ifindex,
			    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);

		tc_hook_destroy_quiet(&th);
	}
	TAILQ_REMOVE(&hs->points, hp, link);
	point_free(hp);
}

/* Swap `ne` into a chain hook (replacing `old` if set) and publish. */
static int attach_chain(struct hooks *hs, struct hook_point *hp, struct hook_entry *ne,
			struct hook_entry *old)
{
	struct hook_entry **next;
	size_t n = 0;
	int r;

	next = calloc(hp->n_ents + 1, sizeof(*next));
	if (!next)
		return -ENOMEM;
	for (size_t i = 0; i < hp->n_ents; i++)
		if (hp->ents[i] != old)
			next[n++] = hp->ents[i];
	next[n++] = ne;
	qsort(next, n, sizeof(*next), entry_cmp);
	r = chain_publish(hs, hp, next, n);
	if (r) {
		free(next);
		return r;
	}
	free(hp->ents);
	hp->ents = next;
	hp->n_ents = n;
	return 0;
}

static int attach_cgroup(struct hook_point *hp, struct hook_entry *ne, struct hook_entry *old)
{
	struct hook_entry **next;
	size_t idx = hp->n_ents;
	int cg, r = 0;

	next = realloc(hp->ents, (hp->n_ents + 1) * sizeof(*next));
	if (!next)
		return -ENOMEM;
	hp->ents = next;
	cg = open_cgroup(hp->cgroup);
	if (cg < 0)
		return cg;
	if (old && old->prog_id == ne->prog_id) {
		/* Same program: only the bookkeeping changes. */
	} else if (old && old->prog_fd >= 0) {
		LIBBPF_OPTS(bpf_prog_attach_opts, o, .flags = BPF_F_ALLOW_MULTI | BPF_F_REPLACE,
			    .replace_prog_fd = old->prog_fd);

		/* In place, so the program keeps its position in the run order. */
		r = bpf_prog_attach_opts(ne->prog_fd, cg, hp->attach_type, &o);
		if (r == -ENOENT) /* someone detached the old one behind our back */
			r = bpf_prog_attach(ne->prog_fd, cg, hp->attach_type, BPF_F_ALLOW_MULTI);
	} else {
		r = bpf_prog_attach(ne->prog_fd, cg, hp->attach_type, BPF_F_ALLOW_MULTI);
	}
	close(cg);
	if (r)
		return r;
	if (old) {
		for (idx = 0; idx < hp->n_ents && hp->ents[idx] != old; idx++)
			;
	} else {
		hp->n_ents++;
	}
	hp->ents[idx] = ne;
	return 0;
}

static void hook_handle_destroy(struct axn_handle *h)
{
	struct hook_handle *hh = (struct hook_handle *)h;

	/* Forget only: the program stays attached (see the top of this file). */
	if (hh->e && hh->e->h == hh)
		hh->e->h = NULL;
	hh->e = NULL;
}

static uint32_t entry_slot(const struct hook_point *hp, const struct hook_entry *e)
{
	for (size_t i = 0; i < hp->n_ents; i++)
		if (hp->ents[i] == e)
			return kind_is_chain(hp->kind)
				   ? slot_base(hp->hook_id, hp->bank) + (uint32_t)i
				   : (uint32_t)i;
	return UINT32_MAX;
}

int hooks_attach(struct module *m, const struct axn_hook_spec *spec, int prog_fd,
		 struct axn_handle **ret_h)
{
	struct hooks *hs = m->agent->hooks;
	struct hook_entry *ne = NULL, *old;
	struct hook_handle *hh = NULL;
	struct hook_point *hp = NULL;
	const char *step = "invalid hook spec";
	bool created = false;
	uint32_t prog_id = 0;
	struct target t = {0};
	char desc[128];
	int r;

	if (!hs) {
		r = -ENODEV;
		step = "hook registry not running";
		goto fail;
	}
	r = spec_check(m->agent, spec, prog_fd, &t, &prog_id);
	if (r) {
		step = r == -ENODEV ? "no such interface" : "invalid hook spec or program";
		goto fail;
	}
	if (t.spec.kind == AXN_HOOK_CGROUP) {
		int cg;

		/* Canonical, so the same directory named two ways is one hook. */
		if (!realpath(t.cgroup, t.cgroup_path)) {
			r = -errno;
			step = "cannot resolve cgroup";
			goto fail;
		}
		t.cgroup = t.cgroup_path;
		cg = open_cgroup(t.cgroup);
		if (cg < 0) {
			r = cg;
			step = "cannot open cgroup";
			goto fail;
		}
		close(cg);
	}

	r = point_get(hs, &t, &hp, &created);
	if (r) {
		step = r == -ENOSPC ? "too many hooks" : "cannot set up hook";
		goto fail;
	}
	hook_desc(hp, desc, sizeof(desc));

	r = -ENOMEM;
	ne = entry_new(m->name, t.spec.name, t.spec.band, t.spec.prio, prog_id);
	hh = (struct hook_handle *)handle_new(m, H_HOOK, sizeof(*hh), hook_handle_destroy,
					      "hook %s %s:%s", desc, m->name, t.spec.name);
	if (!ne || !hh) {
		step = "out of memory";
		goto fail;
	}
	ne->hp = hp;
	ne->prog_fd = dup_fd(prog_fd);
	if (ne->prog_fd < 0) {
		r = ne->prog_fd;
		step = "cannot duplicate program fd";
		goto fail;
	}
	old = entry_find(hp, m->name, t.spec.name, NULL);

	if (kind_is_chain(hp->kind)) {
		r = root_ensure(hs, hp);
		if (r) {
			step =
			    r == -EBUSY ? "a foreign program holds the hook" : "cannot attach root";
			goto fail;
		}
		r = attach_chain(hs, hp, ne, old);
		if (r) {
			step = r == -ENOSPC ? "chain full" : "cannot publish chain";
			goto fail;
		}
	} else {
		r = attach_cgroup(hp, ne, old);
		if (r) {
			step = "cannot attach to cgroup";
			goto fail;
		}
	}
	entry_free(old);
	ne->seen = true;
	ne->h = hh;
	hh->e = ne;

	log_msg(m->name, AXN_LOG_INFO, "hook %s: attached %s (prog %u, band %u, prio %d, slot %u)",
		desc, ne->name, ne->prog_id, ne->band, ne->prio, entry_slot(hp, ne));
	r = state_save(hs);
	if (r)
		log_warn("hook registry: cannot write %s: %s", hs->state_path, strerror(-r));
	*ret_h = &hh->h;
	return 0;

fail:
	if (hp)
		point_drop_unused(hs, hp, created);
	entry_free(ne);
	if (hh)
		handle_release(&hh->h);
	if (!hp) {
		/* t holds whatever of the spec was readable (zeroed otherwise). */
		const char *where = t.spec.kind == AXN_HOOK_CGROUP ? t.cgroup : t.spec.ifname;

		snprintf(desc, sizeof(desc), "%s %s", kind_name(t.spec.kind), where ? where : "?");
	}
	log_msg(m->name, AXN_LOG_ERR, "hook_attach %s %s: %s: %s", desc,
		t.spec.name ? t.spec.name : "?", step, strerror(-r));
	return r;
}

/* Take `e` off its hook, kernel first, then our list; the caller frees it. */
static int entry_unlink(struct hooks *hs, struct hook_entry *e)
{
	struct hook_point *hp = e->hp;
	size_t idx, n = 0;
	int r;

	for (idx = 0; idx < hp->n_ents && hp->ents[idx] != e; idx++)
		;
	if (idx == hp->n_ents)
		return -ENOENT;
	if (kind_is_chain(hp->kind)) {
		struct hook_entry **next = calloc(hp->n_ents, sizeof(*next));

		if (!next)
			return -ENOMEM;
		for (size_t i = 0; i < hp->n_ents; i++)
			if (i != idx)
				next[n++] = hp->ents[i];
		r = chain_publish(hs, hp, next, n);
		free(next);
		if (r)
			return r;
	} else {
		int cg = open_cgroup(hp->cgroup);

		if (cg < 0)
			return cg;
		r = e->prog_fd >= 0 ? bpf_prog_detach2(e->prog_fd, cg, hp->attach_type) : -ENOENT;
		close(cg);
		/* Already gone from the cgroup is what we wanted. */
		if (r && r != -ENOENT)
			return r;
	}
	memmove(&hp->ents[idx], &hp->ents[idx + 1], (hp->n_ents - idx - 1) * sizeof(*hp->ents));
	hp->n_ents--;
	return 0;
}

/*
 * On success h is released. On error h stays valid (the program is still
 * attached) and the module may retry or free it.
 */
int hooks_detach(struct module *m, struct axn_handle *h)
{
	struct hooks *hs = m->agent->hooks;
	struct hook_handle *hh = (struct hook_handle *)h;
	struct hook_entry *e;
	char desc[128];
	int r;

	if (!h || h->kind != H_HOOK || h->owner != m || !hs) {
		log_msg(m->name, AXN_LOG_ERR, "hook_detach: not a hook handle of this module");
		return -EINVAL;
	}
	e = hh->e;
	if (!e) {
		/* Superseded by a re-attach of the same name: nothing to undo. */
		handle_release(h);
		return 0;
	}
	hook_desc(e->hp, desc, sizeof(desc));
	r = entry_unlink(hs, e);
	if (r) {
		log_msg(m->name, AXN_LOG_ERR, "hook %s: cannot detach %s: %s", desc, e->name,
			strerror(-r));
		return r;
	}
	log_msg(m->name, AXN_LOG_INFO, "hook %s: detached %s (prog %u)", desc, e->name,
		e->prog_id);
	entry_free(e);
	handle_release(h);
	r = state_save(hs);
	if (r)
		log_warn("hook registry: cannot write %s: %s", hs->state_path, strerror(-r));
	return 0;
}

/* --- after start-up: drop what nobody claimed ------------------------------ */

/* Is there still a device at the ifindex the root was attached to? */
static bool point_device_gone(const struct hook_point *hp)
{
	char name[IF_NAMESIZE];

	return kind_is_chain(hp->kind) && !if_indextoname((unsigned)hp->ifindex, name);
}

/* Drop entries of `module` (every module if NULL) that were not (re-)attached. */
static void prune(struct agent *a, const char *module)
{
	struct hooks *hs = a->hooks;
	struct hook_point *hp, *tmp;
	bool changed = false;
	char desc[128];
	int r;

	if (!hs)
		return;
	for (hp = TAILQ_FIRST(&hs->points); hp; hp = tmp) {
		tmp = TAILQ_NEXT(hp, link);
		hook_desc(hp, desc, sizeof(desc));
		for (size_t i = 0; i < hp->n_ents;) {
			struct hook_entry *e = hp->ents[i];

			if (e->seen || (module && strcmp(module, e->module))) {
				i++;
				continue;
			}
			/* One flip per stale entry keeps this simple; it runs once. */
			r = entry_unlink(hs, e);
			if (r) {
				log_err("hook %s: cannot drop program %s of module %s: %s", desc,
					e->name, e->module, strerror(-r));
				i++;
				continue;
			}
			log_info("hook %s: dropped program %s of module %s (not re-attached)",
				 desc, e->name, e->module);
			entry_free(e);
			changed = true;
		}
		/*
		 * An empty hook is kept (its root stays, see the top) unless its
		 * device is gone: then no root can run with its hook id any more
		 * and the id is free again.
		 */
		if (!hp->n_ents && (hp->kind == AXN_HOOK_CGROUP || point_device_gone(hp))) {
			TAILQ_REMOVE(&hs->points, hp, link);
			point_free(hp);
			changed = true;
		}
	}
	if (changed) {
		r = state_save(hs);
		if (r)
			log_warn("hook registry: cannot write %s: %s", hs->state_path,
				 strerror(-r));
	}
}

void hooks_prune(struct agent *a)
{
	prune(a, NULL);
}

void hooks_module_restarting(struct agent *a, const char *module)
{
	struct hook_point *hp;

	if (!a->hooks)
		return;
	TAILQ_FOREACH(hp, &a->hooks->points, link)
		for (size_t i = 0; i < hp->n_ents; i++)
			if (!strcmp(hp->ents[i]->module, module))
				hp->ents[i]->seen = false;
}

void hooks_prune_module(struct agent *a, const char *module)
{
	prune(a, module);
}

/* --- listing --------------------------------------------------------------- */

/*
 * {"items": [{hook, ifname, band, prio, module, name, prog_id, slot, state}]}
 * in run order per hook. hook: "tc-ingress", "tc-egress", "xdp" or
 * "cgroup:<attach type>" (then ifname is the cgroup directory); slot: the
 * index in the chain map (tc/XDP) or the attach position (cgroup); state:
 * "attached" (a module holds it), "kept" (its handle was freed, the program
 * runs on) or "restored" (from hooks.json, not re-attached yet).
 */

json_t *hooks_list(struct agent *a)
{
	struct hooks *hs = a->hooks;
	struct hook_point *hp;
	json_t *items, *out;

	items = json_array();
	out = json_pack("{s:o}", "items", items);
	if (!out || !hs)
		return out;
	TAILQ_FOREACH(hp, &hs->points, link) {
		char hook[64];

		if (hp->kind == AXN_HOOK_CGROUP)
			snprintf(hook, sizeof(hook), "cgroup:%s", attach_name(hp->attach_type));
		else
			snprintf(hook, sizeof(hook), "%s", kind_name(hp->kind));
		for (size_t i = 0; i < hp->n_ents; i++) {
			const struct hook_entry *e = hp->ents[i];
			const char *state = e->h ? "attached" : e->seen ? "kept" : "restored";
			json_t *it;

			it = json_pack(
			    "{s:s, s:s, s:I, s:I, s:s, s:s, s:I, s:I, s:s}", "hook", hook, "ifname",
			    hp->kind == AXN_HOOK_CGROUP ? hp->cgroup : hp->ifname, "band",
			    (json_int_t)e->band, "prio", (json_int_t)e->prio, "module", e->module,
			    "name", e->name, "prog_id", (json_int_t)e->prog_id, "slot",
			    (json_int_t)entry_slot(hp, e), "state", state);
			if (json_array_append_new(items, it)) {
				json_decref(out);
				return NULL;
			}
		}
	}
	return out;
}

/* --- purge ----------------------------------------------------------------- */

static int purge_cgroup(const struct hook_point *hp, const struct hook_entry *e)
{
	int cg, fd, r;

	fd = bpf_prog_get_fd_by_id(e->prog_id);
	if (fd < 0)
		return fd;
	cg = open_cgroup(hp->cgroup);
	if (cg < 0) {
		close(fd);
		return cg;
	}
	r = bpf_prog_detach2(fd, cg, hp->attach_type);
	close(cg);
	close(fd);
	return r;
}

/* Best effort: every step runs, each failure is logged, the first is returned. */
int hooks_purge(struct agent *a)
{
	struct hook_point_list loaded = TAILQ_HEAD_INITIALIZER(loaded);
	struct hook_point_list *list;
	struct hook_point *hp;
	char *path = NULL, desc[128];
	int r, err = 0;

	if (a->hooks) {
		list = &a->hooks->points;
		path = a->hooks->state_path;
	} else {
		/* Purge may run without the registry: read the file directly. */
		if (!a->conf.rundir || asprintf(&path, "%s/hooks.json", a->conf.rundir) < 0)
			return -EINVAL;
		list = &loaded;
		r = state_load(path, list);
		if (r) {
			log_err("purge: cannot read %s: %s", path, strerror(-r));
			free(path);
			return r;
		}
	}

	TAILQ_FOREACH(hp, list, link) {
		hook_desc(hp, desc, sizeof(desc));
		if (hp->kind == AXN_HOOK_CGROUP) {
			for (size_t i = 0; i < hp->n_ents; i++) {
				r = purge_cgroup(hp, hp->ents[i]);
				if (!r)
					log_info("purge: hook %s: detached %s of module %s", desc,
						 hp->ents[i]->name, hp->ents[i]->module);
				else if (r != -ENOENT) {
					log_err("purge: hook %s: cannot detach %s of module %s: %s",
						desc, hp->ents[i]->name, hp->ents[i]->module,
						strerror(-r));
					err = err ?: r;
				}
			}
			continue;
		}
		r = hp->kind == AXN_HOOK_XDP ? root_remove_xdp(hp) : root_remove_tc(hp);
		if (r == -EBUSY)
			log_warn(
			    "purge: hook %s: the root slot holds a foreign program, left alone",
			    desc);
		else if (r && r != -ENOENT && r != -ENODEV && r != -EINVAL) {
			/* -ENOENT/-ENODEV/-EINVAL: no filter, device or qdisc left. */
			log_err("purge: hook %s: cannot remove root: %s", desc, strerror(-r));
			err = err ?: r;
		} else if (!r) {
			log_info("purge: hook %s: root removed", desc);
		}
		/* Drop our chain references now rather than when the pin goes. */
		if (a->hooks)
			for (uint32_t i = 0; i < 2 * AXN_CHAIN_SLOTS; i++) {
				uint32_t key = slot_base(hp->hook_id, 0) + i;

				bpf_map_delete_elem(a->hooks->chain_fd[chain_of(hp->kind)], &key);
			}
	}
	/* clsact last: both directions' roots are gone by now. */
	TAILQ_FOREACH(hp, list, link) {
		LIBBPF_OPTS(bpf_tc_hook, th, .ifindex = hp->ifindex,
			    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);

		if (hp->kind == AXN_HOOK_CGROUP || hp->kind == AXN_HOOK_XDP || !hp->created_qdisc)
			continue;
		hook_desc(hp, desc, sizeof(desc));
		r = tc_hook_destroy_quiet(&th);
		if (!r)
			log_info("purge: hook %s: clsact qdisc removed", desc);
		else if (r != -ENOENT && r != -ENODEV && r != -EINVAL) {
			log_err("purge: hook %s: cannot remove clsact: %s", desc, strerror(-r));
			err = err ?: r;
		}
	}

	if (path && unlink(path) < 0 && errno != ENOENT) {
		r = -errno;
		log_err("purge: cannot remove %s: %s", path, strerror(-r));
		err = err ?: r;
	}
	if (a->hooks) {
		/* Nothing is attached any more: forget it all. */
		points_free(&a->hooks->points);
	} else {
		points_free(&loaded);
		free(path);
	}
	return err;
}
