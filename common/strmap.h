/* strmap.h — a hash map from byte strings to pointers.
 *
 * Stages keep their per-request state in one, keyed by request id; the tool
 * parser uses one as a set of argument keys. Keys are copied in; values are
 * owned by the caller (pl_strmap_free takes an optional destructor). Lookups,
 * inserts and removals are O(1) on average; the table grows as needed. */
#ifndef PL_STRMAP_H
#define PL_STRMAP_H

#include <stddef.h>
#include "pl.h"

typedef struct pl_strmap pl_strmap;

int   pl_strmap_new(pl_strmap **out);
/* free_val (may be NULL) is called on every value still in the map. */
void  pl_strmap_free(pl_strmap *m, void (*free_val)(void *));
void  pl_strmap_clear(pl_strmap *m, void (*free_val)(void *));

/* NULL when absent (so NULL values cannot be told from absence). */
void *pl_strmap_get(const pl_strmap *m, const char *key, size_t len);
/* Insert or replace. *old (may be NULL) gets the replaced value or NULL. */
int   pl_strmap_put(pl_strmap *m, const char *key, size_t len, void *val, void **old);
/* Remove and return the value (NULL when absent). */
void *pl_strmap_take(pl_strmap *m, const char *key, size_t len);
size_t pl_strmap_count(const pl_strmap *m);

/* Visit every entry (no changes to the map during the walk). */
void  pl_strmap_each(const pl_strmap *m, void (*fn)(const char *key, size_t len, void *val, void *ud), void *ud);

#endif
