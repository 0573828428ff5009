/*
 * The on-disk cache the run-time compiled backends share (CUDA cubins, OpenCL program binaries; later the
 * tuning cache): where it lives, a content hash for keys, and whole-file reads and atomic writes.
 *
 * Folder: $FLASHPORT_CACHE_DIR, else $XDG_CACHE_HOME/flashport, else ~/.cache/flashport, with one sub-folder
 * per backend. FLASHPORT_CACHE_DIR=off turns caching off.
 */
#ifndef FA_DISK_CACHE_H
#define FA_DISK_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "flashport.h"

#define FA_HASH64_INIT 1469598103934665603ull

/* FNV-1a over n bytes, continuing from h (start from FA_HASH64_INIT). */
FA_API uint64_t fa_hash64(uint64_t h, const void *p, size_t n);

/* The cache's sub-folder `sub` (created if needed) into dir; 1 if usable, 0 if caching is off or impossible. */
FA_API int fa_cache_dir(const char *sub, char *dir, size_t size);

/*
 * The whole file at path into a malloc'd buffer with a NUL after its bytes (*size excludes the NUL unless
 * text, so text can be handed on as a C string). Returns 0, or -1 (missing, empty or unreadable file).
 */
FA_API int fa_cache_read(const char *path, int text, void **data, size_t *size);

/*
 * Writes the file through a temporary beside it and a rename: a reader sees the old file or the whole new one.
 * The temporary is unique per call (mkstemp), so concurrent writers (processes or threads) never write into one
 * another's; the data is on disk (fsync) before the rename publishes it, and the file is readable by all (0644:
 * install-tree caches). Returns 0, or -1 with errno set (nothing left behind). The JIT caches ignore a failure
 * (the next run compiles again); the tuning cache reports it.
 */
FA_API int fa_cache_write_atomic(const char *path, const void *data, size_t size);

#endif
