// SPDX-License-Identifier: Apache-2.0
/*
 * parse-bench.c - ns per document of lb_service_parse, lb_slice_parse and
 * lb_translate_parsed, one thread, over documents built the way lb-bench
 * builds them (a Service and its slice after each other), so that a pass
 * over all of them finds them cold as a large sync does. Not part of the
 * build:
 *
 *   cc -O2 -I.. parse-bench.c ../lb_translate.c $(pkg-config --cflags --libs jansson)
 *   ./a.out [services [backends [passes [pack|text][-full]]]]
 *
 * text: the documents as json_loads lays them out (a store that parsed its
 * manifests), not json_pack; full: endpoints with a targetRef, zone and all
 * three conditions, as the API server writes them.
 *
 * Prints the median of the passes and a checksum of what was translated
 * (to compare two versions of lb_translate.c).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lb_translate.h"

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* PB_PERF_CTL=fifo: "perf record -D -1 --control fifo:FIFO" profiles only the passes. */
static void perf_ctl(const char *cmd)
{
	const char *path = getenv("PB_PERF_CTL");
	int fd;

	if (!path || !*path || (fd = open(path, O_WRONLY | O_CLOEXEC)) < 0)
		return;
	if (write(fd, cmd, strlen(cmd)) < 0)
		perror("parse-bench: perf control");
	close(fd);
}

static void ip4(char *buf, size_t len, uint32_t base, uint32_t i)
{
	uint32_t a = base + i;

	snprintf(buf, len, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

static json_t *service(uint32_t i)
{
	char name[32], ip[32];
	json_t *spec;

	snprintf(name, sizeof(name), "svc%u", i);
	ip4(ip, sizeof(ip), 0x0a600000u, i);
	spec = json_pack("{s:s, s:[s], s:[{s:s, s:i, s:s}]}", "clusterIP", ip, "clusterIPs", ip,
			 "ports", "name", "p", "port", 80, "protocol", "TCP");
	return json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "v1", "kind", "Service",
			 "metadata", "name", name, "namespace", "bench", "spec", spec);
}

static int full; /* endpoints with everything the API server gives them */

static json_t *slice(uint32_t i, uint32_t nb, uint32_t be_base, uint16_t port)
{
	char name[32], sl[40];
	json_t *eps = json_array();

	snprintf(name, sizeof(name), "svc%u", i);
	snprintf(sl, sizeof(sl), "svc%u-x", i);
	for (uint32_t b = 0; b < nb; b++) {
		char ip[32];

		ip4(ip, sizeof(ip), be_base, i * nb + b);
		if (full)
			/* As the API server writes them. */
			json_array_append_new(
				eps, json_pack("{s:[s], s:{s:b, s:b, s:b}, s:{s:s, s:s, s:s, s:s}, "
					       "s:s, s:s}",
					       "addresses", ip, "conditions", "ready", 1, "serving", 1,
					       "terminating", 0, "targetRef", "kind", "Pod", "name",
					       "web-7c5d8f6b9d-x2x4k", "namespace", "bench", "uid",
					       "6f1c3a52-2f7e-4d0c-9a3e-1b2c3d4e5f60", "nodeName", "n1",
					       "zone", "zone-a"));
		else
			json_array_append_new(eps, json_pack("{s:[s], s:s, s:{s:b}}", "addresses", ip,
							     "nodeName", "n1", "conditions", "ready", 1));
	}
	return json_pack("{s:s, s:s, s:{s:s, s:s, s:{s:s}}, s:s, s:[{s:s, s:i, s:s}], s:o}",
			 "apiVersion", "discovery.k8s.io/v1", "kind", "EndpointSlice", "metadata",
			 "name", sl, "namespace", "bench", "labels", "kubernetes.io/service-name",
			 name, "addressType", "IPv4", "ports", "name", "p", "port", port, "protocol",
			 "TCP", "endpoints", eps);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 1099511628211ull;
	return h;
}

static uint64_t svc_sum(uint64_t h, const struct lb_svc *s)
{
	h = mix(h, s->ns, strlen(s->ns));
	h = mix(h, s->name, strlen(s->name));
	for (size_t f = 0; f < s->n_fe; f++) {
		const struct lb_fe *fe = &s->fe[f];

		h = mix(h, &fe->ip, sizeof(fe->ip));
		h = mix(h, &fe->port, sizeof(fe->port));
		h = mix(h, &fe->n_sel, sizeof(fe->n_sel));
		for (size_t b = 0; b < fe->n_be; b++) {
			h = mix(h, &fe->be[b].ip, sizeof(fe->be[b].ip));
			h = mix(h, &fe->be[b].port, sizeof(fe->be[b].port));
			h = mix(h, &fe->be[b].state, 2);
		}
	}
	return h;
}

int main(int argc, char **argv)
{
	uint32_t n = argc > 1 ? (uint32_t)atoi(argv[1]) : 100000;
	uint32_t nb = argc > 2 ? (uint32_t)atoi(argv[2]) : 10;
	int passes = argc > 3 ? atoi(argv[3]) : 5;
	int text = argc > 4 && strstr(argv[4], "text"); /* json_loads'd, not json_pack'd */
	struct lb_translate_conf conf = {.node_name = "n1", .default_algorithm = LB_ALG_RANDOM};
	json_t **docs = malloc(2 * n * sizeof(*docs));
	struct lb_svc_spec **specs = malloc(n * sizeof(*specs));
	struct lb_slice **slices = malloc(n * sizeof(*slices));
	struct lb_svc **svcs = malloc(n * sizeof(*svcs));
	double *t_svc = calloc(passes, sizeof(double)), *t_sl = calloc(passes, sizeof(double));
	double *t_tr = calloc(passes, sizeof(double));
	uint64_t sum = 1469598103934665603ull;

	full = argc > 4 && strstr(argv[4], "full");
	for (uint32_t i = 0; i < n; i++) {
		docs[2 * i] = service(i);
		docs[2 * i + 1] = slice(i, nb, 0x0b000000u, 8080);
	}
	if (text) {
		/* As a store that parsed its manifests lays them out: each root first. */
		char **t = malloc(2 * n * sizeof(*t));

		for (uint32_t i = 0; i < 2 * n; i++) {
			t[i] = json_dumps(docs[i], JSON_COMPACT);
			json_decref(docs[i]);
		}
		for (uint32_t i = 0; i < 2 * n; i++)
			docs[i] = json_loads(t[i], 0, NULL);
		for (uint32_t i = 0; i < 2 * n; i++)
			free(t[i]);
		free(t);
	}
	perf_ctl("enable\n");
	for (int p = 0; p < passes; p++) {
		double t0, t1, t2, t3, ts = 0, tl = 0;
		struct lb_slice_meta meta;

		/* In the order lb_sync parses them: as the events came. */
		for (uint32_t i = 0; i < n; i++) {
			t0 = now_ns();
			if (lb_service_parse(&conf, docs[2 * i], &specs[i]) < 0)
				abort();
			t1 = now_ns();
			if (lb_slice_parse(&conf, docs[2 * i + 1], &slices[i], &meta) < 0 ||
			    !meta.service)
				abort();
			t2 = now_ns();
			ts += t1 - t0;
			tl += t2 - t1;
		}
		t2 = now_ns();
		for (uint32_t i = 0; i < n; i++)
			if (lb_translate_parsed(specs[i], (const struct lb_slice *const *)&slices[i], 1,
						&svcs[i]) < 0)
				abort();
		t3 = now_ns();
		t_svc[p] = ts / n;
		t_sl[p] = tl / n;
		t_tr[p] = (t3 - t2) / n;
		for (uint32_t i = 0; i < n; i++) {
			if (p == 0)
				sum = svc_sum(sum, svcs[i]);
			lb_svc_free(svcs[i]);
			lb_svc_spec_unref(specs[i]);
			lb_slice_free(slices[i]);
		}
	}
	perf_ctl("disable\n");
	qsort(t_svc, passes, sizeof(double), cmp_d);
	qsort(t_sl, passes, sizeof(double), cmp_d);
	qsort(t_tr, passes, sizeof(double), cmp_d);
	printf("services=%u backends=%u service_parse_ns=%.0f slice_parse_ns=%.0f "
	       "translate_ns=%.0f total_ns=%.0f checksum=%016llx\n",
	       n, nb, t_svc[passes / 2], t_sl[passes / 2], t_tr[passes / 2],
	       t_svc[passes / 2] + t_sl[passes / 2] + t_tr[passes / 2], (unsigned long long)sum);
	return 0;
}
