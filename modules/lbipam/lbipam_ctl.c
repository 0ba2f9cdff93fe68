// SPDX-License-Identifier: Apache-2.0
/*
 * lbipam_ctl.c - the controller: follows Services and
 * CiliumLoadBalancerIPPools in the store and decides which service holds
 * which address.
 *
 * Stability rules (the reason this is not a port of upstream's loop):
 *  - Nothing is decided before both kinds have SYNCED: the whole replay is
 *    known first, so existing allocations are adopted before any new one
 *    is made, whatever the order of delivery.
 *  - Existing allocations are adopted in priority order, every service
 *    for one source before the next source: the writer's state file
 *    (readers only), then what this agent decided before (in memory), the
 *    service's status.loadBalancer.ingress, and this agent's state file
 *    from its previous run. An address is adopted when it is still valid:
 *    the service still wants it, some pool that selects the service
 *    contains it (a disabled or conflicting pool keeps what it has, a
 *    reserved first/last address stays with its holder), and it is free or
 *    shareable with its holders.
 *  - New addresses: requested ones as asked; otherwise a sharing-key
 *    partner's address, else the lowest free address of the first pool in
 *    name order that selects the service. Services are decided in name
 *    order in a full pass, in event order otherwise, and a freed address
 *    is offered to waiting services (in name order) at once, within the
 *    event that freed it. So the result is a function of the sequence of
 *    events alone, and two agents fed the same sequence agree.
 *  - A pool edit re-decides everything, keeping every allocation that is
 *    still valid under the new pools: shrinking moves only the services
 *    outside the new blocks, growing moves nobody, disabling moves nobody.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lbipam.h"

/* --- hash tables ----------------------------------------------------------------- */

uint64_t lb_str_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 0x100000001b3ull;
	return h;
}

int lb_htab_add(struct lb_htab *t, struct lb_hnode *node, uint64_t hash)
{
	if (t->n + 1 > t->nb) {
		size_t nb = t->nb ? t->nb * 2 : 64;
		struct lb_hnode **b = calloc(nb, sizeof(*b));

		if (!b)
			return -ENOMEM;
		for (size_t i = 0; i < t->nb; i++)
			while (t->b[i]) {
				struct lb_hnode *x = t->b[i];

				t->b[i] = x->next;
				x->next = b[x->hash & (nb - 1)];
				b[x->hash & (nb - 1)] = x;
			}
		free(t->b);
		t->b = b;
		t->nb = nb;
	}
	node->hash = hash;
	node->next = t->b[hash & (t->nb - 1)];
	t->b[hash & (t->nb - 1)] = node;
	t->n++;
	return 0;
}

void lb_htab_del(struct lb_htab *t, struct lb_hnode *node)
{
	struct lb_hnode **pp;

	if (!t->nb)
		return;
	for (pp = &t->b[node->hash & (t->nb - 1)]; *pp; pp = &(*pp)->next)
		if (*pp == node) {
			*pp = node->next;
			t->n--;
			return;
		}
}

struct lb_hnode *lb_htab_chain(const struct lb_htab *t, uint64_t hash)
{
	return t->nb ? t->b[hash & (t->nb - 1)] : NULL;
}

void lb_htab_free(struct lb_htab *t)
{
	free(t->b);
	*t = (struct lb_htab){0};
}

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* --- lookups ------------------------------------------------------------------------ */

static struct lb_svc *svc_get(struct lbipam *l, const char *key)
{
	uint64_t h = lb_str_hash(key);

	for (struct lb_hnode *n = lb_htab_chain(&l->svcs, h); n; n = n->next) {
		struct lb_svc *s = container_of(n, struct lb_svc, hn);

		if (n->hash == h && !strcmp(s->key, key))
			return s;
	}
	return NULL;
}

static struct lb_ent *ent_get(struct lbipam *l, const struct lb_ip *ip)
{
	uint64_t h = lb_ip_hash(ip);

	for (struct lb_hnode *n = lb_htab_chain(&l->ents, h); n; n = n->next) {
		struct lb_ent *e = container_of(n, struct lb_ent, hn);

		if (n->hash == h && !lb_ip_cmp(&e->ip, ip))
			return e;
	}
	return NULL;
}

static struct lb_skey *skey_get(struct lbipam *l, const char *key)
{
	uint64_t h = lb_str_hash(key);

	for (struct lb_hnode *n = lb_htab_chain(&l->skeys, h); n; n = n->next) {
		struct lb_skey *k = container_of(n, struct lb_skey, hn);

		if (n->hash == h && !strcmp(k->key, key))
			return k;
	}
	return NULL;
}

struct lbp *lbipam_pool_find(struct lbipam *l, const char *key)
{
	for (size_t i = 0; i < l->n_pools; i++)
		if (!strcmp(l->pools[i]->key, key))
			return l->pools[i];
	return NULL;
}

/* --- selectors ---------------------------------------------------------------------- */

static bool any_meta(struct lbipam *l)
{
	for (size_t i = 0; i < l->n_pools; i++)
		if (l->pools[i]->p.spec.selector_meta)
			return true;
	return false;
}

/* Does pool p select service s? Labels are built once per service being decided. */
static bool selects(struct lbipam *l, struct lbp *p, const struct lb_svc *s)
{
	const struct lb_spec *sp = &p->p.spec;

	if (sp->selector_bad)
		return false; /* a selector we cannot read selects nobody, never everybody */
	if (!sp->selector)
		return true;
	if (l->lbl_svc != s) {
		json_decref(l->lbl);
		l->lbl = lb_svc_labels(l->self->host->obj_json(s->obj), any_meta(l));
		l->lbl_svc = s;
	}
	return l->self->host->selector_match(l->self, sp->selector, l->lbl) == 1;
}

static void labels_forget(struct lbipam *l)
{
	json_decref(l->lbl);
	l->lbl = NULL;
	l->lbl_svc = NULL;
}

static bool pool_has_fam(const struct lbp *p, uint8_t fam)
{
	for (size_t i = 0; i < p->p.spec.n_ranges; i++)
		if (p->p.spec.ranges[i].fam == fam)
			return true;
	return false;
}

/* A pool that contains ip and selects s, in name order, one that does not conflict first. */
static struct lbp *find_home(struct lbipam *l, const struct lb_ip *ip, const struct lb_svc *s)
{
	struct lbp *alt = NULL;

	for (size_t i = 0; i < l->n_pools; i++) {
		struct lbp *p = l->pools[i];

		if (!lb_pool_range_of(&p->p, ip) || !selects(l, p, s))
			continue;
		if (!p->p.conflicting)
			return p;
		if (!alt)
			alt = p;
	}
	return alt;
}

/* --- addresses in use ----------------------------------------------------------------- */

static int mark_all(struct lbipam *l, const struct lb_ip *ip, bool held)
{
	for (size_t i = 0; i < l->n_pools; i++)
		if (lb_pool_mark(&l->pools[i]->p, ip, held) < 0)
			return -ENOMEM;
	return 0;
}

static void skey_del_ent(struct lbipam *l, struct lb_ent *e)
{
	struct lb_skey *k = e->skey;

	if (!k)
		return;
	for (uint32_t i = 0; i < k->n; i++)
		if (k->ents[i] == e) {
			memmove(k->ents + i, k->ents + i + 1, (k->n - i - 1) * sizeof(*k->ents));
			k->n--;
			break;
		}
	e->skey = NULL;
	if (!k->n) {
		lb_htab_del(&l->skeys, &k->hn);
		free(k->ents);
		free(k->key);
		free(k);
	}
}

static int skey_add_ent(struct lbipam *l, const char *key, struct lb_ent *e)
{
	struct lb_skey *k = skey_get(l, key);
	uint32_t i;

	if (!k) {
		if (!(k = calloc(1, sizeof(*k))) || !(k->key = strdup(key)) ||
		    lb_htab_add(&l->skeys, &k->hn, lb_str_hash(key)) < 0) {
			if (k)
				free(k->key);
			free(k);
			return -ENOMEM;
		}
	}
	if (k->n == k->cap) {
		uint32_t cap = k->cap ? k->cap * 2 : 2;
		struct lb_ent **v = realloc(k->ents, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		k->ents = v;
		k->cap = cap;
	}
	/* Sorted, so partners are tried lowest address first. */
	for (i = k->n; i > 0 && lb_ip_cmp(&k->ents[i - 1]->ip, &e->ip) > 0; i--)
		k->ents[i] = k->ents[i - 1];
	k->ents[i] = e;
	k->n++;
	e->skey = k;
	l->need_retry = true; /* a waiting service with this key may fit here */
	return 0;
}

static void ent_free(struct lbipam *l, struct lb_ent *e, bool reset)
{
	if (!reset) {
		mark_all(l, &e->ip, false);
		skey_del_ent(l, e);
		lb_htab_del(&l->ents, &e->hn);
		l->need_retry = true;
	}
	free(e->holders);
	free(e);
}

static bool holds(const struct lb_ent *e, const struct lb_svc *s)
{
	for (uint32_t i = 0; i < e->n_holders; i++)
		if (e->holders[i] == s)
			return true;
	return false;
}

/* Put e in s's addresses (kept sorted) and s in e's holders. */
static int link_svc(struct lb_ent *e, struct lb_svc *s)
{
	uint8_t i;

	if (e->n_holders == e->cap) {
		uint32_t cap = e->cap ? e->cap * 2 : 1;
		struct lb_svc **v = realloc(e->holders, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		e->holders = v;
		e->cap = cap;
	}
	if (s->n_ips == s->cap_ips) {
		unsigned cap = s->cap_ips ? s->cap_ips * 2u : 2u;
		struct lb_ent **v;

		if (cap > UINT8_MAX || !(v = realloc(s->ips, cap * sizeof(*v))))
			return -ENOMEM;
		s->ips = v;
		s->cap_ips = (uint8_t)cap;
	}
	e->holders[e->n_holders++] = s;
	for (i = s->n_ips; i > 0 && lb_ip_cmp(&s->ips[i - 1]->ip, &e->ip) > 0; i--)
		s->ips[i] = s->ips[i - 1];
	s->ips[i] = e;
	s->n_ips++;
	return 0;
}

/* s takes ip, through pool p. */
static int hold(struct lbipam *l, struct lb_svc *s, const struct lb_ip *ip, struct lbp *p)
{
	struct lb_ent *e = ent_get(l, ip);
	bool fresh = !e;

	if (fresh) {
		if (!(e = calloc(1, sizeof(*e))))
			return -ENOMEM;
		e->ip = *ip;
		e->pool = p;
		if (lb_htab_add(&l->ents, &e->hn, lb_ip_hash(ip)) < 0) {
			free(e);
			return -ENOMEM;
		}
		if (mark_all(l, ip, true) < 0)
			goto fail;
	}
	if (link_svc(e, s) < 0)
		goto fail;
	if (s->req.skey && !e->skey && skey_add_ent(l, s->req.skey, e) < 0)
		return -ENOMEM; /* linked; only the sharing index misses it */
	return 0;
fail:
	if (fresh && !e->n_holders)
		ent_free(l, e, false);
	return -ENOMEM;
}

/* s gives up its i-th address. */
static void drop(struct lbipam *l, struct lb_svc *s, uint8_t i)
{
	struct lb_ent *e = s->ips[i];

	memmove(s->ips + i, s->ips + i + 1, (s->n_ips - i - 1u) * sizeof(*s->ips));
	s->n_ips--;
	for (uint32_t k = 0; k < e->n_holders; k++)
		if (e->holders[k] == s) {
			e->holders[k] = e->holders[--e->n_holders];
			break;
		}
	if (!e->n_holders)
		ent_free(l, e, false);
}

static void drop_all(struct lbipam *l, struct lb_svc *s)
{
	while (s->n_ips)
		drop(l, s, (uint8_t)(s->n_ips - 1));
}

/* Why s cannot share e with its holders, or NULL. */
static const char *incompat(const struct lb_ent *e, const struct lb_svc *s)
{
	for (uint32_t i = 0; i < e->n_holders; i++) {
		const struct lb_svc *h = e->holders[i];
		const char *why;

		if (h != s && (why = lb_req_incompatible(&s->req, s->ns, &h->req, h->ns)))
			return why;
	}
	return NULL;
}

/* --- what a service wants -------------------------------------------------------------- */

static bool holds_fam(const struct lb_svc *s, uint8_t fam)
{
	for (uint8_t i = 0; i < s->n_ips; i++)
		if (s->ips[i]->ip.fam == fam)
			return true;
	return false;
}

static bool holds_ip(const struct lb_svc *s, const struct lb_ip *ip)
{
	for (uint8_t i = 0; i < s->n_ips; i++)
		if (!lb_ip_cmp(&s->ips[i]->ip, ip))
			return true;
	return false;
}

static bool requested(const struct lb_svc *s, const struct lb_ip *ip)
{
	for (uint16_t i = 0; i < s->req.n_ips; i++)
		if (!lb_ip_cmp(&s->req.ips[i], ip))
			return true;
	return false;
}

static bool wants_fam(const struct lb_svc *s, uint8_t fam)
{
	return fam == LB_V4 ? s->req.v4 : s->req.v6;
}

/* Would s take ip now (not counting whether it is free)? */
static bool wants(const struct lb_svc *s, const struct lb_ip *ip)
{
	if (!s->req.ours || holds_ip(s, ip))
		return false;
	if (s->req.n_ips || s->req.bad_ip)
		return requested(s, ip);
	return wants_fam(s, ip->fam) && !holds_fam(s, ip->fam);
}

/*
 * s takes ip if it may. fresh: a new allocation (the pool must be enabled,
 * not conflicting, and ip not reserved); otherwise an existing one being
 * adopted or kept. 0 or the enum lb_reason that stops it.
 */
/* Why no pool can give ip to anybody in particular: none contains it, or none selects. */
static int no_home(struct lbipam *l, const struct lb_ip *ip)
{
	for (size_t i = 0; i < l->n_pools; i++)
		if (lb_pool_range_of(&l->pools[i]->p, ip))
			return LB_R_REQ_SELECTOR;
	return LB_R_REQ_NO_POOL;
}

static int take(struct lbipam *l, struct lb_svc *s, const struct lb_ip *ip, bool fresh)
{
	struct lb_ent *e = ent_get(l, ip);
	int reason = LB_R_REQ_NO_POOL;
	bool contained = false;
	struct lbp *p;

	/* The pool is asked first, so the reason does not depend on who came first. */
	if (e || !fresh) {
		if (e && holds(e, s))
			return 0;
		if (!(p = find_home(l, ip, s)))
			return no_home(l, ip);
		if (!e)
			return hold(l, s, ip, p) < 0 ? LB_R_REQ_NO_POOL : 0;
		/* Joining an address in use is no new allocation: a disabled pool allows it. */
		if (!s->req.skey)
			return LB_R_REQ_TAKEN;
		if ((s->why = incompat(e, s)))
			return LB_R_REQ_INCOMPAT;
		return link_svc(e, s) < 0 ? LB_R_REQ_NO_POOL : 0;
	}
	for (size_t i = 0; i < l->n_pools; i++) {
		struct lb_range *r;

		p = l->pools[i];
		if (!(r = lb_pool_range_of(&p->p, ip)))
			continue;
		contained = true;
		if (!selects(l, p, s))
			continue;
		s->why_pool = p;
		if (p->p.spec.disabled) {
			reason = LB_R_REQ_DISABLED;
		} else if (p->p.conflicting) {
			reason = LB_R_REQ_CONFLICT;
		} else if (lb_addr_cmp(ip->a, r->afirst) < 0 || lb_addr_cmp(ip->a, r->alast) > 0) {
			reason = LB_R_REQ_RESERVED;
		} else {
			struct lb_addr size1 = lb_addr_sub(r->last, r->first);

			if (r->cidr && !lb_addr_cmp(r->first, r->afirst) && (size1.hi || size1.lo >= 3) &&
			    (!lb_addr_cmp(ip->a, r->first) || !lb_addr_cmp(ip->a, r->last))) {
				char b[LB_IPSTR];

				/* Allowed (allowFirstLastIPs), but worth a word: some networks drop it. */
				axn_warn(l->self, "%s: requested %s is the first or last address of %s in pool %s",
					 s->key, lb_ip_str(ip, b), r->text, p->p.name);
			}
			return hold(l, s, ip, p) < 0 ? LB_R_REQ_NO_POOL : 0;
		}
	}
	if (contained && reason == LB_R_REQ_NO_POOL)
		reason = LB_R_REQ_SELECTOR;
	return reason;
}

/* A sharing partner's address of family fam that s may join: 0, or -ENOENT. */
static int join_shared(struct lbipam *l, struct lb_svc *s, uint8_t fam)
{
	struct lb_skey *k = s->req.skey ? skey_get(l, s->req.skey) : NULL;

	for (uint32_t i = 0; k && i < k->n; i++) {
		struct lb_ent *e = k->ents[i];

		if (e->ip.fam != fam || holds(e, s) || incompat(e, s) || !find_home(l, &e->ip, s))
			continue;
		return link_svc(e, s) < 0 ? -ENOMEM : 0;
	}
	return -ENOENT;
}

/* The lowest free address of family fam in the first pool (by name) for s. */
static int alloc_fresh(struct lbipam *l, struct lb_svc *s, uint8_t fam)
{
	bool full = false;

	for (size_t i = 0; i < l->n_pools; i++) {
		struct lbp *p = l->pools[i];
		struct lb_ip ip;
		int r;

		if (p->p.spec.disabled || p->p.conflicting || !pool_has_fam(p, fam) ||
		    !selects(l, p, s))
			continue;
		if ((r = lb_pool_next_free(&p->p, fam, &ip)) == -ENOSPC) {
			full = true;
			continue;
		}
		if (r == 0)
			return hold(l, s, &ip, p) < 0 ? LB_R_NO_POOL : 0;
	}
	return full ? LB_R_OUT_OF_IPS : LB_R_NO_POOL;
}

/* Keep l->incomplete in step with s->complete: freed addresses are offered to these only. */
static void set_complete(struct lbipam *l, struct lb_svc *s, bool complete)
{
	s->complete = complete;
	if (complete && s->iprev) {
		if (s->inext)
			s->inext->iprev = s->iprev;
		*s->iprev = s->inext;
		s->inext = NULL;
		s->iprev = NULL;
		l->n_incomplete--;
	} else if (!complete && !s->iprev) {
		s->inext = l->incomplete;
		if (s->inext)
			s->inext->iprev = &s->inext;
		l->incomplete = s;
		s->iprev = &l->incomplete;
		l->n_incomplete++;
	}
}

/* Fill what s still lacks, and work out its outcome. */
static void satisfy(struct lbipam *l, struct lb_svc *s)
{
	struct lb_req *q = &s->req;
	int fail = 0, r;

	s->why = NULL;
	s->why_pool = NULL;
	s->why_fam = 0;
	if (!q->ours) {
		set_complete(l, s, true);
		s->satisfied = false;
		s->reason = LB_R_NONE;
		return;
	}
	if (q->n_ips) {
		for (uint16_t i = 0; i < q->n_ips; i++) {
			const char *why = s->why;
			struct lbp *why_pool = s->why_pool;

			if (holds_ip(s, &q->ips[i]))
				continue;
			if ((r = take(l, s, &q->ips[i], true)) && !fail) {
				fail = r;
				s->why_ip = q->ips[i];
			} else if (r || fail) {
				/* Keep the first failure's details. */
				s->why = why;
				s->why_pool = why_pool;
			}
		}
		set_complete(l, s, s->n_ips == q->n_ips);
		s->satisfied = s->complete && !q->bad_ip;
	} else if (q->bad_ip) {
		/* Only unparseable addresses: asked for specific ones, so no others. */
		set_complete(l, s, true);
		s->satisfied = false;
	} else {
		static const uint8_t fams[] = {LB_V4, LB_V6};
		bool all = true, any = false;

		for (size_t i = 0; i < 2; i++) {
			uint8_t fam = fams[i];

			if (!wants_fam(s, fam))
				continue;
			if (!holds_fam(s, fam) && join_shared(l, s, fam) < 0 &&
			    (r = alloc_fresh(l, s, fam)) && !fail) {
				fail = r;
				s->why_fam = fam;
			}
			if (holds_fam(s, fam))
				any = true;
			else
				all = false;
		}
		set_complete(l, s, all);
		s->satisfied = !q->family_off && (q->v4 || q->v6) && (q->prefer_dual ? any : all);
	}
	if (s->satisfied)
		s->reason = LB_R_SATISFIED;
	else if (q->bad_ip)
		s->reason = LB_R_BAD_REQ;
	else if (q->family_off)
		s->reason = LB_R_FAMILY;
	else
		s->reason = fail ? (uint8_t)fail : LB_R_NO_POOL;
}

/* Release what s holds but may no longer have (its spec or labels changed). */
static void validate(struct lbipam *l, struct lb_svc *s)
{
	bool keep[256];
	bool seen4 = false, seen6 = false;

	for (uint8_t i = 0; i < s->n_ips; i++) {
		struct lb_ent *e = s->ips[i];
		bool ok;

		if (!s->req.ours) {
			ok = false;
		} else if (s->req.n_ips || s->req.bad_ip) {
			ok = requested(s, &e->ip);
		} else if (e->ip.fam == LB_V4) {
			ok = s->req.v4 && !seen4; /* one per family: keep the lowest */
			seen4 = true;
		} else {
			ok = s->req.v6 && !seen6;
			seen6 = true;
		}
		if (ok && e->n_holders > 1 && incompat(e, s))
			ok = false;
		if (ok && !find_home(l, &e->ip, s))
			ok = false;
		keep[i] = ok;
	}
	for (int i = s->n_ips - 1; i >= 0; i--)
		if (!keep[i])
			drop(l, s, (uint8_t)i);
	/* An address s holds alone follows s's sharing key, so partners find it under the new one. */
	for (uint8_t i = 0; i < s->n_ips; i++) {
		struct lb_ent *e = s->ips[i];
		const char *have = e->skey ? e->skey->key : NULL;

		if (e->n_holders != 1 || (!have && !s->req.skey) ||
		    (have && s->req.skey && !strcmp(have, s->req.skey)))
			continue;
		skey_del_ent(l, e);
		if (s->req.skey && skey_add_ent(l, s->req.skey, e) < 0)
			axn_err(l->self, "%s: out of memory", s->key);
	}
}

/* --- publishing -------------------------------------------------------------------------- */

static void queue_flush(struct lbipam *l);

static json_int_t generation(const json_t *doc)
{
	const json_t *g = json_object_get(json_object_get(doc, "metadata"), "generation");

	return json_is_integer(g) ? json_integer_value(g) : -1;
}

/* The decision in a few bytes: a write is skipped when the same one was written already. */
static uint64_t decision_hash(const struct lb_svc *s, int cond, const char *reason,
			      const char *msg, json_int_t gen)
{
	uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)(cond + 2) ^ ((uint64_t)gen << 8);

	for (uint8_t i = 0; i < s->n_ips; i++)
		h = (h ^ lb_ip_hash(&s->ips[i]->ip)) * 0x100000001b3ull;
	h ^= lb_str_hash(reason ? reason : "") * 31 + lb_str_hash(msg ? msg : "");
	return h ? h : 1;
}

static void write_status(struct lbipam *l, struct lb_svc *s)
{
	const json_t *doc = l->self->host->obj_json(s->obj);
	const json_t *cur = json_object_get(doc, "status");
	int cond = s->req.ours ? (s->satisfied ? 1 : 0) : -1;
	const char *reason = cond < 0 ? NULL : lb_reason_name(s);
	char *msg = cond < 0 ? NULL : lb_reason_msg(s);
	struct lb_ip ips[256];
	json_int_t gen = generation(doc);
	uint64_t h;
	json_t *want;
	char now[32];
	int r;

	if (cond >= 0 && !msg)
		return;
	for (uint8_t i = 0; i < s->n_ips; i++)
		ips[i] = s->ips[i]->ip;
	h = decision_hash(s, cond, reason, msg, gen);
	/* The common case after a restart or an echo of our own write: nothing to build. */
	if ((cur || cond < 0) && lb_status_says(cur, ips, s->n_ips, cond, reason, msg, gen)) {
		free(msg);
		s->status_hash = h;
		return;
	}
	lb_now(now);
	want = lb_status_service(cur, ips, s->n_ips, cond, reason, msg, gen, now);
	free(msg);
	if (!want)
		return;
	if ((cur && json_equal(want, (json_t *)cur)) || (!cur && !json_object_size(want)) ||
	    h == s->status_hash) {
		json_decref(want);
		s->status_hash = h;
		return;
	}
	r = l->self->host->store_set_status(l->self, s->obj, want);
	json_decref(want);
	if (r < 0) {
		/* Tried again with the next event; said once. */
		if (!s->write_failed)
			axn_warn(l->self, "%s: writing status failed: %s", s->key, strerror(-r));
		s->write_failed = true;
		return;
	}
	s->write_failed = false;
	s->status_hash = h;
	l->writes++;
	l->self->host->metric_add(l->m_writes, 1);
}

static void ips_text(const struct lb_ip *ips, size_t n, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && off + LB_IPSTR + 2 < len; i++) {
		char b[LB_IPSTR];

		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", lb_ip_str(&ips[i], b));
	}
	if (!n)
		snprintf(buf, len, "none");
}

/* Keep the service counts for metrics in step, without walking every service. */
static void count(struct lbipam *l, struct lb_svc *s, bool gone)
{
	bool ours = !gone && s->req.ours, unsat = ours && !s->satisfied;

	l->n_ours += (size_t)ours - (size_t)s->counted;
	l->n_unsat += (size_t)unsat - (size_t)s->counted_unsat;
	s->counted = ours;
	s->counted_unsat = unsat;
}

/* A reader: does the writer's answer for s differ from ours? Then decide again. */
static bool auth_differs(struct lbipam *l, struct lb_svc *s);

/* After a decision: log a change, write status (writer) or check the writer's answer (reader). */
static void publish(struct lbipam *l, struct lb_svc *s, const struct lb_ip *prev, uint8_t nprev,
		    bool quiet)
{
	bool changed = nprev != s->n_ips;

	for (uint8_t i = 0; !changed && i < nprev; i++)
		changed = lb_ip_cmp(&prev[i], &s->ips[i]->ip) != 0;
	if (changed && !quiet) {
		struct lb_ip now[256];
		char a[512], b[512];

		for (uint8_t i = 0; i < s->n_ips; i++)
			now[i] = s->ips[i]->ip;
		ips_text(prev, nprev, a, sizeof(a));
		ips_text(now, s->n_ips, b, sizeof(b));
		/* A move of an address that was in use is what operators must hear about. */
		if (nprev)
			axn_info(l->self, "%s: addresses %s -> %s", s->key, a, b);
		else
			axn_debug(l->self, "%s: allocated %s", s->key, b);
	}
	if (l->publish) {
		write_status(l, s);
		s->managed = s->req.ours;
	}
	count(l, s, false);
	queue_flush(l);
}

static uint8_t snapshot(const struct lb_svc *s, struct lb_ip *out)
{
	for (uint8_t i = 0; i < s->n_ips; i++)
		out[i] = s->ips[i]->ip;
	return s->n_ips;
}

static int key_qcmp(const void *a, const void *b)
{
	return strcmp((*(struct lb_svc *const *)a)->key, (*(struct lb_svc *const *)b)->key);
}

/* Offer freed addresses to the services still waiting, in name order. */
static void retry(struct lbipam *l)
{
	for (int round = 0; round < 4 && l->need_retry && !l->retrying; round++) {
		struct lb_svc **v;
		size_t n = 0;

		l->need_retry = false;
		if (!l->n_incomplete || !(v = malloc(l->n_incomplete * sizeof(*v))))
			return;
		for (struct lb_svc *s = l->incomplete; s; s = s->inext)
			v[n++] = s;
		qsort(v, n, sizeof(*v), key_qcmp);
		l->retrying = true;
		for (size_t i = 0; i < n; i++) {
			struct lb_ip prev[256];
			uint8_t np = snapshot(v[i], prev), reason = v[i]->reason;

			satisfy(l, v[i]);
			if (np != v[i]->n_ips || reason != v[i]->reason)
				publish(l, v[i], prev, np, false);
		}
		l->retrying = false;
		free(v);
	}
}

/* --- services ------------------------------------------------------------------------- */

static void svc_free(struct lbipam *l, struct lb_svc *s)
{
	if (l->lbl_svc == s)
		labels_forget(l);
	drop_all(l, s);
	set_complete(l, s, true);
	count(l, s, true);
	lb_htab_del(&l->svcs, &s->hn);
	lb_req_free(&s->req);
	l->self->host->obj_unref(s->obj);
	free(s->ips);
	free(s->key);
	free(s->ns);
	free(s);
}

/* Adopt addresses from a list of strings or of {ip} objects (status ingress). */
static void adopt_list(struct lbipam *l, struct lb_svc *s, const json_t *list)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v) {
		const char *t = json_is_string(v) ? json_string_value(v)
						  : json_string_value(json_object_get(v, "ip"));
		struct lb_ip ip;

		if (t && lb_ip_parse(t, &ip) == 0 && wants(s, &ip))
			(void)take(l, s, &ip, false); /* what cannot be adopted is simply not */
	}
}

static const json_t *status_ingress(struct lbipam *l, const struct lb_svc *s)
{
	const json_t *st = json_object_get(l->self->host->obj_json(s->obj), "status");

	return json_object_get(json_object_get(st, "loadBalancer"), "ingress");
}

static const json_t *follow_entry(struct lbipam *l, const struct lb_svc *s)
{
	return l->follow ? json_object_get(json_object_get(l->follow, "services"), s->key) : NULL;
}

static void svc_update(struct lbipam *l, struct lb_svc *s, bool fresh)
{
	struct lb_ip prev[256];
	uint8_t np = snapshot(s, prev);

	validate(l, s);
	if (fresh) {
		if (!l->writer)
			adopt_list(l, s, follow_entry(l, s));
		adopt_list(l, s, status_ingress(l, s));
	}
	satisfy(l, s);
	publish(l, s, prev, np, false);
	if (!l->writer && auth_differs(l, s))
		lbipam_reconcile_all(l, "the writer decided otherwise");
}

/* Nothing is decided before every Service and every pool has been seen. */
static void check_synced(struct lbipam *l)
{
	if (!l->svc_synced || !l->pool_synced || l->synced)
		return;
	l->synced = true;
	lbipam_follow_poll(l);
	if (l->n_pools)
		lbipam_reconcile_all(l, "initial sync");
	else
		axn_info(l->self, "no CiliumLoadBalancerIPPool yet: dormant");
	queue_flush(l);
}

static const char *svc_namespace(const json_t *doc)
{
	const char *ns = json_string_value(json_object_get(json_object_get(doc, "metadata"), "namespace"));

	/* kubectl defaults it; statedir does not. */
	return ns && *ns ? ns : "default";
}

static void on_service(struct axn_mod *self, uint32_t event, struct axn_obj *obj, void *arg)
{
	struct lbipam *l = self->state;
	const json_t *doc;
	const char *name;
	struct lb_svc *s;
	struct lb_req req;
	bool fresh = false;
	char *key;

	if (event == AXN_EV_SYNCED) {
		l->svc_synced = true;
		check_synced(l);
		return;
	}
	doc = self->host->obj_json(obj);
	name = json_string_value(json_object_get(json_object_get(doc, "metadata"), "name"));
	if (!name || asprintf(&key, "%s/%s", svc_namespace(doc), name) < 0)
		return;
	s = svc_get(l, key);
	if (event == AXN_EV_DELETED) {
		free(key);
		if (s) {
			svc_free(l, s);
			if (l->awake)
				retry(l);
			queue_flush(l);
		}
		return;
	}
	if (lb_req_parse(doc, &l->ropts, &req) < 0) {
		axn_err(self, "%s: out of memory", key);
		free(key);
		return;
	}
	if (!s && !req.ours) {
		free(key); /* not ours, never was */
		return;
	}
	if (!s) {
		if (!(s = calloc(1, sizeof(*s))) || !(s->ns = strdup(svc_namespace(doc))) ||
		    lb_htab_add(&l->svcs, &s->hn, lb_str_hash(key)) < 0) {
			axn_err(self, "%s: out of memory", key);
			if (s)
				free(s->ns);
			free(s);
			free(key);
			lb_req_free(&req);
			return;
		}
		s->key = key;
		fresh = true;
	} else {
		free(key);
		self->host->obj_unref(s->obj);
	}
	if (l->lbl_svc == s)
		labels_forget(l);
	s->obj = self->host->obj_ref(obj);
	lb_req_free(&s->req);
	s->req = req;
	if (!l->synced || !l->awake)
		return; /* decided in the next full pass */
	if (!req.ours) {
		/* It was ours: free its addresses and take back what we wrote. */
		drop_all(l, s);
		if (l->publish && s->managed)
			write_status(l, s);
		svc_free(l, s);
		retry(l);
		queue_flush(l);
		return;
	}
	svc_update(l, s, fresh);
	retry(l);
}

/* --- pools ------------------------------------------------------------------------------- */

static void pool_free(struct lbipam *l, struct lbp *p)
{
	lb_spec_free(&p->p.spec);
	free(p->p.name);
	free(p->p.conflict_msg);
	free(p->key);
	free(p->error);
	l->self->host->obj_unref(p->obj);
	free(p);
}

static int pool_name_cmp(const struct lbp *a, const struct lbp *b)
{
	int c = strcmp(a->p.name, b->p.name);

	return c ? c : strcmp(a->key, b->key);
}

static int pool_insert(struct lbipam *l, struct lbp *p)
{
	size_t i;

	if (l->n_pools == l->cap_pools) {
		size_t cap = l->cap_pools ? l->cap_pools * 2 : 8;
		struct lbp **v = realloc(l->pools, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->pools = v;
		l->cap_pools = cap;
	}
	for (i = l->n_pools; i > 0 && pool_name_cmp(l->pools[i - 1], p) > 0; i--)
		l->pools[i] = l->pools[i - 1];
	l->pools[i] = p;
	l->n_pools++;
	return 0;
}

static void pool_remove(struct lbipam *l, struct lbp *p)
{
	for (size_t i = 0; i < l->n_pools; i++)
		if (l->pools[i] == p) {
			memmove(l->pools + i, l->pools + i + 1, (l->n_pools - i - 1) * sizeof(*l->pools));
			l->n_pools--;
			return;
		}
}

/*
 * Take a pool's new spec. A spec with a problem is logged and reported
 * in the pool's status; if the pool had a good spec in this run, that one
 * stays in effect (a typo never moves anybody), else the usable part of the
 * new one is taken.
 */
static void pool_apply(struct lbipam *l, struct lbp *p, const json_t *spec)
{
	struct lb_spec sp;

	if (lb_spec_parse(spec, &sp) < 0) {
		axn_err(l->self, "pool %s: out of memory", p->p.name);
		return;
	}
	if (sp.error) {
		bool same = p->error && !strcmp(p->error, sp.error);

		if (!same) {
			free(p->error);
			p->error = strdup(sp.error);
			axn_warn(l->self, "pool %s: %s; %s", p->p.name, sp.error,
				 p->has_spec ? "keeping the previous spec"
					     : sp.selector_bad ? "it selects no service"
							       : "using the other blocks");
		}
		if (p->has_spec) {
			p->rejected = true;
			lb_spec_free(&sp);
			return;
		}
	} else {
		if (p->error)
			axn_info(l->self, "pool %s: spec fixed", p->p.name);
		free(p->error);
		p->error = NULL;
	}
	p->rejected = false;
	lb_spec_free(&p->p.spec);
	p->p.spec = sp;
	p->has_spec = true;
}

static void on_pool(struct axn_mod *self, uint32_t event, struct axn_obj *obj, void *arg)
{
	struct lbipam *l = self->state;
	const json_t *doc, *md;
	const char *name, *ns, *api;
	struct lbp *p;
	char *key;

	if (event == AXN_EV_SYNCED) {
		l->pool_synced = true;
		check_synced(l);
		return;
	}
	doc = self->host->obj_json(obj);
	api = json_string_value(json_object_get(doc, "apiVersion"));
	if (!api || strncmp(api, "cilium.io/", 10))
		return; /* someone else's kind of the same name */
	md = json_object_get(doc, "metadata");
	name = json_string_value(json_object_get(md, "name"));
	ns = json_string_value(json_object_get(md, "namespace"));
	if (!name || (ns && *ns ? asprintf(&key, "%s/%s", ns, name) : asprintf(&key, "%s", name)) < 0)
		return;
	p = lbipam_pool_find(l, key);
	if (event == AXN_EV_DELETED) {
		free(key);
		if (!p)
			return;
		axn_info(self, "pool %s: deleted", p->p.name);
		pool_remove(l, p);
		labels_forget(l);
		if (l->synced && l->awake)
			lbipam_reconcile_all(l, "pool deleted");
		/* Addresses point at their pool for display: free it only after everyone moved on. */
		pool_free(l, p);
		queue_flush(l);
		return;
	}
	if (p) {
		const json_t *old = self->host->obj_json(p->obj);

		free(key);
		/* Our own status write coming back, or a label edit: nothing to decide. */
		if (json_equal(json_object_get(old, "spec"), json_object_get(doc, "spec"))) {
			self->host->obj_unref(p->obj);
			p->obj = self->host->obj_ref(obj);
			return;
		}
		self->host->obj_unref(p->obj);
		p->obj = self->host->obj_ref(obj);
		axn_info(self, "pool %s: spec changed", p->p.name);
	} else {
		if (!(p = calloc(1, sizeof(*p))) || !(p->p.name = strdup(name)) ||
		    pool_insert(l, p) < 0) {
			axn_err(self, "pool %s: out of memory", name);
			if (p)
				free(p->p.name);
			free(p);
			free(key);
			return;
		}
		p->key = key;
		p->obj = self->host->obj_ref(obj);
		p->p.seq = l->first_done ? ++l->max_seq : 0;
		if (l->synced)
			axn_info(self, "pool %s: added", p->p.name);
	}
	pool_apply(l, p, json_object_get(doc, "spec"));
	labels_forget(l);
	if (l->synced)
		lbipam_reconcile_all(l, "pool changed");
	queue_flush(l);
}

/* --- the full pass ------------------------------------------------------------------------ */

static bool status_conflicting(struct lbipam *l, const struct lbp *p)
{
	const json_t *conds = json_object_get(json_object_get(l->self->host->obj_json(p->obj), "status"),
					      "conditions");
	size_t i;
	json_t *c;

	json_array_foreach(conds, i, c) {
		const char *t = json_string_value(json_object_get(c, "type"));
		const char *st = json_string_value(json_object_get(c, "status"));

		if (t && st && !strcmp(t, LB_COND_CONFLICT))
			return !strcmp(st, "True");
	}
	return false;
}

static const json_t *state_pool(const json_t *state, const struct lbp *p)
{
	return state ? json_object_get(json_object_get(state, "pools"), p->key) : NULL;
}

static const char *ctime_of(struct lbipam *l, const struct lbp *p)
{
	const char *t = json_string_value(json_object_get(
		json_object_get(l->self->host->obj_json(p->obj), "metadata"), "creationTimestamp"));

	return t ? t : "";
}

static int pool_order_cmp(const void *a, const void *b, void *arg)
{
	struct lbipam *l = arg;
	const struct lbp *x = *(struct lbp *const *)a, *y = *(struct lbp *const *)b;
	int c;

	/* Conflicting stays conflicting while the overlap lasts (as upstream keeps it in status). */
	if (x->p.was_conflicting != y->p.was_conflicting)
		return x->p.was_conflicting ? 1 : -1;
	if ((c = strcmp(ctime_of(l, x), ctime_of(l, y))))
		return c;
	if (x->p.seq != y->p.seq)
		return x->p.seq < y->p.seq ? -1 : 1;
	return pool_name_cmp(x, y);
}

/* Age and stickiness of every pool, then who conflicts. */
static int settle(struct lbipam *l)
{
	struct lbp **v;
	int r;

	if (!l->n_pools)
		return 0;
	if (!(v = malloc(l->n_pools * sizeof(*v))))
		return -ENOMEM;
	memcpy(v, l->pools, l->n_pools * sizeof(*v));
	for (size_t i = 0; i < l->n_pools; i++) {
		struct lbp *p = v[i];
		const json_t *fp = l->writer ? NULL : state_pool(l->follow, p);

		if (fp)
			p->p.was_conflicting = json_is_true(json_object_get(fp, "conflicting"));
		else if (!l->first_done)
			p->p.was_conflicting = status_conflicting(l, p) ||
					       json_is_true(json_object_get(state_pool(l->saved, p), "conflicting"));
		if (!l->first_done) {
			const json_t *sq = json_object_get(fp ? fp : state_pool(l->saved, p), "seq");

			p->p.seq = json_is_integer(sq) ? (uint64_t)json_integer_value(sq) : UINT64_MAX;
		}
	}
	qsort_r(v, l->n_pools, sizeof(*v), pool_order_cmp, l);
	if (!l->first_done) {
		/* First pass: ages from the order above (previous run's, else creation, else name). */
		for (size_t i = 0; i < l->n_pools; i++)
			v[i]->p.seq = i + 1;
		l->max_seq = l->n_pools;
	}
	{
		struct lb_pool *pv[l->n_pools];

		for (size_t i = 0; i < l->n_pools; i++)
			pv[i] = &v[i]->p;
		r = lb_pools_settle(pv, l->n_pools);
	}
	for (size_t i = 0; r == 0 && i < l->n_pools; i++) {
		struct lbp *p = v[i];

		if (p->p.conflicting && !p->p.was_conflicting)
			axn_warn(l->self, "pool %s: %s; it allocates nothing until that is resolved",
				 p->p.name, p->p.conflict_msg);
		else if (!p->p.conflicting && p->p.was_conflicting && l->first_done)
			axn_info(l->self, "pool %s: conflict resolved", p->p.name);
		p->p.was_conflicting = p->p.conflicting;
	}
	free(v);
	return r;
}

struct snap {
	struct lb_svc *s;
	uint32_t off;
	uint8_t n;
};

static int snap_qcmp(const void *a, const void *b)
{
	return strcmp(((const struct snap *)a)->s->key, ((const struct snap *)b)->s->key);
}

void lbipam_reconcile_all(struct lbipam *l, const char *why)
{
	struct snap *sv = NULL;
	struct lb_ip *prev = NULL;
	size_t n = 0, nip = 0, moved = 0, adopted = 0, unsat = 0;
	bool quiet = !l->first_done;

	l->reconciles++;
	l->self->host->metric_add(l->m_reconciles, 1);
	labels_forget(l);
	if (settle(l) < 0)
		goto nomem;

	/* What everybody holds now: the first source of the new decision. */
	lb_htab_foreach(&l->ents, i, node) {
		struct lb_ent *e = container_of(node, struct lb_ent, hn);

		nip += e->n_holders;
	}
	if (!(sv = calloc(l->svcs.n + 1, sizeof(*sv))) || !(prev = calloc(nip + 1, sizeof(*prev))))
		goto nomem;
	nip = 0;
	lb_htab_foreach(&l->svcs, j, node) {
		struct lb_svc *s = container_of(node, struct lb_svc, hn);

		sv[n] = (struct snap){s, (uint32_t)nip, snapshot(s, prev + nip)};
		nip += sv[n].n;
		n++;
	}
	qsort(sv, n, sizeof(*sv), snap_qcmp);

	/* Start from nothing. */
	lb_htab_foreach(&l->ents, k, node) {
		struct lb_ent *e = container_of(node, struct lb_ent, hn);

		ent_free(l, e, true);
	}
	lb_htab_free(&l->ents);
	lb_htab_foreach(&l->skeys, m, node) {
		struct lb_skey *k = container_of(node, struct lb_skey, hn);

		free(k->ents);
		free(k->key);
		free(k);
	}
	lb_htab_free(&l->skeys);
	for (size_t i = 0; i < n; i++)
		sv[i].s->n_ips = 0;
	for (size_t i = 0; i < l->n_pools; i++) {
		lb_spec_clear_used(&l->pools[i]->p.spec);
		lb_pool_bulk(&l->pools[i]->p, true);
	}

	/*
	 * Adopt, one source at a time for everybody: an earlier source wins an
	 * address. The writer trusts its own decisions first; a reader the
	 * writer's (its state file, or status written by it).
	 */
	static const enum { FOLLOW, PREV, STATUS, SAVED } wsrc[] = {PREV, STATUS, SAVED},
							rsrc[] = {FOLLOW, STATUS, PREV, SAVED};
	for (size_t k = 0; l->n_pools && k < (l->writer ? 3u : 4u); k++) {
		for (size_t i = 0; i < n; i++) {
			struct lb_svc *s = sv[i].s;

			if (!s->req.ours)
				continue;
			switch (l->writer ? wsrc[k] : rsrc[k]) {
			case FOLLOW:
				adopt_list(l, s, follow_entry(l, s));
				break;
			case PREV:
				for (uint8_t j = 0; j < sv[i].n; j++)
					if (wants(s, &prev[sv[i].off + j]))
						(void)take(l, s, &prev[sv[i].off + j], false);
				break;
			case STATUS:
				adopt_list(l, s, status_ingress(l, s));
				break;
			case SAVED: /* this agent's previous run */
				adopt_list(l, s, json_object_get(json_object_get(l->saved, "services"), s->key));
				break;
			}
		}
	}
	for (size_t i = 0; i < l->n_pools; i++)
		lb_pool_bulk(&l->pools[i]->p, false);

	/* New allocations, in name order. */
	for (size_t i = 0; i < n; i++) {
		struct lb_svc *s = sv[i].s;

		adopted += s->n_ips;
		if (l->n_pools)
			satisfy(l, s);
		else
			s->satisfied = false, set_complete(l, s, true), s->reason = LB_R_NO_POOL;
	}
	labels_forget(l);
	l->need_retry = false;
	for (size_t i = 0; i < n; i++) {
		struct lb_svc *s = sv[i].s;
		bool kept = true;

		for (uint8_t k = 0; k < sv[i].n; k++)
			kept &= holds_ip(s, &prev[sv[i].off + k]);
		if (!s->req.ours) {
			/* Stopped being ours while nothing was decided: take back what we wrote. */
			if (l->publish && s->managed)
				write_status(l, s);
			svc_free(l, s);
			continue;
		}
		moved += !kept;
		unsat += !s->satisfied;
		publish(l, s, prev + sv[i].off, sv[i].n, quiet);
		if (!l->writer && auth_differs(l, s))
			axn_debug(l->self, "%s: cannot follow the writer's decision", s->key);
	}
	l->first_done = true;
	json_decref(l->saved);
	l->saved = NULL;
	if (l->awake && !l->n_pools)
		axn_info(l->self, "no pool left: dormant");
	l->awake = l->n_pools > 0;
	/* A reader re-deciding after each of the writer's saves says so only when it changes something. */
	axn_log(l->self, quiet || moved || l->writer || !l->follow ? AXN_LOG_INFO : AXN_LOG_DEBUG,
		"decided (%s): %zu service(s), %zu address(es) kept, %zu moved, %zu unsatisfied", why, n,
		adopted, moved, unsat);
	free(sv);
	free(prev);
	queue_flush(l);
	return;
nomem:
	free(sv);
	free(prev);
	axn_err(l->self, "decide (%s): out of memory", why);
}

/* --- readers ----------------------------------------------------------------------------- */

static bool auth_differs(struct lbipam *l, struct lb_svc *s)
{
	const json_t *auth = follow_entry(l, s);
	struct lb_ip ips[256];
	size_t n = 0, i;
	uint64_t h = 0x9e3779b97f4a7c15ull;
	bool same;
	json_t *v;

	if (!auth)
		auth = status_ingress(l, s);
	json_array_foreach(auth, i, v) {
		const char *t = json_is_string(v) ? json_string_value(v)
						  : json_string_value(json_object_get(v, "ip"));

		if (n < 256 && t && lb_ip_parse(t, &ips[n]) == 0) {
			h = (h ^ lb_ip_hash(&ips[n])) * 0x100000001b3ull;
			n++;
		}
	}
	if (!n)
		return false;
	same = n == s->n_ips;
	for (size_t k = 0; same && k < n; k++)
		same = holds_ip(s, &ips[k]);
	if (same || h == s->auth_hash) {
		s->auth_hash = h;
		return false;
	}
	s->auth_hash = h; /* act once per answer: one that cannot be followed is not retried */
	return true;
}

/* --- flush: pool statuses, metrics, health, state file ---------------------------------- */

static void write_pool_status(struct lbipam *l, struct lbp *p)
{
	const json_t *doc = l->self->host->obj_json(p->obj);
	const json_t *cur = json_object_get(doc, "status");
	json_t *want;
	char now[32];
	uint64_t h;
	int r;

	lb_now(now);
	if (!(want = lb_status_pool(cur, p, generation(doc), now)))
		return;
	/* Hash without the time: the decision, not the moment. */
	{
		json_t *tmp = lb_status_pool(cur, p, generation(doc), "");

		h = tmp ? lb_json_hash(tmp) : 0;
		json_decref(tmp);
	}
	if ((cur && json_equal(want, (json_t *)cur)) || h == p->status_hash) {
		p->status_hash = h;
		json_decref(want);
		return;
	}
	r = l->self->host->store_set_status(l->self, p->obj, want);
	json_decref(want);
	if (r < 0) {
		axn_warn(l->self, "pool %s: writing status failed: %s", p->p.name, strerror(-r));
		return;
	}
	p->status_hash = h;
	l->writes++;
	l->self->host->metric_add(l->m_writes, 1);
}

static void health(struct lbipam *l)
{
	char buf[512] = "";
	size_t bad = 0, conf = 0;
	uint32_t st = AXN_STATE_UP;

	for (size_t i = 0; i < l->n_pools; i++) {
		struct lbp *p = l->pools[i];

		if (p->error && !bad++ && !conf)
			snprintf(buf, sizeof(buf), "pool %s: %s", p->p.name, p->error);
		if (p->p.conflicting && !conf++ && !bad)
			snprintf(buf, sizeof(buf), "pool %s: %s", p->p.name, p->p.conflict_msg);
	}
	if (bad + conf > 1)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " (and %zu more pool problems)",
			 bad + conf - 1);
	if (l->save_failed && !*buf)
		snprintf(buf, sizeof(buf), "cannot write the state file %s", l->state_path);
	if (*buf)
		st = AXN_STATE_DEGRADED;
	if (!l->health || strcmp(l->health, buf)) {
		free(l->health);
		l->health = strdup(buf);
		l->self->host->set_state(l->self, st, *buf ? buf : NULL);
	}
}

static void flush(struct axn_mod *self, void *arg)
{
	struct lbipam *l = self->state;
	size_t ours = 0, unsat = 0, conflicts = 0;

	if (!l)
		return;
	l->flush_queued = false;
	if (l->publish && l->synced && l->awake)
		for (size_t i = 0; i < l->n_pools; i++)
			write_pool_status(l, l->pools[i]);
	ours = l->n_ours;
	unsat = l->n_unsat;
	for (size_t i = 0; i < l->n_pools; i++)
		conflicts += l->pools[i]->p.conflicting;
	self->host->metric_set(l->m_services, (double)ours);
	self->host->metric_set(l->m_unsat, (double)unsat);
	self->host->metric_set(l->m_pools, (double)l->n_pools);
	self->host->metric_set(l->m_conflicts, (double)conflicts);
	health(l);
	/* Before the first decision the previous run's file is still the better one. */
	if (l->first_done)
		lbipam_state_touch(l);
}

static void queue_flush(struct lbipam *l)
{
	if (l->flush_queued)
		return;
	if (l->self->host->defer(l->self, flush, NULL) == 0)
		l->flush_queued = true;
}

/* --- start/stop ------------------------------------------------------------------------------ */

int lbipam_ctl_start(struct lbipam *l)
{
	const struct axn_host *h = l->self->host;
	int r;

	/* Pools first: their replay is queued first, so they are known when services arrive. */
	if ((r = h->store_watch(l->self, "CiliumLoadBalancerIPPool", on_pool, NULL, &l->sub_pool)) < 0)
		return r;
	return h->store_watch(l->self, "Service", on_service, NULL, &l->sub_svc);
}

void lbipam_ctl_stop(struct lbipam *l)
{
	const struct axn_host *h = l->self->host;

	h->handle_free(l->self, l->sub_svc);
	h->handle_free(l->self, l->sub_pool);
	l->sub_svc = l->sub_pool = NULL;
}

void lbipam_ctl_free(struct lbipam *l)
{
	labels_forget(l);
	lb_htab_foreach(&l->svcs, i, node) {
		struct lb_svc *s = container_of(node, struct lb_svc, hn);

		svc_free(l, s);
	}
	lb_htab_free(&l->svcs);
	lb_htab_free(&l->ents);
	lb_htab_free(&l->skeys);
	for (size_t i = 0; i < l->n_pools; i++)
		pool_free(l, l->pools[i]);
	free(l->pools);
	l->pools = NULL;
	l->n_pools = l->cap_pools = 0;
}
