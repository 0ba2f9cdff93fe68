// SPDX-License-Identifier: Apache-2.0
/*
 * statedir_objects.c - from the files read to the store.
 *
 * The wanted state is recomputed from every file's parsed documents (cheap:
 * nothing is re-read here), then compared with what was put: only objects
 * whose document changed are put again, only vanished ones deleted. The
 * same goes for errors: each is reported when it appears and cleared when
 * it goes, so a log line is written once per problem, not once per rescan.
 *
 * Memory: once a document is in the store as it is in the manifest (put,
 * winning its key, no status merged into it), its file's item drops the tree
 * and becomes one string "LINE:COL:KEY" (2 small allocations; an object
 * {"line", "col", "key"} took 8 and ~540 B, ~10 MB for 20k documents); the
 * store has the document (compacted to text there). Whenever the tree is
 * needed again (status to merge, or another file now defines the key), it is
 * read back from the store and the item is an object {"line", "col",
 * "object"} again. Items of files just (re-)read carry their tree until
 * applied. Items are replaced in their file's array, never changed in place,
 * so a compact item may be shared (retain() in statedir_watch.c).
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

/*
 * An item's position, whether it has its tree or is compact; for a compact
 * one also its key (NULL for an item with its tree).
 */
static const char *item_pos(const json_t *item, json_int_t *line, json_int_t *col)
{
	const char *s = json_string_value(item);
	char *end;

	if (!s) {
		*line = json_integer_value(json_object_get(item, "line"));
		*col = json_integer_value(json_object_get(item, "col"));
		return NULL;
	}
	/* Parsed from the front: a name may hold ':', the numbers do not. */
	*line = strtoll(s, &end, 10);
	*col = 0;
	if (*end != ':')
		return NULL;
	*col = strtoll(end + 1, &end, 10);
	return *end == ':' ? end + 1 : NULL;
}

/* The compact form of an item whose document the store holds as is. */
static json_t *item_compact(json_int_t line, json_int_t col, const char *key)
{
	return json_sprintf("%lld:%lld:%s", (long long)line, (long long)col, key);
}

char *statedir_item_key(const json_t *item)
{
	const json_t *doc = json_object_get(item, "object");
	const json_t *meta = json_object_get(doc, "metadata");
	json_int_t line, col;
	const char *key;

	if (json_is_string(item))
		return (key = item_pos(item, &line, &col)) ? strdup(key) : NULL;
	return statedir_key(json_string_value(json_object_get(doc, "kind")),
			    json_string_value(json_object_get(meta, "namespace")),
			    json_string_value(json_object_get(meta, "name")));
}

/*
 * "kind/ns/name" back into its parts (none of them holds a '/': kinds are
 * identifiers, names and namespaces are checked). *ret_buf is to be freed.
 */
static int key_split(const char *key, char **ret_buf, const char **kind, const char **ns,
		     const char **name)
{
	char *buf = strdup(key), *a, *b;

	if (!buf)
		return -ENOMEM;
	a = strchr(buf, '/');
	b = a ? strchr(a + 1, '/') : NULL;
	if (!b) {
		free(buf);
		return -EINVAL;
	}
	*a = *b = '\0';
	*kind = buf;
	*ns = a[1] ? a + 1 : NULL;
	*name = b + 1;
	*ret_buf = buf;
	return 0;
}

/* Item idx of file fi's "objects" (borrowed). */
static json_t *file_item(struct statedir *sd, size_t fi, size_t idx)
{
	return json_array_get(json_object_get(sd->files[fi]->parsed, "objects"), idx);
}

/*
 * The tree of item idx of file fi (borrowed). A compact item gets it back
 * from the store, as put (a copy: the item may keep it past the store's
 * object), and is replaced by an item with the tree: pointers to the
 * compact one are stale after this.
 */
static json_t *item_doc(struct statedir *sd, size_t fi, size_t idx, const char *key)
{
	const struct axn_host *h = sd->self->host;
	json_t *objs = json_object_get(sd->files[fi]->parsed, "objects");
	json_t *item = json_array_get(objs, idx), *doc = json_object_get(item, "object");
	json_t *full = NULL, *copy = NULL;
	const char *kind, *ns, *name;
	struct axn_obj *obj = NULL;
	json_int_t line, col;
	char *buf;

	if (doc)
		return doc;
	if (!item || key_split(key, &buf, &kind, &ns, &name) < 0)
		goto out;
	item_pos(item, &line, &col);
	if (h->store_get(sd->self, kind, ns, name, &obj) == 0 &&
	    (copy = json_deep_copy(h->obj_json(obj))) &&
	    (full = json_pack("{s:I, s:I}", "line", line, "col", col)) &&
	    !json_object_set(full, "object", copy) && !json_array_set(objs, idx, full))
		doc = copy; /* the array holds it now */
	json_decref(full);
	json_decref(copy);
	h->obj_unref(obj);
	free(buf);
out:
	if (!doc)
		axn_err(sd->self, "%s: cannot read its document back from the store", key);
	return doc;
}

/* "file.yaml:LINE:COL" for a positioned item, "file.yaml" for the file as a whole. */
static char *where_of(const struct sd_file *f, const json_t *item)
{
	json_int_t line, col;
	char *w;

	item_pos(item, &line, &col);
	if (line > 0 ? asprintf(&w, "%s:%lld:%lld", f->name, (long long)line, (long long)col) < 0
		     : asprintf(&w, "%s", f->name) < 0)
		return NULL;
	return w;
}

/* Does the store hold `doc` for key already (as put by us)? */
static bool stored_equal(struct statedir *sd, const char *key, const json_t *doc)
{
	const struct axn_host *h = sd->self->host;
	const char *kind, *ns, *name;
	struct axn_obj *obj = NULL;
	bool eq = false;
	char *buf;

	if (key_split(key, &buf, &kind, &ns, &name) < 0)
		return false;
	if (h->store_get(sd->self, kind, ns, name, &obj) == 0)
		eq = json_equal(h->obj_json(obj), doc);
	h->obj_unref(obj);
	free(buf);
	return eq;
}

/* One object of file f: wanted, unless an earlier file (or document) has its key. */
static int want_object(struct statedir *sd, size_t fi, size_t idx, json_t *want, json_t *errs)
{
	struct sd_file *f = sd->files[fi];
	json_t *item = file_item(sd, fi, idx);
	char *key = statedir_item_key(item), *w = where_of(f, item), *buf = NULL;
	const char *kind, *ns, *name;
	json_t *prev, *msg;
	int r = -ENOMEM;

	if (!key || !w || key_split(key, &buf, &kind, &ns, &name) < 0)
		goto out;
	if ((prev = json_object_get(want, key))) {
		/*
		 * It was the winner and is only in the store, about to be
		 * replaced: read it back while it is there, it may win again.
		 */
		item_doc(sd, fi, idx, key);
		msg = json_sprintf(
			"duplicate %s %s%s%s: already defined at %s, this one is ignored", kind,
			ns ? ns : "", ns ? "/" : "", name,
			json_string_value(json_object_get(prev, "where")));
		if (json_object_set_new(errs, w, msg))
			goto out;
		f->n_errors++;
	} else {
		if (json_object_set_new(want, key,
					json_pack("{s:s, s:I, s:I}", "where", w, "file",
						  (json_int_t)fi, "index", (json_int_t)idx)))
			goto out;
		f->n_objects++;
	}
	r = 0;
out:
	free(buf);
	free(key);
	free(w);
	return r;
}

/*
 * key -> {"where", "file", "index"} (of its item), the first file in name
 * order first; errors into errs.
 */
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
		/* By index: want_object() may replace the item (item_doc()). */
		for (j = 0; j < json_array_size(json_object_get(f->parsed, "objects")); j++)
			if (want_object(sd, i, j, want, errs) < 0)
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
	const char *key, *kind, *ns, *name;
	json_t *v, *cur, *doc, *item, *put, *refused, *compact, *objs;
	json_int_t line, col;
	const json_t *st;
	size_t fi, idx;
	char *buf;
	void *tmp;
	int r;

	/* Deletions first: a pool that moved to another name frees its range before it returns. */
	json_object_foreach_safe(sd->current, tmp, key, cur) {
		if (json_object_get(want, key))
			continue;
		r = key_split(key, &buf, &kind, &ns, &name);
		if (r == 0) {
			r = h->source_delete(sd->self, kind, ns, name);
			free(buf);
		}
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
		fi = (size_t)json_integer_value(json_object_get(v, "file"));
		idx = (size_t)json_integer_value(json_object_get(v, "index"));
		item = file_item(sd, fi, idx);
		st = json_object_get(sd->status, key);
		/* Compact, it is in the store as is: only new status changes it. */
		if (json_is_string(item) && !st && json_object_get(sd->current, key))
			continue;
		if (!(doc = item_doc(sd, fi, idx, key)))
			continue;
		put = statedir_status_merge(sd, key, doc);
		if (!put) {
			axn_err(sd->self, "putting %s: out of memory", key);
			continue;
		}
		refused = json_object_get(sd->refused, key);
		if (refused && json_equal(json_object_get(refused, "doc"), put)) {
			json_object_set(errs, json_string_value(json_object_get(v, "where")),
					json_object_get(refused, "msg"));
			json_decref(put);
			continue;
		}
		/* Unchanged: not put again (a file re-read is mostly unchanged). */
		if (json_object_get(sd->current, key) && stored_equal(sd, key, put))
			r = 0;
		else /* Shared with the store from here on: neither side modifies it again. */
			r = h->source_put(sd->self, json_incref(put));
		if (r < 0) {
			json_object_del(sd->current, key);
			refuse(sd, key, put, v, r, errs);
		} else {
			json_object_set_new(sd->current, key, json_true());
			json_object_del(sd->refused, key);
			/*
			 * The store has it as the manifest says: the item needs its
			 * position and key only. doc goes with the old item (put
			 * holds its own reference).
			 */
			if (!st && !json_object_get(doc, "status")) {
				objs = json_object_get(sd->files[fi]->parsed, "objects");
				item_pos(json_array_get(objs, idx), &line, &col);
				compact = item_compact(line, col, key);
				if (compact && !json_array_set_new(objs, idx, compact))
					sd->files[fi]->repack = true;
			}
		}
		json_decref(put);
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

/*
 * What the files keep, copied to memory allocated now. Their items were
 * allocated among the trees of the documents they held: left there, they
 * would keep the chunks of the trees the store frees mapped (core/jalloc.c;
 * without repacking, the agent with 10k services stays at ~96 MB, not 44). Every copy is
 * made before any original is freed, or the next copy would reuse the hole.
 */
static void repack(struct statedir *sd)
{
	json_t **old = calloc(sd->n_files + 1, sizeof(*old));
	json_t *copy, *objs, *nobjs, *item;
	size_t i, j, n_old = 0;

	if (!old)
		return;
	for (i = 0; i < sd->n_files; i++) {
		struct sd_file *f = sd->files[i];

		if (!f->repack)
			continue;
		f->repack = false;
		objs = json_object_get(f->parsed, "objects");
		if (!(nobjs = json_array()))
			continue;
		/* An item that still has its tree shares it with the store: kept as is. */
		json_array_foreach(objs, j, item)
			if (json_array_append_new(nobjs, json_object_get(item, "object")
								 ? json_incref(item)
								 : json_deep_copy(item)))
				break;
		if (j < json_array_size(objs) || !(copy = json_copy(f->parsed)) ||
		    json_object_set_new(copy, "objects", nobjs)) {
			json_decref(nobjs);
			continue;
		}
		old[n_old++] = f->parsed;
		f->parsed = copy;
	}
	if (n_old && (copy = json_deep_copy(sd->current))) {
		old[n_old++] = sd->current;
		sd->current = copy;
	}
	for (i = 0; i < n_old; i++)
		json_decref(old[i]);
	free(old);
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
	repack(sd);
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
