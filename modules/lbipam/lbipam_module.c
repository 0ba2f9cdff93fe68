// SPDX-License-Identifier: Apache-2.0
/* Placeholder until the lbipam module lands. */
#include <axoneme/axoneme.h>

AXN_MODULE_DEFINE(lbipam, .version = "0.0.0", .description = "work in progress")
