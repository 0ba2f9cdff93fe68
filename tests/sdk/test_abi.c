// SPDX-License-Identifier: Apache-2.0
/*
 * ABI lock for SDK 1.x on LP64. A failing assertion here means a change broke
 * modules built against an earlier SDK: structs only grow at the end, fields
 * are never moved or retyped. Update the numbers only together with
 * AXN_ABI_MAJOR.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <axoneme/axoneme.h>

#define AT(type, field, off) _Static_assert(offsetof(type, field) == (off), #type "." #field)

_Static_assert(sizeof(void *) == 8, "the lock below is for LP64");

AT(struct axn_module_desc, abi_major, 0);
AT(struct axn_module_desc, abi_minor, 4);
AT(struct axn_module_desc, desc_size, 8);
AT(struct axn_module_desc, abi_fingerprint, 12);
AT(struct axn_module_desc, name, 16);
AT(struct axn_module_desc, version, 24);
AT(struct axn_module_desc, description, 32);
AT(struct axn_module_desc, provides, 40);
AT(struct axn_module_desc, requires, 48);
AT(struct axn_module_desc, wants, 56);
AT(struct axn_module_desc, options, 64);
AT(struct axn_module_desc, conf_size, 72);
AT(struct axn_module_desc, init, 80);
AT(struct axn_module_desc, start, 88);
AT(struct axn_module_desc, reconfigure, 96);
AT(struct axn_module_desc, stop, 104);
AT(struct axn_module_desc, fini, 112);
_Static_assert(sizeof(struct axn_module_desc) == 120, "axn_module_desc size (v1.0)");

AT(struct axn_option, key, 0);
AT(struct axn_option, type, 8);
AT(struct axn_option, flags, 12);
AT(struct axn_option, offset, 16);
AT(struct axn_option, def, 24);
AT(struct axn_option, min, 32);
AT(struct axn_option, max, 40);
AT(struct axn_option, help, 48);
_Static_assert(sizeof(struct axn_option) == 56, "axn_option size");

AT(struct axn_mod, host, 0);
AT(struct axn_mod, state, 8);

AT(struct axn_map_spec, size, 0);
AT(struct axn_map_spec, type, 4);
AT(struct axn_map_spec, key_size, 8);
AT(struct axn_map_spec, value_size, 12);
AT(struct axn_map_spec, max_entries, 16);
AT(struct axn_map_spec, map_flags, 20);
AT(struct axn_map_spec, layout, 24);
AT(struct axn_map_spec, flags, 28);
_Static_assert(sizeof(struct axn_map_spec) == 32, "axn_map_spec size (v1.0)");

AT(struct axn_hook_spec, size, 0);
AT(struct axn_hook_spec, kind, 4);
AT(struct axn_hook_spec, ifname, 8);
AT(struct axn_hook_spec, cgroup, 16);
AT(struct axn_hook_spec, attach_type, 24);
AT(struct axn_hook_spec, band, 28);
AT(struct axn_hook_spec, prio, 32);
AT(struct axn_hook_spec, name, 40);
_Static_assert(sizeof(struct axn_hook_spec) == 48, "axn_hook_spec size (v1.0)");

AT(struct axn_source_ops, size, 0);
AT(struct axn_source_ops, write_status, 8);

/* The host table: function slots in ABI 1.0 order. */
AT(struct axn_host, size, 0);
AT(struct axn_host, abi_minor, 4);
AT(struct axn_host, log, 8);
AT(struct axn_host, vlog, 16);
AT(struct axn_host, set_state, 24);
AT(struct axn_host, io_add, 32);
AT(struct axn_host, timer_add, 40);
AT(struct axn_host, defer, 48);
AT(struct axn_host, post, 56);
AT(struct axn_host, handle_free, 64);
AT(struct axn_host, map_open, 72);
AT(struct axn_host, hook_chain_fd, 80);
AT(struct axn_host, hook_attach, 88);
AT(struct axn_host, hook_detach, 96);
AT(struct axn_host, store_watch, 104);
AT(struct axn_host, store_get, 112);
AT(struct axn_host, store_set_status, 120);
AT(struct axn_host, source_register, 128);
AT(struct axn_host, source_put, 136);
AT(struct axn_host, source_delete, 144);
AT(struct axn_host, source_synced, 152);
AT(struct axn_host, source_error, 160);
AT(struct axn_host, obj_ref, 168);
AT(struct axn_host, obj_unref, 176);
AT(struct axn_host, obj_json, 184);
AT(struct axn_host, selector_match, 192);
AT(struct axn_host, api_register, 200);
AT(struct axn_host, metric_new, 208);
AT(struct axn_host, metric_add, 216);
AT(struct axn_host, metric_set, 224);
AT(struct axn_host, agent_info, 232);
/* ABI 1.1 */
AT(struct axn_host, api_alias, 240);
_Static_assert(sizeof(struct axn_host) == 248, "axn_host size (v1.1)");

/* Constants that modules compile in. */
_Static_assert(AXN_ABI_MAJOR == 1, "ABI major");
_Static_assert(AXN_OPT_BOOL == 1 && AXN_OPT_INT == 2 && AXN_OPT_STRING == 3 &&
		       AXN_OPT_STRLIST == 4,
	       "option types");
_Static_assert(AXN_EV_ADDED == 1 && AXN_EV_MODIFIED == 2 && AXN_EV_DELETED == 3 &&
		       AXN_EV_SYNCED == 4,
	       "store events");
_Static_assert(AXN_HOOK_TC_INGRESS == 1 && AXN_HOOK_TC_EGRESS == 2 && AXN_HOOK_XDP == 3 &&
		       AXN_HOOK_CGROUP == 4,
	       "hook kinds");

static void test_host_has(void **state)
{
	/* A host from an older core: AXN_HOST_HAS must refuse slots past its size. */
	struct axn_host h = {0};

	h.size = offsetof(struct axn_host, selector_match);
	h.obj_json = (const struct json_t * (*)(const struct axn_obj *))1;
	h.api_register = NULL;
	assert_true(AXN_HOST_HAS(&h, obj_json));
	assert_false(AXN_HOST_HAS(&h, api_register));
	h.size = sizeof(h);
	assert_false(AXN_HOST_HAS(&h, api_register)); /* present but NULL */
}

static void test_fingerprint(void **state)
{
	assert_int_equal(AXN_ABI_FINGERPRINT & 0xff00u, 8u << 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_has),
		cmocka_unit_test(test_fingerprint),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
