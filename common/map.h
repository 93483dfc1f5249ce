/* map.h — a string-keyed hash map (request id -> per-request state).
 *
 * Open addressing with linear probing and tombstones; keys are copied, values
 * are caller-owned pointers. Every stateful stage keys its requests by id. */
#ifndef PL_MAP_H
#define PL_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct pl_map_slot {
    char    *key;     /* NULL: empty; PL_MAP_TOMB: deleted */
    size_t   klen;
    uint64_t hash;
    void    *val;
} pl_map_slot;

typedef struct pl_map {
    pl_map_slot *slots;
    size_t       cap;    /* power of two */
    size_t       len;    /* live entries */
    size_t       used;   /* live + tombstones */
} pl_map;

void  pl_map_init(pl_map *m);
void  pl_map_free(pl_map *m);                /* values are not freed */
void *pl_map_get(const pl_map *m, const char *key, size_t klen);
int   pl_map_put(pl_map *m, const char *key, size_t klen, void *val);   /* insert or replace; PL_ERR_NOMEM */
void *pl_map_del(pl_map *m, const char *key, size_t klen);              /* returns the removed value */

/* Iterate: for (size_t i = 0; (i = pl_map_next(m, i, &k, &kl, &v)); ) ... */
size_t pl_map_next(const pl_map *m, size_t pos, const char **key, size_t *klen, void **val);

#endif
