// SPDX-License-Identifier: Apache-2.0
/*
 * Kubernetes label selectors: {matchLabels: {k: v}, matchExpressions:
 * [{key, operator: In|NotIn|Exists|DoesNotExist, values: [...]}]}.
 * The requirements are ANDed; an empty or absent selector matches everything,
 * as in Kubernetes' metav1.LabelSelectorAsSelector.
 */
#include <errno.h>
#include <string.h>

#include "core.h"


static int in_values(const json_t *values, const char *v)
{
	size_t i;
	json_t *e;

	json_array_foreach(values, i, e)
		if (json_is_string(e) && v && !strcmp(json_string_value(e), v))
			return 1;
	return 0;
}

/* A selector is checked whole before it is evaluated: a typo must not select everything. */
static int selector_valid(const json_t *sel)
{
	const json_t *ml = json_object_get(sel, "matchLabels");
	const json_t *me = json_object_get(sel, "matchExpressions");
	const char *k;
	json_t *v;
	size_t i;

	json_object_foreach((json_t *)sel, k, v)
		if (strcmp(k, "matchLabels") && strcmp(k, "matchExpressions"))
			return -EINVAL;
	if (ml && !json_is_object(ml) && !json_is_null(ml))
		return -EINVAL;
	json_object_foreach((json_t *)ml, k, v)
		if (!json_is_string(v))
			return -EINVAL;
	if (me && !json_is_array(me) && !json_is_null(me))
		return -EINVAL;
	json_array_foreach(me, i, v) {
		const char *key = json_string_value(json_object_get(v, "key"));
		const char *op = json_string_value(json_object_get(v, "operator"));
		const json_t *values = json_object_get(v, "values");
		size_t n = json_is_array(values) ? json_array_size(values) : 0;

		if (!json_is_object(v) || !key || !op)
			return -EINVAL;
		if (values && !json_is_array(values) && !json_is_null(values))
			return -EINVAL;
		if (!strcmp(op, "In") || !strcmp(op, "NotIn")) {
			/* Kubernetes requires a non-empty values list for these. */
			if (!n)
				return -EINVAL;
		} else if (!strcmp(op, "Exists") || !strcmp(op, "DoesNotExist")) {
			if (n)
				return -EINVAL;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

int selector_match_json(const json_t *sel, const json_t *labels)
{
	const json_t *ml, *me, *e;
	const char *k;
	size_t i;
	json_t *v;
	int r;

	if (!sel || json_is_null(sel))
		return 1;
	if (!json_is_object(sel))
		return -EINVAL;
	r = selector_valid(sel);
	if (r < 0)
		return r;
	if (labels && !json_is_object(labels))
		labels = NULL;

	ml = json_object_get(sel, "matchLabels");
	json_object_foreach((json_t *)ml, k, v) {
		const char *have = json_string_value(json_object_get(labels, k));

		if (!have || strcmp(have, json_string_value(v)))
			return 0;
	}
	me = json_object_get(sel, "matchExpressions");
	json_array_foreach(me, i, e) {
		const char *op = json_string_value(json_object_get(e, "operator"));
		const char *have =
			json_string_value(json_object_get(labels, json_string_value(json_object_get(e, "key"))));
		const json_t *values = json_object_get(e, "values");

		if (!strcmp(op, "In") && !in_values(values, have))
			return 0;
		if (!strcmp(op, "NotIn") && in_values(values, have))
			return 0;
		if (!strcmp(op, "Exists") && !have)
			return 0;
		if (!strcmp(op, "DoesNotExist") && have)
			return 0;
	}
	return 1;
}
