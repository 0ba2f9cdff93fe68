// SPDX-License-Identifier: Apache-2.0
/*
 * lbipam_state.c - the state file: every agent keeps its decisions in
 * <rundir>/lbipam-state.json (written atomically, shortly after a change
 * and at stop) and adopts them again after a restart, also when the store
 * lost the status it wrote (status kept in memory only) or when this agent
 * never writes status (a reader).
 *
 * A reader may follow the writer's state file (option `follow`, a path on a
 * shared or local file system): it polls the file and adopts the writer's
 * decisions before its own, so every node shows what the writer decided.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lbipam.h"

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

json_t *lbipam_state_build(struct lbipam *l)
{
	const char *node = l->self->host->agent_info(l->self, "node_name");
	json_t *svcs = json_object(), *pools = json_object(), *doc;

	if (!svcs || !pools)
		goto nomem;
	lb_htab_foreach(&l->svcs, i, hn) {
		struct lb_svc *s = container_of(hn, struct lb_svc, hn);
		json_t *ips;

		if (!s->req.ours || !s->n_ips)
			continue;
		if (!(ips = json_array()) || json_object_set_new(svcs, s->key, ips))
			goto nomem;
		for (uint8_t k = 0; k < s->n_ips; k++) {
			char b[LB_IPSTR];

			if (json_array_append_new(ips, json_string(lb_ip_str(&s->ips[k]->ip, b))))
				goto nomem;
		}
	}
	for (size_t i = 0; i < l->n_pools; i++) {
		struct lbp *p = l->pools[i];

		if (json_object_set_new(pools, p->key,
					json_pack("{s:I, s:b}", "seq", (json_int_t)p->p.seq,
						  "conflicting", p->p.conflicting)))
			goto nomem;
	}
	doc = json_pack("{s:i, s:s?, s:b, s:o, s:o}", "version", 1, "node", node, "writer",
			l->writer, "services", svcs, "pools", pools);
	return doc;
nomem:
	json_decref(svcs);
	json_decref(pools);
	return NULL;
}

int lbipam_state_write(const char *path, const char *text)
{
	char *tmp;
	FILE *f;
	int r = 0, fd;

	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || !(f = fdopen(fd, "w"))) {
		r = -errno;
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (fputs(text, f) < 0 || fputc('\n', f) < 0)
		r = -EIO;
	if (fflush(f) != 0 || fsync(fileno(f)) < 0)
		r = r ?: -errno;
	if (fclose(f) != 0)
		r = r ?: -errno;
	/* Readers polling the file see the old or the new document, never half of one. */
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
out:
	if (r < 0)
		unlink(tmp);
	free(tmp);
	return r;
}

int lbipam_state_read(const char *path, json_t **ret_doc, char *err, size_t errlen)
{
	json_error_t je;
	json_t *doc;

	if (access(path, F_OK) < 0 && errno == ENOENT) {
		*ret_doc = NULL;
		return 0;
	}
	if (!(doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je))) {
		snprintf(err, errlen, "%s:%d: %s", path, je.line, je.text);
		return -EINVAL;
	}
	if (!json_is_object(json_object_get(doc, "services")) ||
	    !json_is_integer(json_object_get(doc, "version"))) {
		snprintf(err, errlen, "%s: not an lbipam state file", path);
		json_decref(doc);
		return -EINVAL;
	}
	*ret_doc = doc;
	return 0;
}

void lbipam_state_save(struct lbipam *l)
{
	json_t *doc;
	char *text = NULL;
	uint64_t h = 0;
	int r;

	if (!l->state_path || !l->save_dirty)
		return;
	if (!(doc = lbipam_state_build(l)) ||
	    !(text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS))) {
		r = -ENOMEM;
	} else if ((h = lb_str_hash(text)) == l->saved_hash && !l->save_failed) {
		r = 0; /* the same as on disk: readers polling it see no change either */
	} else {
		r = lbipam_state_write(l->state_path, text);
	}
	json_decref(doc);
	free(text);
	if (r < 0) {
		if (!l->save_failed)
			axn_warn(l->self, "state file %s: write failed: %s (allocations still hold; a restart relies on status)",
				 l->state_path, strerror(-r));
		l->save_failed = true;
		return;
	}
	if (l->save_failed)
		axn_info(l->self, "state file %s: written again", l->state_path);
	l->save_failed = false;
	l->save_dirty = false;
	l->saved_hash = h;
}

static void save_cb(struct axn_mod *self, void *arg)
{
	struct lbipam *l = self->state;

	l->save_fired = true;
	lbipam_state_save(l);
}

void lbipam_state_touch(struct lbipam *l)
{
	const struct axn_host *h = l->self->host;

	if (!l->state_path)
		return;
	l->save_dirty = true;
	if (l->save_timer && !l->save_fired)
		return; /* one is due already: changes in a burst make one write */
	/* A one-shot timer that fired stays allocated until freed: free it here, not in its callback. */
	h->handle_free(l->self, l->save_timer);
	l->save_timer = NULL;
	l->save_fired = false;
	if (h->timer_add(l->self, (uint64_t)l->conf->save_delay_ms, 0, save_cb, NULL, &l->save_timer) < 0)
		lbipam_state_save(l);
}

int lbipam_follow_poll(struct lbipam *l)
{
	struct stat st;
	char err[512];
	json_t *doc = NULL;
	const char *node;

	if (!l->follow_path)
		return 0;
	if (stat(l->follow_path, &st) < 0) {
		/* Not there (yet): keep what was read; the writer's file comes back on its next write. */
		if (!l->follow_failed && errno != ENOENT)
			axn_warn(l->self, "follow %s: %s", l->follow_path, strerror(errno));
		l->follow_failed = errno != ENOENT;
		return 0;
	}
	if (l->follow_id.seen && l->follow_id.dev == st.st_dev && l->follow_id.ino == st.st_ino &&
	    l->follow_id.size == st.st_size && l->follow_id.mtime.tv_sec == st.st_mtim.tv_sec &&
	    l->follow_id.mtime.tv_nsec == st.st_mtim.tv_nsec)
		return 0;
	if (lbipam_state_read(l->follow_path, &doc, err, sizeof(err)) < 0) {
		/* Keep the last good document: a half-edited file must not move anybody. */
		if (!l->follow_failed)
			axn_warn(l->self, "follow: %s", err);
		l->follow_failed = true;
		return 0;
	}
	if (!doc)
		return 0; /* gone between stat and read */
	l->follow_id.dev = st.st_dev;
	l->follow_id.ino = st.st_ino;
	l->follow_id.size = st.st_size;
	l->follow_id.mtime = st.st_mtim;
	node = json_string_value(json_object_get(doc, "node"));
	if (!l->follow || l->follow_failed)
		axn_info(l->self, "following the decisions of %s (%s, %zu services)", node ? node : "?",
			 l->follow_path, json_object_size(json_object_get(doc, "services")));
	if (!json_is_true(json_object_get(doc, "writer")))
		axn_warn(l->self, "follow: %s was written by a reader, not the writer", l->follow_path);
	l->follow_failed = false;
	json_decref(l->follow);
	l->follow = doc;
	return 1;
}

static void follow_cb(struct axn_mod *self, void *arg)
{
	struct lbipam *l = self->state;

	if (lbipam_follow_poll(l) == 1 && l->synced && l->awake)
		lbipam_reconcile_all(l, "the writer's state changed");
}

int lbipam_follow_start(struct lbipam *l)
{
	if (!l->follow_path)
		return 0;
	return l->self->host->timer_add(l->self, (uint64_t)l->conf->follow_interval_ms, 1, follow_cb,
					NULL, &l->follow_timer);
}
