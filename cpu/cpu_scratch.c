/* Per-calling-thread scratch (see cpu_scratch.h), released by a pthread key destructor at thread exit. */
#include "cpu_scratch.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct scratch_buf {
    void *ptr;
    size_t size;
} scratch_buf;

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void release(void *p)
{
    scratch_buf *b = p;
    free(b->ptr);
    free(b);
}

static void make_key(void) { pthread_key_create(&key, release); }

float *cpu_scratch(size_t bytes)
{
    pthread_once(&once, make_key);
    scratch_buf *b = pthread_getspecific(key);
    if (!b) {
        b = calloc(1, sizeof *b);
        if (!b) return NULL;
        pthread_setspecific(key, b);
    }
    if (b->size < bytes) {
        void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (!p) return NULL;
        free(b->ptr);
        b->ptr = p;
        b->size = bytes;
    }
    return b->ptr;
}
