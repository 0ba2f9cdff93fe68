/* SPDX-License-Identifier: Apache-2.0 */
/* Test harness: an agent with a conf written to a temp file and captured logs. */
#ifndef AXN_TEST_HARNESS_H
#define AXN_TEST_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "core.h"

struct logcap {
	char *lines[512];
	size_t n;
};

static __attribute__((unused)) struct logcap LOGS;

static __attribute__((unused)) void cap_line(const char *line, void *arg)
{
	if (LOGS.n < sizeof(LOGS.lines) / sizeof(LOGS.lines[0]))
		LOGS.lines[LOGS.n++] = strdup(line);
}

static __attribute__((unused)) void logs_reset(void)
{
	for (size_t i = 0; i < LOGS.n; i++)
		free(LOGS.lines[i]);
	LOGS.n = 0;
	log_set_sink(cap_line, NULL);
	log_set_level(AXN_LOG_DEBUG);
}

/* The first captured line containing every one of the given substrings (NULL-terminated). */
static __attribute__((unused)) const char *logs_find(const char *first, ...)
{
	for (size_t i = 0; i < LOGS.n; i++) {
		const char *s = first;
		int ok = 1;
		va_list ap;

		va_start(ap, first);
		for (; s && ok; s = va_arg(ap, const char *))
			ok = strstr(LOGS.lines[i], s) != NULL;
		va_end(ap);
		if (ok)
			return LOGS.lines[i];
	}
	return NULL;
}

static __attribute__((unused)) void logs_dump(void)
{
	for (size_t i = 0; i < LOGS.n; i++)
		fprintf(stderr, "  log: %s\n", LOGS.lines[i]);
}

/* Write `text` to a fresh temp file; returns its path (static buffer per call site). */
static __attribute__((unused)) char *write_conf(const char *text)
{
	char *path = strdup("/tmp/axn-unit-conf-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

struct harness {
	struct agent *a;
	struct parsed_conf *pc;
	char *conf_path;
	char *err;
	int load_r;
};

/* Parse `conf` (with moduledir pointing at the fixtures) and load its modules. */
static __attribute__((unused)) struct harness *harness_new(const char *conf)
{
	struct harness *h = calloc(1, sizeof(*h));
	char *full;
	int r;

	assert_non_null(h);
	assert_true(asprintf(&full, "agent: { moduledir = \"%s\"; bpffs = \"/tmp/axn-unit-nobpf\"; rundir = \"/tmp/axn-unit-run\"; node_name = \"unit\"; };\n%s",
			     FIXTURE_DIR, conf) > 0);
	h->conf_path = write_conf(full);
	free(full);
	h->a = agent_new();
	assert_non_null(h->a);
	h->a->conf_path = h->conf_path;
	h->a->base = event_base_new();
	assert_non_null(h->a->base);
	assert_int_equal(store_init(h->a), 0);
	assert_int_equal(metrics_init(h->a), 0);
	r = conf_parse(h->conf_path, &h->pc, &h->err);
	if (r < 0)
		fprintf(stderr, "conf: %s\n", h->err);
	assert_int_equal(r, 0);
	h->a->conf = h->pc->agent;
	h->load_r = agent_load_modules(h->a, h->pc, &h->err);
	return h;
}

static __attribute__((unused)) void harness_run(struct harness *h)
{
	/* Drain deferred work and store deliveries. */
	for (int i = 0; i < 10; i++)
		event_base_loop(h->a->base, EVLOOP_NONBLOCK);
}

static __attribute__((unused)) void harness_free(struct harness *h)
{
	struct module *m;

	TAILQ_FOREACH(m, &h->a->modules, link)
		handles_reclaim(m, false);
	handles_reclaim(h->a->core_mod, false);
	metrics_fini(h->a);
	store_fini(h->a);
	event_base_free(h->a->base);
	h->a->base = NULL;
	agent_free(h->a);
	conf_free(h->pc);
	unlink(h->conf_path);
	free(h->conf_path);
	free(h->err);
	free(h);
}

static __attribute__((unused)) struct module *harness_mod(struct harness *h, const char *name)
{
	struct module *m;

	TAILQ_FOREACH(m, &h->a->modules, link)
		if (!strcmp(m->name, name))
			return m;
	return NULL;
}

#endif
