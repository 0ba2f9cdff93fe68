/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lb_thread.h - the second thread a large sync parses, translates or writes
 * with (lb_sync.c, lb_maps.c).
 */
#ifndef LB_THREAD_H
#define LB_THREAD_H

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

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

/*
 * An ordered pipeline over items 0 .. n - 1 in chunks: produce() (parse,
 * translate) runs on chunks that either thread claims in turn, and this
 * thread consumes the chunks in order (apply, claim) as they are ready.
 * While the chunk it needs next is not ready, it produces the next
 * unclaimed one itself, so it never waits on work nobody does. produce()
 * must touch only its own items (and what nothing changes meanwhile).
 * window (0: none): the second thread stays at most that many chunks ahead
 * of the one this thread consumes -- for output that is dropped once
 * consumed, so that its memory is reused instead of every item's being
 * live at once.
 *
 *   lb_pipe_start(&p, n, chunk, produce, arg, parallel, window);
 *   for (size_t k = 0; k < p.n_chunks; k++) {
 *           lb_pipe_wait(&p, k, &from, &to);   -> items [from, to) are produced
 *           ... consume them ...
 *   }
 *   lb_pipe_end(&p);
 */
struct lb_pipe {
	size_t n, chunk, n_chunks;
	void (*produce)(void *arg, size_t from, size_t to);
	void *arg;
	atomic_size_t next;	/* the next chunk to claim */
	atomic_size_t consumed; /* the chunk this thread consumes now */
	size_t window;
	/* The second thread, far enough ahead, sleeps on cv until the consumer moves on. */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_bool waiting;
	atomic_uchar *done; /* per chunk: produced; NULL: this thread does all, in order */
	pthread_t t;
	bool spawned;
};

static inline void lb_pipe_chunk(struct lb_pipe *p, size_t k)
{
	size_t from = k * p->chunk, to = from + p->chunk < p->n ? from + p->chunk : p->n;

	p->produce(p->arg, from, to);
	atomic_store_explicit(&p->done[k], 1, memory_order_release);
}

/* Claim and produce a chunk; false when none is left. */
static inline bool lb_pipe_one(struct lb_pipe *p)
{
	size_t k = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);

	if (k >= p->n_chunks)
		return false;
	lb_pipe_chunk(p, k);
	return true;
}

static inline void *lb_pipe_worker(void *arg)
{
	struct lb_pipe *p = arg;

	for (;;) {
		size_t k = atomic_load_explicit(&p->next, memory_order_relaxed);

		if (k >= p->n_chunks)
			break;
		if (p->window && k >= atomic_load(&p->consumed) + p->window) {
			/*
			 * Far enough ahead: sleep until the consumer moves on. waiting
			 * is set before the condition is checked again and the consumer
			 * stores consumed before it reads waiting (both sequentially
			 * consistent), so one of the two sees the other.
			 */
			pthread_mutex_lock(&p->mu);
			atomic_store(&p->waiting, true);
			while ((k = atomic_load(&p->next)) < p->n_chunks &&
			       k >= atomic_load(&p->consumed) + p->window)
				pthread_cond_wait(&p->cv, &p->mu);
			atomic_store(&p->waiting, false);
			pthread_mutex_unlock(&p->mu);
			continue;
		}
		if (!lb_pipe_one(p))
			break;
	}
	return NULL;
}

/* parallel: start the second thread (when it cannot start, this one does everything). */
static inline void lb_pipe_start(struct lb_pipe *p, size_t n, size_t chunk,
				 void (*produce)(void *arg, size_t from, size_t to), void *arg,
				 bool parallel, size_t window)
{
	*p = (struct lb_pipe){
		.n = n, .chunk = chunk, .produce = produce, .arg = arg, .window = window};
	p->n_chunks = (n + chunk - 1) / chunk;
	atomic_init(&p->next, 0);
	atomic_init(&p->consumed, 0);
	atomic_init(&p->waiting, false);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	/* No memory for the flags: this thread produces each chunk as it needs it. */
	p->done = p->n_chunks ? calloc(p->n_chunks, sizeof(*p->done)) : NULL;
	if (p->done && parallel)
		p->spawned = lb_thread_spawn(&p->t, lb_pipe_worker, p);
}

/* Chunk k (in order) is produced: its items are [*ret_from, *ret_to). */
static inline void lb_pipe_wait(struct lb_pipe *p, size_t k, size_t *ret_from, size_t *ret_to)
{
	size_t from = k * p->chunk, to = from + p->chunk < p->n ? from + p->chunk : p->n;

	atomic_store(&p->consumed, k);
	if (atomic_load(&p->waiting)) {
		pthread_mutex_lock(&p->mu);
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	if (!p->done)
		p->produce(p->arg, from, to);
	else
		while (!atomic_load_explicit(&p->done[k], memory_order_acquire))
			if (!lb_pipe_one(p))
				sched_yield(); /* the other thread has it in hand */
	*ret_from = from;
	*ret_to = to;
}

static inline void lb_pipe_end(struct lb_pipe *p)
{
	if (p->spawned)
		pthread_join(p->t, NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p->done);
	p->done = NULL;
}

#endif /* LB_THREAD_H */
