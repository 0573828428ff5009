/*
 * The tuning cache: one text file per device type, written by flashport-tune, read by fa_plan_create.
 *
 *   flashport-tune 1                      format version
 *   version 0.1.0                         flashport version              \
 *   backend cuda                                                          |
 *   kernel_hash 0123456789abcdef          backend's kernel sources ("none" if it has no hook)
 *   runtime driver 12040 nvrtc 12.4       driver / runtime versions       | validators: any mismatch
 *   device NVIDIA H100 80GB HBM3                                          | invalidates the whole file
 *   arch sm_90                                                            |
 *   shared_mem 232448                     opt-in shared memory per block /
 *   bucket fwd/bf16/d128x128/causal/s4096/g1 fwd=128x64x1w4s2 bwd=- tuned_ms=1.234 heuristic_ms=1.456
 *   ...
 *   end 1                                 number of bucket lines: a truncated file has no (or a wrong) end
 *
 * Every line is checked when parsing; anything unexpected rejects the whole file (a half-written or edited file
 * must never steer a plan). Writes go through a temporary file in the same directory and a rename, so a reader
 * sees the old file or the new one, never half of one, whatever the number of concurrent writers.
 */
#ifndef FA_TUNE_CACHE_H
#define FA_TUNE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "fa_tune_bucket.h"
#include "flashport.h"

#define FA_TUNE_FORMAT 1

typedef struct fa_tune_ident {
    char version[32];
    char backend[16];
    char kernel_hash[20]; /* 16 hex digits, or "none" */
    char runtime[256];
    char device[128];
    char arch[64];
    long long shared_mem;
} fa_tune_ident;

typedef struct fa_tune_entry {
    fa_tune_bucket bucket;
    fa_tile_config fwd;
    int has_bwd;
    fa_tile_config bwd;
    double tuned_ms, heuristic_ms; /* the tuner's own measurement of both (bwd buckets: forward + backward) */
} fa_tune_entry;

typedef struct fa_tune_file {
    fa_tune_ident ident;
    int count, cap;
    fa_tune_entry *entries;
} fa_tune_file;

/* The validators of a device as this process sees it (props, the backend's kernel hash and runtime). */
FA_API fa_status fa_tune_device_ident(int device, fa_tune_ident *ident);
/* "<backend>-<device>-<arch>.tune", every character outside [A-Za-z0-9._-] made '_'. */
FA_API void fa_tune_file_name(const fa_tune_ident *ident, char *buf, size_t size);
/* 1 if every validator matches; else 0 with the first mismatch named in why. */
FA_API int fa_tune_ident_match(const fa_tune_ident *want, const fa_tune_ident *got, char *why, size_t why_size);

/* Parses a whole file's text into f (initialised here). 0, or -1 with the offending line named in why. */
FA_API int fa_tune_parse(const char *text, fa_tune_file *f, char *why, size_t why_size);
/* The file's text (malloc'd, NUL-terminated), or NULL when out of memory. */
FA_API char *fa_tune_format(const fa_tune_file *f);

typedef enum fa_tune_load_result { FA_TUNE_LOADED = 0, FA_TUNE_MISSING = 1, FA_TUNE_INVALID = 2 } fa_tune_load_result;
/* Reads and parses path; with want, also checks the validators. INVALID comes with the reason in why. */
FA_API fa_tune_load_result fa_tune_load(const char *path, const fa_tune_ident *want, fa_tune_file *f, char *why,
                                        size_t why_size);
/* Writes f to path atomically (temporary file in the same directory + rename). 0, or -1 with why. */
FA_API int fa_tune_write(const char *path, const fa_tune_file *f, char *why, size_t why_size);

FA_API void fa_tune_file_init(fa_tune_file *f, const fa_tune_ident *ident);
/* Adds e, replacing an entry of the same bucket. 0, or -1 when out of memory. */
FA_API int fa_tune_file_put(fa_tune_file *f, const fa_tune_entry *e);
FA_API const fa_tune_entry *fa_tune_file_find(const fa_tune_file *f, const fa_tune_bucket *bucket);
FA_API void fa_tune_file_free(fa_tune_file *f);

/*
 * Directories. The user's: $FLASHPORT_TUNE_DIR, else $XDG_CACHE_HOME/flashport/tune, else ~/.cache/flashport/tune
 * (FLASHPORT_TUNE_DIR=off: none). Returns 1 if one is named (it may not exist yet), 0 otherwise.
 */
FA_API int fa_tune_user_dir(char *dir, size_t size);
/*
 * The install tree's <prefix>/share/flashport/tune: $FLASHPORT_TUNE_INSTALL_DIR if set, else found from where
 * libflashport itself was loaded (so a relocated install works), else the path compiled in. Writes up to two
 * directories; returns how many.
 */
FA_API int fa_tune_install_dirs(char dirs[2][1024]);
/* mkdir -p. 0, or -1. */
FA_API int fa_tune_make_dir(const char *dir);

#endif
