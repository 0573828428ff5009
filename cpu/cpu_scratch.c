/* Per-calling-thread scratch (see cpu_scratch.h), released by a pthread key destructor at thread exit. */
#include "cpu_scratch.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#define HUGE_SCRATCH ((size_t)2 << 20)

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
        /*
         * Large scratch (packed K/V tiles of whole heads) in 2 MiB pages where the kernel allows it: the tiles
         * span megabytes that 4 KiB pages cover with more TLB entries than the core has.
         */
        size_t align = bytes >= HUGE_SCRATCH ? HUGE_SCRATCH : 64;
        void *p = aligned_alloc(align, (bytes + align - 1) & ~(align - 1));
        if (!p) return NULL;
#ifdef MADV_HUGEPAGE
        if (align == HUGE_SCRATCH) madvise(p, (bytes + align - 1) & ~(align - 1), MADV_HUGEPAGE);
#endif
        free(b->ptr);
        b->ptr = p;
        b->size = bytes;
    }
    return b->ptr;
}
