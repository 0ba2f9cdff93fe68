/* SPDX-License-Identifier: Apache-2.0 */
/*
 * statedir_parse.h - manifest files (YAML or JSON, several documents per
 * file) to JSON objects, with the position of every document and error.
 * Pure functions: no host, no I/O, so the rules are tested on their own.
 */
#ifndef STATEDIR_PARSE_H
#define STATEDIR_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* A bigger file is reported as an error rather than read. */
#define STATEDIR_MAX_FILE (16u << 20)

/* A directory entry statedir reads: *.yaml, *.yml or *.json, not hidden. */
bool statedir_is_manifest(const char *name);

/*
 * Parse the contents of manifest `name` (its extension picks the format).
 * Bad input is not a failure: *ret is always
 *
 *   {"documents": N,   non-empty documents, good or bad
 *    "objects": [{"line": L, "col": C, "object": {...}}],
 *    "errors":  [{"line": L, "col": C, "message": "..."}]}
 *
 * with 1-based positions. An object has apiVersion, kind and metadata.name;
 * a "kind: List" document contributes its items. Returns 0, -ENOMEM, or
 * -EINVAL if `name` is not a manifest.
 */
int statedir_parse(const char *name, const char *buf, size_t len, json_t **ret);

#endif /* STATEDIR_PARSE_H */
