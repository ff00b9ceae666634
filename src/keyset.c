/*
 * keyset: dense array of keys plus an open-addressing (linear probing) index
 * into it. Removal takes from the end of the array and deletes from the index
 * by backward shift, so no tombstones accumulate under constant churn.
 */
#include "keyset.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define EMPTY SIZE_MAX

struct keyset {
	char **keys;      /* dense, `count` used */
	uint64_t *hashes; /* parallel to keys */
	uint64_t *tags;   /* parallel to keys */
	size_t count;
	size_t capacity; /* of keys */
	size_t *slots;   /* index into keys, or EMPTY */
	size_t nslots;   /* power of two, > 2 * capacity */
};

static uint64_t hash_key(const char *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

struct keyset *keyset_new(void)
{
	return xcalloc(1, sizeof(struct keyset));
}

static void keyset_clear(struct keyset *set)
{
	for (size_t i = 0; i < set->count; i++)
		free(set->keys[i]);
	set->count = 0;
	for (size_t i = 0; i < set->nslots; i++)
		set->slots[i] = EMPTY;
}

void keyset_free(struct keyset *set)
{
	if (set == NULL)
		return;
	keyset_clear(set);
	free(set->keys);
	free(set->hashes);
	free(set->tags);
	free(set->slots);
	free(set);
}

size_t keyset_count(const struct keyset *set)
{
	return set->count;
}

/* The slot holding `key`, or the empty slot where it would go. */
static size_t find_slot(const struct keyset *set, const char *key, size_t len, uint64_t h)
{
	size_t mask = set->nslots - 1;
	size_t i = (size_t)h & mask;

	while (set->slots[i] != EMPTY) {
		size_t k = set->slots[i];
		if (set->hashes[k] == h && strncmp(set->keys[k], key, len) == 0 && set->keys[k][len] == '\0')
			return i;
		i = (i + 1) & mask;
	}
	return i;
}

static void grow(struct keyset *set)
{
	size_t capacity = set->capacity ? set->capacity * 2 : 64;
	set->keys = xrealloc(set->keys, capacity * sizeof(*set->keys));
	set->hashes = xrealloc(set->hashes, capacity * sizeof(*set->hashes));
	set->tags = xrealloc(set->tags, capacity * sizeof(*set->tags));

	size_t nslots = capacity * 4;
	size_t *slots = xmalloc(nslots * sizeof(*slots));
	for (size_t i = 0; i < nslots; i++)
		slots[i] = EMPTY;
	free(set->slots);
	set->slots = slots;
	set->nslots = nslots;
	set->capacity = capacity;
	for (size_t k = 0; k < set->count; k++) {
		size_t i = (size_t)set->hashes[k] & (nslots - 1);
		while (slots[i] != EMPTY)
			i = (i + 1) & (nslots - 1);
		slots[i] = k;
	}
}

int keyset_contains(const struct keyset *set, const char *key, size_t len)
{
	if (set->nslots == 0)
		return 0;
	return set->slots[find_slot(set, key, len, hash_key(key, len))] != EMPTY;
}

int keyset_add(struct keyset *set, const char *key, size_t len, uint64_t tag, uint64_t *old_tag)
{
	if (set->count == set->capacity)
		grow(set);

	uint64_t h = hash_key(key, len);
	size_t slot = find_slot(set, key, len, h);
	if (set->slots[slot] != EMPTY) {
		size_t k = set->slots[slot];
		if (tag >= set->tags[k])
			return 0;
		if (old_tag != NULL)
			*old_tag = set->tags[k];
		set->tags[k] = tag;
		return 2;
	}
	set->keys[set->count] = xstrndup(key, len);
	set->hashes[set->count] = h;
	set->tags[set->count] = tag;
	set->slots[slot] = set->count;
	set->count++;
	return 1;
}

/* Delete the index entry at `slot`, shifting later members of its cluster back. */
static void delete_slot(struct keyset *set, size_t slot)
{
	size_t mask = set->nslots - 1;
	size_t hole = slot;
	size_t i = (slot + 1) & mask;

	set->slots[hole] = EMPTY;
	while (set->slots[i] != EMPTY) {
		size_t home = (size_t)set->hashes[set->slots[i]] & mask;
		/* Move i into the hole unless its home lies cyclically in (hole, i]. */
		int home_in_range = hole <= i ? (home > hole && home <= i) : (home > hole || home <= i);
		if (!home_in_range) {
			set->slots[hole] = set->slots[i];
			set->slots[i] = EMPTY;
			hole = i;
		}
		i = (i + 1) & mask;
	}
}

size_t keyset_take(struct keyset *set, char **out, uint64_t *tags, size_t max)
{
	size_t taken = 0;

	while (taken < max && set->count > 0) {
		size_t k = set->count - 1;
		char *key = set->keys[k];
		size_t slot = find_slot(set, key, strlen(key), set->hashes[k]);
		delete_slot(set, slot);
		set->count--;
		if (tags != NULL)
			tags[taken] = set->tags[k];
		out[taken++] = key;
	}
	return taken;
}
