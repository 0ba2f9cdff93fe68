// SPDX-License-Identifier: Apache-2.0
/*
 * statedir_status.c - status that consumers write (store_set_status).
 *
 * Manifests belong to the user (GitOps-style) and are never rewritten.
 * Status is merged into the object in memory and put again, so subscribers
 * and `axoneme resources` see it, and is persisted in this agent's
 * status_dir (by default under its own run dir) as one JSON file per object:
 * several agents sharing one manifest directory never write the same file.
 * At start the files are read back and merged into manifests that carry no
 * status of their own.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statedir.h"

/* Keep [A-Za-z0-9.-], %XX the rest: '_' separates the parts, '/' would escape the directory. */
static char *escape(const char *s)
{
	char *out = malloc(strlen(s) * 3 + 1), *o = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '-')
			*o++ = (char)c;
		else
			o += sprintf(o, "%%%02X", c);
	}
	*o = '\0';
	return out;
}

/* "<kind>_<namespace>_<name>.json" (namespace empty for cluster-scoped kinds). */
static char *status_file(const json_t *entry)
{
	char *k = escape(json_string_value(json_object_get(entry, "kind")));
	const char *ns_raw = json_string_value(json_object_get(entry, "namespace"));
	char *ns = escape(ns_raw ? ns_raw : "");
	char *n = escape(json_string_value(json_object_get(entry, "name")));
	char *f = NULL;

	if (k && ns && n && asprintf(&f, "%s_%s_%s.json", k, ns, n) < 0)
		f = NULL;
	free(k);
	free(ns);
	free(n);
	return f;
}

static int mkdir_p(const char *dir)
{
	char *p = strdup(dir);
	int r = 0;

	if (!p)
		return -ENOMEM;
	for (char *s = p + 1;; s++) {
		char c = *s;

		if (c && c != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0750) < 0 && errno != EEXIST) {
			r = -errno;
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return r;
}

static void load_one(struct statedir *sd, const char *fname)
{
	const char *kind, *ns, *name, *node;
	json_t *doc, *meta, *status;
	json_error_t err;
	char *path, *key = NULL;

	if (asprintf(&path, "%s/%s", sd->status_dir, fname) < 0)
		return;
	if (!(doc = json_load_file(path, 0, &err))) {
		/* A torn write (power loss) costs one object's status, not the start. */
		axn_warn(sd->self, "ignoring status file %s: %s", path, err.text);
		goto out;
	}
	meta = json_object_get(doc, "metadata");
	kind = json_string_value(json_object_get(doc, "kind"));
	ns = json_string_value(json_object_get(meta, "namespace"));
	name = json_string_value(json_object_get(meta, "name"));
	node = json_string_value(json_object_get(doc, "node"));
	status = json_object_get(doc, "status");
	if (!kind || !name || !json_is_object(status)) {
		axn_warn(sd->self, "ignoring status file %s: not a status record", path);
		goto out;
	}
	if (node && sd->node && strcmp(node, sd->node)) {
		axn_warn(sd->self,
			 "ignoring status file %s: written by node %s (is status_dir shared?)",
			 path, node);
		goto out;
	}
	if ((key = statedir_key(kind, ns, name)))
		json_object_set_new(sd->status, key,
				    json_pack("{s:s, s:s?, s:s, s:O, s:b}", "kind", kind,
					      "namespace", ns, "name", name, "status", status,
					      "fresh", 0));
out:
	json_decref(doc);
	free(key);
	free(path);
}

int statedir_status_open(struct statedir *sd)
{
	const char *rundir = sd->self->host->agent_info(sd->self, "rundir");
	struct dirent *de;
	char *dir = NULL;
	DIR *d;
	int r;

	if (sd->status_opt && *sd->status_opt)
		dir = strdup(sd->status_opt);
	else if (rundir && asprintf(&dir, "%s/statedir-status", rundir) < 0)
		dir = NULL;
	if (!dir && (rundir || (sd->status_opt && *sd->status_opt)))
		return -ENOMEM;
	if (!dir) {
		axn_warn(sd->self, "no status_dir and no rundir: status is kept in memory only");
		return 0;
	}
	if ((r = mkdir_p(dir)) < 0 || !(d = opendir(dir))) {
		r = r < 0 ? r : -errno;
		axn_warn(sd->self, "status dir %s: %s; status is kept in memory only", dir,
			 strerror(-r));
		free(dir);
		return 0;
	}
	sd->status_dir = dir;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (de->d_name[0] != '.' && n > 5 && !strcmp(de->d_name + n - 5, ".json"))
			load_one(sd, de->d_name);
	}
	closedir(d);
	return 0;
}

/* Write the entry's file atomically (temp file + rename). */
static int persist(struct statedir *sd, const json_t *entry, const char *api_version)
{
	char *fname = status_file(entry), *path = NULL, *tmp = NULL;
	json_t *doc = NULL;
	int fd, r = -ENOMEM;

	if (!fname || asprintf(&path, "%s/%s", sd->status_dir, fname) < 0 ||
	    asprintf(&tmp, "%s/.%s.tmp", sd->status_dir, fname) < 0)
		goto out;
	doc = json_pack("{s:s?, s:O, s:{s:O?, s:O}, s:s?, s:O}", "apiVersion", api_version, "kind",
			json_object_get(entry, "kind"), "metadata", "namespace",
			json_object_get(entry, "namespace"), "name", json_object_get(entry, "name"),
			"node", sd->node, "status", json_object_get(entry, "status"));
	if (!doc)
		goto out;
	errno = 0;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd >= 0) {
		bool ok = json_dumpfd(doc, fd, JSON_INDENT(2) | JSON_SORT_KEYS) == 0 &&
			  write(fd, "\n", 1) == 1;

		if (close(fd) == 0 && ok && rename(tmp, path) == 0)
			r = 0;
	}
	if (r < 0) {
		r = errno ? -errno : -EIO;
		unlink(tmp);
		axn_warn(sd->self, "writing status %s failed: %s", path, strerror(-r));
	}
out:
	json_decref(doc);
	free(fname);
	free(path);
	free(tmp);
	return r;
}

void statedir_status_forget(struct statedir *sd, const char *key)
{
	const json_t *e = json_object_get(sd->status, key);
	char *fname, *path;

	if (!e)
		return;
	if (sd->status_dir && (fname = status_file(e))) {
		if (asprintf(&path, "%s/%s", sd->status_dir, fname) >= 0) {
			if (unlink(path) < 0 && errno != ENOENT)
				axn_warn(sd->self, "removing status %s failed: %s", path,
					 strerror(errno));
			free(path);
		}
		free(fname);
	}
	json_object_del(sd->status, key);
}

void statedir_status_prune(struct statedir *sd)
{
	const char *key;
	json_t *e;
	void *tmp;

	json_object_foreach_safe(sd->status, tmp, key, e)
		if (!json_object_get(sd->current, key))
			statedir_status_forget(sd, key);
}

json_t *statedir_status_merge(struct statedir *sd, const char *key, json_t *doc)
{
	const json_t *e = json_object_get(sd->status, key);
	json_t *copy;

	/* Status from before the restart does not override a manifest's own status. */
	if (!e || (!json_is_true(json_object_get(e, "fresh")) && json_object_get(doc, "status")))
		return json_incref(doc);
	if (!(copy = json_copy(doc)) ||
	    json_object_set(copy, "status", json_object_get(e, "status")) < 0) {
		json_decref(copy);
		return NULL;
	}
	return copy;
}

int statedir_status_write(struct axn_mod *self, const struct axn_obj *obj, const json_t *status,
			  void *arg)
{
	struct statedir *sd = arg;
	const char *kind = axn_obj_kind(self, obj), *ns = axn_obj_namespace(self, obj);
	const char *name = axn_obj_name(self, obj);
	const json_t *e;
	json_t *entry = NULL;
	char *key;
	int r;

	if (!kind || !name || !status || (!json_is_object(status) && !json_is_null(status)))
		return -EINVAL;
	if (!(key = statedir_key(kind, ns, name)))
		return -ENOMEM;
	r = -ENOENT;
	if (!json_object_get(sd->current, key))
		goto out;
	e = json_object_get(sd->status, key);
	r = 0;
	/* Writing what is there already changes nothing: no MODIFIED, no write loop. */
	if (json_is_null(status) ? !e
				 : e && json_is_true(json_object_get(e, "fresh")) &&
					   json_equal(json_object_get(e, "status"), status))
		goto out;
	if (json_is_null(status)) {
		statedir_status_forget(sd, key);
	} else {
		r = -ENOMEM;
		entry = json_pack("{s:s, s:s?, s:s, s:O, s:b}", "kind", kind, "namespace", ns,
				  "name", name, "status", status, "fresh", 1);
		if (!entry)
			goto out;
		if (sd->status_dir &&
		    (r = persist(sd, entry,
				 json_string_value(json_object_get(self->host->obj_json(obj),
								   "apiVersion")))) < 0)
			goto out;
		json_object_set(sd->status, key, entry);
	}
	statedir_apply(sd);
	r = 0;
out:
	json_decref(entry);
	free(key);
	return r;
}
