// SPDX-License-Identifier: Apache-2.0
/* test_statedir_parse.c - manifests to objects: types, positions, errors. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "statedir_parse.h"

static json_t *parse(const char *name, const char *text)
{
	json_t *res = NULL;

	assert_int_equal(statedir_parse(name, text, strlen(text), &res), 0);
	return res;
}

static const json_t *object(const json_t *res, size_t i)
{
	return json_object_get(json_array_get(json_object_get(res, "objects"), i), "object");
}

static json_int_t obj_pos(const json_t *res, size_t i, const char *what)
{
	return json_integer_value(
		json_object_get(json_array_get(json_object_get(res, "objects"), i), what));
}

static const json_t *error(const json_t *res, size_t i)
{
	return json_array_get(json_object_get(res, "errors"), i);
}

static void assert_error(const json_t *res, size_t i, json_int_t line, json_int_t col,
			 const char *substr)
{
	const json_t *e = error(res, i);

	assert_non_null(e);
	assert_int_equal(json_integer_value(json_object_get(e, "line")), line);
	assert_int_equal(json_integer_value(json_object_get(e, "col")), col);
	assert_non_null(strstr(json_string_value(json_object_get(e, "message")), substr));
}

static size_t n_objects(const json_t *res)
{
	return json_array_size(json_object_get(res, "objects"));
}

static size_t n_errors(const json_t *res)
{
	return json_array_size(json_object_get(res, "errors"));
}

static json_int_t n_documents(const json_t *res)
{
	return json_integer_value(json_object_get(res, "documents"));
}

static const json_t *path(const json_t *doc, const char *a, const char *b)
{
	return json_object_get(json_object_get(doc, a), b);
}

static void test_is_manifest(void **unused)
{
	assert_true(statedir_is_manifest("pools.yaml"));
	assert_true(statedir_is_manifest("pools.yml"));
	assert_true(statedir_is_manifest("svc.json"));
	assert_false(statedir_is_manifest(".pools.yaml"));
	assert_false(statedir_is_manifest(".pools.yaml.swp"));
	assert_false(statedir_is_manifest("pools.yaml~"));
	assert_false(statedir_is_manifest("README.md"));
	assert_false(statedir_is_manifest(".yaml"));
}

static const char multi_yaml[] = "# pools and a service\n"
				 "---\n"
				 "apiVersion: v1\n"
				 "kind: Service\n"
				 "metadata:\n"
				 "  name: web\n"
				 "  namespace: default\n"
				 "  labels: {app: web, quoted: \"true\", version: '1.10'}\n"
				 "spec:\n"
				 "  ports:\n"
				 "  - port: 80\n"
				 "    targetPort: 8080\n"
				 "  enabled: true\n"
				 "  legacy: no\n"
				 "  ratio: 0.5\n"
				 "  exp: 1e3\n"
				 "  mode: 0644\n"
				 "  hex: 0x1F\n"
				 "  neg: -12\n"
				 "  sep: 1_000\n"
				 "  empty:\n"
				 "  tilde: ~\n"
				 "  nul: null\n"
				 "  ip: 10.0.0.1\n"
				 "  ver: 1.2.3\n"
				 "  quotedint: \"80\"\n"
				 "  tagged: !!str 123\n"
				 "  block: |\n"
				 "    line1\n"
				 "    line2\n"
				 "---\n"
				 "---\n"
				 "apiVersion: cilium.io/v2alpha1\n"
				 "kind: CiliumLoadBalancerIPPool\n"
				 "metadata:\n"
				 "  name: pool\n"
				 "spec:\n"
				 "  blocks:\n"
				 "  - cidr: 10.0.10.0/24\n";

static void test_yaml_types(void **unused)
{
	json_t *res = parse("a.yaml", multi_yaml);
	const json_t *svc, *spec, *labels, *pool;

	/* The empty document between the two "---" is no document. */
	assert_int_equal(n_documents(res), 2);
	assert_int_equal(n_objects(res), 2);
	assert_int_equal(n_errors(res), 0);
	svc = object(res, 0);
	assert_int_equal(obj_pos(res, 0, "line"), 3);
	assert_int_equal(obj_pos(res, 0, "col"), 1);
	spec = json_object_get(svc, "spec");
	labels = path(svc, "metadata", "labels");
	assert_string_equal(json_string_value(json_object_get(labels, "quoted")), "true");
	assert_string_equal(json_string_value(json_object_get(labels, "version")), "1.10");
	assert_int_equal(json_integer_value(
				 json_object_get(json_array_get(json_object_get(spec, "ports"), 0),
						 "port")),
			 80);
	assert_true(json_is_true(json_object_get(spec, "enabled")));
	/* kubectl reads YAML 1.1: plain no is false. */
	assert_true(json_is_false(json_object_get(spec, "legacy")));
	assert_true(json_is_real(json_object_get(spec, "ratio")));
	assert_true(json_real_value(json_object_get(spec, "ratio")) == 0.5);
	assert_true(json_real_value(json_object_get(spec, "exp")) == 1000.0);
	assert_int_equal(json_integer_value(json_object_get(spec, "mode")), 0644);
	assert_int_equal(json_integer_value(json_object_get(spec, "hex")), 31);
	assert_int_equal(json_integer_value(json_object_get(spec, "neg")), -12);
	assert_int_equal(json_integer_value(json_object_get(spec, "sep")), 1000);
	assert_true(json_is_null(json_object_get(spec, "empty")));
	assert_true(json_is_null(json_object_get(spec, "tilde")));
	assert_true(json_is_null(json_object_get(spec, "nul")));
	assert_string_equal(json_string_value(json_object_get(spec, "ip")), "10.0.0.1");
	assert_string_equal(json_string_value(json_object_get(spec, "ver")), "1.2.3");
	assert_string_equal(json_string_value(json_object_get(spec, "quotedint")), "80");
	assert_string_equal(json_string_value(json_object_get(spec, "tagged")), "123");
	assert_string_equal(json_string_value(json_object_get(spec, "block")), "line1\nline2\n");

	pool = object(res, 1);
	assert_int_equal(obj_pos(res, 1, "line"), 33);
	assert_string_equal(json_string_value(json_object_get(pool, "kind")),
			    "CiliumLoadBalancerIPPool");
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(path(pool, "spec", "blocks"), 0), "cidr")),
			    "10.0.10.0/24");
	json_decref(res);
}

/* Line numbers are the point: keep this text in step with the asserts. */
static const char bad_middle[] = "apiVersion: v1\n"     /* 1 */
				 "kind: ConfigMap\n"    /* 2 */
				 "metadata:\n"          /* 3 */
				 "  name: a\n"          /* 4 */
				 "---\n"                /* 5 */
				 "apiVersion: v1\n"     /* 6 */
				 "kind: ConfigMap\n"    /* 7 */
				 "metadata:\n"          /* 8 */
				 "  name: b\n"          /* 9 */
				 " bad: indentation\n"  /* 10 */
				 "---\n"                /* 11 */
				 "apiVersion: v1\n"     /* 12 */
				 "kind: ConfigMap\n"    /* 13 */
				 "metadata: {name: c}\n" /* 14 */
				 "data: {x: [1, 2}\n"   /* 15 */
				 "---\n"                /* 16 */
				 "apiVersion: v1\n"     /* 17 */
				 "kind: ConfigMap\n"    /* 18 */
				 "metadata: {name: d}\n";

static void test_yaml_syntax_error_midfile(void **unused)
{
	json_t *res = parse("bad.yaml", bad_middle);

	/* Two broken documents; the ones before, between and after still load. */
	assert_int_equal(n_documents(res), 4);
	assert_int_equal(n_objects(res), 2);
	assert_string_equal(json_string_value(path(object(res, 0), "metadata", "name")), "a");
	assert_string_equal(json_string_value(path(object(res, 1), "metadata", "name")), "d");
	assert_int_equal(obj_pos(res, 1, "line"), 17);
	assert_int_equal(n_errors(res), 2);
	assert_error(res, 0, 10, 2, "did not find expected key");
	assert_error(res, 1, 15, 16, "did not find expected ',' or ']'");
	json_decref(res);
}

static void test_bad_documents(void **unused)
{
	json_t *res = parse("x.yaml", "apiVersion: v1\n"              /* 1 */
				      "metadata: {name: nokind}\n"   /* 2 */
				      "---\n"                        /* 3 */
				      "apiVersion: v1\n"             /* 4 */
				      "kind: X\n"                    /* 5 */
				      "metadata: {namespace: x}\n"   /* 6 */
				      "---\n"                        /* 7 */
				      "- a list\n"                   /* 8 */
				      "---\n"                        /* 9 */
				      "kind: X\n"                    /* 10 */
				      "metadata: {name: noapi}\n"    /* 11 */
				      "---\n"                        /* 12 */
				      "apiVersion: v1\n"             /* 13 */
				      "kind: X\n"                    /* 14 */
				      "metadata:\n"                  /* 15 */
				      "  name: x\n"                  /* 16 */
				      "  labels: {on: yes}\n"        /* 17 */
				      "---\n"                        /* 18 */
				      "apiVersion: v1\n"             /* 19 */
				      "kind: X\n"                    /* 20 */
				      "metadata: {name: a/b}\n"      /* 21 */
				      "---\n"                        /* 22 */
				      "apiVersion: v1\n"             /* 23 */
				      "kind: X\n"                    /* 24 */
				      "metadata: {name: good}\n");   /* 25 */

	assert_int_equal(n_documents(res), 7);
	assert_int_equal(n_objects(res), 1);
	assert_int_equal(obj_pos(res, 0, "line"), 23);
	assert_int_equal(n_errors(res), 6);
	assert_error(res, 0, 1, 1, "kind is missing");
	assert_error(res, 1, 4, 1, "metadata.name is missing");
	assert_error(res, 2, 8, 1, "not a mapping");
	assert_error(res, 3, 10, 1, "apiVersion is missing");
	assert_error(res, 4, 13, 1, "metadata.labels.on is not a string");
	assert_error(res, 5, 19, 1, "metadata.name may not contain '/'");
	json_decref(res);
}

static void test_yaml_refused(void **unused)
{
	json_t *res = parse("r.yaml", "apiVersion: v1\n"
				      "kind: X\n"
				      "metadata: {name: a}\n"
				      "spec: {a: &anchor 1, b: *anchor}\n"
				      "---\n"
				      "apiVersion: v1\n"
				      "kind: X\n"
				      "kind: Y\n"
				      "metadata: {name: b}\n"
				      "---\n"
				      "apiVersion: v1\n"
				      "kind: X\n"
				      "metadata: {name: c}\n"
				      "spec: {v: .inf}\n");

	assert_int_equal(n_objects(res), 0);
	assert_int_equal(n_errors(res), 3);
	assert_error(res, 0, 4, 25, "aliases (*anchor) are not supported");
	assert_error(res, 1, 8, 1, "duplicate key \"kind\"");
	assert_error(res, 2, 14, 11, "no JSON form");
	json_decref(res);
}

static void test_json(void **unused)
{
	json_t *res = parse("s.json", "{\"apiVersion\": \"v1\", \"kind\": \"Service\",\n"
				      " \"metadata\": {\"name\": \"a\"}, \"spec\": {\"port\": 80, "
				      "\"weight\": 1.5, \"on\": true, \"x\": null}}\n"
				      "  {\"apiVersion\": \"v1\", \"kind\": \"List\", "
				      "\"items\": [\n"
				      "    {\"apiVersion\": \"v1\", \"kind\": \"Service\", "
				      "\"metadata\": {\"name\": \"b\"}}]}\n"
				      "[1, 2]\n"
				      "{\"apiVersion\": \"v1\", \"kind\": \"Service\",\n"
				      " \"metadata\": {\"name\": \"c\", oops}}\n"
				      "{\"apiVersion\": \"v1\", \"kind\": \"Service\", "
				      "\"metadata\": {\"name\": \"d\"}}\n");
	const json_t *spec;

	assert_int_equal(n_objects(res), 2);
	spec = json_object_get(object(res, 0), "spec");
	assert_int_equal(json_integer_value(json_object_get(spec, "port")), 80);
	assert_true(json_real_value(json_object_get(spec, "weight")) == 1.5);
	assert_true(json_is_true(json_object_get(spec, "on")));
	assert_true(json_is_null(json_object_get(spec, "x")));
	assert_string_equal(json_string_value(path(object(res, 1), "metadata", "name")), "b");
	assert_int_equal(obj_pos(res, 1, "line"), 3);
	assert_int_equal(obj_pos(res, 1, "col"), 3);
	/* JSON cannot resynchronise: the document after the syntax error is lost. */
	assert_int_equal(n_errors(res), 2);
	assert_error(res, 0, 5, 1, "not a mapping");
	/* jansson points at the end of the offending token ("oops"). */
	assert_error(res, 1, 7, 31, "JSON syntax error");
	json_decref(res);
}

static void test_empty_and_unknown(void **unused)
{
	json_t *res = parse("e.yaml", "# nothing here\n---\n");

	assert_int_equal(n_documents(res), 0);
	assert_int_equal(n_errors(res), 0);
	json_decref(res);
	res = parse("e.json", "  \n");
	assert_int_equal(n_documents(res), 0);
	json_decref(res);
	assert_int_equal(statedir_parse("notes.txt", "", 0, &res), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_is_manifest),
		cmocka_unit_test(test_yaml_types),
		cmocka_unit_test(test_yaml_syntax_error_midfile),
		cmocka_unit_test(test_bad_documents),
		cmocka_unit_test(test_yaml_refused),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_empty_and_unknown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
