/* SPDX-License-Identifier: Apache-2.0 */
/* axoneme/axoneme.h - everything a module needs. */
#ifndef AXONEME_AXONEME_H
#define AXONEME_AXONEME_H

#include <axoneme/module.h>
#include <axoneme/host.h>
#include <axoneme/store.h>

#endif /* AXONEME_AXONEME_H */
