// SPDX-License-Identifier: Apache-2.0
/*
 * Local API: JSON over a unix socket, one request per connection.
 *   client: {"path": "status", "args": {...}}\n
 *   agent:  {"ok": true, "data": ...}\n   or  {"ok": false, "error": "...", "errno": N}\n
 * Modules register their own paths ("<module>/<path>").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "core.h"

#define API_MAX_REQUEST (1u << 20)

struct endpoint {
	struct axn_handle h;
	char *path;
	axn_api_cb cb;
	void *arg;
	struct endpoint *next;
};

/* Another name for an endpoint, declared by its module (`axoneme service list`). */
struct alias {
	struct axn_handle h;
	char *alias, *path;
	struct alias *next;
};

struct api {
	struct agent *agent;
	struct evconnlistener *lst;
	char *sock_path;
	struct endpoint *eps;
	struct alias *aliases;
};

static struct api *A;

static void ep_destroy(struct axn_handle *h)
{
	struct endpoint *e = (struct endpoint *)h;

	for (struct endpoint **pp = &A->eps; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	free(e->path);
}

int api_register(struct module *m, const char *path, axn_api_cb cb, void *arg,
		 struct axn_handle **ret_h)
{
	struct endpoint *e;
	char *full;

	if (!path || !*path || !cb)
		return -EINVAL;
	/* Core paths are bare; module paths live under the module's name. */
	if (m == m->agent->core_mod)
		full = strdup(path);
	else if (asprintf(&full, "%s/%s", m->name, path) < 0)
		full = NULL;
	if (!full)
		return -ENOMEM;
	for (e = A->eps; e; e = e->next)
		if (!strcmp(e->path, full)) {
			free(full);
			return -EEXIST;
		}
	e = (struct endpoint *)handle_new(m, H_API, sizeof(*e), ep_destroy, "endpoint %s", full);
	if (!e) {
		free(full);
		return -ENOMEM;
	}
	e->path = full;
	e->cb = cb;
	e->arg = arg;
	e->next = A->eps;
	A->eps = e;
	if (ret_h)
		*ret_h = &e->h;
	return 0;
}

static void alias_destroy(struct axn_handle *h)
{
	struct alias *al = (struct alias *)h;

	for (struct alias **pp = &A->aliases; *pp; pp = &(*pp)->next)
		if (*pp == al) {
			*pp = al->next;
			break;
		}
	free(al->alias);
	free(al->path);
}

int api_alias(struct module *m, const char *alias, const char *path)
{
	struct alias *al;

	if (!alias || !*alias || !path || !*path || m == m->agent->core_mod)
		return -EINVAL;
	for (struct endpoint *e = A->eps; e; e = e->next)
		if (!strcmp(e->path, alias))
			return -EEXIST;
	for (al = A->aliases; al; al = al->next)
		if (!strcmp(al->alias, alias))
			return -EEXIST;
	al = (struct alias *)handle_new(m, H_API, sizeof(*al), alias_destroy, "alias %s", alias);
	if (!al)
		return -ENOMEM;
	al->alias = strdup(alias);
	if (!al->alias || asprintf(&al->path, "%s/%s", m->name, path) < 0) {
		al->path = NULL;
		handle_release(&al->h);
		return -ENOMEM;
	}
	al->next = A->aliases;
	A->aliases = al;
	return 0;
}

static struct endpoint *find_endpoint(const char *path)
{
	for (int hop = 0; path && hop < 2; hop++) {
		for (struct endpoint *e = A->eps; e; e = e->next)
			if (!strcmp(e->path, path))
				return e;
		/* Not an endpoint: maybe an alias of one (resolved once, never chained). */
		const char *next = NULL;

		for (struct alias *al = A->aliases; al && !next; al = al->next)
			if (!strcmp(al->alias, path))
				next = al->path;
		path = next;
	}
	return NULL;
}

static json_t *handle_request(const char *buf, size_t len)
{
	json_t *req, *args, *data = NULL, *resp;
	json_error_t jerr;
	const char *path;
	struct endpoint *e;
	char *err = NULL;
	int r;

	req = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req || !json_is_object(req)) {
		json_decref(req);
		return json_pack("{s:b, s:s+, s:i}", "ok", 0, "error", "bad request: ",
				 req ? "not an object" : jerr.text, "errno", EINVAL);
	}
	path = json_string_value(json_object_get(req, "path"));
	args = json_object_get(req, "args");
	e = find_endpoint(path);
	if (!e) {
		resp = json_pack("{s:b, s:s+, s:i}", "ok", 0, "error", "no such endpoint: ",
				 path ? path : "(none)", "errno", ENOENT);
		json_decref(req);
		return resp;
	}
	if (!json_is_object(args))
		args = json_object();
	else
		json_incref(args);
	r = e->cb(&e->h.owner->pub, args, &data, &err, e->arg);
	if (r < 0) {
		resp = json_pack("{s:b, s:s, s:i}", "ok", 0, "error", err ? err : strerror(-r),
				 "errno", -r);
		json_decref(data);
	} else {
		resp = json_pack("{s:b, s:o}", "ok", 1, "data", data ? data : json_null());
	}
	free(err);
	json_decref(args);
	json_decref(req);
	return resp;
}

static void conn_done(struct bufferevent *bev, void *arg)
{
	bufferevent_free(bev);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		bufferevent_free(bev);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr nl = evbuffer_search(in, "\n", 1, NULL);
	size_t len = evbuffer_get_length(in);
	json_t *resp;
	char *buf, *out;

	if (nl.pos < 0) {
		if (len > API_MAX_REQUEST)
			bufferevent_free(bev);
		return;
	}
	buf = malloc((size_t)nl.pos + 1);
	if (!buf) {
		bufferevent_free(bev);
		return;
	}
	evbuffer_remove(in, buf, (size_t)nl.pos);
	buf[nl.pos] = '\0';
	resp = handle_request(buf, (size_t)nl.pos);
	free(buf);
	out = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
	json_decref(resp);
	if (!out) {
		bufferevent_free(bev);
		return;
	}
	bufferevent_write(bev, out, strlen(out));
	bufferevent_write(bev, "\n", 1);
	free(out);
	/* Close once the answer is flushed. */
	bufferevent_setcb(bev, NULL, conn_done, conn_event, NULL);
	bufferevent_disable(bev, EV_READ);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
		      void *arg)
{
	struct bufferevent *bev;
	struct timeval tv = {10, 0};

	bev = bufferevent_socket_new(A->agent->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!bev) {
		close(fd);
		return;
	}
	bufferevent_setcb(bev, conn_read, NULL, conn_event, NULL);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_enable(bev, EV_READ);
}

/* Is another agent answering on this socket? */
static bool socket_alive(const struct sockaddr_un *sun)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool alive;

	if (fd < 0)
		return false;
	alive = connect(fd, (const struct sockaddr *)sun, sizeof(*sun)) == 0;
	close(fd);
	return alive;
}

int api_init(struct agent *a)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *path = a->conf.api_socket;
	char def[sizeof(sun.sun_path)];
	mode_t old;
	int r;

	A = calloc(1, sizeof(*A));
	if (!A)
		return -ENOMEM;
	A->agent = a;
	a->api = A;
	if (!path) {
		snprintf(def, sizeof(def), "%s/axonemed.sock", a->conf.rundir);
		path = def;
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		log_err("api: socket path %s is too long", path);
		return -ENAMETOOLONG;
	}
	strcpy(sun.sun_path, path);
	if (socket_alive(&sun)) {
		log_err("api: another agent answers on %s", path);
		return -EADDRINUSE;
	}
	(void)unlink(path);
	A->sock_path = strdup(path);
	old = umask(0117); /* socket mode 0660 */
	A->lst = evconnlistener_new_bind(a->base, on_accept, NULL,
					 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
					 (struct sockaddr *)&sun, sizeof(sun));
	r = -errno;
	umask(old);
	if (!A->lst) {
		log_err("api: cannot listen on %s: %s", path, strerror(-r));
		return r;
	}
	log_debug("api: listening on %s", path);
	return 0;
}

void api_fini(struct agent *a)
{
	if (!A)
		return;
	if (A->lst)
		evconnlistener_free(A->lst);
	if (A->sock_path)
		(void)unlink(A->sock_path);
	free(A->sock_path);
	/* Endpoints are handles, reclaimed with their modules. */
	free(A);
	A = NULL;
	a->api = NULL;
}

json_t *api_list(void)
{
	json_t *items = json_array();

	for (struct endpoint *e = A->eps; e; e = e->next)
		json_array_append_new(items, json_pack("{s:s, s:s}", "path", e->path, "module",
						       e->h.owner->name));
	for (struct alias *al = A->aliases; al; al = al->next)
		json_array_append_new(items, json_pack("{s:s, s:s, s:s}", "path", al->alias, "module",
						       al->h.owner->name, "alias_of", al->path));
	return json_pack("{s:o}", "items", items);
}
