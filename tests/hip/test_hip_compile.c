/*
 * The HIP plugin's own compile step (hip/hip_jit.c through the hip_api.h table) on a machine without a GPU: the
 * forwards it runs (cuda/kernels/fwd_f32.cu, shared with the CUDA backend through fa_vendor.cuh, and on AMD the
 * MFMA forward hip/kernels/fwd_mfma.hip with its embedded headers) compiled for several specialisations,
 * fp32/fp16/bf16 storage, exactly with the options hip_fwd.c passes; and the backward (cuda/kernels/bwd_f32.cu,
 * shared likewise, and on AMD the MFMA backward hip/kernels/bwd_mfma.hip) with the options hip_bwd.c passes. Built
 * twice:
 *   test_hip_compile     hiprtc (hip_api.c) for gfx90a, plain and with target features as a device reports them
 *                        (ROCm 5.2's hiprtc aborts for gfx94x, which its comgr predates: gfx940 is compiled by
 *                        hipcc in fwd_f32_compile_gfx940)
 *   test_hipnv_compile   NVRTC (hip_api_nv.c, FA_HIP_ON_NVIDIA) for sm_80 and sm_90
 * Checks each binary's ELF machine and kernel name, and that the same specialisation a second time comes from
 * the disk cache byte for byte. Exit 77 (skipped) when the compiler cannot be loaded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hip_api.h"
#include "hip_jit.h"

#ifndef FA_HIP_ON_NVIDIA
#define FA_HIP_ON_NVIDIA 0
#endif

extern const char fa_hip_src_fwd_f32[], fa_hip_src_fwd_mfma[], fa_hip_src_append_sm80[], fa_hip_src_bwd_f32[],
    fa_hip_src_bwd_mfma[];


static int contains(const void *data, size_t size, const char *s)
{
    size_t n = strlen(s);
    const char *p = data;
    for (size_t i = 0; i + n <= size; i++)
        if (p[i] == s[0] && memcmp(p + i, s, n) == 0) return 1;
    return 0;
}

/* The KV-cache append kernel shared with CUDA (cuda/kernels/append_sm80.cu), as hip_fwd.c compiles it. */
static int compile_append(const hip_api *api, const char *target, int storage)
{
    char o[2][300];
    if (FA_HIP_ON_NVIDIA) snprintf(o[0], sizeof o[0], "-arch=%s", target);
    else snprintf(o[0], sizeof o[0], "--gpu-architecture=%s", target);
    snprintf(o[1], sizeof o[1], "-DFA_STORAGE=%d", storage);
    const char *opts[] = {o[0], o[1], FA_HIP_ON_NVIDIA ? "-std=c++17" : "-O3"};
    static char why[16384];
    hip_image img;
    if (hip_jit_get(api, fa_hip_src_append_sm80, "append_sm80.cu", opts, 3, &img, why, sizeof why) != 0) {
        fprintf(stderr, "FAIL %s append storage=%d: %s\n", target, storage, why);
        return 1;
    }
    const unsigned char *e = img.data;
    const int machine = img.size > 20 ? e[18] | e[19] << 8 : 0;
    const int bad = img.size < 1024 || memcmp(e, "\177ELF", 4) != 0 || machine != (FA_HIP_ON_NVIDIA ? 190 : 224) ||
                    !contains(img.data, img.size, "fa_append_sm80");
    if (bad) fprintf(stderr, "FAIL %s append storage=%d: not an ELF with fa_append_sm80 for the target\n", target, storage);
    else printf("ok   %s fa_append_sm80 storage=%d: %zu bytes\n", target, storage, img.size);
    hip_image_free(&img);
    return bad;
}

typedef struct spec {
    int dqk, dv, bq, bkv, storage, softcap, alibi, local, varlen, paged;
    int waves, stages; /* 0: the SIMT forward (fwd_f32.cu); else the MFMA forward (fwd_mfma.hip, AMD only) */
    int dropout, split; /* the SIMT forward's FA_DROPOUT, FA_SPLIT (split modules also hold fa_combine_f32) */
} spec;

static int compile_one(const hip_api *api, const char *target, const spec *sp)
{
    const int mfma = sp->waves > 0;
    const char *src = mfma ? fa_hip_src_fwd_mfma : fa_hip_src_fwd_f32, *file = mfma ? "fwd_mfma.hip" : "fwd_f32.cu";
    const char *kernel = mfma ? "fa_fwd_mfma" : "fa_fwd_f32";
    char o[16][64];
    if (FA_HIP_ON_NVIDIA) snprintf(o[0], sizeof o[0], "-arch=%s", target);
    else snprintf(o[0], sizeof o[0], "--gpu-architecture=%s", target);
    snprintf(o[1], sizeof o[1], "-DFA_DQK=%d", sp->dqk);
    snprintf(o[2], sizeof o[2], "-DFA_DV=%d", sp->dv);
    snprintf(o[3], sizeof o[3], "-DFA_BQ=%d", sp->bq);
    snprintf(o[4], sizeof o[4], "-DFA_BKV=%d", sp->bkv);
    snprintf(o[5], sizeof o[5], "-DFA_SOFTCAP=%d", sp->softcap);
    snprintf(o[6], sizeof o[6], "-DFA_ALIBI=%d", sp->alibi);
    snprintf(o[7], sizeof o[7], "-DFA_LOCAL=%d", sp->local);
    snprintf(o[8], sizeof o[8], "-DFA_VARLEN=%d", sp->varlen);
    snprintf(o[9], sizeof o[9], "-DFA_PAGED=%d", sp->paged);
    snprintf(o[10], sizeof o[10], "-DFA_DROPOUT=%d", sp->dropout);
    snprintf(o[11], sizeof o[11], "-DFA_SPLIT=%d", sp->split);
    snprintf(o[12], sizeof o[12], "-DFA_STORAGE=%d", sp->storage);
    /* as hip_fwd.c passes them: the MFMA forward's three after the SIMT forward's fourteen */
    snprintf(o[13], sizeof o[13], "-DFA_WAVES=%d", sp->waves);
    snprintf(o[14], sizeof o[14], "-DFA_ROWS=%d", mfma ? sp->bq / sp->waves : 0);
    snprintf(o[15], sizeof o[15], "-DFA_STAGES=%d", sp->stages);
    const char *opts[] = {o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], o[8], o[9], o[10], o[11], o[12],
                          FA_HIP_ON_NVIDIA ? "-std=c++17" : "-O3", o[13], o[14], o[15]};
    const int nopt = mfma ? 17 : 14;
    static char why[16384];
    hip_image img, again;
    if (hip_jit_get(api, src, file, opts, nopt, &img, why, sizeof why) != 0) {
        fprintf(stderr, "FAIL %s d=%d/%d %dx%d storage=%d: %s\n", target, sp->dqk, sp->dv, sp->bq, sp->bkv, sp->storage,
                why);
        return 1;
    }
    const unsigned char *e = img.data;
    const int machine = img.size > 20 ? e[18] | e[19] << 8 : 0;
    const int want = FA_HIP_ON_NVIDIA ? 190 : 224; /* EM_CUDA, EM_AMDGPU */
    int bad = 0;
    if (img.size < 1024 || memcmp(e, "\177ELF", 4) != 0 || machine != want) bad = 1;
    else if (!contains(img.data, img.size, kernel)) bad = 2;
    else if (sp->split && !contains(img.data, img.size, "fa_combine_f32")) bad = 2;
    else if (!FA_HIP_ON_NVIDIA && !contains(img.data, img.size, "amdgcn-amd-amdhsa--gfx90a")) bad = 3;
    else if (img.from_cache) bad = 4;
    if (!bad) {
        if (hip_jit_get(api, src, file, opts, nopt, &again, why, sizeof why) != 0) {
            bad = 5;
        } else {
            if (!again.from_cache || again.size != img.size || memcmp(again.data, img.data, img.size) != 0) bad = 6;
            hip_image_free(&again);
        }
    }
    static const char *const what[] = {"", "not an ELF for the target's machine", "no kernel of that name in it",
                                       "not a gfx90a code object", "came from a cache that should be empty",
                                       "the second compile failed", "the cache did not return the same bytes"};
    if (bad)
        fprintf(stderr, "FAIL %s %s d=%d/%d %dx%d storage=%d: %s\n", target, kernel, sp->dqk, sp->dv, sp->bq, sp->bkv,
                sp->storage, what[bad]);
    else
        printf("ok   %s %s d=%d/%d %dx%d storage=%d: %zu bytes, compiled in %.0f ms\n", target, kernel, sp->dqk, sp->dv,
               sp->bq, sp->bkv, sp->storage, img.size, img.compile_ms);
    hip_image_free(&img);
    return bad != 0;
}

/* The SIMT backward (cuda/kernels/bwd_f32.cu): one specialisation with the options hip_bwd.c passes. */
typedef struct bspec {
    int dqk, dv, bq, bkv, storage, l16, softcap, alibi, local, varlen, dropout;
} bspec;

static int compile_bwd(const hip_api *api, const char *target, const bspec *sp)
{
    char o[12][64];
    if (FA_HIP_ON_NVIDIA) snprintf(o[0], sizeof o[0], "-arch=%s", target);
    else snprintf(o[0], sizeof o[0], "--gpu-architecture=%s", target);
    snprintf(o[1], sizeof o[1], "-DFA_DQK=%d", sp->dqk);
    snprintf(o[2], sizeof o[2], "-DFA_DV=%d", sp->dv);
    snprintf(o[3], sizeof o[3], "-DFA_BQ=%d", sp->bq);
    snprintf(o[4], sizeof o[4], "-DFA_BKV=%d", sp->bkv);
    snprintf(o[5], sizeof o[5], "-DFA_STORAGE=%d", sp->storage);
    snprintf(o[6], sizeof o[6], "-DFA_L16=%d", sp->l16);
    snprintf(o[7], sizeof o[7], "-DFA_SOFTCAP=%d", sp->softcap);
    snprintf(o[8], sizeof o[8], "-DFA_ALIBI=%d", sp->alibi);
    snprintf(o[9], sizeof o[9], "-DFA_LOCAL=%d", sp->local);
    snprintf(o[10], sizeof o[10], "-DFA_VARLEN=%d", sp->varlen);
    snprintf(o[11], sizeof o[11], "-DFA_DROPOUT=%d", sp->dropout);
    const char *opts[] = {o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], o[8], o[9], o[10], o[11],
                          FA_HIP_ON_NVIDIA ? "-std=c++17" : "-O3"};
    static char why[16384];
    hip_image img;
    if (hip_jit_get(api, fa_hip_src_bwd_f32, "bwd_f32.cu", opts, 13, &img, why, sizeof why) != 0) {
        fprintf(stderr, "FAIL bwd %s d=%d/%d %dx%d storage=%d: %s\n", target, sp->dqk, sp->dv, sp->bq, sp->bkv,
                sp->storage, why);
        return 1;
    }
    const unsigned char *e = img.data;
    const int machine = img.size > 20 ? e[18] | e[19] << 8 : 0;
    const int want = FA_HIP_ON_NVIDIA ? 190 : 224; /* EM_CUDA, EM_AMDGPU */
    int bad = img.size < 1024 || memcmp(e, "\177ELF", 4) != 0 || machine != want || img.from_cache;
    static const char *const kernels[] = {"fa_bwd_pre_f32", "fa_bwd_dkdv_f32", "fa_bwd_dq_f32"};
    for (int k = 0; k < 3 && !bad; k++)
        if (!contains(img.data, img.size, kernels[k])) bad = 2;
    if (!bad && !FA_HIP_ON_NVIDIA && !contains(img.data, img.size, "amdgcn-amd-amdhsa--gfx90a")) bad = 3;
    if (bad)
        fprintf(stderr, "FAIL bwd %s d=%d/%d %dx%d storage=%d: %s\n", target, sp->dqk, sp->dv, sp->bq, sp->bkv,
                sp->storage, bad == 2 ? "a kernel is missing" : bad == 3 ? "not a gfx90a code object" : "not a fresh ELF "
                "for the target's machine");
    else
        printf("ok   %s bwd_f32 d=%d/%d %dx%d storage=%d: %zu bytes, compiled in %.0f ms\n", target, sp->dqk, sp->dv,
               sp->bq, sp->bkv, sp->storage, img.size, img.compile_ms);
    hip_image_free(&img);
    return bad != 0;
}

/* The MFMA backward (hip/kernels/bwd_mfma.hip, AMD only): the seven defines hip_bwd.c passes, then -O3. */
typedef struct mbspec {
    int dqk, dv, waves, rows, storage, local, varlen;
} mbspec;

static int compile_bwd_mfma(const hip_api *api, const char *target, const mbspec *sp)
{
    char o[8][64];
    snprintf(o[0], sizeof o[0], "--gpu-architecture=%s", target);
    snprintf(o[1], sizeof o[1], "-DFA_DQK=%d", sp->dqk);
    snprintf(o[2], sizeof o[2], "-DFA_DV=%d", sp->dv);
    snprintf(o[3], sizeof o[3], "-DFA_WAVES=%d", sp->waves);
    snprintf(o[4], sizeof o[4], "-DFA_TR=%d", sp->rows);
    snprintf(o[5], sizeof o[5], "-DFA_STORAGE=%d", sp->storage);
    snprintf(o[6], sizeof o[6], "-DFA_LOCAL=%d", sp->local);
    snprintf(o[7], sizeof o[7], "-DFA_VARLEN=%d", sp->varlen);
    const char *opts[] = {o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], "-O3"};
    static char why[16384];
    hip_image img;
    if (hip_jit_get(api, fa_hip_src_bwd_mfma, "bwd_mfma.hip", opts, 9, &img, why, sizeof why) != 0) {
        fprintf(stderr, "FAIL bwd_mfma %s d=%d/%d w%d r%d storage=%d: %s\n", target, sp->dqk, sp->dv, sp->waves,
                sp->rows, sp->storage, why);
        return 1;
    }
    const unsigned char *e = img.data;
    const int machine = img.size > 20 ? e[18] | e[19] << 8 : 0;
    int bad = img.size < 1024 || memcmp(e, "\177ELF", 4) != 0 || machine != 224 || img.from_cache;
    static const char *const kernels[] = {"fa_bwd_pre_mfma", "fa_bwd_dkdv_mfma", "fa_bwd_dq_mfma"};
    for (int k = 0; k < 3 && !bad; k++)
        if (!contains(img.data, img.size, kernels[k])) bad = 2;
    if (!bad && !contains(img.data, img.size, "amdgcn-amd-amdhsa--gfx90a")) bad = 3;
    static const char *const what[] = {"", "not a fresh ELF for the target's machine", "a kernel is missing",
                                       "not a gfx90a code object"};
    if (bad)
        fprintf(stderr, "FAIL bwd_mfma %s d=%d/%d w%d r%d storage=%d: %s\n", target, sp->dqk, sp->dv, sp->waves,
                sp->rows, sp->storage, what[bad]);
    else
        printf("ok   %s bwd_mfma d=%d/%d w%d r%d storage=%d: %zu bytes, compiled in %.0f ms\n", target, sp->dqk, sp->dv,
               sp->waves, sp->rows, sp->storage, img.size, img.compile_ms);
    hip_image_free(&img);
    return bad != 0;
}

int main(void)
{
    char dir[] = "/tmp/flashport-hip-compile-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("FLASHPORT_CACHE_DIR", dir, 1);
    hip_api api;
    char why[1024];
    if (hip_api_open(&api, 0, why, sizeof why) != 0) {
        printf("skipped: %s\n", why);
        return 77;
    }
    static const spec specs[] = {
        {64, 64, 64, 32, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0}, {128, 128, 64, 64, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0},
        {256, 256, 16, 16, 2, 1, 1, 1, 1, 1, 0, 0, 0, 0}, {80, 48, 32, 32, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0},
        {40, 72, 16, 64, 2, 0, 1, 0, 0, 1, 0, 0, 0, 0}, {128, 128, 32, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
        /* dropout, split-KV (+ combine) and both: fp32/fp16/bf16, varlen and paged decode forms */
        {64, 64, 64, 32, 1, 1, 0, 1, 0, 0, 0, 0, 1, 0}, {128, 128, 16, 32, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1},
        {100, 36, 32, 64, 2, 0, 1, 1, 1, 0, 0, 0, 1, 1},
    };
    /* the MFMA forward (AMD only): fp16/bf16, d64/d128, causal on/off, paged, 16-row waves, one and two stages */
    static const spec mfma_specs[] = {
        {128, 128, 128, 64, 1, 0, 0, 1, 0, 0, 4, 1, 0, 0}, {128, 128, 128, 32, 2, 1, 1, 0, 1, 0, 4, 2, 0, 0},
        {64, 64, 128, 64, 2, 0, 0, 1, 0, 1, 4, 2, 0, 0},   {64, 64, 64, 64, 1, 0, 0, 0, 0, 0, 4, 2, 0, 0},
    };
    static const char *const targets[] = {
#if FA_HIP_ON_NVIDIA
        "sm_80", "sm_90",
#else
        "gfx90a", "gfx90a:sramecc+:xnack-",
#endif
    };
    /* the SIMT backward: each storage, 16-bit tiles above d128, dv != dqk, odd dims, each feature switch */
    static const bspec bspecs[] = {
        {64, 64, 32, 32, 0, 0, 1, 1, 1, 0, 0},   {128, 128, 64, 64, 1, 0, 0, 0, 1, 0, 1},
        {256, 256, 16, 16, 2, 1, 1, 1, 1, 1, 0}, {36, 100, 32, 16, 0, 0, 0, 1, 0, 1, 1},
        {200, 72, 16, 32, 1, 1, 1, 0, 1, 0, 1},
    };
    /* the MFMA backward: fp16/bf16, d64 (64-row tiles) and d128 (32), dqk != dv, 2 and 4 waves, causal/window,
       varlen */
    static const mbspec mbspecs[] = {
        {128, 128, 4, 32, 1, 1, 0}, {128, 128, 2, 32, 2, 0, 1}, {64, 64, 4, 64, 2, 1, 0}, {128, 64, 2, 32, 1, 1, 1}};
    int fails = 0;
    for (size_t t = 0; t < sizeof targets / sizeof *targets; t++) {
        for (size_t i = 0; i < sizeof bspecs / sizeof *bspecs; i++) fails += compile_bwd(&api, targets[t], &bspecs[i]);
        if (!FA_HIP_ON_NVIDIA)
            for (size_t i = 0; i < sizeof mbspecs / sizeof *mbspecs; i++)
                fails += compile_bwd_mfma(&api, targets[t], &mbspecs[i]);
    }
    for (size_t t = 0; t < sizeof targets / sizeof *targets; t++)
    {
        for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) fails += compile_one(&api, targets[t], &specs[i]);
        for (int st = 0; st < 3; st++) fails += compile_append(&api, targets[t], st);
        if (!FA_HIP_ON_NVIDIA)
            for (size_t i = 0; i < sizeof mfma_specs / sizeof *mfma_specs; i++)
                fails += compile_one(&api, targets[t], &mfma_specs[i]);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    printf("%s %s: %d failure(s)\n", api.rtc_name, fails ? "FAIL" : "ok", fails);
    return fails ? 1 : 0;
}
