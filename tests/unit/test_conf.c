// SPDX-License-Identifier: Apache-2.0
/* Configuration validation: every error names file and line; defaults apply. */
#include "harness.h"

struct opts {
	int64_t port;
	const char *mode;
	int enabled;
	char **cidrs;
};

static const struct axn_option opt_table[] = {
	{"port", AXN_OPT_INT, 0, offsetof(struct opts, port), "179", 1, 65535, ""},
	{"mode", AXN_OPT_STRING, AXN_OPTF_REQUIRED, offsetof(struct opts, mode), NULL, 0, 0, ""},
	{"enabled", AXN_OPT_BOOL, 0, offsetof(struct opts, enabled), "true", 0, 0, ""},
	{"cidrs", AXN_OPT_STRLIST, 0, offsetof(struct opts, cidrs), "10.0.0.0/8,fd00::/8", 0, 0, ""},
	AXN_OPTIONS_END,
};

static const struct axn_module_desc desc = {
	.abi_major = AXN_ABI_MAJOR,
	.abi_minor = AXN_ABI_MINOR,
	.desc_size = sizeof(struct axn_module_desc),
	.name = "demo",
	.options = opt_table,
	.conf_size = sizeof(struct opts),
};

/* Parse `text`, fill the demo module; returns the error (caller frees) or NULL. */
static char *fill(const char *text, struct opts **ret)
{
	char *path = write_conf(text), *err = NULL;
	struct parsed_conf *pc = NULL;
	void *conf = NULL;
	int r;

	r = conf_parse(path, &pc, &err);
	if (r == 0) {
		r = conf_fill_module(&pc->cfg, path, &desc, &conf, &err);
		if (r == 0 && ret)
			*ret = conf;
		else if (r == 0)
			conf_free_module(&desc, conf);
	}
	conf_free(pc);
	unlink(path);
	free(path);
	return err;
}

static void test_defaults_and_values(void **state)
{
	struct opts *o = NULL;
	char *err = fill("modules = ( \"demo\" );\ndemo: { mode = \"native\"; };\n", &o);

	assert_null(err);
	assert_int_equal(o->port, 179);
	assert_string_equal(o->mode, "native");
	assert_int_equal(o->enabled, 1);
	assert_string_equal(o->cidrs[0], "10.0.0.0/8");
	assert_string_equal(o->cidrs[1], "fd00::/8");
	assert_null(o->cidrs[2]);
	conf_free_module(&desc, o);

	err = fill("modules = ( \"demo\" );\ndemo: { mode = \"x\"; port = 1790; enabled = false;\n"
		   " cidrs = [ \"192.0.2.0/24\" ]; };\n",
		   &o);
	assert_null(err);
	assert_int_equal(o->port, 1790);
	assert_int_equal(o->enabled, 0);
	assert_string_equal(o->cidrs[0], "192.0.2.0/24");
	assert_null(o->cidrs[1]);
	conf_free_module(&desc, o);
}

/* Each case: conf text, expected "line: message" fragment. */
static const struct {
	const char *text, *want;
} bad[] = {
	{"modules = ( \"demo\" );\ndemo: { mode = \"x\";\n port = 70000; };\n",
	 ":3: demo.port: 70000 is out of range [1, 65535]"},
	{"modules = ( \"demo\" );\ndemo: {\n mode = \"x\";\n prot = 1; };\n",
	 ":4: demo: unknown option 'prot'"},
	{"modules = ( \"demo\" );\ndemo: { mode = 5; };\n", ":2: demo.mode: expected a string"},
	{"modules = ( \"demo\" );\n\ndemo: { port = 1; };\n", ":3: demo: option 'mode' is required"},
	{"modules = ( \"demo\" );\ndemo: { mode = \"x\"; enabled = \"yes\"; };\n",
	 ":2: demo.enabled: expected true or false"},
	{"modules = ( \"demo\" );\ndemo: { mode = \"x\"; cidrs = [ 1, 2 ]; };\n",
	 ":2: demo.cidrs: element 1 is not a string"},
};

static void test_module_option_errors(void **state)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *err = fill(bad[i].text, NULL);

		if (!err || !strstr(err, bad[i].want))
			fail_msg("case %zu: want '%s', got '%s'", i, bad[i].want, err ? err : "(ok)");
		assert_true(strncmp(err, "/tmp/axn-unit-conf-", 19) == 0); /* the file is named */
		free(err);
	}
}

static const struct {
	const char *text, *want;
} bad_agent[] = {
	{"agent: { node_name = \"a\";\n  bpfs = \"/x\"; };\n", ":2: agent: unknown option 'bpfs'"},
	{"agent: { log_level = \"loud\"; };\n", ":1: agent.log_level: 'loud' is not one of"},
	{"modules = ( \"demo\" );\n\nhello: { greeting = \"x\"; };\n",
	 ":3: 'hello' is neither an agent setting nor an enabled module"},
	{"modules = ( \"demo\", \"demo\" );\n", ":1: modules: 'demo' listed twice"},
	{"modules = ( \"Bad-Name\" );\n", ":1: modules: entry 1 needs a name"},
	{"agent: {\n node_name = \"a\";\n rundir = ; };\n", ":3: syntax error"},
	{"modules = ( { name = \"demo\"; requird = true; } );\n",
	 ":1: modules: unknown key 'requird'"},
};

static void test_agent_errors(void **state)
{
	for (size_t i = 0; i < sizeof(bad_agent) / sizeof(bad_agent[0]); i++) {
		char *path = write_conf(bad_agent[i].text), *err = NULL;
		struct parsed_conf *pc = NULL;

		if (conf_parse(path, &pc, &err) != -EINVAL)
			fail_msg("case %zu accepted: %s", i, bad_agent[i].text);
		if (!err || !strstr(err, bad_agent[i].want))
			fail_msg("case %zu: want '%s', got '%s'", i, bad_agent[i].want,
				 err ? err : "(ok)");
		assert_non_null(strstr(err, path));
		free(err);
		unlink(path);
		free(path);
	}
}

static void test_missing_file(void **state)
{
	struct parsed_conf *pc = NULL;
	char *err = NULL;

	assert_int_equal(conf_parse("/nonexistent/axonemed.conf", &pc, &err), -EINVAL);
	assert_non_null(strstr(err, "/nonexistent/axonemed.conf"));
	free(err);
}

static void test_disabled_module_and_equal(void **state)
{
	char *path = write_conf("modules = ( \"a\", { name = \"b\"; enabled = false; },"
				" { name = \"c\"; required = true; } );\nb: { anything = 1; };\n");
	struct parsed_conf *pc = NULL;
	char *err = NULL;
	struct opts *x = NULL, *y = NULL;

	assert_int_equal(conf_parse(path, &pc, &err), 0);
	assert_int_equal(pc->n_mods, 2);
	assert_string_equal(pc->mods[0].name, "a");
	assert_string_equal(pc->mods[1].name, "c");
	assert_true(pc->mods[1].required);
	conf_free(pc);
	unlink(path);
	free(path);

	assert_null(fill("modules = ( \"demo\" );\ndemo: { mode = \"x\"; };\n", &x));
	assert_null(fill("modules = ( \"demo\" );\ndemo: { mode = \"x\"; port = 179; };\n", &y));
	assert_true(conf_equal(&desc, x, y));
	conf_free_module(&desc, y);
	assert_null(fill("modules = ( \"demo\" );\ndemo: { mode = \"y\"; };\n", &y));
	assert_false(conf_equal(&desc, x, y));
	conf_free_module(&desc, x);
	conf_free_module(&desc, y);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults_and_values),
		cmocka_unit_test(test_module_option_errors),
		cmocka_unit_test(test_agent_errors),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_disabled_module_and_equal),
	};

	logs_reset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
