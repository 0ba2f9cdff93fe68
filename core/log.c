// SPDX-License-Identifier: Apache-2.0
/*
 * Levelled logfmt lines on stderr, one per call, each naming the module:
 *   ts=2026-11-23T13:00:00.123Z level=info module=core msg="ready" ready_ms=8
 * Modules never write to stdout/stderr themselves; the host's log() lands here.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

#include "core.h"

static int log_level = AXN_LOG_INFO;
static void (*log_sink)(const char *line, void *arg);
static void *log_sink_arg;

/* Tests capture log lines instead of reading stderr. */
void log_set_sink(void (*sink)(const char *line, void *arg), void *arg)
{
	log_sink = sink;
	log_sink_arg = arg;
}

void log_set_level(int level)
{
	log_level = level;
}

int log_level_parse(const char *s)
{
	static const struct {
		const char *name;
		int level;
	} names[] = {
		{"error", AXN_LOG_ERR}, {"warn", AXN_LOG_WARN}, {"warning", AXN_LOG_WARN},
		{"info", AXN_LOG_INFO}, {"debug", AXN_LOG_DEBUG},
	};

	for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcasecmp(s, names[i].name))
			return names[i].level;
	return -EINVAL;
}

static const char *level_name(int level)
{
	switch (level) {
	case AXN_LOG_ERR:
		return "error";
	case AXN_LOG_WARN:
		return "warn";
	case AXN_LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

/*
 * The message is quoted; a message may carry trailing logfmt pairs after a
 * tab ("ready\tready_ms=8"), which are printed unquoted after msg.
 */
void log_vmsg(const char *module, int level, const char *fmt, va_list ap)
{
	char msg[2048], line[4096], ts[32];
	struct timeval tv;
	struct tm tm;
	size_t n = 0;
	char *extra;

	if (level > log_level)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	extra = strchr(msg, '\t');
	if (extra)
		*extra++ = '\0';

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	n = (size_t)snprintf(line, sizeof(line), "ts=%s.%03ldZ level=%s module=%s msg=\"", ts,
			     (long)tv.tv_usec / 1000, level_name(level), module ? module : "core");
	for (const char *p = msg; *p && n < sizeof(line) - 8; p++) {
		if (*p == '"' || *p == '\\')
			line[n++] = '\\';
		line[n++] = *p == '\n' ? ' ' : *p;
	}
	line[n++] = '"';
	if (extra && n < sizeof(line) - 2)
		n += (size_t)snprintf(line + n, sizeof(line) - n - 1, " %s", extra);
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (log_sink) {
		line[n - 1] = '\0';
		log_sink(line, log_sink_arg);
		return;
	}
	(void)!fwrite(line, 1, n, stderr);
}

void log_msg(const char *module, int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(module, level, fmt, ap);
	va_end(ap);
}
