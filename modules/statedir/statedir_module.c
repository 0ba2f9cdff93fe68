// SPDX-License-Identifier: Apache-2.0
/*
 * statedir_module.c - the statedir module: Kubernetes-style manifests from a
 * directory, the agent's embedded default resource source. Descriptor and
 * lifecycle glue only; see README.md for what it does and the files in
 * statedir.h for how.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "statedir.h"

static const struct axn_source_ops statedir_ops = {
	.size = sizeof(struct axn_source_ops),
	.write_status = statedir_status_write,
};

static int statedir_init(struct axn_mod *self, const void *conf)
{
	const struct statedir_conf *c = conf;
	struct statedir *sd = calloc(1, sizeof(*sd));

	if (!sd)
		return -ENOMEM;
	sd->self = self;
	sd->ifd = sd->wd = -1;
	sd->path = strdup(c->path ? c->path : "");
	sd->status_opt = strdup(c->status_dir ? c->status_dir : "");
	sd->current = json_object();
	sd->errors = json_object();
	sd->refused = json_object();
	sd->status = json_object();
	sd->pending = json_object();
	self->state = sd;
	if (!sd->path || !sd->status_opt || !sd->current || !sd->errors || !sd->refused ||
	    !sd->status || !sd->pending)
		return -ENOMEM; /* fini frees what was allocated */
	if (!*sd->path) {
		axn_err(self, "path is empty");
		return -EINVAL;
	}
	return 0;
}

static int statedir_stop(struct axn_mod *self)
{
	struct statedir *sd = self->state;
	const struct axn_host *h = self->host;

	statedir_watch_stop(sd);
	h->handle_free(self, sd->api);
	h->handle_free(self, sd->m_objects);
	h->handle_free(self, sd->m_errors);
	sd->api = sd->m_objects = sd->m_errors = NULL;
	return 0;
}

static int statedir_start(struct axn_mod *self)
{
	struct statedir *sd = self->state;
	const struct axn_host *h = self->host;
	const char *step;
	int r;

	sd->node = h->agent_info(self, "node_name");
	step = "status";
	if ((r = statedir_status_open(sd)) < 0)
		goto fail;
	step = "metrics";
	if ((r = h->metric_new(self, "objects", AXN_METRIC_GAUGE, "objects read from manifests",
			       &sd->m_objects)) < 0 ||
	    (r = h->metric_new(self, "errors", AXN_METRIC_GAUGE, "manifest errors",
			       &sd->m_errors)) < 0)
		goto fail;
	step = "source_register";
	if ((r = h->source_register(self, "statedir", &statedir_ops, sd)) < 0)
		goto fail;
	step = "watch";
	if ((r = statedir_watch_start(sd)) < 0)
		goto fail;
	/* Status of objects no manifest defines any more is stale, unless the scan failed. */
	if (sd->wd >= 0)
		statedir_status_prune(sd);
	step = "source_synced";
	if ((r = h->source_synced(self)) < 0)
		goto fail;
	step = "api_register";
	if ((r = h->api_register(self, "files", statedir_api_files, sd, &sd->api)) < 0)
		goto fail;
	axn_info(self, "serving %zu objects from %zu files in %s (status in %s)",
		 json_object_size(sd->current), sd->n_files, sd->path,
		 sd->status_dir ? sd->status_dir : "memory");
	return 0;
fail:
	/* statedir_watch_start() logs its own failures. */
	if (strcmp(step, "watch"))
		axn_err(self, "start: %s failed: %s", step, strerror(-r));
	statedir_stop(self);
	return r;
}

static void statedir_fini(struct axn_mod *self)
{
	struct statedir *sd = self->state;

	if (!sd)
		return;
	statedir_files_free(sd);
	json_decref(sd->current);
	json_decref(sd->errors);
	json_decref(sd->refused);
	json_decref(sd->status);
	json_decref(sd->pending);
	free(sd->path);
	free(sd->status_opt);
	free(sd->status_dir);
	free(sd);
	self->state = NULL;
}

static const struct axn_option statedir_options[] = {
	{"path", AXN_OPT_STRING, 0, offsetof(struct statedir_conf, path), "/etc/axoneme/state", 0,
	 0, "directory of manifests (*.yaml, *.yml, *.json), watched with inotify"},
	{"status_dir", AXN_OPT_STRING, 0, offsetof(struct statedir_conf, status_dir), "", 0, 0,
	 "where this agent keeps status; \"\" = <rundir>/statedir-status"},
	AXN_OPTIONS_END,
};

AXN_MODULE_DEFINE(statedir, .version = "0.1.0",
		  .description = "resources from Kubernetes-style manifests on disk",
		  .options = statedir_options, .conf_size = sizeof(struct statedir_conf),
		  .init = statedir_init, .start = statedir_start, .stop = statedir_stop,
		  .fini = statedir_fini);
