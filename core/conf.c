// SPDX-License-Identifier: Apache-2.0
/*
 * The configuration file (libconfig). Parsing and validation never run module
 * code: agent options are checked here, module groups against each module's
 * declared option table (struct axn_option). Every error names file and line.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static int fail(char **ret_err, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char **ret_err, const char *file, int line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ret_err && asprintf(ret_err, "%s:%d: %s", file, line, msg) < 0)
		*ret_err = NULL;
	return -EINVAL;
}

static const char *const agent_keys[] = {
	"node_name", "bpffs", "rundir", "moduledir", "cgroup", "api_socket", "metrics", "log_level",
};

static int valid_name(const char *s)
{
	if (!s || !*s || strlen(s) > 63)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

static int parse_agent(config_setting_t *g, const char *path, struct agent_conf *ac, char **ret_err)
{
	for (int i = 0; g && i < config_setting_length(g); i++) {
		config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const char *key = config_setting_name(s);
		size_t k;

		for (k = 0; k < sizeof(agent_keys) / sizeof(agent_keys[0]); k++)
			if (!strcmp(key, agent_keys[k]))
				break;
		if (k == sizeof(agent_keys) / sizeof(agent_keys[0]))
			return fail(ret_err, path, config_setting_source_line(s),
				    "agent: unknown option '%s'", key);
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			return fail(ret_err, path, config_setting_source_line(s),
				    "agent.%s: expected a string", key);
	}

#define STR(field, def)                                                                            \
	do {                                                                                       \
		const char *v_ = NULL;                                                             \
		if (!g || !config_setting_lookup_string(g, #field, &v_))                           \
			v_ = (def);                                                                \
		ac->field = v_;                                                                    \
	} while (0)
	STR(node_name, NULL);
	STR(bpffs, "/sys/fs/bpf/axoneme");
	STR(rundir, RUNSTATEDIR);
	STR(moduledir, MODULEDIR);
	STR(cgroup, "/sys/fs/cgroup/unified");
	STR(api_socket, NULL);
	STR(metrics, "");
	STR(log_level, "info");
#undef STR
	if (log_level_parse(ac->log_level) < 0)
		return fail(ret_err, path,
			    config_setting_source_line(config_setting_get_member(g, "log_level")),
			    "agent.log_level: '%s' is not one of error, warn, info, debug",
			    ac->log_level);
	if (ac->bpffs[0] != '/' || ac->rundir[0] != '/')
		return fail(ret_err, path, g ? config_setting_source_line(g) : 0,
			    "agent: bpffs and rundir must be absolute paths");
	return 0;
}

static int parse_modules(config_setting_t *list, const char *path, struct parsed_conf *pc,
			 char **ret_err)
{
	int n;

	if (!list)
		return 0;
	if (!config_setting_is_aggregate(list) || config_setting_is_group(list))
		return fail(ret_err, path, config_setting_source_line(list),
			    "modules: expected a list, e.g. modules = ( \"statedir\" );");
	n = config_setting_length(list);
	pc->mods = calloc((size_t)n + 1, sizeof(*pc->mods));
	if (!pc->mods)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		const char *name = NULL;
		int required = 0, enabled = 1;

		if (config_setting_type(e) == CONFIG_TYPE_STRING) {
			name = config_setting_get_string(e);
		} else if (config_setting_is_group(e)) {
			for (int j = 0; j < config_setting_length(e); j++) {
				config_setting_t *s = config_setting_get_elem(e, (unsigned)j);
				const char *k = config_setting_name(s);

				if (strcmp(k, "name") && strcmp(k, "required") && strcmp(k, "enabled"))
					return fail(ret_err, path, config_setting_source_line(s),
						    "modules: unknown key '%s' (name, required, enabled)",
						    k);
			}
			config_setting_lookup_string(e, "name", &name);
			config_setting_lookup_bool(e, "required", &required);
			config_setting_lookup_bool(e, "enabled", &enabled);
		}
		if (!valid_name(name))
			return fail(ret_err, path, config_setting_source_line(e),
				    "modules: entry %d needs a name of [a-z0-9_]", i + 1);
		for (size_t j = 0; j < pc->n_mods; j++)
			if (!strcmp(pc->mods[j].name, name))
				return fail(ret_err, path, config_setting_source_line(e),
					    "modules: '%s' listed twice", name);
		if (!enabled) {
			/* Its group may stay in the file; it is validated once enabled. */
			pc->disabled = realloc(pc->disabled, (pc->n_disabled + 1) * sizeof(char *));
			if (!pc->disabled || !(pc->disabled[pc->n_disabled] = strdup(name)))
				return -ENOMEM;
			pc->n_disabled++;
			continue;
		}
		pc->mods[pc->n_mods].name = strdup(name);
		if (!pc->mods[pc->n_mods].name)
			return -ENOMEM;
		pc->mods[pc->n_mods].required = required;
		pc->mods[pc->n_mods].line = config_setting_source_line(e);
		pc->n_mods++;
	}
	return 0;
}

int conf_parse(const char *path, struct parsed_conf **ret_pc, char **ret_err)
{
	struct parsed_conf *pc;
	config_setting_t *root;
	int r;

	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	config_init(&pc->cfg);
	if (!config_read_file(&pc->cfg, path)) {
		if (config_error_type(&pc->cfg) == CONFIG_ERR_FILE_IO)
			r = fail(ret_err, path, 0, "cannot read: %s", strerror(errno));
		else
			r = fail(ret_err, config_error_file(&pc->cfg) ? config_error_file(&pc->cfg) : path,
				 config_error_line(&pc->cfg), "%s", config_error_text(&pc->cfg));
		goto err;
	}
	root = config_root_setting(&pc->cfg);
	r = parse_agent(config_setting_get_member(root, "agent"), path, &pc->agent, ret_err);
	if (r < 0)
		goto err;
	r = parse_modules(config_setting_get_member(root, "modules"), path, pc, ret_err);
	if (r < 0)
		goto err;

	/* Every other top-level setting must be the group of a listed module. */
	for (int i = 0; i < config_setting_length(root); i++) {
		config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *k = config_setting_name(s);
		bool known = !strcmp(k, "agent") || !strcmp(k, "modules");

		for (size_t j = 0; !known && j < pc->n_mods; j++)
			known = !strcmp(pc->mods[j].name, k);
		for (size_t j = 0; !known && j < pc->n_disabled; j++)
			known = !strcmp(pc->disabled[j], k);
		if (!known) {
			r = fail(ret_err, path, config_setting_source_line(s),
				 "'%s' is neither an agent setting nor an enabled module", k);
			goto err;
		}
		if (strcmp(k, "modules") && !config_setting_is_group(s)) {
			r = fail(ret_err, path, config_setting_source_line(s),
				 "'%s' must be a group: %s: { ... };", k, k);
			goto err;
		}
	}
	*ret_pc = pc;
	return 0;
err:
	conf_free(pc);
	return r;
}

void conf_free(struct parsed_conf *pc)
{
	if (!pc)
		return;
	for (size_t i = 0; i < pc->n_mods; i++)
		free(pc->mods[i].name);
	free(pc->mods);
	for (size_t i = 0; i < pc->n_disabled; i++)
		free(pc->disabled[i]);
	free(pc->disabled);
	config_destroy(&pc->cfg);
	free(pc);
}

static int set_bool(const char *txt, int *out)
{
	if (!txt || !strcmp(txt, "false") || !strcmp(txt, "0"))
		*out = 0;
	else if (!strcmp(txt, "true") || !strcmp(txt, "1"))
		*out = 1;
	else
		return -EINVAL;
	return 0;
}

static int split_list(const char *txt, char ***ret)
{
	char **v, *copy, *save = NULL;
	size_t n = 1;

	for (const char *p = txt ? txt : ""; *p; p++)
		n += *p == ',';
	v = calloc(n + 1, sizeof(*v));
	copy = strdup(txt ? txt : "");
	if (!v || !copy) {
		free(v);
		free(copy);
		return -ENOMEM;
	}
	n = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
		if (*t && !(v[n++] = strdup(t))) {
			free(copy);
			for (size_t i = 0; i < n; i++)
				free(v[i]);
			free(v);
			return -ENOMEM;
		}
	free(copy);
	*ret = v;
	return 0;
}

static void free_list(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

void conf_free_module(const struct axn_module_desc *desc, void *conf)
{
	if (!conf)
		return;
	for (const struct axn_option *o = desc->options; o && o->key; o++) {
		void *field = (char *)conf + o->offset;

		if (o->type == AXN_OPT_STRING)
			free(*(char **)field);
		else if (o->type == AXN_OPT_STRLIST)
			free_list(*(char ***)field);
	}
	free(conf);
}

/* Apply one option's value, from the conf setting `s` or, if NULL, its default. */
static int apply_option(const struct axn_option *o, config_setting_t *s, void *conf,
			const char *path, const char *mod, char **ret_err)
{
	void *field = (char *)conf + o->offset;
	int line = s ? config_setting_source_line(s) : 0;
	int type = s ? config_setting_type(s) : -1;

	switch (o->type) {
	case AXN_OPT_BOOL:
		if (s) {
			if (type != CONFIG_TYPE_BOOL)
				return fail(ret_err, path, line, "%s.%s: expected true or false",
					    mod, o->key);
			*(int *)field = config_setting_get_bool(s);
		} else if (set_bool(o->def, (int *)field) < 0) {
			return fail(ret_err, path, line, "%s.%s: bad default '%s'", mod, o->key,
				    o->def);
		}
		return 0;
	case AXN_OPT_INT: {
		long long v;

		if (s) {
			if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
				return fail(ret_err, path, line, "%s.%s: expected an integer", mod,
					    o->key);
			v = config_setting_get_int64(s);
		} else {
			v = o->def ? strtoll(o->def, NULL, 0) : 0;
		}
		if ((o->min || o->max) && (v < o->min || v > o->max))
			return fail(ret_err, path, line, "%s.%s: %lld is out of range [%lld, %lld]",
				    mod, o->key, v, (long long)o->min, (long long)o->max);
		*(int64_t *)field = v;
		return 0;
	}
	case AXN_OPT_STRING: {
		const char *v = o->def;

		if (s) {
			if (type != CONFIG_TYPE_STRING)
				return fail(ret_err, path, line, "%s.%s: expected a string", mod,
					    o->key);
			v = config_setting_get_string(s);
		}
		free(*(char **)field);
		*(char **)field = v ? strdup(v) : NULL;
		return v && !*(char **)field ? -ENOMEM : 0;
	}
	case AXN_OPT_STRLIST: {
		char **v = NULL;
		int r;

		if (!s) {
			r = split_list(o->def, &v);
		} else if (type == CONFIG_TYPE_STRING) {
			r = split_list(config_setting_get_string(s), &v);
		} else if (type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_ARRAY) {
			int n = config_setting_length(s);

			r = 0;
			v = calloc((size_t)n + 1, sizeof(*v));
			if (!v)
				return -ENOMEM;
			for (int i = 0; i < n; i++) {
				const char *e = config_setting_get_string_elem(s, i);

				if (!e) {
					free_list(v);
					return fail(ret_err, path, line,
						    "%s.%s: element %d is not a string", mod, o->key,
						    i + 1);
				}
				if (!(v[i] = strdup(e))) {
					free_list(v);
					return -ENOMEM;
				}
			}
		} else {
			return fail(ret_err, path, line, "%s.%s: expected a list of strings", mod,
				    o->key);
		}
		if (r < 0)
			return r;
		free_list(*(char ***)field);
		*(char ***)field = v;
		return 0;
	}
	default:
		return fail(ret_err, path, line, "%s.%s: option has unknown type %u", mod, o->key,
			    o->type);
	}
}

int conf_fill_module(config_t *cfg, const char *path, const struct axn_module_desc *desc,
		     void **ret_conf, char **ret_err)
{
	config_setting_t *g = config_lookup(cfg, desc->name);
	void *conf;
	int r;

	conf = calloc(1, desc->conf_size ? desc->conf_size : 1);
	if (!conf)
		return -ENOMEM;

	/* Unknown keys first: a typo must not silently fall back to a default. */
	for (int i = 0; g && i < config_setting_length(g); i++) {
		config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const struct axn_option *o;

		for (o = desc->options; o && o->key; o++)
			if (!strcmp(o->key, config_setting_name(s)))
				break;
		if (!o || !o->key) {
			r = fail(ret_err, path, config_setting_source_line(s),
				 "%s: unknown option '%s'", desc->name, config_setting_name(s));
			goto err;
		}
	}
	for (const struct axn_option *o = desc->options; o && o->key; o++) {
		config_setting_t *s = g ? config_setting_get_member(g, o->key) : NULL;

		if (o->offset + (o->type == AXN_OPT_BOOL ? sizeof(int) : sizeof(int64_t)) >
		    desc->conf_size) {
			r = fail(ret_err, path, 0, "%s: option '%s' lies outside conf_size", desc->name,
				 o->key);
			goto err;
		}
		if (!s && (o->flags & AXN_OPTF_REQUIRED)) {
			r = fail(ret_err, path, g ? config_setting_source_line(g) : 0,
				 "%s: option '%s' is required", desc->name, o->key);
			goto err;
		}
		r = apply_option(o, s, conf, path, desc->name, ret_err);
		if (r < 0)
			goto err;
	}
	*ret_conf = conf;
	return 0;
err:
	conf_free_module(desc, conf);
	return r;
}

bool conf_equal(const struct axn_module_desc *desc, const void *a, const void *b)
{
	if (!a || !b)
		return a == b;
	for (const struct axn_option *o = desc->options; o && o->key; o++) {
		const void *fa = (const char *)a + o->offset, *fb = (const char *)b + o->offset;

		switch (o->type) {
		case AXN_OPT_BOOL:
			if (*(const int *)fa != *(const int *)fb)
				return false;
			break;
		case AXN_OPT_INT:
			if (*(const int64_t *)fa != *(const int64_t *)fb)
				return false;
			break;
		case AXN_OPT_STRING: {
			const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;

			if ((sa || sb) && (!sa || !sb || strcmp(sa, sb)))
				return false;
			break;
		}
		case AXN_OPT_STRLIST: {
			char *const *la = *(char **const *)fa, *const *lb = *(char **const *)fb;
			size_t i = 0;

			for (; la && lb && la[i] && lb[i]; i++)
				if (strcmp(la[i], lb[i]))
					return false;
			if ((la && la[i]) || (lb && lb[i]))
				return false;
			break;
		}
		}
	}
	return true;
}
