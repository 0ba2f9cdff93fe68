// SPDX-License-Identifier: Apache-2.0
/*
 * Dependency ordering. A module provides "mod:<name>" and what its descriptor
 * lists; the core provides its own capabilities. `requires` are hard (a
 * module whose requirement nobody usable provides is disabled, and so on
 * transitively), `wants` only order. Kahn's algorithm, ties broken by conf
 * order; a cycle is a configuration error that names every module on it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static const char *const core_provides[] = {
	"hook:tc", "hook:xdp", "hook:cgroup", "svc:api", "svc:metrics", "svc:maps",
};

static bool usable(const struct module *m)
{
	return m->state != MOD_FAILED && m->state != MOD_DISABLED;
}

bool deps_provides(const struct module *m, const char *cap)
{
	if (!strncmp(cap, "mod:", 4) && !strcmp(cap + 4, m->name))
		return true;
	for (const char *const *p = m->desc->provides; p && *p; p++)
		if (!strcmp(*p, cap))
			return true;
	return false;
}

bool deps_core_has(const char *cap)
{
	if (!strncmp(cap, "store:", 6))
		return true; /* the store carries any kind; sources fill it */
	for (size_t i = 0; i < sizeof(core_provides) / sizeof(core_provides[0]); i++)
		if (!strcmp(core_provides[i], cap))
			return true;
	return false;
}

/* Who provides cap among the usable modules: index of the first, or -1. */
static int provider(struct module **mods, size_t n, const char *cap, size_t skip)
{
	for (size_t i = 0; i < n; i++)
		if (i != skip && usable(mods[i]) && deps_provides(mods[i], cap))
			return (int)i;
	return -1;
}

static void disable_unmet(struct module **mods, size_t n)
{
	bool changed = true;

	while (changed) {
		changed = false;
		for (size_t i = 0; i < n; i++) {
			struct module *m = mods[i];

			if (!usable(m))
				continue;
			for (const char *const *r = m->desc->requires; r && *r; r++) {
				const char *who = NULL;

				if (deps_core_has(*r) || provider(mods, n, *r, i) >= 0)
					continue;
				for (size_t j = 0; j < n; j++)
					if (j != i && deps_provides(mods[j], *r))
						who = mods[j]->name;
				m->state = MOD_DISABLED;
				free(m->fail_reason);
				if (asprintf(&m->fail_reason,
					     who ? "requires %s, but module %s is not running"
						 : "requires %s, which no enabled module provides",
					     *r, who) < 0)
					m->fail_reason = NULL;
				changed = true;
				break;
			}
		}
	}
}

/* edge[i*n+j]: module i must start before module j. */
static void add_edges(struct module **mods, size_t n, const char *const *caps, size_t j, bool *edge)
{
	for (const char *const *c = caps; c && *c; c++)
		for (size_t i = 0; i < n; i++)
			if (i != j && usable(mods[i]) && deps_provides(mods[i], *c))
				edge[i * n + j] = true;
}

static int report_cycle(struct module **mods, size_t n, const bool *edge, const bool *done,
			char **ret_err)
{
	size_t *path = calloc(n + 1, sizeof(*path)), len = 0, start = n, cur;
	char buf[1024];
	size_t off = 0;
	int *seen_at = malloc(n * sizeof(*seen_at));

	if (!path || !seen_at) {
		free(path);
		free(seen_at);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		seen_at[i] = -1;
	for (cur = 0; cur < n && (done[cur] || !usable(mods[cur])); cur++)
		;
	/* Walk predecessors among the leftover nodes until one repeats. */
	while (cur < n && seen_at[cur] < 0) {
		seen_at[cur] = (int)len;
		path[len++] = cur;
		size_t next = n;

		for (size_t i = 0; i < n; i++)
			if (!done[i] && usable(mods[i]) && edge[i * n + cur]) {
				next = i;
				break;
			}
		cur = next;
	}
	if (cur < n)
		start = (size_t)seen_at[cur];
	off += (size_t)snprintf(buf + off, sizeof(buf) - off, "dependency cycle:");
	/* path holds successors-first; print in start order. */
	for (size_t k = len; start < n && k-- > start && off < sizeof(buf);)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, " %s ->", mods[path[k]]->name);
	if (start < n && off < sizeof(buf))
		snprintf(buf + off, sizeof(buf) - off, " %s", mods[path[len - 1]]->name);
	if (asprintf(ret_err, "%s", buf) < 0)
		*ret_err = NULL;
	free(path);
	free(seen_at);
	return -ELOOP;
}

int deps_order(struct module **mods, size_t n, struct module ***ret_order, char **ret_err)
{
	struct module **order = NULL;
	bool *edge = NULL, *done = NULL;
	size_t k = 0, want = 0;
	int r = 0;

	disable_unmet(mods, n);
	order = calloc(n + 1, sizeof(*order));
	edge = calloc(n * n + 1, sizeof(*edge));
	done = calloc(n + 1, sizeof(*done));
	if (!order || !edge || !done) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t j = 0; j < n; j++) {
		if (!usable(mods[j]))
			continue;
		want++;
		add_edges(mods, n, mods[j]->desc->requires, j, edge);
		add_edges(mods, n, mods[j]->desc->wants, j, edge);
	}
	while (k < want) {
		size_t pick = n;

		for (size_t j = 0; j < n && pick == n; j++) {
			bool ready = !done[j] && usable(mods[j]);

			for (size_t i = 0; ready && i < n; i++)
				if (edge[i * n + j] && !done[i] && usable(mods[i]))
					ready = false;
			if (ready)
				pick = j;
		}
		if (pick == n) {
			r = report_cycle(mods, n, edge, done, ret_err);
			goto out;
		}
		done[pick] = true;
		mods[pick]->order = (int)k;
		order[k++] = mods[pick];
	}
	*ret_order = order;
	order = NULL;
out:
	free(order);
	free(edge);
	free(done);
	return r;
}
