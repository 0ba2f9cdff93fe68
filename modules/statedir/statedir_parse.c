// SPDX-License-Identifier: Apache-2.0
/*
 * statedir_parse.c - manifests to JSON.
 *
 * YAML goes through libyaml's event parser, so every node has a position
 * and aliases can be refused. Plain scalars are typed the way kubectl reads
 * them (YAML 1.1, go-yaml v2): null/~/empty, true/false/yes/no/on/off/y/n,
 * integers (decimal, 0x, 0o, 0b, leading-0 octal, '_' separators) and
 * floats; quoted and block scalars stay strings. After a syntax error
 * libyaml cannot go on, so parsing restarts at the next "---" line: one
 * broken document costs only itself.
 *
 * JSON files hold one or more concatenated values (as kubectl accepts).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "statedir_parse.h"

#define MAX_DEPTH 64

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n > m && !strcmp(s + n - m, suffix);
}

bool statedir_is_manifest(const char *name)
{
	return name[0] != '.' && (has_suffix(name, ".yaml") || has_suffix(name, ".yml") ||
				  has_suffix(name, ".json"));
}

__attribute__((format(printf, 4, 5))) static int add_error(json_t *res, unsigned line,
							    unsigned col, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_array_append_new(json_object_get(res, "errors"),
				     json_pack("{s:I, s:I, s:s}", "line", (json_int_t)line, "col",
					       (json_int_t)col, "message", msg))
		       ? -ENOMEM
		       : 0;
}

/* Names must be usable as one path segment, as the API server requires. */
static const char *bad_segment(const char *s)
{
	if (!*s)
		return "may not be empty";
	if (!strcmp(s, ".") || !strcmp(s, ".."))
		return "may not be '.' or '..'";
	if (strpbrk(s, "/%"))
		return "may not contain '/' or '%'";
	return NULL;
}

/* NULL if `doc` is an object statedir can store, else why not (in msg). */
static const char *check_object(const json_t *doc, char *msg, size_t len)
{
	const json_t *meta, *name, *ns;
	const char *why;

	if (!json_is_object(doc))
		return "document is not a mapping";
	if (!json_string_length(json_object_get(doc, "apiVersion")))
		return "apiVersion is missing or not a string";
	if (!json_string_length(json_object_get(doc, "kind")))
		return "kind is missing or not a string";
	meta = json_object_get(doc, "metadata");
	if (!json_is_object(meta))
		return "metadata is missing or not a mapping";
	name = json_object_get(meta, "name");
	if (!json_is_string(name))
		return "metadata.name is missing or not a string";
	if ((why = bad_segment(json_string_value(name)))) {
		snprintf(msg, len, "metadata.name %s", why);
		return msg;
	}
	/* The API server refuses these, and consumers compare them as strings. */
	for (const char *const *m = (const char *const[]){"labels", "annotations", NULL}; *m; m++) {
		const json_t *map = json_object_get(meta, *m), *v;
		const char *k;

		if (!map || json_is_null(map))
			continue;
		if (!json_is_object(map)) {
			snprintf(msg, len, "metadata.%s is not a mapping", *m);
			return msg;
		}
		json_object_foreach((json_t *)map, k, v)
			if (!json_is_string(v)) {
				snprintf(msg, len,
					 "metadata.%s.%s is not a string (quote the value)", *m, k);
				return msg;
			}
	}
	ns = json_object_get(meta, "namespace");
	if (ns && !json_is_null(ns)) {
		if (!json_is_string(ns))
			return "metadata.namespace is not a string";
		if ((why = bad_segment(json_string_value(ns)))) {
			snprintf(msg, len, "metadata.namespace %s", why);
			return msg;
		}
	}
	return NULL;
}

static int add_object(json_t *res, json_t *obj, unsigned line, unsigned col)
{
	return json_array_append_new(json_object_get(res, "objects"),
				     json_pack("{s:I, s:I, s:O}", "line", (json_int_t)line, "col",
					       (json_int_t)col, "object", obj))
		       ? -ENOMEM
		       : 0;
}

static void count_document(json_t *res)
{
	json_t *n = json_object_get(res, "documents");

	json_integer_set(n, json_integer_value(n) + 1);
}

/* One document: an object, or a List whose items are objects. Borrows doc. */
static int add_document(json_t *res, const json_t *doc, unsigned line, unsigned col)
{
	const json_t *items = json_object_get(doc, "items");
	const char *kind = json_string_value(json_object_get(doc, "kind"));
	const char *why;
	char msg[256];
	json_t *item;
	size_t i;
	int r;

	count_document(res);
	if (!kind || strcmp(kind, "List") || !json_is_array(items)) {
		if ((why = check_object(doc, msg, sizeof(msg))))
			return add_error(res, line, col, "%s", why);
		return add_object(res, (json_t *)doc, line, col);
	}
	/* Items have no position of their own: name them by index. */
	json_array_foreach(items, i, item) {
		if ((why = check_object(item, msg, sizeof(msg))))
			r = add_error(res, line, col, "items[%zu]: %s", i, why);
		else
			r = add_object(res, item, line, col);
		if (r < 0)
			return r;
	}
	return 0;
}

/* ---- YAML ------------------------------------------------------------------ */

struct yctx {
	yaml_parser_t parser;
	const char *buf;       /* the whole file */
	size_t base_off;       /* where this parser's input starts in buf */
	unsigned base_line;    /* its 0-based line */
	long doc_line;         /* 0-based line of the current document's start, -1: none */
	unsigned eline, ecol;  /* the current document's error, 1-based */
	char emsg[384];
};

__attribute__((format(printf, 3, 4))) static int y_fail(struct yctx *y, const yaml_mark_t *m,
							 const char *fmt, ...)
{
	va_list ap;

	y->eline = y->base_line + (unsigned)m->line + 1;
	y->ecol = (unsigned)m->column + 1;
	va_start(ap, fmt);
	vsnprintf(y->emsg, sizeof(y->emsg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* 1-based line and column (in characters) of byte `off` of buf. */
static void pos_at(const char *buf, size_t off, unsigned *line, unsigned *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			++*line;
			*col = 1;
		} else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
			++*col;
		}
	}
}

/* Next event; a syntax error returns -EBADMSG with the error recorded. */
static int y_next(struct yctx *y, yaml_event_t *ev)
{
	yaml_parser_t *p = &y->parser;

	if (yaml_parser_parse(p, ev))
		return 0;
	if (p->error == YAML_MEMORY_ERROR)
		return -ENOMEM;
	if (p->error == YAML_READER_ERROR) {
		pos_at(y->buf, y->base_off + p->problem_offset, &y->eline, &y->ecol);
		snprintf(y->emsg, sizeof(y->emsg), "%s", p->problem ? p->problem : "bad input");
	} else if (p->context) {
		y_fail(y, &p->problem_mark, "YAML syntax error: %s, %s started at line %u",
		       p->problem, p->context, y->base_line + (unsigned)p->context_mark.line + 1);
	} else {
		y_fail(y, &p->problem_mark, "YAML syntax error: %s",
		       p->problem ? p->problem : "unknown");
	}
	return -EBADMSG;
}

static bool one_of(const char *s, size_t len, const char *const *list)
{
	for (; *list; list++)
		if (strlen(*list) == len && !memcmp(s, *list, len))
			return true;
	return false;
}

/* go-yaml's integer rule: strip '_', then base prefixes or a leading 0 for octal. */
static bool parse_int(const char *s, size_t len, json_int_t *ret)
{
	static const char digits[] = "0123456789abcdefABCDEF";
	unsigned long long u;
	char buf[80], *p = buf, *end;
	int base = 10;
	bool neg = false;
	size_t n = 0;

	if (len >= sizeof(buf))
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] != '_')
			buf[n++] = s[i];
	buf[n] = '\0';
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		base = 16, p += 2;
	else if (p[0] == '0' && p[1] == 'o')
		base = 8, p += 2;
	else if (p[0] == '0' && p[1] == 'b')
		base = 2, p += 2;
	else if (p[0] == '0' && p[1])
		base = 8, p += 1;
	if (!*p)
		return false;
	for (end = p; *end; end++) {
		const char *d = strchr(digits, *end);

		if (!d || (d - digits >= 16 ? d - digits - 6 : d - digits) >= base)
			return false;
	}
	errno = 0;
	u = strtoull(p, &end, base);
	if (errno || *end || u > (unsigned long long)INT64_MAX + neg)
		return false;
	*ret = neg ? (u == (unsigned long long)INT64_MAX + 1 ? INT64_MIN : -(json_int_t)u)
		   : (json_int_t)u;
	return true;
}

/* go-yaml's float rule: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static bool is_float(const char *s)
{
	const char *p = s + (*s == '+' || *s == '-');
	size_t ip = strspn(p, "0123456789"), fp = 0;

	p += ip;
	if (*p == '.')
		fp = strspn(++p, "0123456789"), p += fp;
	if (!ip && !fp)
		return false;
	if (*p == 'e' || *p == 'E') {
		p += 1 + (p[1] == '+' || p[1] == '-');
		if (!strspn(p, "0123456789"))
			return false;
		p += strspn(p, "0123456789");
	}
	return !*p;
}

static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On",
				    "ON",   "y",    "Y",    NULL};
static const char *const falses[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off",
				     "OFF",   "n",     "N",     NULL};
static const char *const nonfinite[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF",
					"-.inf", "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", NULL};

/* A plain scalar's JSON value; NULL with *why set when JSON cannot hold it. */
static json_t *y_plain(const char *s, size_t len, const char **why)
{
	char buf[80];
	json_int_t i;
	size_t n = 0;
	double d;

	*why = NULL;
	if (one_of(s, len, nulls))
		return json_null();
	if (one_of(s, len, trues))
		return json_true();
	if (one_of(s, len, falses))
		return json_false();
	if (one_of(s, len, nonfinite)) {
		*why = "infinity and NaN have no JSON form (quote the value)";
		return NULL;
	}
	if (parse_int(s, len, &i))
		return json_integer(i);
	if (len < sizeof(buf)) {
		for (size_t k = 0; k < len; k++)
			if (s[k] != '_')
				buf[n++] = s[k];
		buf[n] = '\0';
		if (n && is_float(buf)) {
			d = strtod(buf, NULL);
			if (d - d != 0) { /* overflowed to infinity */
				*why = "number out of range";
				return NULL;
			}
			return json_real(d);
		}
	}
	return json_stringn(s, len);
}

static int y_scalar(struct yctx *y, const yaml_event_t *ev, json_t **ret)
{
	const char *s = (const char *)ev->data.scalar.value;
	const char *tag = (const char *)ev->data.scalar.tag;
	size_t len = ev->data.scalar.length;
	const char *why = NULL;
	json_t *j;

	if (tag && strcmp(tag, "!") && strcmp(tag, YAML_STR_TAG)) {
		if (strcmp(tag, YAML_INT_TAG) && strcmp(tag, YAML_FLOAT_TAG) &&
		    strcmp(tag, YAML_BOOL_TAG) && strcmp(tag, YAML_NULL_TAG))
			return y_fail(y, &ev->start_mark, "unsupported tag %s", tag);
		/* A core tag types even a quoted scalar, and must agree with its text. */
		j = y_plain(s, len, &why);
		if (j && ((!strcmp(tag, YAML_INT_TAG) && !json_is_integer(j)) ||
			  (!strcmp(tag, YAML_FLOAT_TAG) && !json_is_number(j)) ||
			  (!strcmp(tag, YAML_BOOL_TAG) && !json_is_boolean(j)) ||
			  (!strcmp(tag, YAML_NULL_TAG) && !json_is_null(j)))) {
			json_decref(j);
			return y_fail(y, &ev->start_mark, "value \"%.*s\" does not match tag %s",
				      (int)len, s, tag);
		}
	} else if (tag || ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
		j = json_stringn(s, len);
	} else {
		j = y_plain(s, len, &why);
	}
	if (!j && why)
		return y_fail(y, &ev->start_mark, "\"%.*s\": %s", (int)len, s, why);
	if (!j)
		return -ENOMEM;
	*ret = j;
	return 0;
}

static int y_node(struct yctx *y, const yaml_event_t *ev, json_t **ret, int depth);

/* The children of a sequence or mapping, up to its end event. */
static int y_children(struct yctx *y, json_t *parent, int depth)
{
	bool map = json_is_object(parent);
	yaml_event_t ev;
	json_t *child;
	char *key = NULL;
	int r;

	for (;;) {
		if ((r = y_next(y, &ev)) < 0)
			break;
		if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (map && !key) {
			const char *k = (const char *)ev.data.scalar.value;

			if (ev.type != YAML_SCALAR_EVENT)
				r = y_fail(y, &ev.start_mark, "mapping keys must be scalars");
			else if (strlen(k) != ev.data.scalar.length)
				r = y_fail(y, &ev.start_mark, "mapping key contains NUL");
			else if (json_object_get(parent, k))
				r = y_fail(y, &ev.start_mark, "duplicate key \"%s\"", k);
			else if (!(key = strdup(k)))
				r = -ENOMEM;
			yaml_event_delete(&ev);
			if (r < 0)
				break;
			continue;
		}
		r = y_node(y, &ev, &child, depth + 1);
		yaml_event_delete(&ev);
		if (r < 0)
			break;
		r = map ? json_object_set_new(parent, key, child)
			: json_array_append_new(parent, child);
		free(key);
		key = NULL;
		if (r < 0) {
			r = -ENOMEM;
			break;
		}
	}
	free(key);
	return r;
}

static int y_node(struct yctx *y, const yaml_event_t *ev, json_t **ret, int depth)
{
	json_t *j;
	int r;

	if (depth > MAX_DEPTH)
		return y_fail(y, &ev->start_mark, "nested deeper than %d levels", MAX_DEPTH);
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		return y_scalar(y, ev, ret);
	case YAML_ALIAS_EVENT:
		return y_fail(y, &ev->start_mark, "aliases (*%s) are not supported",
			      (const char *)ev->data.alias.anchor);
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		j = ev->type == YAML_SEQUENCE_START_EVENT ? json_array() : json_object();
		if (!j)
			return -ENOMEM;
		if ((r = y_children(y, j, depth)) < 0) {
			json_decref(j);
			return r;
		}
		*ret = j;
		return 0;
	default:
		return y_fail(y, &ev->start_mark, "unexpected YAML event %d", ev->type);
	}
}

/* After a bad node: drop the rest of its document. */
static int y_skip_document(struct yctx *y)
{
	yaml_event_t ev;
	int r;

	do {
		if ((r = y_next(y, &ev)) < 0)
			return r;
		r = ev.type == YAML_DOCUMENT_END_EVENT || ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
	} while (!r);
	return 0;
}

/* Every document of the parser's input; -EBADMSG at a syntax error. */
static int y_stream(struct yctx *y, json_t *res)
{
	yaml_event_t ev;
	unsigned line, col;
	json_t *doc;
	int r;

	for (;;) {
		if ((r = y_next(y, &ev)) < 0)
			goto bad;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			yaml_event_delete(&ev);
			return 0;
		case YAML_STREAM_START_EVENT:
		case YAML_DOCUMENT_END_EVENT:
			yaml_event_delete(&ev);
			continue;
		case YAML_DOCUMENT_START_EVENT:
			y->doc_line = (long)(y->base_line + ev.start_mark.line);
			yaml_event_delete(&ev);
			continue;
		default:
			break;
		}
		line = y->base_line + (unsigned)ev.start_mark.line + 1;
		col = (unsigned)ev.start_mark.column + 1;
		r = y_node(y, &ev, &doc, 0);
		yaml_event_delete(&ev);
		if (r == 0) {
			/* An empty document ("---" then nothing) is no document. */
			if (!json_is_null(doc))
				r = add_document(res, doc, line, col);
			json_decref(doc);
			if (r < 0)
				return r;
			continue;
		}
		if (r != -EINVAL)
			goto bad;
		if ((r = add_error(res, y->eline, y->ecol, "%s", y->emsg)) < 0)
			return r;
		count_document(res);
		if ((r = y_skip_document(y)) < 0)
			goto bad;
	}
bad:
	if (r == -EBADMSG) {
		if (add_error(res, y->eline, y->ecol, "%s", y->emsg) < 0)
			return -ENOMEM;
		count_document(res);
	}
	return r;
}

/* A "---" line with nothing after it but blanks or a comment. */
static bool is_separator(const char *p, const char *end)
{
	if (end - p < 3 || memcmp(p, "---", 3))
		return false;
	for (p += 3; p < end && *p != '\n'; p++) {
		if (*p == '#')
			return p[-1] == ' ' || p[-1] == '\t';
		if (*p != ' ' && *p != '\t' && *p != '\r')
			return false;
	}
	return true;
}

/*
 * The first separator line at or after the error's line and after the
 * failed document's own start, so that parsing makes progress; or NULL.
 */
static const char *resync(struct yctx *y, size_t len, unsigned *ret_line)
{
	const char *p = y->buf + y->base_off, *end = y->buf + len;
	unsigned line = y->base_line;

	for (; p < end; line++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (line + 1 >= y->eline && (long)line > y->doc_line && line > y->base_line &&
		    is_separator(p, end)) {
			*ret_line = line;
			return p;
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	return NULL;
}

static int parse_yaml(const char *buf, size_t len, json_t *res)
{
	struct yctx y = {.buf = buf, .doc_line = -1};
	const char *next;
	int r;

	for (;;) {
		if (!yaml_parser_initialize(&y.parser))
			return -ENOMEM;
		yaml_parser_set_input_string(&y.parser, (const unsigned char *)buf + y.base_off,
					     len - y.base_off);
		r = y_stream(&y, res);
		yaml_parser_delete(&y.parser);
		if (r != -EBADMSG)
			return r;
		if (!(next = resync(&y, len, &y.base_line)))
			return 0;
		y.base_off = (size_t)(next - buf);
		y.doc_line = -1;
	}
}

/* ---- JSON ------------------------------------------------------------------ */

/* Move *off to `to`, keeping 1-based line and column (in characters). */
static void advance(const char *buf, size_t *off, size_t to, unsigned *line, unsigned *col)
{
	for (; *off < to; ++*off) {
		if (buf[*off] == '\n') {
			++*line;
			*col = 1;
		} else if (((unsigned char)buf[*off] & 0xc0) != 0x80) {
			++*col;
		}
	}
}

static int parse_json(const char *buf, size_t len, json_t *res)
{
	size_t off = 0, start;
	unsigned line = 1, col = 1;
	json_error_t err;
	json_t *doc;
	int r;

	if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
		off = 3;
	for (;;) {
		for (start = off; start < len && buf[start] && strchr(" \t\r\n", buf[start]);)
			start++;
		advance(buf, &off, start, &line, &col);
		if (off >= len)
			return 0;
		doc = json_loadb(buf + off, len - off,
				 JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY | JSON_REJECT_DUPLICATES,
				 &err);
		if (!doc) {
			/* JSON has no document separator: nothing after an error can be trusted. */
			unsigned el = line + (unsigned)(err.line > 1 ? err.line - 1 : 0);
			unsigned ec = (unsigned)(err.column > 1 ? err.column : 1);

			if (err.line <= 1) /* on the value's first line: relative to its start */
				ec += col - 1;

			count_document(res);
			return add_error(res, el, ec ? ec : 1, "JSON syntax error: %s", err.text);
		}
		r = json_is_null(doc) ? 0 : add_document(res, doc, line, col);
		json_decref(doc);
		if (r < 0)
			return r;
		advance(buf, &off, off + (size_t)err.position, &line, &col);
	}
}

int statedir_parse(const char *name, const char *buf, size_t len, json_t **ret)
{
	json_t *res;
	int r;

	if (!statedir_is_manifest(name))
		return -EINVAL;
	res = json_pack("{s:i, s:[], s:[]}", "documents", 0, "objects", "errors");
	if (!res)
		return -ENOMEM;
	r = has_suffix(name, ".json") ? parse_json(buf, len, res) : parse_yaml(buf, len, res);
	if (r < 0) {
		json_decref(res);
		return r;
	}
	*ret = res;
	return 0;
}
