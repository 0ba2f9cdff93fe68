// SPDX-License-Identifier: Apache-2.0
/*
 * test_statedir.c - the statedir module on the testhost: a real directory
 * (mkdtemp), real inotify, the event loop driven by hand. After a change the
 * test fires the io watch and advances the fake clock past the settle delay:
 * no sleeping.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* nftw */
#endif
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <axoneme/testhost.h>

#include "statedir.h"

extern const struct axn_module_desc axn_module_statedir_desc;

struct fx {
	char root[64];
	char state[96];  /* the manifests */
	char run[96];    /* the agent's rundir */
	struct axn_testhost *th;
};

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof(*fx));

	assert_non_null(fx);
	strcpy(fx->root, "/tmp/statedir-test-XXXXXX");
	assert_non_null(mkdtemp(fx->root));
	snprintf(fx->state, sizeof(fx->state), "%s/state", fx->root);
	snprintf(fx->run, sizeof(fx->run), "%s/run", fx->root);
	assert_int_equal(mkdir(fx->state, 0755), 0);
	assert_int_equal(mkdir(fx->run, 0755), 0);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;

	if (fx->th)
		axn_testhost_free(fx->th);
	nftw(fx->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return 0;
}

static void write_file(struct fx *fx, const char *name, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fx->state, name);
	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void remove_file(struct fx *fx, const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", fx->state, name);
	assert_int_equal(unlink(path), 0);
}

static struct axn_testhost *start(struct fx *fx)
{
	fx->th = axn_testhost_new(&axn_module_statedir_desc,
				  (const char *[]){"path", fx->state, NULL});
	assert_non_null(fx->th);
	assert_int_equal(axn_testhost_set_info(fx->th, "rundir", fx->run), 0);
	assert_int_equal(axn_testhost_init(fx->th), 0);
	assert_int_equal(axn_testhost_start(fx->th), 0);
	return fx->th;
}

/* What the agent's loop would do after the writes: inotify readable, then the settle timer. */
static void settle(struct fx *fx)
{
	assert_true(axn_testhost_io_fire(fx->th, -1, AXN_IO_READ) > 0);
	axn_testhost_advance(fx->th, STATEDIR_SETTLE_MS);
	axn_testhost_run_pending(fx->th);
}

static void restart_free(struct fx *fx)
{
	assert_int_equal(axn_testhost_free(fx->th), 0);
	fx->th = NULL;
}

static const char *cm(const char *name, const char *value)
{
	static char buf[4][256];
	static int i;
	char *b = buf[i++ % 4];

	snprintf(b, sizeof(buf[0]),
		 "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: default\n"
		 "data:\n  value: \"%s\"\n",
		 name, value);
	return b;
}

static const char *value_of(struct axn_testhost *th, const char *name)
{
	const json_t *doc = axn_testhost_store_doc(th, "ConfigMap", "default", name);

	const char *v = json_string_value(json_object_get(json_object_get(doc, "data"), "value"));

	return v ? v : "(no such object)";
}

static const char *error_at(struct axn_testhost *th, const char *where)
{
	return json_string_value(json_object_get(axn_testhost_source_errors(th), where));
}

/* ---- tests ----------------------------------------------------------------- */

struct seen {
	json_t *events;
};

static void record(struct axn_mod *self, uint32_t event, struct axn_obj *obj, void *arg)
{
	struct seen *s = arg;

	const char *what = event == AXN_EV_SYNCED ? "SYNCED" : axn_obj_name(self, obj);

	json_array_append_new(s->events, json_string(what));
}

static void test_initial_scan(void **state)
{
	struct fx *fx = *state;
	struct seen seen = {json_array()};
	struct axn_handle *sub = NULL;
	struct axn_mod *self;
	json_t *resp = NULL, *item;
	char path[256];

	write_file(fx, "a.yaml", cm("one", "1"));
	write_file(fx, "b.yml", "---\n# two documents\n");
	write_file(fx, "c.json", "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": "
				 "{\"name\": \"three\", \"namespace\": \"default\"}, \"data\": "
				 "{\"value\": \"3\"}}");
	write_file(fx, ".hidden.yaml", cm("hidden", "x"));
	write_file(fx, "notes.txt", cm("notes", "x"));
	snprintf(path, sizeof(path), "%s/sub.yaml", fx->state);
	assert_int_equal(mkdir(path, 0755), 0);

	fx->th = axn_testhost_new(&axn_module_statedir_desc,
				  (const char *[]){"path", fx->state, NULL});
	assert_non_null(fx->th);
	axn_testhost_set_info(fx->th, "rundir", fx->run);
	assert_int_equal(axn_testhost_init(fx->th), 0);
	/* A consumer that subscribed before the source started sees the replay, then SYNCED. */
	self = axn_testhost_mod(fx->th);
	assert_int_equal(self->host->store_watch(self, "ConfigMap", record, &seen, &sub), 0);
	assert_int_equal(axn_testhost_start(fx->th), 0);
	axn_testhost_run_pending(fx->th);
	assert_int_equal(json_array_size(seen.events), 3);
	assert_string_equal(json_string_value(json_array_get(seen.events, 0)), "one");
	assert_string_equal(json_string_value(json_array_get(seen.events, 1)), "three");
	assert_string_equal(json_string_value(json_array_get(seen.events, 2)), "SYNCED");
	self->host->handle_free(self, sub);
	json_decref(seen.events);

	assert_int_equal(axn_testhost_store_count(fx->th, NULL), 2);
	assert_string_equal(value_of(fx->th, "three"), "3");
	assert_null(axn_testhost_store_doc(fx->th, "ConfigMap", "default", "hidden"));
	assert_int_equal(axn_testhost_state(fx->th, NULL), AXN_STATE_UP);

	assert_int_equal(axn_testhost_api_call(fx->th, "statedir/files", NULL, &resp, NULL), 0);
	assert_int_equal(json_array_size(json_object_get(resp, "items")), 3);
	item = json_array_get(json_object_get(resp, "items"), 0);
	assert_string_equal(json_string_value(json_object_get(item, "file")), "a.yaml");
	assert_int_equal(json_integer_value(json_object_get(item, "documents")), 1);
	assert_int_equal(json_integer_value(json_object_get(item, "objects")), 1);
	assert_int_equal(json_integer_value(json_object_get(item, "errors")), 0);
	item = json_array_get(json_object_get(resp, "items"), 1);
	assert_string_equal(json_string_value(json_object_get(item, "file")), "b.yml");
	assert_int_equal(json_integer_value(json_object_get(item, "documents")), 0);
	json_decref(resp);
	restart_free(fx);
}

static void test_bad_document_reported(void **state)
{
	struct fx *fx = *state;
	struct axn_testhost *th;
	double errors = 0;

	write_file(fx, "bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"
				   "  namespace: default\n"
				   "---\n"
				   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n"
				   " bad: indentation\n" /* line 11 */
				   "---\n"
				   "apiVersion: v1\nmetadata:\n  name: nokind\n" /* line 13 */
				   "---\n"
				   "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
				   "  namespace: default\n");
	th = start(fx);
	assert_non_null(axn_testhost_store_doc(th, "ConfigMap", "default", "a"));
	assert_int_equal(axn_testhost_store_count(th, "ConfigMap"), 2);
	assert_non_null(axn_testhost_store_doc(th, "ConfigMap", "default", "c"));
	assert_int_equal(json_object_size(axn_testhost_source_errors(th)), 2);
	assert_non_null(strstr(error_at(th, "bad.yaml:11:2"), "did not find expected key"));
	assert_non_null(strstr(error_at(th, "bad.yaml:13:1"), "kind is missing"));
	/* The log names the file, line and column too. */
	assert_non_null(axn_testhost_log_find(th, "bad.yaml:11:2"));
	assert_non_null(axn_testhost_log_find(th, fx->state));
	assert_int_equal(axn_testhost_state(th, NULL), AXN_STATE_DEGRADED);
	assert_int_equal(axn_testhost_metric(th, "errors", &errors), 0);
	assert_true(errors == 2.0);

	/* Fixed: errors cleared, the missing objects appear, health is back. */
	axn_testhost_events_clear(th);
	write_file(fx, "bad.yaml", cm("a", "1"));
	settle(fx);
	assert_int_equal(json_object_size(axn_testhost_source_errors(th)), 0);
	assert_int_equal(axn_testhost_state(th, NULL), AXN_STATE_UP);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_DELETED, "ConfigMap", "c"), 1);
	restart_free(fx);
}

static void test_edit_one_file(void **state)
{
	struct fx *fx = *state;
	struct axn_testhost *th;
	char text[1024];

	snprintf(text, sizeof(text), "%s---\n%s---\n%s", cm("keep", "1"), cm("change", "1"),
		 cm("drop", "1"));
	write_file(fx, "a.yaml", text);
	write_file(fx, "other.yaml", cm("other", "1"));
	th = start(fx);
	assert_int_equal(axn_testhost_store_count(th, "ConfigMap"), 4);
	axn_testhost_events_clear(th);

	snprintf(text, sizeof(text), "%s---\n%s---\n%s", cm("keep", "1"), cm("change", "2"),
		 cm("new", "1"));
	write_file(fx, "a.yaml", text);
	settle(fx);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_MODIFIED, "ConfigMap", "change"), 1);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_DELETED, "ConfigMap", "drop"), 1);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_ADDED, "ConfigMap", "new"), 1);
	/* Unchanged objects, in this file or others, are not touched. */
	assert_int_equal(axn_testhost_events_count(th, 0, NULL, "keep"), 0);
	assert_int_equal(axn_testhost_events_count(th, 0, NULL, "other"), 0);
	assert_int_equal(json_array_size(axn_testhost_events(th)), 3);
	assert_string_equal(value_of(th, "change"), "2");

	/* An editor's save: old file renamed away, new one written. One MODIFIED, no DELETED. */
	axn_testhost_events_clear(th);
	{
		char from[256], to[256];

		snprintf(from, sizeof(from), "%s/other.yaml", fx->state);
		snprintf(to, sizeof(to), "%s/other.yaml~", fx->state);
		assert_int_equal(rename(from, to), 0);
	}
	write_file(fx, "other.yaml", cm("other", "2"));
	settle(fx);
	assert_int_equal(json_array_size(axn_testhost_events(th)), 1);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_MODIFIED, "ConfigMap", "other"), 1);
	restart_free(fx);
}

static void test_delete_file(void **state)
{
	struct fx *fx = *state;
	struct axn_testhost *th;
	char text[1024];

	snprintf(text, sizeof(text), "%s---\nkind: ConfigMap\nmetadata: {name: broken}\n",
		 cm("gone", "1"));
	write_file(fx, "a.yaml", text);
	write_file(fx, "b.yaml", cm("stays", "1"));
	th = start(fx);
	assert_int_equal(json_object_size(axn_testhost_source_errors(th)), 1);
	axn_testhost_events_clear(th);

	remove_file(fx, "a.yaml");
	settle(fx);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_DELETED, "ConfigMap", "gone"), 1);
	assert_int_equal(json_array_size(axn_testhost_events(th)), 1);
	assert_int_equal(json_object_size(axn_testhost_source_errors(th)), 0);
	assert_non_null(axn_testhost_store_doc(th, "ConfigMap", "default", "stays"));
	restart_free(fx);
}

static void test_broken_edit_keeps_objects(void **state)
{
	static const char pool[] = "apiVersion: cilium.io/v2alpha1\n"
				   "kind: CiliumLoadBalancerIPPool\n"
				   "metadata: {name: pool}\n"
				   "spec: {blocks: [{cidr: 10.0.10.0/24}]}\n";
	struct fx *fx = *state;
	struct axn_testhost *th;
	char text[1024];

	snprintf(text, sizeof(text), "%s---\n%s---\n%s", pool, cm("first", "1"), cm("second", "1"));
	write_file(fx, "a.yaml", text);
	th = start(fx);
	axn_testhost_events_clear(th);

	/* A typo in second's document: second is kept as it was, first is updated. */
	snprintf(text, sizeof(text),
		 "%s---\n%s---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: second\n", pool,
		 cm("first", "2"));
	write_file(fx, "a.yaml", text);
	settle(fx);
	assert_string_equal(value_of(th, "first"), "2");
	assert_string_equal(value_of(th, "second"), "1");
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_DELETED, NULL, NULL), 0);
	/* One error: the syntax error (the unchanged cluster-scoped pool is no duplicate). */
	assert_int_equal(json_object_size(axn_testhost_source_errors(th)), 1);
	assert_int_equal(axn_testhost_events_count(th, 0, NULL, "pool"), 0);

	/* Fixed without second: now second goes. */
	snprintf(text, sizeof(text), "%s---\n%s", pool, cm("first", "2"));
	write_file(fx, "a.yaml", text);
	settle(fx);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_DELETED, "ConfigMap", "second"), 1);
	assert_int_equal(json_object_size(axn_testhost_source_errors(th)), 0);
	restart_free(fx);
}

static void test_duplicates(void **state)
{
	struct fx *fx = *state;
	struct axn_testhost *th;
	const char *msg;

	write_file(fx, "a.yaml", cm("dup", "from-a"));
	write_file(fx, "b.yaml", cm("dup", "from-b"));
	th = start(fx);
	assert_string_equal(value_of(th, "dup"), "from-a");
	msg = error_at(th, "b.yaml:1:1");
	assert_non_null(msg);
	assert_non_null(strstr(msg, "duplicate ConfigMap default/dup"));
	assert_non_null(strstr(msg, "a.yaml:1:1"));

	/* The first definition goes: the second one takes over, the error clears. */
	axn_testhost_events_clear(th);
	remove_file(fx, "a.yaml");
	settle(fx);
	assert_string_equal(value_of(th, "dup"), "from-b");
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_MODIFIED, "ConfigMap", "dup"), 1);
	assert_int_equal(json_object_size(axn_testhost_source_errors(th)), 0);
	restart_free(fx);
}

/* An object another source (here: the test) provides is an error of the manifest. */
static void test_other_source(void **state)
{
	struct fx *fx = *state;
	struct axn_testhost *th;
	const char *msg;
	json_t *doc;

	fx->th = axn_testhost_new(&axn_module_statedir_desc,
				  (const char *[]){"path", fx->state, NULL});
	assert_non_null(fx->th);
	th = fx->th;
	axn_testhost_set_info(th, "rundir", fx->run);
	doc = json_pack("{s:s, s:s, s:{s:s, s:s}}", "apiVersion", "v1", "kind", "ConfigMap",
			"metadata", "name", "taken", "namespace", "default");
	assert_int_equal(axn_testhost_inject(th, AXN_EV_ADDED, doc), 0);
	write_file(fx, "a.yaml", cm("taken", "1"));
	assert_int_equal(axn_testhost_init(th), 0);
	assert_int_equal(axn_testhost_start(th), 0);
	msg = error_at(th, "a.yaml:1:1");
	assert_non_null(msg);
	assert_non_null(strstr(msg, "another source provides this object"));
	/* The store still has the other source's version. */
	assert_null(json_object_get(axn_testhost_store_doc(th, "ConfigMap", "default", "taken"),
				    "data"));

	/* Not retried while the document stays the same; the error stays reported. */
	axn_testhost_events_clear(th);
	write_file(fx, "b.yaml", cm("b", "1"));
	settle(fx);
	assert_int_equal(axn_testhost_events_count(th, 0, NULL, "taken"), 0);
	assert_non_null(error_at(th, "a.yaml:1:1"));
	restart_free(fx);
}

static void test_status_persisted(void **state)
{
	struct fx *fx = *state;
	struct axn_testhost *th;
	json_t *st = json_pack("{s:s, s:[{s:s}]}", "phase", "Ready", "conditions", "type", "Ok");
	const json_t *doc;
	char path[256];
	char text[1024];
	struct stat sb;

	snprintf(text, sizeof(text),
		 "%s---\napiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {own: true}\n",
		 cm("a", "1"));
	write_file(fx, "a.yaml", text);
	th = start(fx);
	axn_testhost_events_clear(th);
	assert_int_equal(axn_testhost_set_status(th, "ConfigMap", "default", "a", st), 0);
	/* Subscribers see it: the object is put again with its status. */
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_MODIFIED, "ConfigMap", "a"), 1);
	doc = axn_testhost_store_doc(th, "ConfigMap", "default", "a");
	assert_true(json_equal(json_object_get(doc, "status"), st));
	/* The same status again changes nothing. */
	assert_int_equal(axn_testhost_set_status(th, "ConfigMap", "default", "a", st), 0);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_MODIFIED, "ConfigMap", "a"), 1);
	assert_int_equal(axn_testhost_set_status(th, "ConfigMap", "default", "nope", st), -ENOENT);
	/* Written status replaces a manifest's own status while the agent runs. */
	assert_int_equal(axn_testhost_set_status(th, "Node", NULL, "n1", st), 0);
	doc = axn_testhost_store_doc(th, "Node", NULL, "n1");
	assert_true(json_equal(json_object_get(doc, "status"), st));
	/* Persisted under the agent's run dir; the manifest is untouched. */
	snprintf(path, sizeof(path), "%s/statedir-status/ConfigMap_default_a.json", fx->run);
	assert_int_equal(stat(path, &sb), 0);
	{
		char mpath[256];
		FILE *f;
		char back[1024] = "";

		snprintf(mpath, sizeof(mpath), "%s/a.yaml", fx->state);
		assert_non_null(f = fopen(mpath, "r"));
		assert_true(fread(back, 1, sizeof(back) - 1, f) > 0);
		fclose(f);
		assert_string_equal(back, text);
	}
	restart_free(fx);

	/* After a restart the status is back, and a manifest's own status still wins. */
	th = start(fx);
	doc = axn_testhost_store_doc(th, "ConfigMap", "default", "a");
	assert_true(json_equal(json_object_get(doc, "status"), st));
	doc = axn_testhost_store_doc(th, "Node", NULL, "n1");
	assert_true(json_is_true(json_object_get(json_object_get(doc, "status"), "own")));

	/* The object is removed from the manifests: its status goes with it. */
	write_file(fx, "a.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n");
	settle(fx);
	assert_int_equal(stat(path, &sb), -1);
	json_decref(st);
	restart_free(fx);
}

static void test_missing_directory(void **state)
{
	struct fx *fx = *state;
	struct axn_testhost *th;
	const char *reason = NULL;

	assert_int_equal(rmdir(fx->state), 0);
	th = start(fx);
	assert_int_equal(axn_testhost_state(th, &reason), AXN_STATE_DEGRADED);
	assert_non_null(strstr(reason, "cannot watch"));
	assert_int_equal(axn_testhost_store_count(th, NULL), 0);

	assert_int_equal(mkdir(fx->state, 0755), 0);
	write_file(fx, "a.yaml", cm("late", "1"));
	axn_testhost_advance(th, STATEDIR_RETRY_MS);
	assert_non_null(axn_testhost_store_doc(th, "ConfigMap", "default", "late"));
	assert_int_equal(axn_testhost_state(th, NULL), AXN_STATE_UP);
	restart_free(fx);
}

/* A ConfigMap volume: files are links into ..data, which Kubernetes swaps with a rename. */
static void test_configmap_volume(void **state)
{
	struct fx *fx = *state;
	struct axn_testhost *th;
	char p1[256], p2[256];

	snprintf(p1, sizeof(p1), "%s/..v1", fx->state);
	assert_int_equal(mkdir(p1, 0755), 0);
	write_file(fx, "..v1/a.yaml", cm("cm", "1"));
	snprintf(p1, sizeof(p1), "%s/..data", fx->state);
	assert_int_equal(symlink("..v1", p1), 0);
	snprintf(p1, sizeof(p1), "%s/a.yaml", fx->state);
	assert_int_equal(symlink("..data/a.yaml", p1), 0);
	th = start(fx);
	assert_string_equal(value_of(th, "cm"), "1");

	snprintf(p1, sizeof(p1), "%s/..v2", fx->state);
	assert_int_equal(mkdir(p1, 0755), 0);
	write_file(fx, "..v2/a.yaml", cm("cm", "2"));
	snprintf(p1, sizeof(p1), "%s/..data_tmp", fx->state);
	snprintf(p2, sizeof(p2), "%s/..data", fx->state);
	assert_int_equal(symlink("..v2", p1), 0);
	assert_int_equal(rename(p1, p2), 0);
	settle(fx);
	assert_string_equal(value_of(th, "cm"), "2");

	/* A new link is a new file. */
	snprintf(p1, sizeof(p1), "%s/b.yaml", fx->state);
	write_file(fx, "..v2/b.yaml", cm("cm-b", "1"));
	assert_int_equal(symlink("..data/b.yaml", p1), 0);
	settle(fx);
	assert_string_equal(value_of(th, "cm-b"), "1");
	restart_free(fx);
}

static void test_defaults(void **state)
{
	struct axn_testhost *th = axn_testhost_new(&axn_module_statedir_desc, NULL);
	const struct statedir_conf *c = axn_testhost_conf(th);

	assert_string_equal(c->path, "/etc/axoneme/state");
	assert_string_equal(c->status_dir, "");
	assert_int_equal(axn_testhost_free(th), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test_setup_teardown(test_initial_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_document_reported, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_one_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_broken_edit_keeps_objects, setup, teardown),
		cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_source, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_persisted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_configmap_volume, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
