// SPDX-License-Identifier: Apache-2.0
/* Handles: what a module holds through the host, reclaimed when it stops. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core.h"

struct axn_handle *handle_new(struct module *owner, enum handle_kind kind, size_t size,
			      void (*destroy)(struct axn_handle *), const char *fmt, ...)
{
	struct axn_handle *h;
	va_list ap;

	h = calloc(1, size < sizeof(*h) ? sizeof(*h) : size);
	if (!h)
		return NULL;
	va_start(ap, fmt);
	if (vasprintf(&h->what, fmt, ap) < 0)
		h->what = NULL;
	va_end(ap);
	h->kind = kind;
	h->owner = owner;
	h->destroy = destroy;
	TAILQ_INSERT_TAIL(&owner->handles, h, link);
	return h;
}

void handle_release(struct axn_handle *h)
{
	if (!h)
		return;
	TAILQ_REMOVE(&h->owner->handles, h, link);
	if (h->destroy)
		h->destroy(h);
	free(h->what);
	free(h);
}

int handles_reclaim(struct module *m, bool report)
{
	struct axn_handle *h;
	int n = 0;

	while ((h = TAILQ_LAST(&m->handles, handle_list))) {
		/* Maps and hooks are expected to outlive a module's run. */
		if (report && h->kind != H_MAP && h->kind != H_HOOK && h->kind != H_SUB &&
		    h->kind != H_API && h->kind != H_METRIC) {
			log_msg(m->name, AXN_LOG_WARN, "leaked %s reclaimed at stop",
				h->what ? h->what : "handle");
			n++;
		}
		handle_release(h);
	}
	return n;
}
