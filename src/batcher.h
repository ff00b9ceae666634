/*
 * batcher: per-channel sets of pending keys, deduplicated, cut into batches
 * when max_keys accumulate or window_ms passes, and given back with a retry
 * delay when a batch fails. It does not know where keys come from (the
 * notify and wal sources each own one, for their channels) nor who runs a
 * batch: the source takes due batches and reports their outcome.
 */
#ifndef ROLLUPD_BATCHER_H
#define ROLLUPD_BATCHER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backoff.h"
#include "catalog.h"
#include "keyset.h"

struct batch_policy {
	size_t max_keys;
	size_t max_pending; /* pending keys per channel; more are dropped (see batcher_add_key) */
	double window_s;
	uint32_t retry_min_ms;
	uint32_t retry_max_ms;
};

/* A channel's state. Read-only outside batcher.c. */
struct batch_channel {
	char *name;
	char *rollup;
	char *refresh_sql;
	enum key_type key_type;
	struct keyset *pending;
	ev_tstamp first_pending_at; /* when `pending` last became non-empty */
	ev_tstamp retry_at;         /* no batch before this (after a failure) */
	struct backoff retry;
	unsigned in_flight;

	uint64_t keys_received; /* valid keys, before dedup */
	uint64_t keys_malformed;
	uint64_t keys_overflowed; /* dropped at the max_pending cap */
	uint64_t keys_refreshed;
	uint64_t rows_written;
	uint64_t batches_ok;
	uint64_t batches_failed;
};

/* A batch taken for refresh. Owned by the caller until batcher_complete(). */
struct batch {
	char *channel;     /* name; the channel may be gone by completion */
	char *refresh_sql; /* copied, for the same reason */
	char **keys;
	uint64_t *tags; /* each key's tag (keyset.h) */
	size_t n;
	char *param; /* the keys as an SQL array literal */
	ev_tstamp started;
};

struct batcher;

/* `on_due` runs from the loop when a window or retry delay ends. */
struct batcher *batcher_new(struct ev_loop *loop, const struct batch_policy *policy, void (*on_due)(void *arg),
                            void *arg);
void batcher_free(struct batcher *b);
void batcher_set_policy(struct batcher *b, const struct batch_policy *policy);

/* Make the channel list match the catalog's channels in `delivery` mode;
 * pending keys of kept channels stay. Returns the number of pending keys
 * dropped with removed channels. */
size_t batcher_set_channels(struct batcher *b, const struct catalog *cat, enum delivery delivery);

struct batch_channel *batcher_find(struct batcher *b, const char *name);

/* What batcher_add_key() did with a key. */
enum batch_add {
	BATCH_KEY_NEW,     /* the key (or its smaller tag) holds an entry now */
	BATCH_KEY_PENDING, /* already pending with a tag no larger: nothing new */
	BATCH_KEY_DROPPED, /* the channel holds max_pending keys and this one is new: dropped and
	                      counted; the caller must have the rollup reconciled */
};

/* Add one canonical key with its tag. */
enum batch_add batcher_add_key(struct batcher *b, struct batch_channel *ch, const char *key, size_t len, uint64_t tag);
/* `fn` hears every tag whose entry leaves without its key being refreshed
 * by a later batch of it: a refreshed batch's keys, a key merged into an
 * entry of a smaller tag, keys dropped with their channel. With NEW
 * returns counted as entries, it lets a caller know when no key of a tag is
 * left (the WAL mode's transactions). */
void batcher_on_release(struct batcher *b, void (*fn)(uint64_t tag, void *arg), void *arg);
/* A key that could not be parsed: counted. */
void batcher_count_malformed(struct batch_channel *ch);

/* Take the next due batch (round-robin across channels), or NULL. */
struct batch *batcher_take(struct batcher *b, ev_tstamp now);

/*
 * Report a batch's outcome and free it. On success the channel's retry delay
 * resets; on failure its keys go back to pending (merged with newer ones,
 * keeping the smaller tag) and the channel waits a backoff delay. Returns
 * that delay in ms (0 on success).
 */
uint32_t batcher_complete(struct batcher *b, struct batch *batch, bool ok, long rows_written);

/* While draining (shutdown) every pending key is due at once. */
void batcher_set_draining(struct batcher *b, bool draining);

size_t batcher_pending(const struct batcher *b);
/* The channels, for their counters: i from 0 while non-NULL. */
const struct batch_channel *batcher_channel(const struct batcher *b, size_t i);

#endif
