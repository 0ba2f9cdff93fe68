// SPDX-License-Identifier: Apache-2.0
/*
 * cli.c - the `axoneme` command line. It sends one request to axonemed's
 * local API (a JSON line on a unix socket, docs/api.md), reads
 * the answer until EOF and prints it as tables for people or, with -o json,
 * as the answer's "data" member pretty printed for scripts.
 *
 * Exit status: 0 success, 1 the agent is unreachable or the request failed,
 * 2 usage error. Messages go to stderr, prefixed "axoneme: ".
 */
#ifdef HAVE_CONFIG_H
#include "config.h" /* may define _GNU_SOURCE itself */
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "unknown"
#endif

#define DEFAULT_SOCKET "/run/axoneme/axonemed.sock"
#define IO_TIMEOUT_S 10
#define MAX_ANSWER (256u << 20)

enum { EXIT_FAIL = 1, EXIT_USAGE = 2 };

struct req;
typedef int (*render_fn)(const struct req *rq, json_t *data);

/* One parsed command line: what to ask and how to show the answer. */
struct req {
	char *path;
	json_t *args;
	render_fn render;
	const struct cmd *cmd;        /* a plain table command */
	const char *kind, *name, *ns; /* resources get */
};

static void __attribute__((format(printf, 1, 2))) error_msg(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("axoneme: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * A copy of s with control characters (C0, DEL and C1) replaced by '?', so
 * text from manifests or modules can neither break a row nor drive the
 * terminal. NULL on ENOMEM.
 */
static char *sanitize(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char *out = malloc(strlen(s) + 1), *o = out;

	if (!out)
		return NULL;
	while (*p) {
		if (*p < 0x20 || *p == 0x7f) {
			*o++ = '?';
			p++;
		} else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			*o++ = '?';
			p += 2;
		} else {
			*o++ = (char)*p++;
		}
	}
	*o = '\0';
	return out;
}

/* Display width of UTF-8 text, one column per code point. */
static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

/* --- tables -------------------------------------------------------------- */

/* Cells row by row, headers first; the first failure sticks in `err`. */
struct table {
	size_t ncols, n, cap;
	char **cells;
	int err;
};

static void table_init(struct table *t, size_t ncols)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
}

static void table_free(struct table *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

/* Append one cell, taking `s` (malloc'd; NULL means an allocation failed). */
static void table_take(struct table *t, char *s)
{
	char *clean;

	if (!t->err && !s)
		t->err = -ENOMEM;
	if (t->err) {
		free(s);
		return;
	}
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		char **cells = realloc(t->cells, cap * sizeof(*cells));

		if (!cells) {
			free(s);
			t->err = -ENOMEM;
			return;
		}
		t->cells = cells;
		t->cap = cap;
	}
	clean = sanitize(*s ? s : "-");
	free(s);
	if (!clean) {
		t->err = -ENOMEM;
		return;
	}
	t->cells[t->n++] = clean;
}

static void table_add(struct table *t, const char *s)
{
	table_take(t, strdup(s ? s : ""));
}

/* Aligned columns, three spaces apart, no trailing blanks. */
static int table_print(const struct table *t, FILE *f)
{
	size_t *w;

	if (t->err)
		return t->err;
	if (!t->ncols || t->n % t->ncols)
		return -EINVAL;
	w = calloc(t->ncols, sizeof(*w));
	if (!w)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++) {
		size_t x = text_width(t->cells[i]);

		if (x > w[i % t->ncols])
			w[i % t->ncols] = x;
	}
	for (size_t i = 0; i < t->n; i++) {
		size_t c = i % t->ncols;

		fputs(t->cells[i], f);
		if (c == t->ncols - 1)
			fputc('\n', f);
		else
			fprintf(f, "%*s", (int)(w[c] - text_width(t->cells[i]) + 3), "");
	}
	free(w);
	return 0;
}

/* --- JSON values as text ------------------------------------------------- */

static char *cell_str(const json_t *v);

static bool is_scalar(const json_t *v)
{
	return v && !json_is_object(v) && !json_is_array(v);
}

/* "a,b,c" for an array of scalars, "-" for an empty one. */
static char *join_scalars(const json_t *arr)
{
	char *buf = NULL;
	size_t len, i;
	json_t *e;
	bool failed = false;
	FILE *f;

	if (json_array_size(arr) == 0)
		return strdup("-");
	f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	json_array_foreach(arr, i, e) {
		char *s = cell_str(e);

		if (!s)
			failed = true;
		fprintf(f, "%s%s", i ? "," : "", s ? s : "");
		free(s);
	}
	if (fclose(f) != 0 || failed) {
		free(buf);
		return NULL;
	}
	return buf;
}

/*
 * A value as one cell: strings plainly, other scalars as JSON, arrays of
 * scalars joined by ",", anything else compact JSON; "-" for missing, null,
 * "" and []. malloc'd, NULL on ENOMEM.
 */
static char *cell_str(const json_t *v)
{
	if (!v || json_is_null(v))
		return strdup("-");
	if (json_is_string(v))
		return strdup(json_string_length(v) ? json_string_value(v) : "-");
	if (json_is_array(v)) {
		size_t i;
		json_t *e;

		json_array_foreach(v, i, e)
			if (!is_scalar(e))
				return json_dumps(v, JSON_COMPACT);
		return join_scalars(v);
	}
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* cell_str() made safe to print. */
static char *cell_text(const json_t *v)
{
	char *s = cell_str(v), *clean = s ? sanitize(s) : NULL;

	free(s);
	return clean;
}

static int print_json(const json_t *v, FILE *f)
{
	if (json_dumpf(v, f, JSON_INDENT(2) | JSON_ENCODE_ANY) < 0)
		return -EIO;
	fputc('\n', f);
	return 0;
}

/* "key: value" lines for the members of an object, except `skip`. */
static int print_kv(const json_t *obj, const char *skip)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v) {
		char *k, *val;

		if (skip && !strcmp(key, skip))
			continue;
		k = sanitize(key);
		val = cell_text(v);
		if (k && val)
			printf("%s: %s\n", k, val);
		free(k);
		free(val);
		if (!k || !val)
			return -ENOMEM;
	}
	return 0;
}

/* --- tables of "items" ---------------------------------------------------- */

/* A column: header, member of each item, and how to show it (NULL: cell_str). */
struct col {
	const char *header;
	const char *key;
	char *(*fmt)(const json_t *item, const char *key);
};

#define NCOLS(a) (sizeof(a) / sizeof((a)[0]))

static int print_items(FILE *f, const json_t *items, const struct col *cols, size_t ncols,
		       const char *none)
{
	struct table t;
	size_t i;
	json_t *item;
	int r;

	if (json_array_size(items) == 0) {
		fprintf(f, "%s\n", none);
		return 0;
	}
	table_init(&t, ncols);
	for (size_t c = 0; c < ncols; c++)
		table_add(&t, cols[c].header);
	json_array_foreach(items, i, item)
		for (size_t c = 0; c < ncols; c++)
			table_take(&t, cols[c].fmt ? cols[c].fmt(item, cols[c].key)
						   : cell_str(json_object_get(item, cols[c].key)));
	r = table_print(&t, f);
	table_free(&t);
	return r;
}

static char *fmt_yesno(const json_t *item, const char *key)
{
	const json_t *v = json_object_get(item, key);

	if (json_is_boolean(v))
		return strdup(json_is_true(v) ? "yes" : "no");
	return cell_str(v);
}

/* A number from a table of names (enum values), else the value as given. */
static char *enum_name(const json_t *v, const char *const *names, size_t n)
{
	if (json_is_integer(v) && json_integer_value(v) >= 0 &&
	    (size_t)json_integer_value(v) < n && names[json_integer_value(v)])
		return strdup(names[json_integer_value(v)]);
	return cell_str(v);
}

static char *fmt_map_type(const json_t *item, const char *key)
{
	/* enum bpf_map_type, as libbpf names them */
	static const char *const names[] = {
		"unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash",
		"percpu_array", "stack_trace", "cgroup_array", "lru_hash", "lru_percpu_hash",
		"lpm_trie", "array_of_maps", "hash_of_maps", "devmap", "sockmap", "cpumap",
		"xskmap", "sockhash", "cgroup_storage", "reuseport_sockarray",
		"percpu_cgroup_storage", "queue", "stack", "sk_storage", "devmap_hash",
		"struct_ops", "ringbuf", "inode_storage", "task_storage", "bloom_filter",
		"user_ringbuf", "cgrp_storage", "arena",
	};

	return enum_name(json_object_get(item, key), names, NCOLS(names));
}

static char *fmt_hook(const json_t *item, const char *key)
{
	/* AXN_HOOK_* */
	static const char *const names[] = { NULL, "tc-ingress", "tc-egress", "xdp", "cgroup" };

	return enum_name(json_object_get(item, key), names, NCOLS(names));
}

static char *fmt_band(const json_t *item, const char *key)
{
	/* AXN_BAND_*: 100, 200, 300, 400 */
	static const char *const names[] = { "l2", "service", "policy", "shaping" };
	const json_t *v = json_object_get(item, key);
	json_int_t band = json_integer_value(v);

	if (json_is_integer(v) && band % 100 == 0 && band >= 100 && band <= 400)
		return strdup(names[band / 100 - 1]);
	return cell_str(v);
}

/* Where a hook is: the interface, or the cgroup for cgroup hooks. */
static char *fmt_hook_where(const json_t *item, const char *key)
{
	const json_t *v = json_object_get(item, key);

	if (!json_is_string(v) || !json_string_length(v))
		v = json_object_get(item, "cgroup");
	return cell_str(v);
}

static char *fmt_meta(const json_t *item, const char *key)
{
	return cell_str(json_object_get(json_object_get(item, "metadata"), key));
}

/*
 * A resource's status on one line: its Ready condition (else the first
 * condition) as Type=Status, else its load-balancer ingress addresses, else
 * its phase, else "-".
 */
static char *fmt_res_status(const json_t *item, const char *key)
{
	const json_t *st = json_object_get(item, "status");
	const json_t *conds = json_object_get(st, "conditions");
	const json_t *ing = json_object_get(json_object_get(st, "loadBalancer"), "ingress");
	const json_t *cond = json_array_get(conds, 0), *e;
	char *s = NULL;
	size_t i;

	json_array_foreach(conds, i, e) {
		const char *type = json_string_value(json_object_get(e, "type"));

		if (type && !strcmp(type, "Ready")) {
			cond = e;
			break;
		}
	}
	if (json_is_object(cond)) {
		const char *type = json_string_value(json_object_get(cond, "type"));
		const char *status = json_string_value(json_object_get(cond, "status"));

		if (asprintf(&s, "%s=%s", type ? type : "?", status ? status : "?") < 0)
			return NULL;
		return s;
	}
	if (json_array_size(ing)) {
		json_t *addrs = json_array();

		if (!addrs)
			return NULL;
		json_array_foreach(ing, i, e) {
			json_t *a = json_object_get(e, "ip");

			json_array_append(addrs, a ? a : json_object_get(e, "hostname"));
		}
		s = join_scalars(addrs);
		json_decref(addrs);
		return s;
	}
	return cell_str(json_object_get(st, "phase"));
}

/* --- renderers: one per command, table output only ------------------------ */

static int print_errors(FILE *f, const json_t *errors)
{
	static const struct col cols[] = {
		{ "SOURCE", "source", NULL },
		{ "WHERE", "where", NULL },
		{ "MESSAGE", "message", NULL },
	};

	if (json_array_size(errors) == 0)
		return 0;
	fflush(stdout);
	fputs("\nErrors:\n", f);
	return print_items(f, errors, cols, NCOLS(cols), "");
}

static void fmt_duration(char *buf, size_t sz, const json_t *v)
{
	long long s = json_is_number(v) ? (long long)json_number_value(v) : -1;

	if (s < 0)
		snprintf(buf, sz, "-");
	else if (s < 60)
		snprintf(buf, sz, "%llds", s);
	else if (s < 3600)
		snprintf(buf, sz, "%lldm%llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, sz, "%lldh%lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, sz, "%lldd%lldh", s / 86400, s % 86400 / 3600);
}

static int render_status(const struct req *rq, json_t *data)
{
	static const struct col cols[] = {
		{ "MODULE", "name", NULL },
		{ "STATE", "state", NULL },
		{ "HEALTH", "health", NULL },
		{ "REASON", "reason", NULL },
	};
	const json_t *ready = json_object_get(data, "ready");
	const json_t *ready_ms = json_object_get(data, "ready_ms");
	char *node = cell_text(json_object_get(data, "node"));
	char *version = cell_text(json_object_get(data, "version"));
	char uptime[64];
	int r = -ENOMEM;

	if (!node || !version)
		goto out;
	fmt_duration(uptime, sizeof(uptime), json_object_get(data, "uptime_s"));
	printf("Node: %s\nVersion: %s\nUptime: %s\n", node, version, uptime);
	/* ready_ms may be an integer or a real; negative means "not yet". */
	if (json_is_true(ready) && json_is_number(ready_ms) && json_number_value(ready_ms) >= 0)
		printf("Ready: yes (ready in %.*f ms)\n", json_number_value(ready_ms) < 1 ? 1 : 0,
		       json_number_value(ready_ms));
	else
		printf("Ready: %s\n", json_is_true(ready) ? "yes" : "no");
	putchar('\n');
	r = print_items(stdout, json_object_get(data, "modules"), cols, NCOLS(cols), "No modules.");
out:
	free(node);
	free(version);
	return r;
}

static int render_map_dump(const struct req *rq, json_t *data)
{
	static const struct col cols[] = {
		{ "KEY", "key", NULL },
		{ "VALUE", "value", NULL },
	};
	const json_t *entries = json_object_get(data, "entries");
	size_t n = json_array_size(entries);
	int r;

	r = print_items(stdout, entries, cols, NCOLS(cols), "No entries.");
	if (r == 0 && n)
		printf("%zu %s\n", n, n == 1 ? "entry" : "entries");
	return r;
}

static int render_resources(const struct req *rq, json_t *data)
{
	static const struct col kind_cols[] = {
		{ "KIND", "kind", NULL },
		{ "COUNT", "count", NULL },
	};
	static const struct col obj_cols[] = {
		{ "NAMESPACE", "namespace", fmt_meta },
		{ "NAME", "name", fmt_meta },
		{ "APIVERSION", "apiVersion", NULL },
		{ "STATUS", NULL, fmt_res_status },
	};
	const json_t *items = json_object_get(data, "items"), *obj;
	const json_t *errors = json_object_get(data, "errors");
	char *none = NULL;
	size_t i;
	int r;

	if (!rq->kind) {
		r = print_items(stdout, json_object_get(data, "kinds"), kind_cols,
				NCOLS(kind_cols), "No resources.");
		return r < 0 ? r : print_errors(stdout, errors);
	}
	if (rq->name) {
		/* Whole objects; errors on stderr so stdout stays JSON. */
		json_array_foreach(items, i, obj)
			if ((r = print_json(obj, stdout)) < 0)
				return r;
		return print_errors(stderr, errors);
	}
	if (asprintf(&none, "No %s objects found%s%s.", rq->kind, rq->ns ? " in namespace " : "",
		     rq->ns ? rq->ns : "") < 0)
		return -ENOMEM;
	r = print_items(stdout, items, obj_cols, NCOLS(obj_cols), none);
	free(none);
	return r < 0 ? r : print_errors(stdout, errors);
}

/* A table with the union of the items' keys as columns, in order of first appearance. */
static int print_dynamic_items(const json_t *items)
{
	json_t *keys = json_object(), *item, *v;
	struct table t;
	const char *key;
	size_t i;
	int r;

	if (!keys)
		return -ENOMEM;
	json_array_foreach(items, i, item)
		json_object_foreach(item, key, v)
			if (json_object_set(keys, key, json_true()) < 0) {
				json_decref(keys);
				return -ENOMEM;
			}
	table_init(&t, json_object_size(keys));
	json_object_foreach(keys, key, v) {
		char *h = strdup(key);

		for (char *p = h; p && *p; p++)
			if (*p >= 'a' && *p <= 'z')
				*p = (char)(*p - 'a' + 'A');
		table_take(&t, h);
	}
	json_array_foreach(items, i, item)
		json_object_foreach(keys, key, v)
			table_take(&t, cell_str(json_object_get(item, key)));
	r = t.ncols ? table_print(&t, stdout) : 0;
	table_free(&t);
	json_decref(keys);
	return r;
}

/*
 * Module views and endpoints: {"items": [objects]} as a table (other
 * members after it as key: value), another object as key: value lines,
 * anything else as JSON.
 */
static int render_generic(const struct req *rq, json_t *data)
{
	const json_t *items = json_object_get(data, "items"), *item;
	bool table = json_is_array(items);
	size_t i;
	int r;

	json_array_foreach(items, i, item)
		if (!json_is_object(item))
			table = false;
	if (json_is_null(data))
		return 0;
	if (!table)
		return json_is_object(data) ? print_kv(data, NULL) : print_json(data, stdout);
	if (json_array_size(items) == 0)
		puts("No items.");
	else if ((r = print_dynamic_items(items)) < 0)
		return r;
	if (json_object_size(data) > 1) {
		putchar('\n');
		return print_kv(data, "items");
	}
	return 0;
}

static const struct col module_cols[] = {
	{ "NAME", "name", NULL },
	{ "VERSION", "version", NULL },
	{ "STATE", "state", NULL },
	{ "HEALTH", "health", NULL },
	{ "REQUIRED", "required", fmt_yesno },
	{ "PROVIDES", "provides", NULL },
	{ "REQUIRES", "requires", NULL },
};

static const struct col map_cols[] = {
	{ "NAME", "name", NULL },
	{ "OWNER", "owner", NULL },
	{ "TYPE", "type", fmt_map_type },
	{ "KEY", "key_size", NULL },
	{ "VALUE", "value_size", NULL },
	{ "MAX", "max_entries", NULL },
	{ "PATH", "path", NULL },
};

static const struct col hook_cols[] = {
	{ "HOOK", "hook", fmt_hook },
	{ "IFNAME", "ifname", fmt_hook_where },
	{ "BAND", "band", fmt_band },
	{ "PRIO", "prio", NULL },
	{ "MODULE", "module", NULL },
	{ "NAME", "name", NULL },
	{ "PROG", "prog_id", NULL },
};

/* Commands without arguments whose answer is {"items": [...]}. */
struct cmd {
	const char *word, *path;
	const struct col *cols; /* NULL: render_generic */
	size_t ncols;
	const char *none;
};

static const struct cmd plain_cmds[] = {
	{ "modules", "modules", module_cols, NCOLS(module_cols), "No modules." },
	{ "hooks", "hooks", hook_cols, NCOLS(hook_cols), "No hooks." },
	{ "endpoints", "endpoints", NULL, 0, NULL },
};

static const struct cmd map_list_cmd = { "map list", "maps", map_cols, NCOLS(map_cols), "No maps." };

static int render_plain(const struct req *rq, json_t *data)
{
	const struct cmd *c = rq->cmd;

	if (!c->cols)
		return render_generic(rq, data);
	return print_items(stdout, json_object_get(data, "items"), c->cols, c->ncols, c->none);
}

static int render_raw(const struct req *rq, json_t *data)
{
	return print_json(data, stdout);
}

/* --- talking to the agent ------------------------------------------------- */

static int connect_agent(const char *path, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* SO_SNDTIMEO also bounds connect() when the agent's backlog is full. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = errno == EAGAIN ? -ETIMEDOUT : -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

static int send_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Everything up to EOF, NUL-terminated. */
static int recv_all(int fd, char **ret_buf, size_t *ret_len)
{
	size_t len = 0, cap = 64 * 1024;
	char *buf = malloc(cap), *nbuf;
	ssize_t n;

	if (!buf)
		return -ENOMEM;
	for (;;) {
		if (cap - len < 2) {
			if (cap >= MAX_ANSWER) {
				free(buf);
				return -EMSGSIZE;
			}
			nbuf = realloc(buf, cap * 2);
			if (!nbuf) {
				free(buf);
				return -ENOMEM;
			}
			buf = nbuf;
			cap *= 2;
		}
		n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int r = errno == EAGAIN ? -ETIMEDOUT : -errno;

			free(buf);
			return r;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*ret_buf = buf;
	*ret_len = len;
	return 0;
}

static const char *connect_hint(int r)
{
	switch (-r) {
	case ENOENT:
	case ECONNREFUSED:
		return " (is axonemed running?)";
	case EACCES:
	case EPERM:
		return " (run as root or as a member of the socket's group)";
	default:
		return "";
	}
}

/*
 * Send `request` (one JSON line) for `path` and return the answer's data (a
 * new reference, JSON null when absent). Reports every failure on stderr.
 */
static int api_call(const char *sock, const char *path, const char *request, json_t **ret_data)
{
	json_t *resp = NULL, *ok, *data;
	json_error_t jerr;
	char *buf = NULL;
	size_t len = 0;
	int fd = -1, r;

	r = connect_agent(sock, &fd);
	if (r < 0) {
		error_msg("cannot connect to %s: %s%s", sock, strerror(-r), connect_hint(r));
		return r;
	}
	r = send_all(fd, request, strlen(request));
	if (r < 0) {
		error_msg("%s: cannot send the request: %s", path, strerror(-r));
		goto out;
	}
	r = recv_all(fd, &buf, &len);
	if (r == -ETIMEDOUT) {
		error_msg("%s: no answer from axonemed within %d s", path, IO_TIMEOUT_S);
		goto out;
	} else if (r < 0) {
		error_msg("%s: cannot read the answer: %s", path, strerror(-r));
		goto out;
	}
	if (len == 0) {
		error_msg("%s: axonemed closed the connection without answering", path);
		r = -ECONNRESET;
		goto out;
	}
	resp = json_loadb(buf, len, 0, &jerr);
	ok = json_object_get(resp, "ok");
	if (!json_is_boolean(ok)) {
		error_msg("%s: malformed answer from axonemed: %s", path,
			  resp ? "no boolean \"ok\" member" : jerr.text);
		r = -EBADMSG;
		goto out;
	}
	if (json_is_false(ok)) {
		const char *msg = json_string_value(json_object_get(resp, "error"));
		json_int_t en = json_integer_value(json_object_get(resp, "errno"));
		char *clean;

		if (!msg || !*msg)
			msg = en > 0 ? strerror((int)en) : "request failed";
		clean = sanitize(msg);
		error_msg("%s: %s", path, clean ? clean : msg);
		free(clean);
		r = en > 0 && en < 4096 ? -(int)en : -EIO;
		goto out;
	}
	data = json_object_get(resp, "data");
	*ret_data = data ? json_incref(data) : json_null();
	r = 0;
out:
	json_decref(resp);
	free(buf);
	close(fd);
	return r;
}

/* --- command line --------------------------------------------------------- */

static void usage(FILE *f)
{
	fputs("Usage: axoneme [-s SOCKET] [-o table|json] COMMAND [ARGS]\n"
	      "\n"
	      "Ask axonemed, the Axoneme node agent, over its local API socket.\n"
	      "\n"
	      "Commands:\n"
	      "  status                      agent, readiness and module health\n"
	      "  modules                     loaded modules and their dependencies\n"
	      "  map list                    BPF maps in the map registry\n"
	      "  map dump NAME               a map's entries, as hex\n"
	      "  resources                   resource kinds with counts, and input errors\n"
	      "  resources get KIND [NAME] [-n NAMESPACE]\n"
	      "                              objects of a kind; with NAME, whole objects\n"
	      "  hooks                       programs attached through the hook registry\n"
	      "  endpoints                   API paths that modules registered\n"
	      "  call PATH [JSON-ARGS]       raw request; prints the answer's data as JSON\n"
	      "  MODULE VIEW [KEY=VALUE ...] a module's view (path MODULE/VIEW); values that\n"
	      "                              are JSON numbers or booleans are sent as such\n"
	      "\n"
	      "Options:\n"
	      "  -s, --socket PATH     agent socket (default: $AXONEME_SOCKET, else\n"
	      "                        " DEFAULT_SOCKET ")\n"
	      "  -o, --output FORMAT   table (default) or json: the answer's data, pretty\n"
	      "  -n, --namespace NS    namespace for 'resources get'\n"
	      "  -h, --help            this help\n"
	      "      --version         the version\n"
	      "\n"
	      "Exit status: 0 ok, 1 agent unreachable or request failed, 2 usage error.\n",
	      f);
}

static int no_more_args(const char *what, int argc, char **argv, int used)
{
	if (argc <= used)
		return 0;
	error_msg("%s: unexpected argument '%s'", what, argv[used]);
	return -EINVAL;
}

/* A request value from the command line: JSON numbers and booleans as such, else a string. */
static json_t *arg_value(const char *s)
{
	json_error_t jerr;
	json_t *v = json_loads(s, JSON_DECODE_ANY, &jerr);

	if (json_is_number(v) || json_is_boolean(v))
		return v;
	json_decref(v);
	return json_string(s);
}

static int parse_module_view(int argc, char **argv, struct req *rq)
{
	if (argc < 2) {
		error_msg("unknown command '%s' (a module view is MODULE VIEW; see 'axoneme endpoints')",
			  argv[0]);
		return -EINVAL;
	}
	if (asprintf(&rq->path, "%s/%s", argv[0], argv[1]) < 0) {
		rq->path = NULL;
		return -ENOMEM;
	}
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		json_t *v;
		int r;

		/* Leading words without '=' extend the path: `axoneme bpf lb list` asks "bpf/lb/list". */
		if (!eq && json_object_size(rq->args) == 0) {
			char *longer;

			if (asprintf(&longer, "%s/%s", rq->path, argv[i]) < 0)
				return -ENOMEM;
			free(rq->path);
			rq->path = longer;
			continue;
		}
		if (!eq || eq == argv[i]) {
			error_msg("%s: expected KEY=VALUE, got '%s'", rq->path, argv[i]);
			return -EINVAL;
		}
		*eq = '\0';
		v = arg_value(eq + 1);
		r = v ? json_object_set_new(rq->args, argv[i], v) : -1;
		*eq = '=';
		if (r < 0) {
			error_msg("%s: '%s' is not valid UTF-8", rq->path, argv[i]);
			return -EINVAL;
		}
	}
	rq->render = render_generic;
	return 0;
}

static int parse_resources(int argc, char **argv, const char *ns, struct req *rq)
{
	rq->path = strdup("resources");
	if (!rq->path)
		return -ENOMEM;
	rq->render = render_resources;
	if (argc == 1) {
		if (ns) {
			error_msg("resources: -n needs 'resources get KIND'");
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(argv[1], "get")) {
		error_msg("resources: unknown subcommand '%s' (try 'resources get KIND')", argv[1]);
		return -EINVAL;
	}
	if (argc < 3) {
		error_msg("resources get: missing KIND");
		return -EINVAL;
	}
	rq->kind = argv[2];
	rq->name = argc > 3 ? argv[3] : NULL;
	rq->ns = ns;
	if (json_object_set_new(rq->args, "kind", json_string(rq->kind)) < 0 ||
	    (rq->name && json_object_set_new(rq->args, "name", json_string(rq->name)) < 0) ||
	    (ns && json_object_set_new(rq->args, "namespace", json_string(ns)) < 0)) {
		error_msg("resources get: arguments must be valid UTF-8");
		return -EINVAL;
	}
	return no_more_args("resources get", argc, argv, 4);
}

static int parse_map(int argc, char **argv, struct req *rq)
{
	if (argc >= 2 && !strcmp(argv[1], "list")) {
		rq->path = strdup(map_list_cmd.path);
		rq->cmd = &map_list_cmd;
		rq->render = render_plain;
		return rq->path ? no_more_args("map list", argc, argv, 2) : -ENOMEM;
	}
	if (argc >= 2 && !strcmp(argv[1], "dump")) {
		if (argc < 3) {
			error_msg("map dump: missing NAME");
			return -EINVAL;
		}
		rq->path = strdup("map/dump");
		rq->render = render_map_dump;
		if (!rq->path)
			return -ENOMEM;
		if (json_object_set_new(rq->args, "name", json_string(argv[2])) < 0) {
			error_msg("map dump: NAME must be valid UTF-8");
			return -EINVAL;
		}
		return no_more_args("map dump", argc, argv, 3);
	}
	error_msg("map: expected 'map list' or 'map dump NAME'");
	return -EINVAL;
}

static int parse_call(int argc, char **argv, struct req *rq)
{
	json_error_t jerr;
	json_t *args;

	if (argc < 2) {
		error_msg("call: missing PATH");
		return -EINVAL;
	}
	rq->path = strdup(argv[1]);
	rq->render = render_raw;
	if (!rq->path)
		return -ENOMEM;
	if (argc < 3)
		return 0;
	args = json_loads(argv[2], 0, &jerr);
	if (!json_is_object(args)) {
		error_msg("call: JSON-ARGS must be a JSON object%s%s", args ? "" : ": ",
			  args ? "" : jerr.text);
		json_decref(args);
		return -EINVAL;
	}
	json_decref(rq->args);
	rq->args = args;
	return no_more_args("call", argc, argv, 3);
}

/* Fill `rq` from the words after the options; -EINVAL (reported) on a usage error. */
static int parse_command(int argc, char **argv, const char *ns, struct req *rq)
{
	if (argc < 1) {
		error_msg("missing command");
		return -EINVAL;
	}
	rq->args = json_object();
	if (!rq->args)
		return -ENOMEM;
	if (!strcmp(argv[0], "resources"))
		return parse_resources(argc, argv, ns, rq);
	if (ns) {
		error_msg("-n/--namespace is only for 'resources get'");
		return -EINVAL;
	}
	if (!strcmp(argv[0], "status")) {
		rq->path = strdup("status");
		rq->render = render_status;
		return rq->path ? no_more_args(argv[0], argc, argv, 1) : -ENOMEM;
	}
	for (size_t i = 0; i < NCOLS(plain_cmds); i++) {
		if (strcmp(argv[0], plain_cmds[i].word))
			continue;
		rq->path = strdup(plain_cmds[i].path);
		rq->cmd = &plain_cmds[i];
		rq->render = render_plain;
		return rq->path ? no_more_args(argv[0], argc, argv, 1) : -ENOMEM;
	}
	if (!strcmp(argv[0], "map"))
		return parse_map(argc, argv, rq);
	if (!strcmp(argv[0], "call"))
		return parse_call(argc, argv, rq);
	return parse_module_view(argc, argv, rq);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "output", required_argument, NULL, 'o' },
		{ "namespace", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{},
	};
	const char *sock = getenv("AXONEME_SOCKET"), *ns = NULL;
	struct req rq = { 0 };
	json_t *data = NULL, *msg = NULL;
	char *line = NULL, *request = NULL;
	bool json = false;
	int opt, r, status = EXIT_FAIL;

	if (!sock || !*sock)
		sock = DEFAULT_SOCKET;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":s:o:n:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			sock = optarg;
			break;
		case 'o':
			if (strcmp(optarg, "json") && strcmp(optarg, "table")) {
				error_msg("unknown output format '%s' (table or json)", optarg);
				goto usage;
			}
			json = !strcmp(optarg, "json");
			break;
		case 'n':
			ns = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("axoneme %s\n", PACKAGE_VERSION);
			return 0;
		case ':':
			error_msg("option '%s' needs an argument", argv[optind - 1]);
			goto usage;
		default:
			if (optopt)
				error_msg("unknown option '-%c'", optopt);
			else
				error_msg("unknown option '%s'", argv[optind - 1]);
			goto usage;
		}
	}
	if (optind < argc && !strcmp(argv[optind], "help")) {
		usage(stdout);
		return 0;
	}
	r = parse_command(argc - optind, argv + optind, ns, &rq);
	if (r == -EINVAL)
		goto usage;
	if (r < 0) {
		error_msg("%s", strerror(-r));
		goto out;
	}
	msg = json_pack("{s:s,s:O}", "path", rq.path, "args", rq.args);
	/* Compact JSON escapes newlines inside strings: the request is one line. */
	line = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	if (!line) {
		error_msg("%s: cannot build the request (arguments must be valid UTF-8)", rq.path);
		goto usage;
	}
	if (asprintf(&request, "%s\n", line) < 0) {
		request = NULL;
		error_msg("%s", strerror(ENOMEM));
		goto out;
	}
	if (api_call(sock, rq.path, request, &data) < 0)
		goto out;
	if (rq.name && json_array_size(json_object_get(data, "items")) == 0) {
		error_msg("resources: %s \"%s\" not found%s%s", rq.kind, rq.name,
			  rq.ns ? " in namespace " : "", rq.ns ? rq.ns : "");
		goto out;
	}
	r = json ? print_json(data, stdout) : rq.render(&rq, data);
	if (r < 0) {
		error_msg("%s: cannot print the answer: %s", rq.path, strerror(-r));
		goto out;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		error_msg("cannot write to stdout: %s", strerror(errno));
		goto out;
	}
	status = 0;
	goto out;
usage:
	fputs("Try 'axoneme --help'.\n", stderr);
	status = EXIT_USAGE;
out:
	json_decref(data);
	json_decref(msg);
	json_decref(rq.args);
	free(rq.path);
	free(line);
	free(request);
	return status;
}
