/* SPDX-License-Identifier: Apache-2.0 */
/*
 * axoneme/store.h - resources: Kubernetes-shaped objects (apiVersion, kind,
 * metadata, spec, status) held as immutable, ref-counted JSON (jansson).
 *
 * Delivery to a subscriber (store_watch), like BIRD's feeder:
 *
 *   store_watch() --> replay: ADDED for every object that exists
 *                 --> SYNCED once every source has delivered its initial state
 *                 --> ADDED / MODIFIED / DELETED as sources change objects
 *
 * Callbacks run on the loop thread, never inside store_watch() itself. An
 * object is borrowed for the callback; keep it with host->obj_ref(). Never
 * modify the JSON of an object: build a new document instead. The JSON
 * (host->obj_json() and the helpers below) is valid while a reference is
 * held, the callback's borrowed one included; not after the last obj_unref.
 *
 * Subscribe by kind alone ("Service") or restrict to an API group with
 * "group/Kind" ("cilium.io/CiliumLoadBalancerIPPool"; a version in between,
 * "cilium.io/v2alpha1/CiliumLoadBalancerIPPool", is accepted and ignored).
 * Objects are keyed by kind, namespace and name, so v2alpha1 and v2 of one
 * kind are one object: a consumer reads both layouts.
 */
#ifndef AXONEME_STORE_H
#define AXONEME_STORE_H

#include <jansson.h>

#include <axoneme/host.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline const json_t *axn_obj_meta(const struct axn_mod *self, const struct axn_obj *obj)
{
	return json_object_get(self->host->obj_json(obj), "metadata");
}

static inline const char *axn_obj_kind(const struct axn_mod *self, const struct axn_obj *obj)
{
	return json_string_value(json_object_get(self->host->obj_json(obj), "kind"));
}

static inline const char *axn_obj_name(const struct axn_mod *self, const struct axn_obj *obj)
{
	return json_string_value(json_object_get(axn_obj_meta(self, obj), "name"));
}

/* NULL for cluster-scoped objects. */
static inline const char *axn_obj_namespace(const struct axn_mod *self, const struct axn_obj *obj)
{
	return json_string_value(json_object_get(axn_obj_meta(self, obj), "namespace"));
}

static inline const json_t *axn_obj_labels(const struct axn_mod *self, const struct axn_obj *obj)
{
	return json_object_get(axn_obj_meta(self, obj), "labels");
}

static inline const json_t *axn_obj_spec(const struct axn_mod *self, const struct axn_obj *obj)
{
	return json_object_get(self->host->obj_json(obj), "spec");
}

static inline const json_t *axn_obj_status(const struct axn_mod *self, const struct axn_obj *obj)
{
	return json_object_get(self->host->obj_json(obj), "status");
}

#ifdef __cplusplus
}
#endif

#endif /* AXONEME_STORE_H */
