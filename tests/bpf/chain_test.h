/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Shared by chain_test.bpf.c and test_chain.c: the layout of the trace map. */
#ifndef AXN_TEST_CHAIN_TEST_H
#define AXN_TEST_CHAIN_TEST_H

#define TRACE_MAX 40  /* entries in the trace map */
#define TRACE_SLOT 20 /* trace[TRACE_SLOT + i]: the slot the i-th program ran from */
#define TRACE_DROP 9  /* what the dropping programs write as "who" */

#endif
