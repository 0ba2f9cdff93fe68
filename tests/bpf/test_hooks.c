// SPDX-License-Identifier: Apache-2.0
/*
 * The hook registry (core/hooks.c) with the real core, on a veth pair in a
 * private network namespace (axnt-<pid>), with pins on a private bpffs
 * (/tmp/axnt-bpf-<pid>) and a private cgroup. The steps build on each other and run in
 * order: attach and order, replace, detach, limits, XDP, cgroup, an agent
 * restart with prune, purge, and a restart that lost its hooks.json.
 *
 * Needs root and iproute2; exits 77 otherwise. The namespace, pins, run
 * directory and cgroup are removed on exit, also after a failed assertion
 * or SIGINT/SIGTERM.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* setns */
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <axoneme/bpf/chain.h>

#include "chain_test.h"
#include "chain_test.skel.h"
#include "core.h"

#define IF0 "axnt0"
#define IF1 "axnt1"
#define AXN_TC_HANDLE 0xa8e /* as documented in core/hooks.c */
#define AXN_TC_PRIO 1

static struct {
	char ns[32];
	char bpffs[128];
	char rundir[128];
	char cgroup[256];
	bool ns_made;
	struct agent *a; /* with maps and hooks up, except after purge */
	struct module *lb, *l2;
	struct chain_test *tc, *xdp, *cg;
	struct axn_handle *h_lb, *h_arp, *h_xdp, *h_cg_a, *h_cg_b;
} T;

/* --- environment --------------------------------------------------------------- */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	r = system(cmd);
	return r == 0 ? 0 : -1;
}

/* Output of a command, malloc'd (runs in our netns: we setns()'d into it). */
static char *sh_out(const char *cmd)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = popen(cmd, "r"), *m;
	int c;

	if (!f)
		return strdup("");
	m = open_memstream(&buf, &len);
	while ((c = fgetc(f)) != EOF)
		fputc(c, m);
	fclose(m);
	pclose(f);
	return buf;
}

static int count_str(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static void cleanup(void)
{
	if (T.ns_made) {
		sh("ip netns del %s 2>/dev/null", T.ns);
		T.ns_made = false;
	}
	if (T.bpffs[0]) {
		sh("rm -f '%s'/* 2>/dev/null", T.bpffs);
		umount2(T.bpffs, MNT_DETACH);
		rmdir(T.bpffs);
		T.bpffs[0] = '\0';
	}
	if (T.rundir[0]) {
		sh("rm -rf '%s'", T.rundir);
		T.rundir[0] = '\0';
	}
	if (T.cgroup[0]) {
		rmdir(T.cgroup);
		T.cgroup[0] = '\0';
	}
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* The cgroup v2 mount (hybrid layouts put it at /sys/fs/cgroup/unified). */
static int cgroup2_root(char *buf, size_t len)
{
	char dev[256], dir[PATH_MAX], type[64];
	FILE *f = fopen("/proc/self/mounts", "re");
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (fscanf(f, "%255s %4095s %63s %*[^\n]", dev, dir, type) == 3)
		if (!strcmp(type, "cgroup2")) {
			r = snprintf(buf, len, "%s", dir) < (int)len ? 0 : -ENAMETOOLONG;
			break;
		}
	fclose(f);
	return r;
}

static int enter_netns(void)
{
	char path[PATH_MAX];
	int fd, r;

	snprintf(T.ns, sizeof(T.ns), "axnt-%d", (int)getpid());
	if (sh("ip netns add %s", T.ns))
		return -1;
	T.ns_made = true;
	snprintf(path, sizeof(path), "/run/netns/%s", T.ns);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = setns(fd, CLONE_NEWNET);
	close(fd);
	if (r)
		return -1;
	/* From here on everything (ip, tc, libbpf netlink) acts inside the netns. */
	return sh("ip link set lo up && ip link add " IF0 " type veth peer name " IF1
		  " && ip link set " IF0 " up && ip link set " IF1 " up");
}

static int progs_open(enum bpf_prog_type type, struct chain_test **ret)
{
	struct chain_test *s = chain_test__open();
	struct bpf_program *p;
	int r = 0, fd;

	if (!s)
		return -errno;
	bpf_object__for_each_program(p, s->obj)
		if (bpf_program__type(p) != type)
			r = r ?: bpf_program__set_autoload(p, false);
	if (!r && type != BPF_PROG_TYPE_CGROUP_SOCK_ADDR) {
		/* What a module does: chain through the agent's map. */
		r = hooks_chain_fd(T.a, type == BPF_PROG_TYPE_XDP ? AXN_HOOK_XDP
								: AXN_HOOK_TC_INGRESS, &fd);
		r = r ?: bpf_map__reuse_fd(s->maps.axn_chain, fd);
	}
	if (!r && T.tc)
		r = bpf_map__reuse_fd(s->maps.trace, bpf_map__fd(T.tc->maps.trace));
	r = r ?: chain_test__load(s);
	if (r) {
		chain_test__destroy(s);
		return r;
	}
	*ret = s;
	return 0;
}

static int agent_up(void)
{
	T.a = agent_new();
	if (!T.a)
		return -ENOMEM;
	T.a->conf.bpffs = T.bpffs;
	T.a->conf.rundir = T.rundir;
	T.a->conf.cgroup = T.cgroup;
	T.lb = module_new(T.a, "lb");
	T.l2 = module_new(T.a, "l2");
	if (!T.lb || !T.l2)
		return -ENOMEM;
	TAILQ_INSERT_TAIL(&T.a->modules, T.l2, link);
	TAILQ_INSERT_TAIL(&T.a->modules, T.lb, link);
	if (maps_init(T.a) < 0 || hooks_init(T.a) < 0)
		return -1;
	return 0;
}

/* What main() does at exit: modules' handles, then the registries. */
static void agent_down(void)
{
	struct module *m;

	TAILQ_FOREACH(m, &T.a->modules, link)
		handles_reclaim(m, false);
	handles_reclaim(T.a->core_mod, false);
	hooks_fini(T.a);
	maps_fini(T.a);
	agent_free(T.a);
	T.a = NULL;
	T.lb = T.l2 = NULL;
	T.h_lb = T.h_arp = T.h_xdp = T.h_cg_a = T.h_cg_b = NULL;
}

static int group_setup(void **state)
{
	char cg[200];

	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	if (enter_netns()) {
		fprintf(stderr, "setup: cannot make netns %s with a veth pair\n", T.ns);
		return -1;
	}
	/* Not under /sys/fs/bpf (it may not be a bpffs): maps_init() mounts one here. */
	snprintf(T.bpffs, sizeof(T.bpffs), "/tmp/axnt-bpf-%d", (int)getpid());
	snprintf(T.rundir, sizeof(T.rundir), "/tmp/axnt-run-%d", (int)getpid());
	if (mkdir(T.rundir, 0700) < 0)
		return -1;
	if (cgroup2_root(cg, sizeof(cg)) == 0) {
		snprintf(T.cgroup, sizeof(T.cgroup), "%s/axnt-%d", cg, (int)getpid());
		if (mkdir(T.cgroup, 0755) < 0)
			T.cgroup[0] = '\0';
	}
	if (agent_up())
		return -1;
	if (progs_open(BPF_PROG_TYPE_SCHED_CLS, &T.tc) ||
	    progs_open(BPF_PROG_TYPE_XDP, &T.xdp) ||
	    progs_open(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, &T.cg))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	chain_test__destroy(T.tc);
	chain_test__destroy(T.xdp);
	chain_test__destroy(T.cg);
	if (T.a)
		agent_down();
	cleanup();
	return 0;
}

/* --- helpers --------------------------------------------------------------------- */

static struct axn_handle *attach(struct module *m, uint32_t kind, const char *ifname,
				 uint32_t band, int32_t prio, const char *name, int prog_fd,
				 int expect)
{
	struct axn_hook_spec spec = {
		.size = sizeof(spec),
		.kind = kind,
		.ifname = ifname,
		.attach_type = BPF_CGROUP_INET4_CONNECT,
		.band = band,
		.prio = prio,
		.name = name,
	};
	struct axn_handle *h = NULL;

	assert_int_equal(hooks_attach(m, &spec, prog_fd, &h), expect);
	if (expect)
		assert_null(h);
	else
		assert_non_null(h);
	return h;
}

/* Items of hooks_list() for one hook, as "module/name@slot" joined by spaces. */
static char *list_of(const char *hook, const char *where)
{
	json_t *l = hooks_list(T.a), *it;
	char *out = NULL;
	size_t len = 0, i;
	FILE *m = open_memstream(&out, &len);

	assert_non_null(l);
	json_array_foreach(json_object_get(l, "items"), i, it) {
		if (strcmp(json_string_value(json_object_get(it, "hook")), hook) ||
		    strcmp(json_string_value(json_object_get(it, "ifname")), where))
			continue;
		fprintf(m, "%s%s/%s@%lld", ftell(m) ? " " : "",
			json_string_value(json_object_get(it, "module")),
			json_string_value(json_object_get(it, "name")),
			json_integer_value(json_object_get(it, "slot")));
	}
	fclose(m);
	json_decref(l);
	return out;
}

static void assert_list(const char *hook, const char *where, const char *want)
{
	char *got = list_of(hook, where);

	if (strcmp(got, want))
		fail_msg("hooks_list %s %s: got \"%s\", want \"%s\"", hook, where, got, want);
	free(got);
}

/* The id of the root filter on IF0 ingress, 0 if none. */
static uint32_t tc_root_id(const char *ifname, enum bpf_tc_attach_point point)
{
	LIBBPF_OPTS(bpf_tc_hook, th, .ifindex = (int)if_nametoindex(ifname), .attach_point = point);
	LIBBPF_OPTS(bpf_tc_opts, q, .handle = AXN_TC_HANDLE, .priority = AXN_TC_PRIO);

	return bpf_tc_query(&th, &q) ? 0 : q.prog_id;
}

/* Run a packet through an attached root (by prog id); returns who ran, in order. */
static void run_root(uint32_t root_id, bool xdp, char *who, size_t len)
{
	uint8_t pkt[64] = {[12] = 0x08, [14] = 0x45};
	int fd = bpf_prog_get_fd_by_id(root_id), trace = bpf_map__fd(T.tc->maps.trace);
	LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = pkt, .data_size_in = sizeof(pkt), .repeat = 1);
	uint32_t zero = 0, n, v;
	size_t off = 0;

	assert_true(fd >= 0);
	for (uint32_t k = 0; k < TRACE_MAX; k++)
		bpf_map_update_elem(trace, &k, &zero, BPF_ANY);
	assert_int_equal(bpf_prog_test_run_opts(fd, &o), 0);
	close(fd);
	assert_int_equal((int)o.retval, xdp ? XDP_PASS : TC_ACT_UNSPEC);
	assert_int_equal(bpf_map_lookup_elem(trace, &zero, &n), 0);
	who[0] = '\0';
	for (uint32_t k = 1; k <= n && off + 2 < len; k++) {
		assert_int_equal(bpf_map_lookup_elem(trace, &k, &v), 0);
		off += (size_t)snprintf(who + off, len - off, "%u", v);
	}
}

static int prog_fd_of(struct bpf_program *p)
{
	return bpf_program__fd(p);
}

static uint32_t prog_id_of(struct bpf_program *p)
{
	struct bpf_prog_info info = {0};
	__u32 len = sizeof(info);

	assert_int_equal(bpf_obj_get_info_by_fd(bpf_program__fd(p), &info, &len), 0);
	return info.id;
}

/* --- steps -------------------------------------------------------------------------- */

static void attach_orders_by_band(void **state)
{
	char *filters, who[32];
	uint32_t base;

	/* lb first in time, but l2's band runs first. */
	T.h_lb = attach(T.lb, AXN_HOOK_TC_INGRESS, IF0, AXN_BAND_SERVICE, 0, "lb",
			prog_fd_of(T.tc->progs.tc_mark1), 0);
	T.h_arp = attach(T.l2, AXN_HOOK_TC_INGRESS, IF0, AXN_BAND_L2, 0, "arp",
			 prog_fd_of(T.tc->progs.tc_mark0), 0);

	/* Slots are absolute: the window's base plus the position in the chain. */
	{
		json_t *l = hooks_list(T.a), *it = json_array_get(json_object_get(l, "items"), 0);
		char want[128];

		base = (uint32_t)json_integer_value(json_object_get(it, "slot")) &
		       ~(uint32_t)(AXN_CHAIN_SLOTS - 1);
		json_decref(l);
		snprintf(want, sizeof(want), "l2/arp@%u lb/lb@%u", base, base + 1);
		assert_list("tc-ingress", IF0, want);
	}

	filters = sh_out("tc filter show dev " IF0 " ingress");
	assert_int_equal(count_str(filters, "handle 0xa8e"), 1);
	assert_non_null(strstr(filters, "axn_root_tc"));
	assert_non_null(strstr(filters, "direct-action"));
	free(filters);

	run_root(tc_root_id(IF0, BPF_TC_INGRESS), false, who, sizeof(who));
	assert_string_equal(who, "01");
}

static void reattach_same_name_replaces(void **state)
{
	char who[32];

	/* Same module + name: replaced in place, not added. */
	T.h_lb = attach(T.lb, AXN_HOOK_TC_INGRESS, IF0, AXN_BAND_SERVICE, 0, "lb",
			prog_fd_of(T.tc->progs.tc_mark2), 0);
	run_root(tc_root_id(IF0, BPF_TC_INGRESS), false, who, sizeof(who));
	assert_string_equal(who, "02");
	/* Same name in another module is another entry; prio orders inside a band. */
	attach(T.lb, AXN_HOOK_TC_INGRESS, IF0, AXN_BAND_L2, -5, "early",
	       prog_fd_of(T.tc->progs.tc_mark3), 0);
	run_root(tc_root_id(IF0, BPF_TC_INGRESS), false, who, sizeof(who));
	assert_string_equal(who, "302");
}

static void detach_republishes(void **state)
{
	char who[32];
	json_t *l;

	assert_int_equal(hooks_detach(T.lb, T.h_lb), 0);
	T.h_lb = NULL;
	run_root(tc_root_id(IF0, BPF_TC_INGRESS), false, who, sizeof(who));
	assert_string_equal(who, "30");
	l = hooks_list(T.a);
	assert_int_equal(json_array_size(json_object_get(l, "items")), 2);
	json_decref(l);
	/* A handle of another module is refused. */
	assert_int_equal(hooks_detach(T.lb, T.h_arp), -EINVAL);
}

static void invalid_specs_are_refused(void **state)
{
	struct axn_hook_spec spec = {.size = sizeof(spec), .kind = AXN_HOOK_TC_INGRESS,
				     .ifname = IF0, .name = "x"};
	struct axn_handle *h = NULL;
	int tc = prog_fd_of(T.tc->progs.tc_mark0);

	attach(T.lb, AXN_HOOK_TC_INGRESS, "axnt-nope", 0, 0, "x", tc, -ENODEV);
	attach(T.lb, 99, IF0, 0, 0, "x", tc, -EINVAL);
	attach(T.lb, AXN_HOOK_TC_INGRESS, IF0, 0, 0, "", tc, -EINVAL);
	attach(T.lb, AXN_HOOK_TC_INGRESS, NULL, 0, 0, "x", tc, -EINVAL);
	/* An XDP program on a tc hook. */
	attach(T.lb, AXN_HOOK_TC_INGRESS, IF0, 0, 0, "x", prog_fd_of(T.xdp->progs.xdp_mark0),
	       -EINVAL);
	spec.size = offsetof(struct axn_hook_spec, name); /* too old to carry a name */
	assert_int_equal(hooks_attach(T.lb, &spec, tc, &h), -EINVAL);
	assert_int_equal(hooks_chain_fd(T.a, AXN_HOOK_CGROUP, &(int){0}), -EINVAL);
}

static void chain_full_is_enospc(void **state)
{
	struct axn_handle *hs[AXN_CHAIN_SLOTS];
	int tc = prog_fd_of(T.tc->progs.tc_mark0);
	size_t n = 0;
	char name[16];
	json_t *l;

	/* On egress, which is empty so far. */
	for (n = 0; n < AXN_CHAIN_SLOTS - 1; n++) {
		snprintf(name, sizeof(name), "p%zu", n);
		hs[n] = attach(T.lb, AXN_HOOK_TC_EGRESS, IF0, AXN_BAND_POLICY, (int32_t)n, name, tc,
			       0);
	}
	attach(T.lb, AXN_HOOK_TC_EGRESS, IF0, AXN_BAND_POLICY, 99, "one-too-many", tc, -ENOSPC);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(hooks_detach(T.lb, hs[i]), 0);
	/* The empty chain keeps its root. */
	assert_true(tc_root_id(IF0, BPF_TC_EGRESS) != 0);
	l = hooks_list(T.a);
	assert_int_equal(json_array_size(json_object_get(l, "items")), 2);
	json_decref(l);
}

static void xdp_attach_and_foreign_refused(void **state)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	char who[32];

	T.h_xdp = attach(T.l2, AXN_HOOK_XDP, IF0, AXN_BAND_L2, 0, "arp",
			 prog_fd_of(T.xdp->progs.xdp_mark1), 0);
	assert_int_equal(bpf_xdp_query((int)if_nametoindex(IF0), 0, &q), 0);
	assert_int_equal(q.attach_mode, XDP_ATTACHED_DRV); /* veth has native XDP */
	run_root(q.prog_id, true, who, sizeof(who));
	assert_string_equal(who, "1");

	/* Someone else's XDP program on IF1: we must not take it over. */
	assert_int_equal(bpf_xdp_attach((int)if_nametoindex(IF1), prog_fd_of(T.xdp->progs.xdp_drop),
					XDP_FLAGS_DRV_MODE, NULL),
			 0);
	attach(T.l2, AXN_HOOK_XDP, IF1, AXN_BAND_L2, 0, "arp", prog_fd_of(T.xdp->progs.xdp_mark1),
	       -EBUSY);
	assert_int_equal(bpf_xdp_query((int)if_nametoindex(IF1), 0, &q), 0);
	assert_int_equal(q.prog_id, prog_id_of(T.xdp->progs.xdp_drop));
	assert_int_equal(bpf_xdp_detach((int)if_nametoindex(IF1), XDP_FLAGS_DRV_MODE, NULL), 0);
}

static void cgroup_attach_order_and_detach(void **state)
{
	__u32 ids[8], n = 8;

	if (!T.cgroup[0])
		skip();
	T.h_cg_a = attach(T.lb, AXN_HOOK_CGROUP, NULL, AXN_BAND_SERVICE, 0, "sock-a",
			  prog_fd_of(T.cg->progs.cg_allow_a), 0);
	T.h_cg_b = attach(T.l2, AXN_HOOK_CGROUP, NULL, AXN_BAND_L2, 0, "sock-b",
			  prog_fd_of(T.cg->progs.cg_allow_b), 0);
	/* Attach order, not band: documented for cgroup hooks. */
	{
		char want[64];

		snprintf(want, sizeof(want), "lb/sock-a@0 l2/sock-b@1");
		assert_list("cgroup:cgroup_inet4_connect", T.cgroup, want);
	}
	{
		int cg = open(T.cgroup, O_RDONLY | O_DIRECTORY);

		assert_int_equal(bpf_prog_query(cg, BPF_CGROUP_INET4_CONNECT, 0, NULL, ids, &n), 0);
		assert_int_equal(n, 2);
		assert_int_equal(ids[0], prog_id_of(T.cg->progs.cg_allow_a));
		assert_int_equal(ids[1], prog_id_of(T.cg->progs.cg_allow_b));
		assert_int_equal(hooks_detach(T.l2, T.h_cg_b), 0);
		T.h_cg_b = NULL;
		n = 8;
		assert_int_equal(bpf_prog_query(cg, BPF_CGROUP_INET4_CONNECT, 0, NULL, ids, &n), 0);
		assert_int_equal(n, 1);
		close(cg);
	}
}

/*
 * Agent restart: handles are freed (programs stay), the registry is
 * rebuilt from hooks.json and the pins; l2 re-attaches, lb does not, and
 * prune drops lb's programs. The root is swapped, not duplicated.
 */
static void restart_restores_and_prunes(void **state)
{
	uint32_t old_root = tc_root_id(IF0, BPF_TC_INGRESS), new_root;
	char path[PATH_MAX], *filters, who[32];
	json_t *st, *l;

	snprintf(path, sizeof(path), "%s/hooks.json", T.rundir);
	st = json_load_file(path, 0, NULL);
	assert_non_null(st);
	assert_true(json_array_size(json_object_get(st, "hooks")) >= 3);
	json_decref(st);

	agent_down();
	assert_int_equal(agent_up(), 0);
	/* Everything is known again, as "restored". */
	l = hooks_list(T.a);
	assert_true(json_array_size(json_object_get(l, "items")) >= 3);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(l, "items"), 0), "state")),
			    "restored");
	json_decref(l);
	/* Traffic still flows through the old root meanwhile. */
	run_root(old_root, false, who, sizeof(who));
	assert_string_equal(who, "30");

	T.h_arp = attach(T.l2, AXN_HOOK_TC_INGRESS, IF0, AXN_BAND_L2, 0, "arp",
			 prog_fd_of(T.tc->progs.tc_mark0), 0);
	new_root = tc_root_id(IF0, BPF_TC_INGRESS);
	assert_true(new_root != 0 && new_root != old_root);
	filters = sh_out("tc filter show dev " IF0 " ingress");
	assert_int_equal(count_str(filters, "handle 0xa8e"), 1);
	free(filters);
	/* Before prune lb's "early" is still there. */
	run_root(new_root, false, who, sizeof(who));
	assert_string_equal(who, "30");

	hooks_prune(T.a);
	run_root(new_root, false, who, sizeof(who));
	assert_string_equal(who, "0");
	{
		char want[64];
		uint32_t slot;

		l = hooks_list(T.a);
		slot = (uint32_t)json_integer_value(
			json_object_get(json_array_get(json_object_get(l, "items"), 0), "slot"));
		json_decref(l);
		snprintf(want, sizeof(want), "l2/arp@%u", slot);
		assert_list("tc-ingress", IF0, want);
	}
	/* Nobody re-attached XDP or cgroup programs: gone too. */
	assert_list("xdp", IF0, "");
	if (T.cgroup[0]) {
		__u32 ids[4], n = 4;
		int cg = open(T.cgroup, O_RDONLY | O_DIRECTORY);

		assert_int_equal(bpf_prog_query(cg, BPF_CGROUP_INET4_CONNECT, 0, NULL, ids, &n), 0);
		assert_int_equal(n, 0);
		close(cg);
	}
}

static void purge_removes_everything(void **state)
{
	char path[PATH_MAX], *out;
	LIBBPF_OPTS(bpf_xdp_query_opts, q);

	/* Something on every kind of hook first. */
	attach(T.l2, AXN_HOOK_XDP, IF0, AXN_BAND_L2, 0, "arp", prog_fd_of(T.xdp->progs.xdp_mark1),
	       0);
	if (T.cgroup[0])
		attach(T.lb, AXN_HOOK_CGROUP, NULL, AXN_BAND_SERVICE, 0, "sock-a",
		       prog_fd_of(T.cg->progs.cg_allow_a), 0);

	/* As `axonemed --purge` does it: a fresh agent, no registry, from hooks.json. */
	agent_down();
	T.a = agent_new();
	assert_non_null(T.a);
	T.a->conf.bpffs = T.bpffs;
	T.a->conf.rundir = T.rundir;
	T.a->conf.cgroup = T.cgroup;
	assert_int_equal(hooks_purge(T.a), 0);
	assert_int_equal(maps_purge(T.a), 0);

	out = sh_out("tc qdisc show dev " IF0);
	assert_null(strstr(out, "clsact")); /* we created it, so it goes */
	free(out);
	assert_int_equal(tc_root_id(IF0, BPF_TC_INGRESS), 0);
	assert_int_equal(bpf_xdp_query((int)if_nametoindex(IF0), 0, &q), 0);
	assert_int_equal(q.prog_id, 0);
	if (T.cgroup[0]) {
		__u32 ids[4], n = 4;
		int cg = open(T.cgroup, O_RDONLY | O_DIRECTORY);

		assert_int_equal(bpf_prog_query(cg, BPF_CGROUP_INET4_CONNECT, 0, NULL, ids, &n), 0);
		assert_int_equal(n, 0);
		close(cg);
	}
	snprintf(path, sizeof(path), "%s/hooks.json", T.rundir);
	assert_int_equal(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/axn_chain_tc_v1", T.bpffs);
	assert_int_equal(access(path, F_OK), -1);
}

/*
 * hooks.json lost while roots and pins survive: the registry cannot know
 * the roots' hook ids, so it removes them rather than let an old root run
 * a new hook's chain.
 */
static void lost_state_sweeps_orphan_roots(void **state)
{
	LIBBPF_OPTS(bpf_xdp_query_opts, q);
	char path[128 + 16];

	agent_down();
	assert_int_equal(agent_up(), 0);
	attach(T.l2, AXN_HOOK_TC_EGRESS, IF0, AXN_BAND_L2, 0, "arp",
	       prog_fd_of(T.tc->progs.tc_mark0), 0);
	attach(T.l2, AXN_HOOK_XDP, IF1, AXN_BAND_L2, 0, "arp", prog_fd_of(T.xdp->progs.xdp_mark1),
	       0);
	assert_true(tc_root_id(IF0, BPF_TC_EGRESS) != 0);
	agent_down();

	snprintf(path, sizeof(path), "%s/hooks.json", T.rundir);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(agent_up(), 0);
	assert_int_equal(tc_root_id(IF0, BPF_TC_EGRESS), 0);
	assert_int_equal(bpf_xdp_query((int)if_nametoindex(IF1), 0, &q), 0);
	assert_int_equal(q.prog_id, 0);
}

/* The kernel's text for netlink errors the test provokes on purpose is noise. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_DEBUG || strstr(fmt, "Kernel error message"))
		return 0;
	return vfprintf(stderr, fmt, ap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(attach_orders_by_band),
		cmocka_unit_test(reattach_same_name_replaces),
		cmocka_unit_test(detach_republishes),
		cmocka_unit_test(invalid_specs_are_refused),
		cmocka_unit_test(chain_full_is_enospc),
		cmocka_unit_test(xdp_attach_and_foreign_refused),
		cmocka_unit_test(cgroup_attach_order_and_detach),
		cmocka_unit_test(restart_restores_and_prunes),
		cmocka_unit_test(purge_removes_everything),
		cmocka_unit_test(lost_state_sweeps_orphan_roots),
	};

	if (geteuid() != 0) {
		printf("SKIP: test_hooks attaches programs in a private netns and needs root\n");
		return 77;
	}
	if (system("ip -V >/dev/null 2>&1 && tc -V >/dev/null 2>&1")) {
		printf("SKIP: test_hooks needs iproute2 (ip, tc)\n");
		return 77;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	libbpf_set_print(libbpf_print);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
