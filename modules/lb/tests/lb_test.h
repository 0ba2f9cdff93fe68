/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb_test.h - helpers shared by the lb tests that need real BPF maps: create
 * the module's maps unpinned (root; the caller skips without), and build
 * Service / EndpointSlice documents.
 */
#ifndef LB_TEST_H
#define LB_TEST_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <jansson.h>

#include "lb_maps.h"

/* 0, or -errno (EPERM: not root) with no map left open. */
static inline int lbt_maps_create(int fd[LBM_N], const uint32_t max[LBM_N])
{
	for (int i = 0; i < LBM_N; i++) {
		const struct lb_map_def *d = &lb_map_defs[i];

		LIBBPF_OPTS(bpf_map_create_opts, opts, .map_flags = d->map_flags);

		fd[i] = bpf_map_create(d->type, d->name, d->key_size, d->value_size, max[i], &opts);
		if (fd[i] < 0) {
			int r = -errno;

			while (i-- > 0)
				close(fd[i]);
			return r;
		}
	}
	return 0;
}

static inline void lbt_maps_close(int fd[LBM_N])
{
	for (int i = 0; i < LBM_N; i++)
		if (fd[i] >= 0)
			close(fd[i]);
}

/*
 * Entries in use: the keys of a hash map, or the elements of an array that
 * are not all zero (a free backend or reverse-NAT entry is zeroed).
 */
static inline uint32_t lbt_used(int fd)
{
	struct bpf_map_info info = {0};
	__u32 len = sizeof(info), n = 0;
	char val[64];

	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
		return 0;
	if (info.type != BPF_MAP_TYPE_ARRAY) {
		char key[64], next[64];
		void *prev = NULL;

		while (bpf_map_get_next_key(fd, prev, next) == 0) {
			memcpy(key, next, sizeof(key));
			prev = key;
			n++;
		}
		return n;
	}
	for (__u32 i = 0; i < info.max_entries && info.value_size <= sizeof(val); i++) {
		static const char zero[64];

		if (bpf_map_lookup_elem(fd, &i, val) == 0 && memcmp(val, zero, info.value_size))
			n++;
	}
	return n;
}

static inline uint32_t lbt_count(int fd)
{
	return lbt_used(fd);
}

/* A ClusterIP service ns/name on ip:port/proto ("TCP"/"UDP"), port named "p". */
static inline json_t *lbt_service(const char *ns, const char *name, const char *ip, int port,
				  const char *proto, const char *extra_spec_json)
{
	json_t *spec = json_pack("{s:s, s:[s], s:[{s:s, s:i, s:s}]}", "clusterIP", ip, "clusterIPs",
				 ip, "ports", "name", "p", "port", port, "protocol", proto);

	if (extra_spec_json) {
		json_t *x = json_loads(extra_spec_json, 0, NULL);

		json_object_update(spec, x);
		json_decref(x);
	}
	return json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "v1", "kind", "Service",
			 "metadata", "name", name, "namespace", ns, "spec", spec);
}

/* A slice of service ns/svc with `n` ready IPv4/IPv6 endpoints base+i on port/proto. */
static inline json_t *lbt_slice(const char *ns, const char *svc, const char *name, int v6,
				const char *base, int first, int n, int port, const char *proto,
				const char *node)
{
	json_t *eps = json_array();

	for (int i = 0; i < n; i++) {
		char ip[64];

		snprintf(ip, sizeof(ip), "%s%d", base, first + i);
		json_array_append_new(eps, json_pack("{s:[s], s:s, s:{s:b, s:b, s:b}}", "addresses", ip,
						     "nodeName", node, "conditions", "ready", 1,
						     "serving", 1, "terminating", 0));
	}
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i, s:s}], s:o}",
			 "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata",
			 "name", name, "namespace", ns, "labels", "kubernetes.io/service-name", svc,
			 "addressType", v6 ? "IPv6" : "IPv4", "ports", "name", "p", "port", port,
			 "protocol", proto, "endpoints", eps);
}

#endif /* LB_TEST_H */
