// SPDX-License-Identifier: Apache-2.0
/* Resource store: replay -> synced -> deltas, ordering, status routing. */
#include "harness.h"

struct rec {
	char log[4096];
	size_t n;
};

static void record(struct axn_mod *self, uint32_t ev, struct axn_obj *obj, void *arg)
{
	struct rec *r = arg;
	const char *names[] = {"?", "ADDED", "MODIFIED", "DELETED", "SYNCED"};
	size_t len = strlen(r->log);

	snprintf(r->log + len, sizeof(r->log) - len, "%s%s:%s%s", len ? " " : "",
		 ((struct module *)self)->name, names[ev],
		 obj ? "" : "");
	if (obj) {
		len = strlen(r->log);
		snprintf(r->log + len, sizeof(r->log) - len, ":%s", axn_obj_name(self, obj));
	}
	r->n++;
}

static const struct axn_module_desc src_desc = {.name = "src"}, src2_desc = {.name = "src2"},
				    con_desc = {.name = "con"}, con2_desc = {.name = "con2"};

static struct module *fake(struct harness *h, const struct axn_module_desc *d, int order)
{
	struct module *m = module_new(h->a, d->name);

	m->desc = d;
	m->state = MOD_UP;
	m->order = order;
	TAILQ_INSERT_TAIL(&h->a->modules, m, link);
	return m;
}

static json_t *svc(const char *ns, const char *name, const char *ip)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s}}", "apiVersion", "v1", "kind",
			 "Service", "metadata", "name", name, "namespace", ns, "labels", "app",
			 name, "spec", "clusterIP", ip);
}

static void test_replay_synced_deltas(void **state)
{
	struct harness *h = harness_new("modules = ( );\n");
	struct module *src = fake(h, &src_desc, 0), *con = fake(h, &con_desc, 1);
	const struct axn_host *H = src->pub.host;
	struct rec r = {0};
	struct axn_obj *o;

	assert_int_equal(H->source_register(&src->pub, "src", NULL, NULL), 0);
	assert_int_equal(H->source_put(&src->pub, svc("default", "a", "10.96.0.1")), 0);
	assert_int_equal(H->source_put(&src->pub, svc("default", "b", "10.96.0.2")), 0);
	assert_int_equal(H->store_watch(&con->pub, "Service", record, &r, NULL), 0);
	/* Nothing is delivered inside store_watch itself. */
	assert_int_equal(r.n, 0);
	harness_run(h);
	assert_int_equal(r.n, 2);
	assert_non_null(strstr(r.log, "con:ADDED:a"));
	assert_non_null(strstr(r.log, "con:ADDED:b"));

	/* SYNCED only once start is done and every source has synced. */
	store_start_done();
	harness_run(h);
	assert_int_equal(r.n, 2);
	assert_int_equal(H->source_synced(&src->pub), 0);
	harness_run(h);
	assert_string_equal(r.log + strlen(r.log) - strlen("con:SYNCED"), "con:SYNCED");
	assert_true(h->a->ready);

	r.log[0] = '\0';
	r.n = 0;
	/* Same object again: no event. Changed: MODIFIED. Deleted: DELETED. New: ADDED. */
	assert_int_equal(H->source_put(&src->pub, svc("default", "a", "10.96.0.1")), 0);
	assert_int_equal(H->source_put(&src->pub, svc("default", "b", "10.96.0.22")), 0);
	assert_int_equal(H->source_delete(&src->pub, "Service", "default", "a"), 0);
	assert_int_equal(H->source_put(&src->pub, svc("kube-system", "c", "10.96.0.3")), 0);
	harness_run(h);
	assert_string_equal(r.log, "con:MODIFIED:b con:DELETED:a con:ADDED:c");

	/* store_get sees the current version. */
	assert_int_equal(H->store_get(&con->pub, "Service", "default", "b", &o), 0);
	assert_string_equal(json_string_value(json_object_get(axn_obj_spec(&con->pub, o), "clusterIP")),
			    "10.96.0.22");
	H->obj_unref(o);
	assert_int_equal(H->store_get(&con->pub, "Service", "default", "a", &o), -ENOENT);
	/* A late subscriber gets the replay and SYNCED at once. */
	{
		struct rec r2 = {0};

		assert_int_equal(H->store_watch(&con->pub, "Service", record, &r2, NULL), 0);
		harness_run(h);
		assert_int_equal(r2.n, 3);
		assert_non_null(strstr(r2.log, "con:SYNCED"));
	}
	harness_free(h);
}

static void test_invalid_and_foreign(void **state)
{
	struct harness *h = harness_new("modules = ( );\n");
	struct module *src = fake(h, &src_desc, 0), *src2 = fake(h, &src2_desc, 1),
		      *con = fake(h, &con_desc, 2);
	const struct axn_host *H = src->pub.host;

	/* Not a source. */
	assert_int_equal(H->source_put(&con->pub, svc("default", "x", "1.1.1.1")), -EPERM);
	assert_int_equal(H->source_register(&src->pub, "src", NULL, NULL), 0);
	assert_int_equal(H->source_register(&src2->pub, "src2", NULL, NULL), 0);
	/* Missing kind / name. */
	assert_int_equal(H->source_put(&src->pub, json_pack("{s:s}", "apiVersion", "v1")), -EINVAL);
	assert_int_equal(H->source_put(&src->pub, json_pack("{s:s, s:s, s:{}}", "apiVersion", "v1",
							    "kind", "Service", "metadata")),
			 -EINVAL);
	/* One source may not replace or delete another's object. */
	assert_int_equal(H->source_put(&src->pub, svc("default", "x", "1.1.1.1")), 0);
	assert_int_equal(H->source_put(&src2->pub, svc("default", "x", "2.2.2.2")), -EEXIST);
	assert_int_equal(H->source_delete(&src2->pub, "Service", "default", "x"), -EPERM);
	harness_free(h);
}

static void test_subscriber_order_and_group(void **state)
{
	struct harness *h = harness_new("modules = ( );\n");
	struct module *src = fake(h, &src_desc, 0), *con2 = fake(h, &con2_desc, 2),
		      *con = fake(h, &con_desc, 1);
	const struct axn_host *H = src->pub.host;
	struct rec r = {0}, g = {0};
	json_t *pool;

	assert_int_equal(H->source_register(&src->pub, "src", NULL, NULL), 0);
	/* con2 subscribes first but starts later: con must see each event first. */
	assert_int_equal(H->store_watch(&con2->pub, "Service", record, &r, NULL), 0);
	assert_int_equal(H->store_watch(&con->pub, "Service", record, &r, NULL), 0);
	assert_int_equal(H->source_put(&src->pub, svc("default", "a", "10.96.0.1")), 0);
	harness_run(h);
	assert_string_equal(r.log, "con:ADDED:a con2:ADDED:a");

	/* Group filter: "cilium.io/CiliumLoadBalancerIPPool" matches v2alpha1 and v2. */
	assert_int_equal(H->store_watch(&con->pub, "cilium.io/v2alpha1/CiliumLoadBalancerIPPool",
					record, &g, NULL),
			 0);
	pool = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "cilium.io/v2", "kind",
			 "CiliumLoadBalancerIPPool", "metadata", "name", "p1");
	assert_int_equal(H->source_put(&src->pub, pool), 0);
	pool = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "example.com/v1", "kind",
			 "CiliumLoadBalancerIPPool", "metadata", "name", "p2");
	assert_int_equal(H->source_put(&src->pub, pool), 0);
	harness_run(h);
	assert_string_equal(g.log, "con:ADDED:p1");
	harness_free(h);
}

struct status_seen {
	int calls;
	char *last;
};

static int write_status(struct axn_mod *self, const struct axn_obj *obj, const json_t *status,
			void *arg)
{
	struct status_seen *s = arg;

	s->calls++;
	free(s->last);
	s->last = json_dumps(status, JSON_COMPACT | JSON_SORT_KEYS);
	return 0;
}

static void test_status_routed_to_source(void **state)
{
	struct harness *h = harness_new("modules = ( );\n");
	struct module *src = fake(h, &src_desc, 0), *con = fake(h, &con_desc, 1);
	const struct axn_host *H = src->pub.host;
	const struct axn_source_ops ops = {.size = sizeof(ops), .write_status = write_status};
	struct status_seen seen = {0};
	struct axn_obj *o;
	json_t *st = json_pack("{s:{s:[{s:s}]}}", "loadBalancer", "ingress", "ip", "192.0.2.10");

	assert_int_equal(H->source_register(&src->pub, "src", &ops, &seen), 0);
	assert_int_equal(H->source_put(&src->pub, svc("default", "a", "10.96.0.1")), 0);
	assert_int_equal(H->store_get(&con->pub, "Service", "default", "a", &o), 0);
	assert_int_equal(H->store_set_status(&con->pub, o, st), 0);
	assert_int_equal(seen.calls, 1);
	assert_string_equal(seen.last, "{\"loadBalancer\":{\"ingress\":[{\"ip\":\"192.0.2.10\"}]}}");
	H->obj_unref(o);
	json_decref(st);
	free(seen.last);
	harness_free(h);
}

static void test_source_errors_and_api(void **state)
{
	struct harness *h = harness_new("modules = ( );\n");
	struct module *src = fake(h, &src_desc, 0);
	const struct axn_host *H = src->pub.host;
	json_t *resp = NULL, *args;
	char *err = NULL;

	assert_int_equal(H->source_register(&src->pub, "src", NULL, NULL), 0);
	assert_int_equal(H->source_put(&src->pub, svc("default", "b", "10.96.0.2")), 0);
	assert_int_equal(H->source_put(&src->pub, svc("default", "a", "10.96.0.1")), 0);
	assert_int_equal(H->source_error(&src->pub, "bad.yaml:3:1", "mapping values are not allowed"), 0);
	args = json_object();
	assert_int_equal(store_api_resources(args, &resp, &err), 0);
	json_decref(args);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(resp, "kinds"), 0), "count")), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(resp, "errors"), 0), "where")),
			    "bad.yaml:3:1");
	json_decref(resp);

	args = json_pack("{s:s}", "kind", "Service");
	assert_int_equal(store_api_resources(args, &resp, &err), 0);
	/* Sorted by namespace/name. */
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(json_object_get(resp, "items"), 0), "metadata"), "name")), "a");
	json_decref(resp);
	json_decref(args);

	args = json_pack("{s:s, s:s}", "kind", "Service", "name", "zz");
	assert_int_equal(store_api_resources(args, &resp, &err), -ENOENT);
	assert_non_null(strstr(err, "not found"));
	free(err);
	json_decref(args);

	/* Clearing the error removes it. */
	assert_int_equal(H->source_error(&src->pub, "bad.yaml:3:1", NULL), 0);
	args = json_object();
	assert_int_equal(store_api_resources(args, &resp, &err), 0);
	json_decref(args);
	assert_int_equal(json_array_size(json_object_get(resp, "errors")), 0);
	json_decref(resp);
	harness_free(h);
}

/* svc() with its keys in another order: an equal document, a different dump. */
static json_t *svc_reordered(const char *ns, const char *name, const char *ip)
{
	return json_pack("{s:{s:s}, s:{s:{s:s}, s:s, s:s}, s:s, s:s}", "spec", "clusterIP", ip,
			 "metadata", "labels", "app", name, "namespace", ns, "name", name, "kind",
			 "Service", "apiVersion", "v1");
}

static void hold(struct axn_mod *self, uint32_t ev, struct axn_obj *obj, void *arg)
{
	struct axn_obj **keep = arg;

	/* The borrowed object's tree is there for the whole callback. */
	if (obj) {
		assert_non_null(self->host->obj_json(obj));
		if (!*keep)
			*keep = self->host->obj_ref(obj);
	}
}

static void test_compaction(void **state)
{
	struct harness *h = harness_new("modules = ( );\n");
	struct module *src = fake(h, &src_desc, 0), *con = fake(h, &con_desc, 1);
	const struct axn_host *H = src->pub.host;
	json_t *a = svc("default", "a", "10.96.0.1"), *resp = NULL, *args;
	struct axn_obj *o = NULL, *kept = NULL;
	const json_t *t;
	struct rec r = {0};
	char *err = NULL;

	assert_int_equal(H->source_register(&src->pub, "src", NULL, NULL), 0);
	/* No subscriber: compacted all the same, once the loop runs. */
	assert_int_equal(H->source_put(&src->pub, json_incref(a)), 0);
	assert_int_equal(a->refcount, 2);
	harness_run(h);
	assert_int_equal(a->refcount, 1); /* the store let go of the tree */

	/* Parsed back on demand, equal; valid while the reference is held. */
	assert_int_equal(H->store_get(&con->pub, "Service", "default", "a", &o), 0);
	t = H->obj_json(o);
	assert_non_null(t);
	assert_ptr_not_equal(t, a);
	assert_true(json_equal(t, a));
	harness_run(h);
	assert_ptr_equal(H->obj_json(o), t); /* held: not compacted under us */
	o = H->obj_unref(o);

	/* An equal document (keys in another order) against the text: no event. */
	assert_int_equal(H->store_watch(&con->pub, "Service", record, &r, NULL), 0);
	harness_run(h);
	assert_int_equal(r.n, 1);
	r.log[0] = '\0';
	r.n = 0;
	assert_int_equal(H->source_put(&src->pub, svc_reordered("default", "a", "10.96.0.1")), 0);
	assert_int_equal(H->source_put(&src->pub, svc("default", "a", "10.96.0.1")), 0);
	harness_run(h);
	assert_int_equal(r.n, 0);
	/* A changed one: MODIFIED, and the new document reads back. */
	assert_int_equal(H->source_put(&src->pub, svc_reordered("default", "a", "10.96.0.9")), 0);
	harness_run(h);
	assert_string_equal(r.log, "con:MODIFIED:a");
	assert_int_equal(H->store_get(&con->pub, "Service", "default", "a", &o), 0);
	assert_string_equal(json_string_value(json_object_get(axn_obj_spec(&con->pub, o),
							      "clusterIP")),
			    "10.96.0.9");
	o = H->obj_unref(o);

	/* A module that keeps a reference keeps the tree. */
	assert_int_equal(H->store_watch(&con->pub, "Service", hold, &kept, NULL), 0);
	harness_run(h);
	assert_non_null(kept);
	t = H->obj_json(kept);
	harness_run(h);
	assert_ptr_equal(H->obj_json(kept), t);
	assert_string_equal(axn_obj_name(&con->pub, kept), "a");
	kept = H->obj_unref(kept);
	harness_run(h);

	/* The API lists compacted objects. */
	args = json_pack("{s:s, s:s}", "kind", "Service", "namespace", "default");
	assert_int_equal(store_api_resources(args, &resp, &err), 0);
	assert_int_equal(json_array_size(json_object_get(resp, "items")), 1);
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(json_object_get(resp, "items"), 0), "spec"), "clusterIP")),
			    "10.96.0.9");
	json_decref(resp);
	json_decref(args);
	args = json_pack("{s:s, s:s}", "kind", "Service", "namespace", "other");
	assert_int_equal(store_api_resources(args, &resp, &err), 0);
	assert_int_equal(json_array_size(json_object_get(resp, "items")), 0);
	json_decref(resp);
	json_decref(args);
	json_decref(a);
	harness_free(h);
}

/* A bulk (the initial load): compacted over several loop turns, all still correct. */
static void test_compaction_bulk(void **state)
{
	struct harness *h = harness_new("modules = ( );\n");
	struct module *src = fake(h, &src_desc, 0), *con = fake(h, &con_desc, 1);
	const struct axn_host *H = src->pub.host;
	enum { N = 2500 }; /* over SWEEP_BATCH: several loop turns */
	json_t *docs[N], *resp = NULL, *args;
	struct axn_obj *o = NULL;
	struct rec r = {0};
	char name[32], ip[32];
	char *err = NULL;

	assert_int_equal(H->source_register(&src->pub, "src", NULL, NULL), 0);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		snprintf(ip, sizeof(ip), "10.96.%d.%d", i / 250, i % 250 + 1);
		docs[i] = svc("default", name, ip);
		assert_int_equal(H->source_put(&src->pub, json_incref(docs[i])), 0);
	}
	harness_run(h);
	for (int i = 0; i < N; i++)
		assert_int_equal(docs[i]->refcount, 1);
	assert_int_equal(H->store_get(&con->pub, "Service", "default", "s417", &o), 0);
	assert_true(json_equal(H->obj_json(o), docs[417]));
	o = H->obj_unref(o);

	/* Replaced, deleted, re-put unchanged: as before. */
	assert_int_equal(H->store_watch(&con->pub, "Service", record, &r, NULL), 0);
	harness_run(h);
	assert_int_equal(r.n, N);
	r.log[0] = '\0';
	r.n = 0;
	assert_int_equal(H->source_put(&src->pub, json_incref(docs[5])), 0);
	assert_int_equal(H->source_put(&src->pub, svc("default", "s6", "10.1.1.1")), 0);
	assert_int_equal(H->source_delete(&src->pub, "Service", "default", "s7"), 0);
	harness_run(h);
	assert_string_equal(r.log, "con:MODIFIED:s6 con:DELETED:s7");
	args = json_pack("{s:s}", "kind", "Service");
	assert_int_equal(store_api_resources(args, &resp, &err), 0);
	assert_int_equal(json_array_size(json_object_get(resp, "items")), N - 1);
	json_decref(resp);
	json_decref(args);
	for (int i = 0; i < N; i++)
		json_decref(docs[i]);
	harness_free(h);
}

/* The first delivery to it frees the other subscription (a module dropping a watch). */
struct unwatch {
	struct axn_mod *owner; /* of other */
	struct axn_handle *other;
	size_t n;
};

static void unwatch_cb(struct axn_mod *self, uint32_t ev, struct axn_obj *obj, void *arg)
{
	struct unwatch *u = arg;

	(void)ev;
	(void)obj;
	if (!u->n++ && u->other)
		self->host->handle_free(u->owner, u->other);
	u->other = NULL;
}

static void test_unwatch_while_delivering(void **state)
{
	struct harness *h = harness_new("modules = ( );\n");
	struct module *src = fake(h, &src_desc, 0), *con = fake(h, &con_desc, 1),
		      *con2 = fake(h, &con2_desc, 2);
	const struct axn_host *H = src->pub.host;
	enum { N = 1500 }; /* over a block of queued deliveries */
	struct unwatch u = {.owner = &con2->pub};
	struct rec r = {0};
	char name[32], ip[32];

	assert_int_equal(H->source_register(&src->pub, "src", NULL, NULL), 0);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "s%d", i);
		snprintf(ip, sizeof(ip), "10.96.%d.%d", i / 250, i % 250 + 1);
		assert_int_equal(H->source_put(&src->pub, svc("default", name, ip)), 0);
	}
	harness_run(h);
	/* Both replays queued, con's first: its first delivery frees con2's watch. */
	assert_int_equal(H->store_watch(&con->pub, "Service", unwatch_cb, &u, NULL), 0);
	assert_int_equal(H->store_watch(&con2->pub, "Service", record, &r, &u.other), 0);
	harness_run(h);
	assert_int_equal(u.n, N);
	/* Queued in the same round, and not delivered once the watch was gone. */
	assert_int_equal(r.n, 0);
	/* The store goes on: a new object reaches the remaining watch. */
	assert_int_equal(H->source_put(&src->pub, svc("default", "late", "10.97.0.1")), 0);
	harness_run(h);
	assert_int_equal(u.n, N + 1);
	assert_int_equal(r.n, 0);
	harness_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replay_synced_deltas),
		cmocka_unit_test(test_invalid_and_foreign),
		cmocka_unit_test(test_subscriber_order_and_group),
		cmocka_unit_test(test_status_routed_to_source),
		cmocka_unit_test(test_source_errors_and_api),
		cmocka_unit_test(test_compaction),
		cmocka_unit_test(test_compaction_bulk),
		cmocka_unit_test(test_unwatch_while_delivering),
	};

	logs_reset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
