// SPDX-License-Identifier: Apache-2.0
/* test_testhost.c - the fake host behaves as axoneme/testhost.h promises. */
#ifndef AXN_MODULE_STATIC
#define AXN_MODULE_STATIC /* the fake module below is linked in, not loaded */
#endif
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <axoneme/testhost.h>

/* ---- a small module that uses every service ------------------------------ */

struct fake_conf {
	int64_t interval;
	const char *greeting;
	int loud;
	const char *const *kinds;
};

struct fake {
	struct axn_mod *self;
	const struct fake_conf *conf;
	struct axn_handle *tick, *io, *sub, *api, *metric;
	int ticks, io_calls, deferred;
	int fd;           /* set by the test before start: watched for reading */
	bool leak_timer;  /* set by the test: stop() forgets the timer */
	json_t *seen;     /* ["ADDED a", "SYNCED", ...] */
	json_t *statuses; /* what write_status got */
	int inits;
};

static struct fake *fake_of(struct axn_mod *self)
{
	return self->state;
}

static void fake_tick(struct axn_mod *self, void *arg)
{
	struct fake *f = arg;

	f->ticks++;
	self->host->metric_add(f->metric, 1);
}

static void fake_io(struct axn_mod *self, int fd, uint32_t events, void *arg)
{
	char buf[16];

	fake_of(self)->io_calls++;
	if (read(fd, buf, sizeof(buf)) < 0)
		axn_err(self, "read failed");
}

static void fake_event(struct axn_mod *self, uint32_t event, struct axn_obj *obj, void *arg)
{
	static const char *const names[] = {"", "ADDED", "MODIFIED", "DELETED", "SYNCED"};
	struct fake *f = arg;

	if (event == AXN_EV_SYNCED)
		json_array_append_new(f->seen, json_string("SYNCED"));
	else
		json_array_append_new(f->seen, json_sprintf("%s %s", names[event],
							    axn_obj_name(self, obj)));
}

static int fake_hello(struct axn_mod *self, const json_t *req, json_t **ret_resp, char **ret_err,
		      void *arg)
{
	struct fake *f = arg;

	if (json_object_get(req, "fail")) {
		*ret_err = strdup("asked to fail");
		return -EINVAL;
	}
	*ret_resp = json_pack("{s:s}", "greeting", f->conf->greeting);
	return 0;
}

static int fake_write_status(struct axn_mod *self, const struct axn_obj *obj, const json_t *status,
			     void *arg)
{
	struct fake *f = arg;

	return json_object_set_new(f->statuses, axn_obj_name(self, obj), json_deep_copy(status));
}

static const struct axn_source_ops fake_ops = {
	.size = sizeof(struct axn_source_ops),
	.write_status = fake_write_status,
};

static int fake_init(struct axn_mod *self, const void *conf)
{
	struct fake *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->self = self;
	f->conf = conf;
	f->fd = -1;
	f->seen = json_array();
	f->statuses = json_object();
	self->state = f;
	return 0;
}

static int fake_start(struct axn_mod *self)
{
	const struct axn_host *h = self->host;
	struct fake *f = self->state;
	int r;

	f->inits++;
	if ((r = h->timer_add(self, (uint64_t)f->conf->interval, 1, fake_tick, f, &f->tick)) < 0 ||
	    (r = h->store_watch(self, "Service", fake_event, f, &f->sub)) < 0 ||
	    (r = h->api_register(self, "hello", fake_hello, f, &f->api)) < 0 ||
	    (r = h->metric_new(self, "ticks", AXN_METRIC_COUNTER, "timer ticks", &f->metric)) < 0 ||
	    (r = h->source_register(self, "fake", &fake_ops, f)) < 0)
		return r;
	if (f->fd >= 0 && (r = h->io_add(self, f->fd, AXN_IO_READ, fake_io, f, &f->io)) < 0)
		return r;
	axn_info(self, "started with greeting %s", f->conf->greeting);
	h->set_state(self, AXN_STATE_UP, NULL);
	return 0;
}

static int fake_stop(struct axn_mod *self)
{
	const struct axn_host *h = self->host;
	struct fake *f = self->state;

	if (!f->leak_timer)
		h->handle_free(self, f->tick);
	h->handle_free(self, f->io);
	h->handle_free(self, f->sub);
	h->handle_free(self, f->api);
	h->handle_free(self, f->metric);
	f->tick = f->io = f->sub = f->api = f->metric = NULL;
	return 0;
}

static void fake_fini(struct axn_mod *self)
{
	struct fake *f = self->state;

	json_decref(f->seen);
	json_decref(f->statuses);
	free(f);
	self->state = NULL;
}

static const struct axn_option fake_options[] = {
	{"interval", AXN_OPT_INT, 0, offsetof(struct fake_conf, interval), "1000", 1, 60000, "ms"},
	{"greeting", AXN_OPT_STRING, 0, offsetof(struct fake_conf, greeting), "hello", 0, 0, "hi"},
	{"loud", AXN_OPT_BOOL, 0, offsetof(struct fake_conf, loud), "false", 0, 0, "shout"},
	{"kinds", AXN_OPT_STRLIST, 0, offsetof(struct fake_conf, kinds), "a,b", 0, 0, "kinds"},
	AXN_OPTIONS_END,
};

AXN_MODULE_DEFINE(fake, .version = "1", .options = fake_options,
		  .conf_size = sizeof(struct fake_conf), .init = fake_init, .start = fake_start,
		  .stop = fake_stop, .fini = fake_fini);

static struct axn_testhost *up(const char *const *conf)
{
	struct axn_testhost *th = axn_testhost_new(&axn_module_fake_desc, conf);

	assert_non_null(th);
	assert_int_equal(axn_testhost_init(th), 0);
	assert_int_equal(axn_testhost_start(th), 0);
	return th;
}

static json_t *svc(const char *name, const char *ip)
{
	return json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s}}", "apiVersion", "v1", "kind", "Service",
			 "metadata", "namespace", "default", "name", name, "spec", "clusterIP",
			 ip);
}

/* ---- tests ----------------------------------------------------------------- */

static void test_conf(void **unused)
{
	struct axn_testhost *th;
	const struct fake_conf *c;

	th = axn_testhost_new(&axn_module_fake_desc, NULL);
	assert_non_null(th);
	c = axn_testhost_conf(th);
	assert_int_equal(c->interval, 1000);
	assert_string_equal(c->greeting, "hello");
	assert_int_equal(c->loud, 0);
	assert_string_equal(c->kinds[0], "a");
	assert_string_equal(c->kinds[1], "b");
	assert_null(c->kinds[2]);
	assert_int_equal(axn_testhost_free(th), 0);

	th = axn_testhost_new(&axn_module_fake_desc,
			      (const char *[]){"greeting", "hi", "loud", "true", "interval", "50",
					       "kinds", "x", NULL});
	assert_non_null(th);
	c = axn_testhost_conf(th);
	assert_int_equal(c->interval, 50);
	assert_string_equal(c->greeting, "hi");
	assert_int_equal(c->loud, 1);
	assert_string_equal(c->kinds[0], "x");
	assert_null(c->kinds[1]);
	assert_int_equal(axn_testhost_free(th), 0);

	/* Unknown key, out of range, not a boolean. */
	assert_null(axn_testhost_new(&axn_module_fake_desc, (const char *[]){"nope", "1", NULL}));
	assert_null(axn_testhost_new(&axn_module_fake_desc,
				     (const char *[]){"interval", "0", NULL}));
	assert_null(axn_testhost_new(&axn_module_fake_desc,
				     (const char *[]){"loud", "maybe", NULL}));
}

static void test_timers_logs_metrics_api(void **unused)
{
	struct axn_testhost *th = up((const char *[]){"interval", "100", NULL});
	struct fake *f = axn_testhost_mod(th)->state;
	json_t *resp = NULL, *args;
	char *err = NULL;
	double v;

	assert_non_null(axn_testhost_log_find(th, "info: started with greeting hello"));
	assert_int_equal(axn_testhost_log_count(th, "greeting"), 1);
	assert_int_equal(axn_testhost_state(th, NULL), AXN_STATE_UP);

	assert_int_equal(axn_testhost_timer_count(th), 1);
	assert_int_equal(axn_testhost_advance(th, 99), 0);
	assert_int_equal(axn_testhost_advance(th, 1), 1);
	assert_int_equal(axn_testhost_advance(th, 350), 3);
	assert_int_equal(axn_testhost_now_ms(th), 450);
	assert_int_equal(f->ticks, 4);
	assert_int_equal(axn_testhost_fire_timers(th), 1);
	assert_int_equal(f->ticks, 5);
	assert_int_equal(axn_testhost_metric(th, "ticks", &v), 0);
	assert_true(v == 5.0);
	assert_int_equal(axn_testhost_metric(th, "nope", &v), -ENOENT);

	assert_int_equal(axn_testhost_api_call(th, "fake/hello", NULL, &resp, &err), 0);
	assert_string_equal(json_string_value(json_object_get(resp, "greeting")), "hello");
	json_decref(resp);
	args = json_pack("{s:b}", "fail", 1);
	assert_int_equal(axn_testhost_api_call(th, "hello", args, &resp, &err), -EINVAL);
	json_decref(args);
	assert_string_equal(err, "asked to fail");
	free(err);
	assert_int_equal(axn_testhost_api_call(th, "fake/none", NULL, NULL, NULL), -ENOENT);
	assert_int_equal(axn_testhost_free(th), 0);
}

static void test_store_delivery(void **unused)
{
	struct axn_testhost *th = axn_testhost_new(&axn_module_fake_desc, NULL);
	struct fake *f;
	struct axn_obj *obj;
	struct axn_mod *self;
	json_t *st;
	const char *expect[] = {"ADDED a",    "ADDED b",   "SYNCED",
				"MODIFIED a", "DELETED b", "ADDED c"};

	assert_int_equal(axn_testhost_inject(th, AXN_EV_ADDED, svc("a", "10.0.0.1")), 0);
	assert_int_equal(axn_testhost_inject(th, AXN_EV_ADDED, svc("b", "10.0.0.2")), 0);
	assert_int_equal(axn_testhost_init(th), 0);
	assert_int_equal(axn_testhost_start(th), 0);
	f = axn_testhost_mod(th)->state;
	/* Nothing is delivered inside store_watch(). */
	assert_int_equal(json_array_size(f->seen), 0);
	assert_int_equal(axn_testhost_run_pending(th), 2);
	/* Two sources (the test's, the module's): SYNCED waits for both. */
	assert_int_equal(axn_testhost_inject(th, AXN_EV_SYNCED, NULL), 0);
	assert_int_equal(axn_testhost_run_pending(th), 0);
	assert_int_equal(axn_testhost_mod(th)->host->source_synced(axn_testhost_mod(th)), 0);
	assert_int_equal(axn_testhost_inject(th, AXN_EV_MODIFIED, svc("a", "10.0.0.9")), 0);
	assert_int_equal(axn_testhost_inject(th, AXN_EV_DELETED, svc("b", "")), 0);
	assert_int_equal(axn_testhost_inject(th, AXN_EV_DELETED, svc("zz", "")), -ENOENT);
	assert_int_equal(axn_testhost_inject(th, AXN_EV_ADDED, svc("c", "10.0.0.3")), 0);
	assert_int_equal(axn_testhost_run_pending(th), 4);
	assert_int_equal(json_array_size(f->seen), 6);
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(json_string_value(json_array_get(f->seen, i)), expect[i]);

	assert_int_equal(axn_testhost_store_count(th, "Service"), 2);
	assert_int_equal(axn_testhost_store_count(th, "cilium.io/v2/Service"), 0);
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(axn_testhost_store_doc(th, "Service", "default",
									   "a"),
						    "spec"),
				    "clusterIP")),
			    "10.0.0.9");
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_ADDED, "Service", NULL), 3);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_MODIFIED, NULL, "a"), 1);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_DELETED, NULL, "b"), 1);
	axn_testhost_events_clear(th);
	assert_int_equal(axn_testhost_events_count(th, 0, NULL, NULL), 0);

	/* store_get hands out a reference; status for the test's objects is recorded. */
	assert_int_equal(axn_testhost_mod(th)->host->store_get(axn_testhost_mod(th), "Service",
								 "default", "a", &obj),
			 0);
	st = json_pack("{s:s}", "phase", "ok");
	self = axn_testhost_mod(th);
	assert_int_equal(self->host->store_set_status(self, obj, st), 0);
	json_decref(st);
	axn_testhost_mod(th)->host->obj_unref(obj);
	assert_string_equal(json_string_value(json_object_get(
				    axn_testhost_status(th, "Service", "default", "a"), "phase")),
			    "ok");
	assert_int_equal(axn_testhost_free(th), 0);
}

static void test_module_source(void **unused)
{
	struct axn_testhost *th = up(NULL);
	struct axn_mod *self = axn_testhost_mod(th);
	const struct axn_host *h = self->host;
	struct fake *f = self->state;
	json_t *st = json_pack("{s:i}", "replicas", 3);

	assert_int_equal(h->source_put(self, svc("m", "10.1.0.1")), 0);
	assert_int_equal(h->source_put(self, svc("m", "10.1.0.1")), 0);
	assert_int_equal(h->source_put(self, svc("m", "10.1.0.2")), 0);
	/* An equal document is journaled as UNCHANGED and not delivered. */
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_ADDED, "Service", "m"), 1);
	assert_int_equal(axn_testhost_events_count(th, AXN_EV_MODIFIED, "Service", "m"), 1);
	assert_int_equal(axn_testhost_events_count(th, 0, "Service", "m"), 3);
	/* ADDED and MODIFIED; no SYNCED: the module's source never said it synced. */
	assert_int_equal(axn_testhost_run_pending(th), 2);
	/* One source per object. */
	assert_int_equal(axn_testhost_inject(th, AXN_EV_ADDED, svc("m", "10.9.9.9")), -EEXIST);
	assert_int_equal(axn_testhost_inject(th, AXN_EV_ADDED, svc("t", "10.9.9.9")), 0);
	assert_int_equal(h->source_delete(self, "Service", "default", "t"), -EPERM);
	assert_int_equal(h->source_put(self, svc("t", "10.1.0.1")), -EEXIST);
	assert_int_equal(h->source_put(self, json_pack("{s:s}", "kind", "Service")), -EINVAL);
	assert_int_equal(axn_testhost_set_status(th, "Service", "default", "m", st), 0);
	assert_true(json_equal(json_object_get(f->statuses, "m"), st));
	json_decref(st);
	assert_int_equal(h->source_delete(self, "Service", "default", "m"), 0);
	assert_int_equal(h->source_delete(self, "Service", "default", "m"), -ENOENT);

	assert_int_equal(h->source_error(self, "a.yaml:3:1", "bad"), 0);
	assert_string_equal(
		json_string_value(json_object_get(axn_testhost_source_errors(th), "a.yaml:3:1")),
		"bad");
	assert_int_equal(h->source_error(self, "a.yaml:3:1", NULL), 0);
	assert_int_equal(json_object_size(axn_testhost_source_errors(th)), 0);
	assert_int_equal(h->source_register(self, "again", NULL, NULL), -EEXIST);
	assert_int_equal(axn_testhost_free(th), 0);
}

static int sel(struct axn_testhost *th, const char *selector, const char *labels)
{
	json_t *s = json_loads(selector, 0, NULL), *l = json_loads(labels, 0, NULL);
	struct axn_mod *self = axn_testhost_mod(th);
	int r = self->host->selector_match(self, s, l);

	json_decref(s);
	json_decref(l);
	return r;
}

static void test_selector(void **unused)
{
	struct axn_testhost *th = axn_testhost_new(&axn_module_fake_desc, NULL);
	const char *labels = "{\"app\": \"web\", \"tier\": \"front\"}";
	struct axn_mod *self = axn_testhost_mod(th);

	assert_int_equal(self->host->selector_match(self, NULL, NULL), 1);
	assert_int_equal(sel(th, "{}", labels), 1);
	assert_int_equal(sel(th, "{\"matchLabels\": {\"app\": \"web\"}}", labels), 1);
	assert_int_equal(sel(th, "{\"matchLabels\": {\"app\": \"db\"}}", labels), 0);
	assert_int_equal(sel(th, "{\"matchLabels\": {\"app\": \"web\"}}", "{}"), 0);
	assert_int_equal(sel(th, "{\"matchExpressions\": [{\"key\": \"app\", \"operator\": \"In\", "
				 "\"values\": [\"db\", \"web\"]}]}",
			     labels),
			 1);
	assert_int_equal(sel(th, "{\"matchExpressions\": [{\"key\": \"app\", \"operator\": "
				 "\"NotIn\", \"values\": [\"web\"]}]}",
			     labels),
			 0);
	assert_int_equal(sel(th, "{\"matchExpressions\": [{\"key\": \"x\", \"operator\": "
				 "\"NotIn\", \"values\": [\"web\"]}]}",
			     labels),
			 1);
	assert_int_equal(sel(th, "{\"matchExpressions\": [{\"key\": \"tier\", \"operator\": "
				 "\"Exists\"}, {\"key\": \"x\", \"operator\": \"DoesNotExist\"}]}",
			     labels),
			 1);
	assert_int_equal(sel(th, "{\"matchLabels\": {\"app\": \"web\"}, \"matchExpressions\": "
				 "[{\"key\": \"tier\", \"operator\": \"DoesNotExist\"}]}",
			     labels),
			 0);
	/* Bad selectors are bad whatever the labels. */
	assert_int_equal(sel(th, "{\"matchExpressions\": [{\"key\": \"app\", \"operator\": "
				 "\"Equals\", \"values\": [\"web\"]}]}",
			     labels),
			 -EINVAL);
	assert_int_equal(sel(th, "{\"matchExpressions\": [{\"key\": \"app\", \"operator\": \"In\", "
				 "\"values\": []}]}",
			     labels),
			 -EINVAL);
	assert_int_equal(sel(th, "{\"matchLabels\": {\"app\": \"db\"}, \"matchExpressions\": "
				 "[{\"key\": \"a\", \"operator\": \"Exists\", "
				 "\"values\": [\"x\"]}]}",
			     labels),
			 -EINVAL);
	assert_int_equal(sel(th, "{\"matchLabel\": {\"app\": \"web\"}}", labels), -EINVAL);
	assert_int_equal(axn_testhost_free(th), 0);
}

static void count_call(struct axn_mod *self, void *arg)
{
	fake_of(self)->deferred++;
}

static void *poster(void *arg)
{
	struct axn_mod *self = arg;

	for (int i = 0; i < 100; i++)
		self->host->post(self, count_call, NULL);
	return NULL;
}

static void test_defer_post_io(void **unused)
{
	struct axn_testhost *th = axn_testhost_new(&axn_module_fake_desc, NULL);
	struct axn_mod *self = axn_testhost_mod(th);
	struct fake *f;
	pthread_t t;
	int p[2];

	assert_int_equal(pipe(p), 0);
	assert_int_equal(axn_testhost_init(th), 0);
	f = self->state;
	f->fd = p[0];
	assert_int_equal(axn_testhost_start(th), 0);

	assert_int_equal(self->host->defer(self, count_call, NULL), 0);
	assert_int_equal(f->deferred, 0);
	assert_int_equal(pthread_create(&t, NULL, poster, self), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(axn_testhost_run_pending(th), 101);
	assert_int_equal(f->deferred, 101);

	assert_int_equal(write(p[1], "x", 1), 1);
	assert_int_equal(axn_testhost_io_fire(th, p[0], AXN_IO_READ), 1);
	assert_int_equal(axn_testhost_io_fire(th, p[0], AXN_IO_WRITE), -ENOENT);
	assert_int_equal(f->io_calls, 1);
	assert_int_equal(axn_testhost_free(th), 0);
	close(p[0]);
	close(p[1]);
}

static void test_maps_hooks_info(void **unused)
{
	struct axn_testhost *th = axn_testhost_new(&axn_module_fake_desc, NULL);
	struct axn_mod *self = axn_testhost_mod(th);
	struct axn_map_spec spec = {.size = sizeof(spec), .key_size = 4, .value_size = 4};
	struct axn_hook_spec hs = {.size = sizeof(hs), .kind = AXN_HOOK_XDP, .ifname = "lo"};
	struct axn_handle *h = NULL;
	int fd = -1;

	assert_int_equal(self->host->map_open(self, "m", &spec, &fd), -EOPNOTSUPP);
	assert_int_equal(fd, -1);
	assert_int_equal(axn_testhost_set_map(th, "m", 42), 0);
	assert_int_equal(self->host->map_open(self, "m", &spec, &fd), 0);
	assert_int_equal(fd, 42);
	assert_int_equal(self->host->hook_attach(self, &hs, 3, &h), -EOPNOTSUPP);
	assert_null(h);
	assert_string_equal(self->host->agent_info(self, "node_name"), "testnode");
	assert_null(self->host->agent_info(self, "rundir"));
	assert_int_equal(axn_testhost_set_info(th, "rundir", "/tmp/x"), 0);
	assert_string_equal(self->host->agent_info(self, "rundir"), "/tmp/x");
	assert_int_equal(axn_testhost_free(th), 0);
}

static void test_leaks_and_restart(void **unused)
{
	struct axn_testhost *th = up(NULL);
	struct axn_mod *self = axn_testhost_mod(th);
	struct fake *f = self->state;
	struct axn_obj *obj;

	/* Reconfigure without a hook restarts the module with the new conf. */
	assert_int_equal(axn_testhost_reconfigure(th, (const char *[]){"greeting", "yo", NULL}), 0);
	f = self->state;
	assert_string_equal(f->conf->greeting, "yo");
	assert_int_equal(axn_testhost_log_count(th, "started with greeting"), 2);

	/* A timer left behind at stop and a reference never released are leaks. */
	f->leak_timer = true;
	assert_int_equal(axn_testhost_inject(th, AXN_EV_ADDED, svc("a", "10.0.0.1")), 0);
	assert_int_equal(self->host->store_get(self, "Service", "default", "a", &obj), 0);
	assert_int_equal(axn_testhost_free(th), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conf),
		cmocka_unit_test(test_timers_logs_metrics_api),
		cmocka_unit_test(test_store_delivery),
		cmocka_unit_test(test_module_source),
		cmocka_unit_test(test_selector),
		cmocka_unit_test(test_defer_post_io),
		cmocka_unit_test(test_maps_hooks_info),
		cmocka_unit_test(test_leaks_and_restart),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
