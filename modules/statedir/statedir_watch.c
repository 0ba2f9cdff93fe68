// SPDX-License-Identifier: Apache-2.0
/*
 * statedir_watch.c - which files there are and what they say: the initial
 * scan, then inotify on the directory. Only the files an event names are
 * re-read; statedir_apply() then diffs what they contribute.
 *
 * Events are collected for STATEDIR_SETTLE_MS before anything is re-read,
 * so an editor that renames the old file away and writes a new one produces
 * one MODIFIED instead of DELETED + ADDED (and keeps the object's status).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statedir.h"
#include "statedir_parse.h"

#define WATCH_MASK                                                                                 \
	(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_DELETE_SELF |   \
	 IN_MOVE_SELF | IN_ONLYDIR)

static void file_free(struct sd_file *f)
{
	if (!f)
		return;
	json_decref(f->parsed);
	free(f->name);
	free(f);
}

void statedir_files_free(struct statedir *sd)
{
	for (size_t i = 0; i < sd->n_files; i++)
		file_free(sd->files[i]);
	free(sd->files);
	sd->files = NULL;
	sd->n_files = 0;
}

/* Index of `name`, or where it would be inserted (with *found false). */
static size_t file_index(struct statedir *sd, const char *name, bool *found)
{
	size_t lo = 0, hi = sd->n_files;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(sd->files[mid]->name, name);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

/* Contents of a regular file; -ENOENT if it is gone or not a regular file. */
static int read_file(struct statedir *sd, const char *name, char **ret_buf, size_t *ret_len)
{
	char *path = NULL, *buf = NULL, *nbuf;
	size_t len = 0, cap;
	struct stat st;
	ssize_t n;
	int fd, r;

	if (asprintf(&path, "%s/%s", sd->path, name) < 0)
		return -ENOMEM;
	/* O_NONBLOCK: a FIFO named like a manifest must not hang the agent. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	free(path);
	if (fd < 0)
		return errno == ENOENT || errno == ENXIO ? -ENOENT : -errno;
	r = -errno;
	if (fstat(fd, &st) < 0)
		goto out;
	r = -ENOENT;
	if (!S_ISREG(st.st_mode))
		goto out;
	/* Read to EOF, not to st_size: the file may be growing. */
	cap = st.st_size < STATEDIR_MAX_FILE ? (size_t)st.st_size + 1 : STATEDIR_MAX_FILE + 1;
	for (;;) {
		if (len == cap || !buf) {
			r = -EFBIG;
			if (len > STATEDIR_MAX_FILE)
				goto out;
			cap = buf ? cap * 2 : cap;
			if (cap > STATEDIR_MAX_FILE + 1)
				cap = STATEDIR_MAX_FILE + 1;
			r = -ENOMEM;
			if (!(nbuf = realloc(buf, cap)))
				goto out;
			buf = nbuf;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*ret_buf = buf;
	*ret_len = len;
	buf = NULL;
	r = 0;
out:
	free(buf);
	close(fd);
	return r;
}

/*
 * A file with errors keeps the objects it defined before that its good
 * documents no longer name: a typo must not delete a Service. Deleting the
 * file, or fixing it, removes them. An old item is kept as it is: with its
 * tree, or compact ("LINE:COL:KEY") when the store holds its document.
 */
static void retain(struct statedir *sd, const char *name, const json_t *old, json_t *parsed)
{
	json_t *objs = json_object_get(parsed, "objects"), *keys, *item, *copy;
	size_t i, kept = 0;
	char *key;

	if (!old || !json_array_size(json_object_get(parsed, "errors")) || !(keys = json_object()))
		return;
	json_array_foreach(objs, i, item)
		if ((key = statedir_item_key(item))) {
			json_object_set_new(keys, key, json_true());
			free(key);
		}
	json_array_foreach(json_object_get(old, "objects"), i, item) {
		if (!(key = statedir_item_key(item)))
			continue;
		/* A compact item (a string) is never modified in place: shared. */
		if (!json_object_get(keys, key) &&
		    (copy = json_is_string(item) ? json_incref(item) : json_copy(item)) &&
		    (json_is_string(copy) || !json_object_set_new(copy, "retained", json_true())) &&
		    !json_array_append_new(objs, copy)) {
			json_object_set_new(keys, key, json_true());
			kept++;
		}
		free(key);
	}
	json_decref(keys);
	if (kept)
		axn_info(sd->self, "%s/%s has errors: keeping %zu object(s) it defined before",
			 sd->path, name, kept);
}

int statedir_file_update(struct statedir *sd, const char *name)
{
	struct sd_file *f, **files;
	json_t *parsed = NULL;
	char *buf = NULL;
	size_t len = 0, i;
	bool found;
	int r;

	i = file_index(sd, name, &found);
	f = found ? sd->files[i] : NULL;
	r = read_file(sd, name, &buf, &len);
	if (r == 0) {
		r = statedir_parse(name, buf, len, &parsed);
		free(buf);
	} else if (r != -ENOENT && r != -ENOMEM) {
		/* Unreadable is an error of the file, reported like a bad document. */
		char msg[128];

		snprintf(msg, sizeof(msg), "cannot read: %s", strerror(-r));
		parsed = json_pack("{s:i, s:[], s:[{s:s}]}", "documents", 0, "objects", "errors",
				   "message", msg);
		r = parsed ? 0 : -ENOMEM;
	}
	if (r == -ENOENT) {
		if (f) {
			memmove(&sd->files[i], &sd->files[i + 1],
				(sd->n_files - i - 1) * sizeof(*sd->files));
			sd->n_files--;
			file_free(f);
		}
		return 0;
	}
	if (r < 0)
		return r;
	retain(sd, name, f ? f->parsed : NULL, parsed);
	if (f) {
		json_decref(f->parsed);
		f->parsed = parsed;
		return 0;
	}
	if (!(f = calloc(1, sizeof(*f))) || !(f->name = strdup(name)) ||
	    !(files = realloc(sd->files, (sd->n_files + 1) * sizeof(*files)))) {
		if (f)
			free(f->name);
		free(f);
		json_decref(parsed);
		return -ENOMEM;
	}
	f->parsed = parsed;
	sd->files = files;
	memmove(&files[i + 1], &files[i], (sd->n_files - i) * sizeof(*files));
	files[i] = f;
	sd->n_files++;
	return 0;
}

int statedir_rescan(struct statedir *sd)
{
	json_t *names = json_object(), *v;
	struct dirent *de;
	const char *name;
	DIR *d;
	int r = 0;

	if (!names)
		return -ENOMEM;
	if (!(d = opendir(sd->path))) {
		r = -errno;
		goto out;
	}
	while ((de = readdir(d)))
		if (statedir_is_manifest(de->d_name) &&
		    json_object_set_new(names, de->d_name, json_true()))
			r = -ENOMEM;
	closedir(d);
	if (r < 0)
		goto out;
	/* Files that are gone first, then every file present, re-read. */
	for (size_t i = sd->n_files; i-- > 0;)
		if (!json_object_get(names, sd->files[i]->name) &&
		    (r = statedir_file_update(sd, sd->files[i]->name)) < 0)
			goto out;
	json_object_foreach(names, name, v)
		if ((r = statedir_file_update(sd, name)) < 0)
			goto out;
out:
	json_decref(names);
	return r;
}

static void on_retry(struct axn_mod *self, void *arg);

static void watch_lost(struct statedir *sd, int err)
{
	const struct axn_host *h = sd->self->host;

	if (sd->wd >= 0)
		inotify_rm_watch(sd->ifd, sd->wd);
	sd->wd = -1;
	sd->watch_err = err;
	if (!sd->retry &&
	    h->timer_add(sd->self, STATEDIR_RETRY_MS, 1, on_retry, sd, &sd->retry) < 0)
		sd->retry = NULL;
	axn_warn(sd->self,
		 "cannot watch %s: %s; keeping the objects read so far, retrying every %d s",
		 sd->path, strerror(err), STATEDIR_RETRY_MS / 1000);
	statedir_health(sd);
}

static int watch_add(struct statedir *sd)
{
	int wd = inotify_add_watch(sd->ifd, sd->path, WATCH_MASK);

	if (wd < 0)
		return -errno;
	sd->wd = wd;
	sd->watch_err = 0;
	return 0;
}

/* Re-read what changed and update the store. */
static void process(struct statedir *sd)
{
	const char *name;
	json_t *v;
	int r = 0;

	if (sd->pending_all) {
		r = statedir_rescan(sd);
	} else {
		json_object_foreach(sd->pending, name, v)
			if ((r = statedir_file_update(sd, name)) < 0)
				break;
	}
	sd->pending_all = false;
	json_object_clear(sd->pending);
	if (r == -ENOMEM)
		axn_err(sd->self, "re-reading %s: out of memory", sd->path);
	else if (r < 0 && sd->wd >= 0)
		watch_lost(sd, -r);
	statedir_apply(sd);
}

static void on_settle(struct axn_mod *self, void *arg)
{
	struct statedir *sd = arg;

	self->host->handle_free(self, sd->settle);
	sd->settle = NULL;
	process(sd);
}

static void on_retry(struct axn_mod *self, void *arg)
{
	struct statedir *sd = arg;

	if (watch_add(sd) < 0)
		return;
	self->host->handle_free(self, sd->retry);
	sd->retry = NULL;
	axn_info(self, "watching %s again", sd->path);
	sd->pending_all = true;
	process(sd);
}

/* A new symlink is a file appearing (ConfigMap volumes); a new file is still being written. */
static bool created_link(struct statedir *sd, const char *name)
{
	struct stat st;
	char *path;
	int r;

	if (asprintf(&path, "%s/%s", sd->path, name) < 0)
		return true;
	r = lstat(path, &st);
	free(path);
	return r == 0 && S_ISLNK(st.st_mode);
}

static void on_inotify(struct axn_mod *self, int fd, uint32_t events, void *arg)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct statedir *sd = arg;
	const struct inotify_event *ev;
	bool lost = false;
	ssize_t n;

	for (;;) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (char *p = buf; p < buf + n; p += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)p;
			if (ev->mask & IN_Q_OVERFLOW)
				sd->pending_all = true;
			if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
				lost = true;
			if (!ev->len)
				continue;
			/* Kubernetes swaps a ConfigMap volume's files by renaming "..data". */
			if (!strcmp(ev->name, "..data"))
				sd->pending_all = true;
			else if (statedir_is_manifest(ev->name) &&
				 (!(ev->mask & IN_CREATE) || created_link(sd, ev->name)))
				json_object_set_new(sd->pending, ev->name, json_true());
		}
	}
	if (lost && sd->wd >= 0)
		watch_lost(sd, ENOENT);
	if ((sd->pending_all || json_object_size(sd->pending)) && !sd->settle &&
	    self->host->timer_add(self, STATEDIR_SETTLE_MS, 0, on_settle, sd, &sd->settle) < 0) {
		/* No timer: do not lose the change, re-read now. */
		sd->settle = NULL;
		process(sd);
	}
}

int statedir_watch_start(struct statedir *sd)
{
	struct axn_mod *self = sd->self;
	int r;

	sd->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (sd->ifd < 0) {
		r = -errno;
		axn_err(self, "inotify_init1 failed: %s", strerror(-r));
		return r;
	}
	r = self->host->io_add(self, sd->ifd, AXN_IO_READ, on_inotify, sd, &sd->io);
	if (r < 0) {
		axn_err(self, "watching the inotify fd failed: %s", strerror(-r));
		return r;
	}
	/* Watch before the scan, so a change during the scan is not missed. */
	r = watch_add(sd);
	if (r == 0)
		r = statedir_rescan(sd);
	if (r == -ENOMEM) {
		axn_err(self, "reading %s: out of memory", sd->path);
		return r;
	}
	/* A missing directory is not fatal: the agent runs with nothing until it appears. */
	if (r < 0)
		watch_lost(sd, -r);
	statedir_apply(sd);
	return 0;
}

void statedir_watch_stop(struct statedir *sd)
{
	const struct axn_host *h = sd->self->host;

	h->handle_free(sd->self, sd->io);
	h->handle_free(sd->self, sd->settle);
	h->handle_free(sd->self, sd->retry);
	sd->io = sd->settle = sd->retry = NULL;
	if (sd->ifd >= 0)
		close(sd->ifd);
	sd->ifd = sd->wd = -1;
}
