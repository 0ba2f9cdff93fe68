// SPDX-License-Identifier: Apache-2.0
/* Placeholder until the statedir module lands. */
#include <axoneme/axoneme.h>

AXN_MODULE_DEFINE(statedir, .version = "0.1.0", .description = "resources from manifests on disk");
