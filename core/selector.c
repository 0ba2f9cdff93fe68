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

int selector_match_json(const json_t *sel, const json_t *labels)
{
	const json_t *ml, *me, *e;
	const char *k;
	size_t i;
	json_t *v;

	if (!sel || json_is_null(sel))
		return 1;
	if (!json_is_object(sel))
		return -EINVAL;
	if (labels && !json_is_object(labels))
		labels = NULL;

	ml = json_object_get(sel, "matchLabels");
	if (ml && !json_is_object(ml) && !json_is_null(ml))
		return -EINVAL;
	json_object_foreach((json_t *)ml, k, v) {
		const char *have = json_string_value(json_object_get(labels, k));

		if (!json_is_string(v))
			return -EINVAL;
		if (!have || strcmp(have, json_string_value(v)))
			return 0;
	}

	me = json_object_get(sel, "matchExpressions");
	if (me && !json_is_array(me) && !json_is_null(me))
		return -EINVAL;
	json_array_foreach(me, i, e) {
		const char *key = json_string_value(json_object_get(e, "key"));
		const char *op = json_string_value(json_object_get(e, "operator"));
		const json_t *values = json_object_get(e, "values");
		const char *have;

		if (!key || !op)
			return -EINVAL;
		have = json_string_value(json_object_get(labels, key));
		if (!strcmp(op, "In") || !strcmp(op, "NotIn")) {
			/* Kubernetes requires a non-empty values list for these. */
			if (!json_is_array(values) || json_array_size(values) == 0)
				return -EINVAL;
			if (!strcmp(op, "In") ? !in_values(values, have) : in_values(values, have))
				return 0;
		} else if (!strcmp(op, "Exists") || !strcmp(op, "DoesNotExist")) {
			if (values && json_is_array(values) && json_array_size(values))
				return -EINVAL;
			if (!strcmp(op, "Exists") ? !have : !!have)
				return 0;
		} else {
			return -EINVAL;
		}
	}
	return 1;
}
