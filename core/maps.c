// SPDX-License-Identifier: Apache-2.0
/*
 * Map registry: modules open BPF maps by name and spec; the registry pins
 * them as <bpffs>/<name>_v<layout>, reuses a compatible pin after a restart,
 * and refuses (or, if the module asks, recreates) an incompatible one.
 * Pinned maps are the state that outlives the agent.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "core.h"

#define BPF_FS_MAGIC_ 0xcafe4a11

struct map_entry {
	char *name; /* as opened: "hello_ticks" */
	char *path;
	char *owner;
	struct axn_map_spec spec;
	int fd; /* the registry's own fd, for dumps */
	struct map_entry *next;
};

struct maps {
	struct map_entry *head;
};

struct map_handle {
	struct axn_handle h;
	int fd;
};

static int mkdir_p(const char *dir, mode_t mode)
{
	char tmp[PATH_MAX];

	if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static bool on_bpffs(const char *dir)
{
	struct statfs st;

	return statfs(dir, &st) == 0 && (unsigned long)st.f_type == BPF_FS_MAGIC_;
}

int maps_init(struct agent *a)
{
	const char *dir = a->conf.bpffs;
	int r;

	a->maps = calloc(1, sizeof(*a->maps));
	if (!a->maps)
		return -ENOMEM;
	r = mkdir_p(dir, 0700);
	if (r < 0) {
		log_err("bpffs %s: cannot create: %s", dir, strerror(-r));
		return r;
	}
	/* Like Cilium, mount a bpffs if the directory is not on one. */
	if (!on_bpffs(dir)) {
		if (mount("bpffs", dir, "bpf", 0, "mode=0700") < 0) {
			r = -errno;
			log_err("bpffs %s: not on a bpf filesystem and mounting one failed: %s", dir,
				strerror(-r));
			return r;
		}
		log_info("bpffs %s: mounted a bpf filesystem", dir);
	}
	return 0;
}

void maps_fini(struct agent *a)
{
	struct map_entry *e, *next;

	if (!a->maps)
		return;
	for (e = a->maps->head; e; e = next) {
		next = e->next;
		close(e->fd);
		free(e->name);
		free(e->path);
		free(e->owner);
		free(e);
	}
	free(a->maps);
	a->maps = NULL;
}

static const char *spec_mismatch(int fd, const struct axn_map_spec *s)
{
	struct bpf_map_info info = {0};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return "cannot read the pinned map's info";
	if (info.type != s->type)
		return "map type differs";
	if (info.key_size != s->key_size)
		return "key size differs";
	if (info.value_size != s->value_size)
		return "value size differs";
	if (info.max_entries != s->max_entries)
		return "max_entries differs";
	if (info.map_flags != s->map_flags)
		return "map flags differ";
	return NULL;
}

static void map_handle_destroy(struct axn_handle *h)
{
	close(((struct map_handle *)h)->fd);
}

static int valid_map_name(const char *n)
{
	if (!n || !*n || strlen(n) > 200)
		return 0;
	for (; *n; n++)
		if (!((*n >= 'a' && *n <= 'z') || (*n >= '0' && *n <= '9') || *n == '_'))
			return 0;
	return 1;
}

/*
 * Pins of the same map at another layout (<name>_v<M>, M != layout): left by
 * an agent of another version. Nothing of this version uses them; the
 * programs that did hold their own reference until they are replaced, so
 * the name can go now -- otherwise every layout change would leak a map.
 */
static void unpin_other_layouts(struct agent *a, struct module *owner, const char *name,
				uint32_t layout)
{
	size_t len = strlen(name);
	DIR *d = opendir(a->conf.bpffs);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		const char *v = de->d_name + len;
		char *end, path[PATH_MAX];
		unsigned long m;

		if (strncmp(de->d_name, name, len) || strncmp(v, "_v", 2) || v[2] < '0' ||
		    v[2] > '9')
			continue;
		m = strtoul(v + 2, &end, 10);
		if (*end || m == layout)
			continue;
		snprintf(path, sizeof(path), "%s/%s", a->conf.bpffs, de->d_name);
		if (unlink(path) == 0)
			log_msg(owner->name, AXN_LOG_INFO,
				"map %s: removed %s, a pin of layout %lu (this one is %u)", name, path,
				m, layout);
		else
			log_msg(owner->name, AXN_LOG_WARN, "map %s: cannot remove old pin %s: %s",
				name, path, strerror(errno));
	}
	closedir(d);
}

int maps_open(struct agent *a, struct module *owner, const char *name,
	      const struct axn_map_spec *spec, int *ret_fd)
{
	struct map_entry *e;
	struct map_handle *mh;
	char path[PATH_MAX];
	int fd = -1, r;

	if (!valid_map_name(name) || !spec || spec->size < sizeof(*spec) || !ret_fd)
		return -EINVAL;
	snprintf(path, sizeof(path), "%s/%s_v%u", a->conf.bpffs, name, spec->layout);

	for (e = a->maps->head; e; e = e->next)
		if (!strcmp(e->path, path))
			break;
	if (e) {
		/* Opened before in this run: the same spec shares it, another is refused. */
		if (memcmp(&e->spec, spec, offsetof(struct axn_map_spec, flags))) {
			log_msg(owner->name, AXN_LOG_ERR,
				"map %s: already opened by %s with a different spec", name,
				e->owner);
			return -EEXIST;
		}
		fd = dup(e->fd);
		if (fd < 0)
			return -errno;
		goto out;
	}

	fd = bpf_obj_get(path);
	if (fd >= 0) {
		const char *why = spec_mismatch(fd, spec);

		if (why && !(spec->flags & AXN_MAPF_RECREATE)) {
			log_msg(owner->name, AXN_LOG_ERR,
				"map %s: pinned map %s is incompatible (%s); refusing to reuse it",
				name, path, why);
			close(fd);
			return -EEXIST;
		}
		if (why) {
			log_msg(owner->name, AXN_LOG_WARN,
				"map %s: pinned map %s is incompatible (%s); recreating it", name,
				path, why);
			close(fd);
			fd = -1;
			if (unlink(path) < 0)
				return -errno;
		}
	} else if (errno != ENOENT) {
		r = -errno;
		log_msg(owner->name, AXN_LOG_ERR, "map %s: cannot open pin %s: %s", name, path,
			strerror(-r));
		return r;
	}
	if (fd < 0) {
		LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = spec->map_flags);
		char kname[BPF_OBJ_NAME_LEN];

		snprintf(kname, sizeof(kname), "%s", name);
		fd = bpf_map_create(spec->type, kname, spec->key_size, spec->value_size,
				    spec->max_entries, &opts);
		if (fd < 0) {
			r = -errno;
			log_msg(owner->name, AXN_LOG_ERR, "map %s: create failed: %s", name,
				strerror(-r));
			return r;
		}
		if (bpf_obj_pin(fd, path) < 0) {
			r = -errno;
			log_msg(owner->name, AXN_LOG_ERR, "map %s: pin at %s failed: %s", name, path,
				strerror(-r));
			close(fd);
			return r;
		}
		log_msg(owner->name, AXN_LOG_INFO, "map %s: created and pinned at %s", name, path);
		unpin_other_layouts(a, owner, name, spec->layout);
	} else {
		log_msg(owner->name, AXN_LOG_DEBUG, "map %s: reusing pinned %s", name, path);
	}

	e = calloc(1, sizeof(*e));
	if (!e || !(e->name = strdup(name)) || !(e->path = strdup(path)) ||
	    !(e->owner = strdup(owner->name))) {
		if (e) {
			free(e->name);
			free(e->path);
		}
		free(e);
		close(fd);
		return -ENOMEM;
	}
	e->spec = *spec;
	e->fd = fd;
	e->next = a->maps->head;
	a->maps->head = e;
	fd = dup(fd);
	if (fd < 0)
		return -errno;
out:
	mh = (struct map_handle *)handle_new(owner, H_MAP, sizeof(*mh), map_handle_destroy,
					     "map %s", name);
	if (!mh) {
		close(fd);
		return -ENOMEM;
	}
	mh->fd = fd;
	*ret_fd = fd;
	return 0;
}

static const char *map_type_name(uint32_t t)
{
	const char *s = libbpf_bpf_map_type_str(t);

	return s ? s : "unknown";
}

json_t *maps_list(struct agent *a)
{
	json_t *items = json_array();
	struct dirent *de;
	DIR *d;

	for (struct map_entry *e = a->maps->head; e; e = e->next)
		json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:s}",
						       "name", e->name, "owner", e->owner, "type",
						       map_type_name(e->spec.type), "key_size",
						       e->spec.key_size, "value_size",
						       e->spec.value_size, "max_entries",
						       e->spec.max_entries, "path", e->path));
	/* Pins nobody opened in this run: left by an earlier run or another version. */
	d = opendir(a->conf.bpffs);
	while (d && (de = readdir(d))) {
		char path[PATH_MAX];
		struct bpf_map_info info = {0};
		__u32 len = sizeof(info);
		bool known = false;
		int fd;

		if (de->d_name[0] == '.' || strstr(de->d_name, ".debug"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", a->conf.bpffs, de->d_name);
		for (struct map_entry *e = a->maps->head; e && !known; e = e->next)
			known = !strcmp(e->path, path);
		if (known)
			continue;
		fd = bpf_obj_get(path);
		if (fd < 0)
			continue;
		if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
			json_array_append_new(
				items, json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:s}", "name",
						 de->d_name, "owner", "-", "type",
						 map_type_name(info.type), "key_size", info.key_size,
						 "value_size", info.value_size, "max_entries",
						 info.max_entries, "path", path));
		close(fd);
	}
	if (d)
		closedir(d);
	return json_pack("{s:o}", "items", items);
}

static char *hex(const unsigned char *p, size_t n)
{
	char *s = malloc(n * 3 + 1), *o = s;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++)
		o += sprintf(o, i ? " %02x" : "%02x", p[i]);
	*o = '\0';
	return s;
}

static int open_by_name(struct agent *a, const char *name, int *ret_fd)
{
	char path[PATH_MAX];
	int fd;

	for (struct map_entry *e = a->maps->head; e; e = e->next)
		if (!strcmp(e->name, name)) {
			fd = dup(e->fd);
			if (fd < 0)
				return -errno;
			*ret_fd = fd;
			return 0;
		}
	if (strchr(name, '/') || name[0] == '.')
		return -EINVAL;
	snprintf(path, sizeof(path), "%s/%s", a->conf.bpffs, name);
	fd = bpf_obj_get(path);
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

int maps_dump(struct agent *a, const char *name, json_t **ret, char **ret_err)
{
	struct bpf_map_info info = {0};
	__u32 len = sizeof(info);
	unsigned char *key = NULL, *next = NULL, *val = NULL;
	json_t *entries = NULL;
	bool truncated = false;
	size_t vsz;
	int fd = -1, r, ncpu;

	r = open_by_name(a, name, &fd);
	if (r < 0) {
		if (asprintf(ret_err, "map %s: %s", name, strerror(-r)) < 0)
			*ret_err = NULL;
		return r;
	}
	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0) {
		r = -errno;
		goto out;
	}
	ncpu = libbpf_num_possible_cpus();
	vsz = info.value_size;
	if (info.type == BPF_MAP_TYPE_PERCPU_ARRAY || info.type == BPF_MAP_TYPE_PERCPU_HASH ||
	    info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH)
		vsz = ((info.value_size + 7) & ~7u) * (size_t)(ncpu > 0 ? ncpu : 1);
	key = calloc(1, info.key_size ? info.key_size : 1);
	next = calloc(1, info.key_size ? info.key_size : 1);
	val = calloc(1, vsz ? vsz : 1);
	entries = json_array();
	if (!key || !next || !val || !entries) {
		r = -ENOMEM;
		goto out;
	}
	for (void *prev = NULL; bpf_map_get_next_key(fd, prev, next) == 0; prev = key) {
		char *k, *v;

		memcpy(key, next, info.key_size);
		if (json_array_size(entries) >= 100000) {
			truncated = true; /* a dump is for people; keep it bounded */
			break;
		}
		if (bpf_map_lookup_elem(fd, key, val) < 0)
			continue; /* gone meanwhile, or not readable (prog arrays' empty slots) */
		k = hex(key, info.key_size);
		v = hex(val, vsz);
		json_array_append_new(entries, json_pack("{s:s?, s:s?}", "key", k, "value", v));
		free(k);
		free(v);
	}
	*ret = json_pack("{s:s, s:s, s:o, s:b}", "name", name, "type", map_type_name(info.type),
			 "entries", entries, "truncated", truncated);
	entries = NULL;
	r = 0;
out:
	if (r < 0 && ret_err && asprintf(ret_err, "map %s: %s", name, strerror(-r)) < 0)
		*ret_err = NULL;
	json_decref(entries);
	free(key);
	free(next);
	free(val);
	close(fd);
	return r;
}

int maps_purge(struct agent *a)
{
	const char *dir = a->conf.bpffs;
	struct dirent *de;
	int n = 0, r = 0;
	DIR *d;

	d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		char path[PATH_MAX];

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strcmp(de->d_name, "maps.debug") || !strcmp(de->d_name, "progs.debug"))
			continue; /* the kernel's own iterators at a bpffs root */
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (unlink(path) < 0) {
			r = -errno;
			log_err("purge: cannot remove pin %s: %s", path, strerror(-r));
			continue;
		}
		n++;
	}
	closedir(d);
	if (rmdir(dir) < 0 && errno == EBUSY && umount(dir) == 0)
		(void)rmdir(dir);
	log_info("purge: removed %d pinned object(s) under %s", n, dir);
	return r;
}
