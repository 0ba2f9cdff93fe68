/* SPDX-License-Identifier: Apache-2.0 */
/*
 * statedir.h - the statedir module's state, shared by its parts:
 *
 *   statedir_module.c   descriptor and lifecycle glue
 *   statedir_parse.c    file contents -> documents and errors (no host)
 *   statedir_watch.c    directory scan, inotify, per-file re-read
 *   statedir_objects.c  files -> the store: winners, diff, errors, API
 *   statedir_status.c   status written by consumers: memory + status_dir
 */
#ifndef STATEDIR_H
#define STATEDIR_H

#include <stdbool.h>
#include <stddef.h>

#include <axoneme/axoneme.h>

/* An editor's save (rename old, write new) arrives as several events: wait for quiet. */
#define STATEDIR_SETTLE_MS 50
/* How often a missing or removed directory is looked for again. */
#define STATEDIR_RETRY_MS 5000

struct statedir_conf {
	const char *path;
	const char *status_dir;
};

/* One manifest file as last read. */
struct sd_file {
	char *name;       /* relative to the directory */
	/*
	 * statedir_parse() result, plus retained objects. An item whose document
	 * the store holds as is is compact: the string "LINE:COL:KEY" (key as
	 * statedir_key()) instead of {"line", "col", "object"}.
	 */
	json_t *parsed;
	size_t n_objects; /* objects of this file in the store (after duplicates) */
	size_t n_errors;  /* errors reported against this file */
	bool repack;      /* items gave up their trees: copy what is left (repack()) */
};

struct statedir {
	struct axn_mod *self;
	char *path;
	char *status_opt;   /* the status_dir option as given */
	char *status_dir;   /* resolved at start; NULL: status lives in memory only */
	const char *node;   /* agent_info("node_name"), may be NULL */
	struct sd_file **files; /* sorted by name: the first file wins a duplicate */
	size_t n_files;
	json_t *current;    /* key -> true: put in the store (the document is there) */
	json_t *errors;     /* where -> message, as reported with source_error */
	json_t *refused;    /* key -> {"doc", "msg"}: puts the store refused */
	json_t *status;     /* key -> {"kind", "namespace", "name", "status", "fresh"} */
	json_t *pending;    /* file names changed since the last settle (a set) */
	bool pending_all;   /* rescan every file */
	int ifd, wd;        /* inotify fd and the directory's watch (-1: not watching) */
	int watch_err;      /* why wd is -1 (positive errno) */
	uint32_t health;
	char health_reason[160];
	struct axn_handle *io, *settle, *retry, *api, *m_objects, *m_errors;
};

/* statedir_watch.c */
int statedir_watch_start(struct statedir *sd);
void statedir_watch_stop(struct statedir *sd);
/* Re-read one file (gone: forget it) or every file; the store is untouched until apply. */
int statedir_file_update(struct statedir *sd, const char *name);
int statedir_rescan(struct statedir *sd);
void statedir_files_free(struct statedir *sd);

/* statedir_objects.c */
char *statedir_key(const char *kind, const char *ns, const char *name);
/* The key of an item of a file's "objects" (with its tree or its "key"). */
char *statedir_item_key(const json_t *item);
/* Bring the store and the reported errors in line with the files read. */
void statedir_apply(struct statedir *sd);
void statedir_health(struct statedir *sd);
int statedir_api_files(struct axn_mod *self, const json_t *req, json_t **ret_resp, char **ret_err,
		       void *arg);

/* statedir_status.c */
int statedir_status_open(struct statedir *sd);
int statedir_status_write(struct axn_mod *self, const struct axn_obj *obj, const json_t *status,
			  void *arg);
/* The document to put for `doc`: with its stored status, if any. New reference. */
json_t *statedir_status_merge(struct statedir *sd, const char *key, json_t *doc);
/* The object is gone: so is its status. */
void statedir_status_forget(struct statedir *sd, const char *key);
/* Drop status kept for objects the manifests no longer define. */
void statedir_status_prune(struct statedir *sd);

#endif /* STATEDIR_H */
