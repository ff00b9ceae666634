/*
 * keyset: a set of keys (canonical strings) with O(1) add and O(1) removal of
 * any member, used to deduplicate a channel's pending keys. No ordering. Each
 * key carries a tag, the smallest it was added with (the WAL mode's oldest
 * transaction that changed it; 0 elsewhere).
 */
#ifndef ROLLUPD_KEYSET_H
#define ROLLUPD_KEYSET_H

#include <stddef.h>
#include <stdint.h>

struct keyset;

struct keyset *keyset_new(void);
void keyset_free(struct keyset *set);

/* 1 when the key was added; 0 when it was already present with a tag no
 * larger; 2 when it was present with a larger tag, which `tag` replaces
 * (the old one in `*old_tag`, when not NULL). */
int keyset_add(struct keyset *set, const char *key, size_t len, uint64_t tag, uint64_t *old_tag);
int keyset_contains(const struct keyset *set, const char *key, size_t len);
size_t keyset_count(const struct keyset *set);

/*
 * Move up to `max` keys out of the set into `out` (which the caller sized for
 * `max` pointers), and their tags into `tags` (NULL: not wanted). The caller
 * owns the returned strings and free()s them. Returns how many keys were
 * moved.
 */
size_t keyset_take(struct keyset *set, char **out, uint64_t *tags, size_t max);

#endif
