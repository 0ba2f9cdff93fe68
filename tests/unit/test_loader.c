// SPDX-License-Identifier: Apache-2.0
/* Loader decisions on fixture modules: ABI checks, symbols, dependencies, failures, leaks. */
#include "harness.h"

static void test_good_and_order(void **state)
{
	/* fx_user is listed first but requires fx_good: it must start second. */
	struct harness *h = harness_new("modules = ( \"fx_user\", \"fx_good\" );\n");
	struct module *first;

	assert_int_equal(h->load_r, 0);
	first = TAILQ_FIRST(&h->a->modules);
	assert_string_equal(first->name, "fx_good");
	assert_string_equal(TAILQ_NEXT(first, link)->name, "fx_user");
	assert_int_equal(agent_start_modules(h->a), 0);
	assert_int_equal(harness_mod(h, "fx_good")->state, MOD_UP);
	assert_int_equal(harness_mod(h, "fx_user")->state, MOD_UP);
	agent_stop_modules(h->a);
	assert_int_equal(harness_mod(h, "fx_user")->state, MOD_STOPPED);
	harness_free(h);
}

static void test_wrong_abi_major(void **state)
{
	struct harness *h = harness_new("modules = ( \"fx_abi_major\", \"fx_good\" );\n");
	struct module *m = harness_mod(h, "fx_abi_major");

	/* Not required: the agent runs without it, and says why. */
	assert_int_equal(h->load_r, 0);
	assert_non_null(m);
	assert_int_equal(m->state, MOD_FAILED);
	assert_non_null(strstr(m->fail_reason, "major differs"));
	assert_non_null(strstr(m->fail_reason, "built for ABI 2.0"));
	assert_int_equal(agent_start_modules(h->a), 0);
	assert_int_equal(harness_mod(h, "fx_good")->state, MOD_UP);
	harness_free(h);
}

static void test_newer_minor(void **state)
{
	struct harness *h = harness_new("modules = ( \"fx_abi_minor\" );\n");
	struct module *m = harness_mod(h, "fx_abi_minor");

	assert_int_equal(m->state, MOD_FAILED);
	assert_non_null(strstr(m->fail_reason, "newer than the agent"));
	harness_free(h);
}

static void test_required_wrong_abi_is_fatal(void **state)
{
	struct harness *h = harness_new(
		"modules = ( { name = \"fx_abi_major\"; required = true; } );\n");

	assert_int_equal(h->load_r, -EPROTO);
	assert_non_null(strstr(h->err, "major differs"));
	/* The error names the conf line that listed the module. */
	assert_non_null(strstr(h->err, ":2:"));
	harness_free(h);
}

static void test_missing_symbol(void **state)
{
	struct harness *h = harness_new("modules = ( \"fx_nosym\" );\n");
	struct module *m = harness_mod(h, "fx_nosym");

	assert_int_equal(m->state, MOD_FAILED);
	assert_non_null(strstr(m->fail_reason, "exports no axn_module_v1"));
	harness_free(h);
}

static void test_missing_file(void **state)
{
	struct harness *h = harness_new("modules = ( \"fx_does_not_exist\" );\n");
	struct module *m = harness_mod(h, "fx_does_not_exist");

	assert_int_equal(m->state, MOD_FAILED);
	assert_non_null(strstr(m->fail_reason, "No such file"));
	harness_free(h);
}

static void test_misnamed(void **state)
{
	struct harness *h = harness_new("modules = ( \"fx_misnamed\" );\n");

	assert_non_null(strstr(harness_mod(h, "fx_misnamed")->fail_reason,
			       "names itself 'fx_other_name'"));
	harness_free(h);
}

static void test_cycle(void **state)
{
	struct harness *h = harness_new("modules = ( \"fx_cycle_a\", \"fx_cycle_b\" );\n");

	assert_int_equal(h->load_r, -ELOOP);
	assert_non_null(strstr(h->err, "dependency cycle"));
	assert_non_null(strstr(h->err, "fx_cycle_a"));
	assert_non_null(strstr(h->err, "fx_cycle_b"));
	harness_free(h);
}

static void test_missing_dependency(void **state)
{
	struct harness *h = harness_new("modules = ( \"fx_missing_dep\", \"fx_good\" );\n");
	struct module *m = harness_mod(h, "fx_missing_dep");

	assert_int_equal(h->load_r, 0);
	assert_int_equal(m->state, MOD_DISABLED);
	assert_non_null(strstr(m->fail_reason, "svc:nobody_provides_this"));
	assert_int_equal(agent_start_modules(h->a), 0);
	assert_int_equal(harness_mod(h, "fx_good")->state, MOD_UP);
	harness_free(h);
}

static void test_failing_init_disables_dependents(void **state)
{
	struct harness *h =
		harness_new("modules = ( \"fx_needs_failinit\", \"fx_failinit\", \"fx_good\" );\n");

	logs_reset();
	assert_int_equal(h->load_r, 0);
	assert_int_equal(agent_start_modules(h->a), 0);
	assert_int_equal(harness_mod(h, "fx_failinit")->state, MOD_FAILED);
	assert_non_null(strstr(harness_mod(h, "fx_failinit")->fail_reason, "init failed"));
	assert_int_equal(harness_mod(h, "fx_needs_failinit")->state, MOD_DISABLED);
	assert_non_null(strstr(harness_mod(h, "fx_needs_failinit")->fail_reason, "mod:fx_failinit"));
	assert_int_equal(harness_mod(h, "fx_good")->state, MOD_UP);
	assert_non_null(logs_find("module=fx_failinit", "init failed", NULL));
	harness_free(h);
}

static void test_failing_required_init_is_fatal(void **state)
{
	struct harness *h =
		harness_new("modules = ( { name = \"fx_failinit\"; required = true; } );\n");

	assert_int_equal(h->load_r, 0);
	assert_true(agent_start_modules(h->a) < 0);
	harness_free(h);
}

static void test_leaked_timer_reclaimed(void **state)
{
	struct harness *h = harness_new("modules = ( \"fx_leaky\" );\nfx_leaky: { label = \"x\"; };\n");
	struct module *m = harness_mod(h, "fx_leaky");

	logs_reset();
	assert_int_equal(h->load_r, 0);
	assert_int_equal(agent_start_modules(h->a), 0);
	assert_int_equal(m->state, MOD_UP);
	assert_false(TAILQ_EMPTY(&m->handles));
	agent_stop_modules(h->a);
	/* The timer is gone and the leak was reported by name. */
	assert_true(TAILQ_EMPTY(&m->handles));
	if (!logs_find("module=fx_leaky", "leaked periodic timer (1000 ms) reclaimed", NULL))
		logs_dump();
	assert_non_null(logs_find("module=fx_leaky", "leaked periodic timer (1000 ms) reclaimed", NULL));
	harness_free(h);
}

static void test_bad_option_rejected_before_code_runs(void **state)
{
	struct harness *h = harness_new(
		"modules = ( \"fx_leaky\" );\nfx_leaky: { label = \"x\"; period_ms = 0; };\n");

	assert_int_equal(h->load_r, -EINVAL);
	assert_non_null(strstr(h->err, ":3: fx_leaky.period_ms: 0 is out of range [1, 60000]"));
	harness_free(h);
}

static void test_module_dir_permissions(void **state)
{
	char dir[] = "/tmp/axn-unit-moddir-XXXXXX";
	char *err = NULL;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0755), 0);
	assert_int_equal(loader_check_dir(dir, &err), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	assert_int_equal(loader_check_dir(dir, &err), -EPERM);
	assert_non_null(strstr(err, "world-writable"));
	free(err);
	rmdir(dir);
}

/* fx_leaky's conf struct, as its option table fills it. */
struct leaky_conf {
	int64_t period_ms;
	const char *label;
	int verbose;
};

static void rewrite(struct harness *h, const char *conf)
{
	FILE *f = fopen(h->conf_path, "w");

	assert_non_null(f);
	fprintf(f, "agent: { moduledir = \"%s\"; bpffs = \"/tmp/axn-unit-nobpf\"; rundir = \"/tmp/axn-unit-run\"; node_name = \"unit\"; };\n%s",
		FIXTURE_DIR, conf);
	fclose(f);
}

static void test_reload(void **state)
{
	struct harness *h = harness_new("modules = ( \"fx_good\" );\n");

	logs_reset();
	assert_int_equal(agent_start_modules(h->a), 0);

	/* Add a module that depends on the running one: it starts, fx_good stays up. */
	rewrite(h, "modules = ( \"fx_user\", \"fx_good\" );\n");
	assert_int_equal(agent_reload(h->a), 0);
	assert_int_equal(harness_mod(h, "fx_user")->state, MOD_UP);
	assert_int_equal(harness_mod(h, "fx_good")->state, MOD_UP);
	assert_null(logs_find("module=fx_good", "restarting", NULL));

	/* A broken file changes nothing. */
	rewrite(h, "modules = ( \"fx_user\" \n");
	assert_true(agent_reload(h->a) < 0);
	assert_non_null(logs_find("reload rejected", ":3:", NULL));
	assert_int_equal(harness_mod(h, "fx_user")->state, MOD_UP);

	/* Bad option for a new module: rejected whole, fx_user keeps running. */
	rewrite(h, "modules = ( \"fx_user\", \"fx_good\", \"fx_leaky\" );\nfx_leaky: { period_ms = 5; };\n");
	assert_true(agent_reload(h->a) < 0);
	assert_null(harness_mod(h, "fx_leaky"));
	assert_int_equal(harness_mod(h, "fx_user")->state, MOD_UP);

	/* A new cycle is rejected too. */
	rewrite(h, "modules = ( \"fx_user\", \"fx_good\", \"fx_cycle_a\", \"fx_cycle_b\" );\n");
	assert_true(agent_reload(h->a) < 0);
	assert_non_null(logs_find("reload rejected", "dependency cycle", NULL));
	assert_null(harness_mod(h, "fx_cycle_a"));

	/* Remove fx_user; changed options restart fx_leaky (it has no reconfigure). */
	rewrite(h, "modules = ( \"fx_good\", \"fx_leaky\" );\nfx_leaky: { label = \"a\"; };\n");
	assert_int_equal(agent_reload(h->a), 0);
	assert_null(harness_mod(h, "fx_user"));
	assert_int_equal(harness_mod(h, "fx_leaky")->state, MOD_UP);
	rewrite(h, "modules = ( \"fx_good\", \"fx_leaky\" );\nfx_leaky: { label = \"b\"; };\n");
	logs_reset();
	assert_int_equal(agent_reload(h->a), 0);
	assert_non_null(logs_find("module=fx_leaky", "configuration changed; restarting", NULL));
	assert_string_equal(((struct leaky_conf *)harness_mod(h, "fx_leaky")->conf)->label, "b");
	assert_int_equal(harness_mod(h, "fx_leaky")->state, MOD_UP);
	agent_stop_modules(h->a);
	harness_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_and_order),
		cmocka_unit_test(test_wrong_abi_major),
		cmocka_unit_test(test_newer_minor),
		cmocka_unit_test(test_required_wrong_abi_is_fatal),
		cmocka_unit_test(test_missing_symbol),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_misnamed),
		cmocka_unit_test(test_cycle),
		cmocka_unit_test(test_missing_dependency),
		cmocka_unit_test(test_failing_init_disables_dependents),
		cmocka_unit_test(test_failing_required_init_is_fatal),
		cmocka_unit_test(test_leaked_timer_reclaimed),
		cmocka_unit_test(test_bad_option_rejected_before_code_runs),
		cmocka_unit_test(test_module_dir_permissions),
		cmocka_unit_test(test_reload),
	};

	logs_reset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
