/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lbt.h - a small harness that plays the store for lbipam on the testhost:
 * it keeps the manifests a test put (the "state dir"), injects them, runs
 * the loop, and reflects the status lbipam writes back into the objects as
 * statedir does (status merged, object put again: a MODIFIED). A write that
 * causes another write forever is caught (no convergence in 5 rounds).
 *
 * Objects put before lbt_sync() are injected before the module starts, so
 * that SYNCED waits for them (as the core waits for statedir's first scan).
 *
 * A restart frees the testhost (stop writes the state file), starts a new
 * one on the same run dir and feeds it every object again, in reverse
 * order, with the status they have (or without, to test the state file).
 */
#ifndef LBT_H
#define LBT_H

#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <axoneme/testhost.h>

extern const struct axn_module_desc axn_module_lbipam_desc;

struct lbt {
	struct axn_testhost *th;
	json_t *docs; /* "kind/ns/name" -> document, in the order first put */
	const char *const *conf;
	const char *node;
	bool started;
	char root[64], run[96];
};

/* JSON written with single quotes (C literals stay readable). */
static json_t *lbt_json(const char *text)
{
	char *s = strdup(text);
	json_error_t je;
	json_t *v;

	assert_non_null(s);
	for (char *p = s; *p; p++)
		if (*p == '\'')
			*p = '"';
	v = json_loads(s, JSON_DECODE_ANY, &je);
	if (!v)
		fail_msg("bad JSON in test: %s: %s", s, je.text);
	free(s);
	return v;
}

static int lbt_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void lbt_create(struct lbt *t)
{
	t->th = axn_testhost_new(&axn_module_lbipam_desc, t->conf);
	assert_non_null(t->th);
	assert_int_equal(axn_testhost_set_info(t->th, "rundir", t->run), 0);
	if (t->node)
		assert_int_equal(axn_testhost_set_info(t->th, "node_name", t->node), 0);
	t->started = false;
}

static void lbt_start(struct lbt *t)
{
	assert_int_equal(axn_testhost_init(t->th), 0);
	assert_int_equal(axn_testhost_start(t->th), 0);
	t->started = true;
	axn_testhost_run_pending(t->th);
}

/* Create and start with no objects (SYNCED goes out at once). */
static void lbt_boot(struct lbt *t)
{
	lbt_create(t);
	lbt_start(t);
}

/* Harnesses alive, so a failed test (cmocka jumps out of it) still cleans up in teardown. */
static struct lbt *lbt_live[8];

static struct lbt *lbt_new(const char *const *conf)
{
	struct lbt *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	for (size_t i = 0; i < 8; i++)
		if (!lbt_live[i]) {
			lbt_live[i] = t;
			break;
		}
	t->conf = conf;
	strcpy(t->root, "/tmp/lbipam-test-XXXXXX");
	assert_non_null(mkdtemp(t->root));
	snprintf(t->run, sizeof(t->run), "%s/run", t->root);
	assert_int_equal(mkdir(t->run, 0755), 0);
	t->docs = json_object();
	lbt_create(t); /* started by lbt_sync() */
	return t;
}

static void lbt_destroy(struct lbt *t)
{
	for (size_t i = 0; i < 8; i++)
		if (lbt_live[i] == t)
			lbt_live[i] = NULL;
	json_decref(t->docs);
	nftw(t->root, lbt_rm, 16, FTW_DEPTH | FTW_PHYS);
	free(t);
}

static void lbt_free(struct lbt *t)
{
	struct axn_testhost *th = t->th;

	t->th = NULL;
	if (th)
		assert_int_equal(axn_testhost_free(th), 0); /* nothing leaked */
	lbt_destroy(t);
}

/* cmocka teardown: whatever a failed test left behind. */
static int lbt_teardown(void **state)
{
	for (size_t i = 0; i < 8; i++)
		if (lbt_live[i]) {
			if (lbt_live[i]->th)
				axn_testhost_free(lbt_live[i]->th);
			lbt_destroy(lbt_live[i]);
		}
	return 0;
}

static char *lbt_key(const json_t *doc)
{
	const json_t *md = json_object_get(doc, "metadata");
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	char *k;

	assert_true(asprintf(&k, "%s/%s/%s", json_string_value(json_object_get(doc, "kind")),
			     ns ? ns : "", json_string_value(json_object_get(md, "name"))) > 0);
	return k;
}

/* Put (add or replace) a whole document; the status it had is kept unless it brings one. */
static void lbt_put(struct lbt *t, json_t *doc)
{
	char *k = lbt_key(doc);
	json_t *old = json_object_get(t->docs, k);

	if (old && !json_object_get(doc, "status") && json_object_get(old, "status"))
		json_object_set(doc, "status", json_object_get(old, "status"));
	assert_int_equal(axn_testhost_inject(t->th, old ? AXN_EV_MODIFIED : AXN_EV_ADDED,
					     json_deep_copy(doc)), 0);
	json_object_set_new(t->docs, k, doc);
	free(k);
}

static void lbt_delete(struct lbt *t, const char *kind, const char *ns, const char *name)
{
	char k[256];
	json_t *doc;

	snprintf(k, sizeof(k), "%s/%s/%s", kind, ns ? ns : "", name);
	doc = json_object_get(t->docs, k);
	assert_non_null(doc);
	assert_int_equal(axn_testhost_inject(t->th, AXN_EV_DELETED, json_deep_copy(doc)), 0);
	json_object_del(t->docs, k);
}

/* Run the loop; merge written status into the objects as statedir does, until nothing changes. */
static void lbt_run(struct lbt *t)
{
	for (int round = 0;; round++) {
		const char *k;
		json_t *doc;
		bool changed = false;

		axn_testhost_run_pending(t->th);
		axn_testhost_advance(t->th, 2000); /* the state file's delay, a reader's poll */
		axn_testhost_run_pending(t->th);
		json_object_foreach(t->docs, k, doc) {
			const json_t *md = json_object_get(doc, "metadata");
			const json_t *st = axn_testhost_status(
				t->th, json_string_value(json_object_get(doc, "kind")),
				json_string_value(json_object_get(md, "namespace")),
				json_string_value(json_object_get(md, "name")));

			if (!st || json_equal((json_t *)st, json_object_get(doc, "status")))
				continue;
			json_object_set_new(doc, "status", json_deep_copy(st));
			assert_int_equal(axn_testhost_inject(t->th, AXN_EV_MODIFIED, json_deep_copy(doc)), 0);
			changed = true;
		}
		if (!changed)
			return;
		if (round == 5)
			fail_msg("status writes do not converge: a write loop");
	}
}

/* The source has delivered everything: start the module, then SYNCED. */
static void lbt_sync(struct lbt *t)
{
	if (!t->started)
		lbt_start(t);
	assert_int_equal(axn_testhost_inject(t->th, AXN_EV_SYNCED, NULL), 0);
	lbt_run(t);
}

/* mode: "" keep status, "nostatus" drop it, "nostate" drop the state file, "nothing" both. */
static void lbt_restart(struct lbt *t, const char *mode)
{
	size_t n = json_object_size(t->docs), i = 0;
	json_t **v = calloc(n + 1, sizeof(*v));
	const char *k;
	json_t *doc;

	{
		struct axn_testhost *th = t->th;

		t->th = NULL;
		assert_int_equal(axn_testhost_free(th), 0);
	}
	if (strstr(mode, "nostate") || strstr(mode, "nothing")) {
		char path[160];

		snprintf(path, sizeof(path), "%s/lbipam-state.json", t->run);
		unlink(path);
	}
	lbt_create(t);
	json_object_foreach(t->docs, k, doc) {
		if (strstr(mode, "nostatus") || strstr(mode, "nothing"))
			json_object_del(doc, "status");
		v[i++] = doc;
	}
	/* Reverse order: adoption must not depend on the order of the replay. */
	while (i--)
		assert_int_equal(axn_testhost_inject(t->th, AXN_EV_ADDED, json_deep_copy(v[i])), 0);
	free(v);
	lbt_sync(t);
}

/* "a,b" of a service's addresses: from the status it has (writer) or from the view. */
/* The status an object has now (what lbipam wrote, merged by lbt_run), or NULL. */
static const json_t *lbt_status(struct lbt *t, const char *kind, const char *ns, const char *name)
{
	char k[512];

	snprintf(k, sizeof(k), "%s/%s/%s", kind, ns ? ns : "", name);
	return json_object_get(json_object_get(t->docs, k), "status");
}

static char *lbt_status_ips(struct lbt *t, const char *ns, const char *name)
{
	const json_t *st = lbt_status(t, "Service", ns, name);
	const json_t *ing = json_object_get(json_object_get(st, "loadBalancer"), "ingress");
	char *out = calloc(1, 1024);
	size_t i;
	json_t *e;

	json_array_foreach(ing, i, e)
		snprintf(out + strlen(out), 1024 - strlen(out), "%s%s", i ? "," : "",
			 json_string_value(json_object_get(e, "ip")));
	return out;
}

static json_t *lbt_view_svc(struct lbt *t, const char *ns, const char *name)
{
	json_t *args = json_pack("{s:s, s:s}", "namespace", ns, "name", name), *resp = NULL;
	char *err = NULL;

	assert_int_equal(axn_testhost_api_call(t->th, "lbipam/services", args, &resp, &err), 0);
	free(err);
	json_decref(args);
	return resp;
}

static char *lbt_view_ips(struct lbt *t, const char *ns, const char *name)
{
	json_t *resp = lbt_view_svc(t, ns, name);
	const json_t *ips = json_object_get(json_array_get(json_object_get(resp, "items"), 0), "ips");
	char *out = calloc(1, 1024);
	size_t i;
	json_t *e;

	json_array_foreach(ips, i, e)
		snprintf(out + strlen(out), 1024 - strlen(out), "%s%s", i ? "," : "", json_string_value(e));
	json_decref(resp);
	return out;
}

static const json_t *lbt_cond(const json_t *st, const char *type)
{
	size_t i;
	json_t *c;

	json_array_foreach(json_object_get(st, "conditions"), i, c)
		if (!strcmp(json_string_value(json_object_get(c, "type")), type))
			return c;
	return NULL;
}

static double lbt_metric(struct lbt *t, const char *name)
{
	double v = -1;

	assert_int_equal(axn_testhost_metric(t->th, name, &v), 0);
	return v;
}

#endif /* LBT_H */
