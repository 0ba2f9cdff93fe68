/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb_thread.h - the second thread a large sync parses, translates or writes
 * with (lb_sync.c, lb_maps.c).
 */
#ifndef LB_THREAD_H
#define LB_THREAD_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>

/*
 * Start fn(arg) on a new thread with every signal blocked: the agent's
 * signals are for its own thread. false if it could not start (the caller
 * then does the work itself).
 */
static inline bool lb_thread_spawn(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	bool ok;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ok = pthread_create(t, NULL, fn, arg) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ok;
}

#endif /* LB_THREAD_H */
