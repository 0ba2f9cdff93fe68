// SPDX-License-Identifier: Apache-2.0
/*
 * statedir_objects.c - from the files read to the store.
 *
 * The wanted state is recomputed from every file's parsed documents (cheap:
 * nothing is re-read here), then compared with what was put: only objects
 * whose document changed are put again, only vanished ones deleted. The
 * same goes for errors: each is reported when it appears and cleared when
 * it goes, so a log line is written once per problem, not once per rescan.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "statedir.h"

char *statedir_key(const char *kind, const char *ns, const char *name)
{
	char *key;

	if (asprintf(&key, "%s/%s/%s", kind, ns ? ns : "", name) < 0)
		return NULL;
	return key;
}

static char *doc_key(const json_t *doc)
{
	const json_t *meta = json_object_get(doc, "metadata");

	return statedir_key(json_string_value(json_object_get(doc, "kind")),
			    json_string_value(json_object_get(meta, "namespace")),
			    json_string_value(json_object_get(meta, "name")));
}

/* "file.yaml:LINE:COL" for a positioned item, "file.yaml" for the file as a whole. */
static char *where_of(const struct sd_file *f, const json_t *item)
{
	json_int_t line = json_integer_value(json_object_get(item, "line"));
	json_int_t col = json_integer_value(json_object_get(item, "col"));
	char *w;

	if (line > 0 ? asprintf(&w, "%s:%lld:%lld", f->name, (long long)line, (long long)col) < 0
		     : asprintf(&w, "%s", f->name) < 0)
		return NULL;
	return w;
}

/* One object of file f: wanted, unless an earlier file (or document) has its key. */
static int want_object(struct sd_file *f, const json_t *item, json_t *want, json_t *errs)
{
	const json_t *doc = json_object_get(item, "object");
	const json_t *meta = json_object_get(doc, "metadata");
	const char *ns = json_string_value(json_object_get(meta, "namespace"));
	char *key = doc_key(doc), *w = where_of(f, item);
	json_t *prev, *msg;
	int r = -ENOMEM;

	if (!key || !w)
		goto out;
	if ((prev = json_object_get(want, key))) {
		msg = json_sprintf(
			"duplicate %s %s%s%s: already defined at %s, this one is ignored",
			json_string_value(json_object_get(doc, "kind")), ns ? ns : "",
			ns ? "/" : "", json_string_value(json_object_get(meta, "name")),
			json_string_value(json_object_get(prev, "where")));
		if (json_object_set_new(errs, w, msg))
			goto out;
		f->n_errors++;
	} else {
		if (json_object_set_new(want, key,
					json_pack("{s:O, s:s}", "object", doc, "where", w)))
			goto out;
		f->n_objects++;
	}
	r = 0;
out:
	free(key);
	free(w);
	return r;
}

/* key -> {"object", "where"}, the first file in name order first; errors into errs. */
static int wanted(struct statedir *sd, json_t *want, json_t *errs)
{
	json_t *item;
	size_t i, j;
	char *w;

	for (i = 0; i < sd->n_files; i++) {
		struct sd_file *f = sd->files[i];

		f->n_objects = f->n_errors = 0;
		json_array_foreach(json_object_get(f->parsed, "errors"), j, item) {
			if (!(w = where_of(f, item)) ||
			    json_object_set(errs, w, json_object_get(item, "message"))) {
				free(w);
				return -ENOMEM;
			}
			free(w);
			f->n_errors++;
		}
		json_array_foreach(json_object_get(f->parsed, "objects"), j, item)
			if (want_object(f, item, want, errs) < 0)
				return -ENOMEM;
	}
	return 0;
}

/*
 * The store refused a document (another source provides the object): an
 * error of the document, and not tried again until the document changes.
 */
static void refuse(struct statedir *sd, const char *key, json_t *doc, const json_t *want_v,
		   int err, json_t *errs)
{
	json_t *msg = json_sprintf("not stored: %s",
				   err == -EEXIST ? "another source provides this object"
						  : strerror(-err));

	json_object_set(errs, json_string_value(json_object_get(want_v, "where")), msg);
	json_object_set_new(sd->refused, key, json_pack("{s:O, s:o}", "doc", doc, "msg", msg));
}

static void put_objects(struct statedir *sd, json_t *want, json_t *errs)
{
	const struct axn_host *h = sd->self->host;
	const char *key;
	json_t *v, *cur, *doc, *refused;
	void *tmp;
	int r;

	/* Deletions first: a pool that moved to another name frees its range before it returns. */
	json_object_foreach_safe(sd->current, tmp, key, cur) {
		const json_t *meta = json_object_get(cur, "metadata");

		if (json_object_get(want, key))
			continue;
		r = h->source_delete(sd->self, json_string_value(json_object_get(cur, "kind")),
				     json_string_value(json_object_get(meta, "namespace")),
				     json_string_value(json_object_get(meta, "name")));
		if (r < 0 && r != -ENOENT)
			axn_err(sd->self, "deleting %s from the store failed: %s", key,
				strerror(-r));
		statedir_status_forget(sd, key);
		json_object_del(sd->current, key);
	}
	json_object_foreach_safe(sd->refused, tmp, key, refused)
		if (!json_object_get(want, key))
			json_object_del(sd->refused, key);
	json_object_foreach(want, key, v) {
		doc = statedir_status_merge(sd, key, json_object_get(v, "object"));
		if (!doc) {
			axn_err(sd->self, "putting %s: out of memory", key);
			continue;
		}
		cur = json_object_get(sd->current, key);
		refused = json_object_get(sd->refused, key);
		if (cur && json_equal(cur, doc)) {
			json_decref(doc);
			continue;
		}
		if (refused && json_equal(json_object_get(refused, "doc"), doc)) {
			json_object_set(errs, json_string_value(json_object_get(v, "where")),
					json_object_get(refused, "msg"));
			json_decref(doc);
			continue;
		}
		/* Shared with the store from here on: neither side modifies it again. */
		json_object_set(sd->current, key, doc);
		r = h->source_put(sd->self, json_incref(doc));
		if (r < 0) {
			json_object_del(sd->current, key);
			refuse(sd, key, doc, v, r, errs);
		} else {
			json_object_del(sd->refused, key);
		}
		json_decref(doc);
	}
}

static void report_errors(struct statedir *sd, json_t *errs)
{
	const struct axn_host *h = sd->self->host;
	const char *where;
	json_t *msg, *old;

	json_object_foreach(sd->errors, where, msg)
		if (!json_object_get(errs, where))
			h->source_error(sd->self, where, NULL);
	json_object_foreach(errs, where, msg) {
		old = json_object_get(sd->errors, where);
		if (old && json_equal(old, msg))
			continue;
		h->source_error(sd->self, where, json_string_value(msg));
		axn_warn(sd->self, "bad manifest %s/%s: %s", sd->path, where,
			 json_string_value(msg));
	}
	json_decref(sd->errors);
	sd->errors = json_incref(errs);
}

void statedir_apply(struct statedir *sd)
{
	const struct axn_host *h = sd->self->host;
	json_t *want = json_object(), *errs = json_object();

	if (!want || !errs || wanted(sd, want, errs) < 0) {
		/* Changing nothing is better than acting on half a picture. */
		axn_err(sd->self, "applying %s: out of memory", sd->path);
		goto out;
	}
	put_objects(sd, want, errs);
	report_errors(sd, errs);
	h->metric_set(sd->m_objects, (double)json_object_size(sd->current));
	h->metric_set(sd->m_errors, (double)json_object_size(sd->errors));
	statedir_health(sd);
out:
	json_decref(want);
	json_decref(errs);
}

void statedir_health(struct statedir *sd)
{
	size_t n = json_object_size(sd->errors);
	uint32_t state = AXN_STATE_UP;
	char reason[sizeof(sd->health_reason)] = "";

	if (sd->wd < 0) {
		state = AXN_STATE_DEGRADED;
		snprintf(reason, sizeof(reason), "cannot watch %s: %s", sd->path,
			 strerror(sd->watch_err));
	} else if (n) {
		state = AXN_STATE_DEGRADED;
		snprintf(reason, sizeof(reason), "%zu manifest error%s (axoneme resources)", n,
			 n == 1 ? "" : "s");
	}
	if (state == sd->health && !strcmp(reason, sd->health_reason))
		return;
	sd->health = state;
	memcpy(sd->health_reason, reason, sizeof(reason));
	sd->self->host->set_state(sd->self, state, *reason ? reason : NULL);
}

int statedir_api_files(struct axn_mod *self, const json_t *req, json_t **ret_resp, char **ret_err,
		       void *arg)
{
	struct statedir *sd = arg;
	json_t *items = json_array(), *resp;

	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < sd->n_files; i++) {
		const struct sd_file *f = sd->files[i];

		if (json_array_append_new(items, json_pack("{s:s, s:O, s:I, s:I}", "file", f->name,
							   "documents",
							   json_object_get(f->parsed, "documents"),
							   "objects", (json_int_t)f->n_objects,
							   "errors", (json_int_t)f->n_errors))) {
			json_decref(items);
			return -ENOMEM;
		}
	}
	if (!(resp = json_pack("{s:s, s:o}", "path", sd->path, "items", items)))
		return -ENOMEM;
	*ret_resp = resp;
	return 0;
}
