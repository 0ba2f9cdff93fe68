// SPDX-License-Identifier: Apache-2.0
/* Placeholder until the lb module lands. */
#include <axoneme/axoneme.h>

AXN_MODULE_DEFINE(lb, .version = "0.0.0", .description = "work in progress")
