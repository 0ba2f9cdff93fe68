// SPDX-License-Identifier: Apache-2.0
/*
 * Module loader: finds <moduledir>/<name>.so, refuses directories or files a
 * non-root user could have written, dlopens with RTLD_NOW | RTLD_LOCAL (fail
 * fast, no symbol interposition between modules) and checks the descriptor
 * before any module code runs.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

/* Owned by root (or the agent's own user, for unprivileged test runs), not group/world-writable. */
static int check_owner(const char *path, const struct stat *st, const char *what, char **ret_err)
{
	if (st->st_uid != 0 && st->st_uid != geteuid()) {
		if (asprintf(ret_err, "%s %s is owned by uid %u, not root", what, path,
			     (unsigned)st->st_uid) < 0)
			*ret_err = NULL;
		return -EPERM;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		if (asprintf(ret_err, "%s %s is group- or world-writable (mode %04o)", what, path,
			     (unsigned)(st->st_mode & 07777)) < 0)
			*ret_err = NULL;
		return -EPERM;
	}
	return 0;
}

int loader_check_dir(const char *dir, char **ret_err)
{
	struct stat st;

	if (stat(dir, &st) < 0) {
		int r = -errno;

		if (asprintf(ret_err, "module directory %s: %s", dir, strerror(-r)) < 0)
			*ret_err = NULL;
		return r;
	}
	if (!S_ISDIR(st.st_mode)) {
		if (asprintf(ret_err, "module directory %s is not a directory", dir) < 0)
			*ret_err = NULL;
		return -ENOTDIR;
	}
	return check_owner(dir, &st, "module directory", ret_err);
}

int loader_check_desc(const struct axn_module_desc *d, const char *name, char **ret_err)
{
	const char *why = NULL;
	char buf[256];

	if (d->abi_major != AXN_ABI_MAJOR) {
		snprintf(buf, sizeof(buf), "built for ABI %u.%u, agent has %u.%u (major differs)",
			 d->abi_major, d->abi_minor, AXN_ABI_MAJOR, AXN_ABI_MINOR);
		why = buf;
	} else if (d->abi_minor > AXN_ABI_MINOR) {
		snprintf(buf, sizeof(buf), "built for ABI %u.%u, newer than the agent's %u.%u",
			 d->abi_major, d->abi_minor, AXN_ABI_MAJOR, AXN_ABI_MINOR);
		why = buf;
	} else if (d->abi_fingerprint != AXN_ABI_FINGERPRINT) {
		why = "built for another pointer size or byte order";
	} else if (d->desc_size < offsetof(struct axn_module_desc, fini) + sizeof(d->fini)) {
		why = "descriptor is truncated";
	} else if (!d->name || strcmp(d->name, name)) {
		snprintf(buf, sizeof(buf), "descriptor names itself '%s', file is '%s'",
			 d->name ? d->name : "(null)", name);
		why = buf;
	} else if (d->options && !d->conf_size) {
		why = "declares options but no conf_size";
	}
	if (!why)
		return 0;
	if (asprintf(ret_err, "module %s: %s", name, why) < 0)
		*ret_err = NULL;
	return -EPROTO;
}

int loader_open(const char *moduledir, const char *name, void **ret_dl,
		const struct axn_module_desc **ret_desc, char **ret_err)
{
	const struct axn_module_desc *d;
	char path[4096];
	struct stat st;
	void *dl;
	int r;

	snprintf(path, sizeof(path), "%s/%s.so", moduledir, name);
	if (stat(path, &st) < 0) {
		r = -errno;
		if (asprintf(ret_err, "module %s: %s: %s", name, path, strerror(-r)) < 0)
			*ret_err = NULL;
		return r;
	}
	r = check_owner(path, &st, "module file", ret_err);
	if (r < 0)
		return r;

	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!dl) {
		if (asprintf(ret_err, "module %s: %s", name, dlerror()) < 0)
			*ret_err = NULL;
		return -ENOEXEC;
	}
	d = dlsym(dl, "axn_module_v1");
	if (!d) {
		if (asprintf(ret_err, "module %s: %s exports no axn_module_v1 descriptor", name,
			     path) < 0)
			*ret_err = NULL;
		r = -ENOENT;
		goto err;
	}
	r = loader_check_desc(d, name, ret_err);
	if (r < 0)
		goto err;
	*ret_dl = dl;
	*ret_desc = d;
	return 0;
err:
	dlclose(dl);
	return r;
}
