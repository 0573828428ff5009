/*
 * The conformance case table. Features are crossed sensibly rather than as a cartesian product: every head
 * dim, shape, dtype, mask and layout appears several times, each time with different companions, and the
 * large shapes use one batch and one or two heads so that the float64 reference stays affordable.
 */
#include "conf_cases.h"

#include <stdio.h>
#include <string.h>

#define F32 .dtype = FA_DTYPE_F32
#define F16 .dtype = FA_DTYPE_F16
#define BF16 .dtype = FA_DTYPE_BF16
/* batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim_qk, head_dim_v */
#define SHAPE(b_, sq_, sk_, hq_, hk_, dqk_, dv_) \
    .batch = (b_), .sq = (sq_), .sk = (sk_), .hq = (hq_), .hk = (hk_), .dqk = (dqk_), .dv = (dv_)
/* varlen: nseq, then per-sequence query and key lengths; heads and dims follow */
#define HEADS(hq_, hk_, dqk_, dv_) .hq = (hq_), .hk = (hk_), .dqk = (dqk_), .dv = (dv_)
#define WIN(l_, r_) .window = 1, .wl = (l_), .wr = (r_)
#define CAUSAL .causal = 1
#define NOLSE .no_lse = 1
#define PERHEAD .alibi = FA_ALIBI_PER_HEAD
#define PERBATCH .alibi = FA_ALIBI_PER_BATCH_HEAD
#define LAYOUT(l_) .layout = CONF_LAYOUT_##l_
#define BWD .kind = CONF_BWD
#define DET .det = 1
#define KVLEN(...) .use_kvlen = 1, .kvlen = {__VA_ARGS__}
#define APPEND(n_) .append = (n_)
#define ROT(d_, inter_) .rotary_dim = (d_), .rotary_interleaved = (inter_)

static conf_case cases[] = {
    /* ---- every head dim, at the two odd-sized mid shapes, dtypes and GQA rotating */
    {F16, SHAPE(2, 113, 203, 4, 2, 32, 32)},
    {BF16, SHAPE(2, 128, 217, 4, 4, 32, 32), CAUSAL},
    {BF16, SHAPE(2, 113, 203, 6, 3, 40, 40)},
    {F32, SHAPE(1, 128, 217, 4, 1, 40, 40), CAUSAL, NOLSE},
    {F16, SHAPE(2, 128, 217, 4, 4, 59, 59)},
    {BF16, SHAPE(2, 113, 203, 6, 2, 59, 59), CAUSAL},
    {F32, SHAPE(2, 113, 203, 4, 2, 64, 64)},
    {F16, SHAPE(2, 128, 217, 4, 2, 64, 64), CAUSAL},
    {BF16, SHAPE(2, 128, 217, 4, 4, 96, 96), NOLSE},
    {F16, SHAPE(2, 113, 203, 6, 6, 96, 96), CAUSAL},
    {F32, SHAPE(2, 128, 217, 2, 1, 111, 111)},
    {F16, SHAPE(1, 113, 203, 4, 2, 111, 111), CAUSAL},
    {F16, SHAPE(2, 113, 203, 4, 4, 128, 128)},
    {BF16, SHAPE(2, 128, 217, 4, 2, 128, 128), CAUSAL, NOLSE},
    {BF16, SHAPE(2, 113, 203, 2, 2, 160, 160)},
    {F32, SHAPE(1, 128, 217, 4, 2, 160, 160), CAUSAL},
    {F16, SHAPE(1, 128, 217, 4, 4, 192, 192)},
    {BF16, SHAPE(2, 113, 203, 2, 1, 192, 192), CAUSAL},
    {F32, SHAPE(1, 113, 203, 2, 2, 224, 224)},
    {F16, SHAPE(1, 128, 217, 4, 2, 224, 224), CAUSAL},
    {BF16, SHAPE(1, 128, 217, 2, 2, 256, 256)},
    {F16, SHAPE(2, 113, 203, 2, 1, 256, 256), CAUSAL, NOLSE},

    /* ---- degenerate and decode shapes */
    {F16, SHAPE(3, 1, 1, 4, 4, 64, 64)},
    {BF16, SHAPE(2, 1, 1, 4, 2, 128, 128), CAUSAL},
    {F32, SHAPE(1, 1, 1, 2, 1, 32, 32), NOLSE},
    {BF16, SHAPE(2, 1, 4096, 8, 1, 128, 128)},
    {F16, SHAPE(1, 1, 4096, 6, 6, 64, 64), CAUSAL},
    {F32, SHAPE(1, 1, 4096, 2, 1, 256, 256), .num_splits = 4},
    {F16, SHAPE(2, 1, 4096, 8, 2, 96, 96), .num_splits = 1, NOLSE},

    /* ---- large shapes: one batch, one or two heads (big: skipped by --quick) */
    {F16, SHAPE(1, 1023, 1024, 1, 1, 64, 64), CAUSAL},
    {BF16, SHAPE(1, 1023, 1024, 2, 1, 128, 128)},
    {F32, SHAPE(1, 1023, 1024, 1, 1, 256, 256), CAUSAL},
    {BF16, SHAPE(1, 2048, 2048, 1, 1, 128, 128), CAUSAL},
    {F16, SHAPE(1, 2048, 2048, 2, 1, 64, 64), NOLSE},
    {F32, SHAPE(1, 2048, 2048, 1, 1, 32, 32), CAUSAL, WIN(256, 0), .softcap = 5.0f},

    /* ---- GQA ratios 1, 2, 6 and MQA */
    {F16, SHAPE(2, 128, 217, 6, 6, 64, 64)},
    {BF16, SHAPE(2, 128, 217, 6, 3, 64, 64), CAUSAL},
    {F32, SHAPE(1, 113, 203, 12, 2, 64, 64)},
    {F16, SHAPE(1, 113, 203, 12, 2, 128, 128), CAUSAL},
    {BF16, SHAPE(2, 128, 217, 8, 1, 64, 64)},
    {F16, SHAPE(2, 113, 203, 8, 1, 128, 128), CAUSAL, NOLSE},

    /* ---- causal with sq != sk (sq > sk leaves the first sq - sk rows fully masked) */
    {F16, SHAPE(2, 203, 113, 4, 2, 64, 64), CAUSAL},
    {BF16, SHAPE(1, 217, 128, 4, 4, 128, 128), CAUSAL},
    {F32, SHAPE(2, 300, 64, 2, 1, 32, 32), CAUSAL},
    {F16, SHAPE(1, 64, 1000, 4, 2, 64, 64), CAUSAL},
    {BF16, SHAPE(2, 300, 64, 2, 2, 96, 96), CAUSAL, NOLSE},

    /* ---- sliding windows: left only, right only, both, diagonal, rows that see nothing */
    {F16, SHAPE(2, 128, 217, 4, 2, 64, 64), WIN(32, -1)},
    {BF16, SHAPE(2, 113, 203, 4, 4, 128, 128), WIN(-1, 16)},
    {F32, SHAPE(1, 128, 217, 4, 2, 64, 64), WIN(64, 8)},
    {F16, SHAPE(2, 203, 113, 4, 2, 64, 64), WIN(16, 16)},
    {BF16, SHAPE(2, 128, 217, 6, 2, 96, 96), CAUSAL, WIN(48, -1)},
    {F32, SHAPE(1, 113, 203, 2, 2, 59, 59), WIN(0, 0)},
    {BF16, SHAPE(2, 150, 50, 4, 4, 64, 64), WIN(20, 3)},
    {F16, SHAPE(1, 200, 50, 2, 1, 128, 128), WIN(-1, 5)},
    {F16, SHAPE(2, 113, 203, 4, 4, 32, 32), WIN(1000, 1000), NOLSE},
    {BF16, SHAPE(1, 1, 4096, 4, 1, 128, 128), CAUSAL, WIN(511, -1)},
    {F32, SHAPE(1, 217, 128, 4, 1, 224, 224), WIN(7, 40)},

    /* ---- softcap (with a large scale so tanh saturates), explicit scales */
    {F16, SHAPE(2, 128, 217, 4, 2, 64, 64), CAUSAL, .scale = 0.5f, .softcap = 1.5f},
    {BF16, SHAPE(2, 113, 203, 4, 4, 128, 128), .softcap = 30.0f},
    {F32, SHAPE(1, 128, 217, 6, 2, 96, 96), .softcap = 2.0f, .scale = 1.0f, WIN(40, 40), PERHEAD},
    {BF16, SHAPE(1, 113, 203, 6, 1, 256, 256), .softcap = 0.8f, .scale = 0.25f, NOLSE},
    {F16, SHAPE(2, 1, 4096, 4, 2, 64, 64), .softcap = 50.0f, .scale = 1.0f},
    {F16, SHAPE(2, 113, 203, 2, 2, 40, 40), .scale = 0.05f},
    {BF16, SHAPE(1, 128, 217, 4, 2, 64, 64), .scale = 1.0f, CAUSAL},

    /* ---- ALiBi per head and per (batch, head) */
    {F16, SHAPE(2, 113, 203, 4, 4, 64, 64), PERHEAD},
    {BF16, SHAPE(2, 128, 217, 8, 2, 128, 128), PERHEAD, CAUSAL},
    {F32, SHAPE(3, 113, 203, 4, 2, 64, 64), PERBATCH, CAUSAL},
    {F16, SHAPE(2, 203, 113, 4, 1, 96, 96), PERBATCH, CAUSAL},
    {BF16, SHAPE(2, 128, 217, 4, 4, 32, 32), PERBATCH, WIN(64, 0), NOLSE},
    {F16, SHAPE(1, 1, 4096, 8, 2, 128, 128), PERHEAD},

    /* ---- dropout (the mask from fa_dropout_keep; LSE is the undropped one) */
    {F16, SHAPE(2, 128, 217, 4, 2, 64, 64), .dropout = 0.1f},
    {BF16, SHAPE(2, 113, 203, 6, 3, 128, 128), .dropout = 0.17f, CAUSAL},
    {F32, SHAPE(1, 113, 203, 4, 4, 32, 32), .dropout = 0.5f},
    {BF16, SHAPE(2, 128, 217, 4, 2, 64, 64), .dropout = 0.2f, WIN(32, 32), NOLSE},
    {F16, SHAPE(1, 113, 203, 4, 4, 96, 96), .dropout = 0.1f, PERHEAD, .softcap = 3.0f, .scale = 0.5f},
    {F16, SHAPE(2, 203, 113, 2, 1, 64, 64), .dropout = 0.3f, CAUSAL},
    {BF16, SHAPE(2, 1, 4096, 4, 1, 64, 64), .dropout = 0.25f},

    /* ---- head_dim_v != head_dim_qk */
    {BF16, SHAPE(1, 128, 217, 4, 2, 192, 128), CAUSAL},
    {F16, SHAPE(2, 113, 203, 4, 4, 64, 32)},
    {F32, SHAPE(2, 113, 203, 4, 2, 32, 96)},
    {F16, SHAPE(1, 128, 217, 6, 1, 128, 64), CAUSAL, NOLSE},
    {BF16, SHAPE(1, 113, 203, 4, 4, 59, 111), .dropout = 0.1f},
    {F32, SHAPE(1, 1, 4096, 4, 2, 256, 128)},

    /* ---- varlen: sequences of different lengths, including a 1-token one */
    {F16, .nseq = 4, .lens_q = {1, 17, 128, 60}, .lens_k = {1, 40, 150, 60}, HEADS(4, 2, 64, 64)},
    {BF16, .nseq = 4, .lens_q = {1, 17, 128, 60}, .lens_k = {1, 40, 150, 60}, HEADS(6, 2, 128, 128), CAUSAL},
    {F32, .nseq = 3, .lens_q = {50, 1, 200}, .lens_k = {20, 64, 100}, HEADS(4, 4, 96, 96), CAUSAL},
    {BF16, .nseq = 4, .lens_q = {33, 1, 77, 128}, .lens_k = {33, 5, 200, 128}, HEADS(4, 2, 64, 64), WIN(16, 8)},
    {F16, .nseq = 3, .lens_q = {64, 1, 100}, .lens_k = {100, 1, 64}, HEADS(4, 4, 64, 64), PERBATCH, CAUSAL},
    {BF16, .nseq = 3, .lens_q = {70, 1, 129}, .lens_k = {90, 33, 129}, HEADS(4, 1, 64, 64), .dropout = 0.15f},
    {F32, .nseq = 5, .lens_q = {3, 1, 40, 77, 9}, .lens_k = {5, 1, 40, 200, 90}, HEADS(2, 2, 59, 59), .softcap = 2.5f,
     .scale = 0.6f},
    {F16, .nseq = 3, .lens_q = {64, 1, 100}, .lens_k = {64, 100, 30}, HEADS(4, 2, 128, 128), .use_kvlen = 1,
     .kvlen = {10, 100, 0}},
    {F16, .nseq = 4, .lens_q = {1, 17, 128, 60}, .lens_k = {1, 40, 150, 60}, HEADS(4, 2, 64, 64), LAYOUT(PADDED)},
    {BF16, .nseq = 3, .lens_q = {50, 1, 96}, .lens_k = {70, 9, 96}, HEADS(4, 4, 32, 32), LAYOUT(BHSD), CAUSAL},
    {F16, .nseq = 3, .lens_q = {80, 1, 47}, .lens_k = {80, 1, 47}, HEADS(4, 4, 64, 64), LAYOUT(QKVPACKED), CAUSAL},
    {F16, .nseq = 3, .lens_q = {1, 90, 31}, .lens_k = {1, 120, 31}, HEADS(12, 2, 256, 256), CAUSAL, NOLSE},
    {F32, .nseq = 3, .lens_q = {5, 0, 9}, .lens_k = {7, 3, 0}, HEADS(2, 1, 64, 64)},
    {BF16, .nseq = 6, .lens_q = {1, 2, 3, 64, 130, 7}, .lens_k = {1, 2, 3, 64, 130, 7}, HEADS(4, 2, 192, 128),
     LAYOUT(KVPACKED)},
    {BF16, .nseq = 4, .lens_q = {1, 1, 1, 1}, .lens_k = {300, 1, 77, 1024}, HEADS(8, 1, 128, 128)},

    /* ---- paged KV: page sizes 1, 16, 256, shuffled block tables */
    {F16, SHAPE(3, 113, 203, 4, 2, 64, 64), .page_size = 16, CAUSAL},
    {BF16, SHAPE(2, 1, 300, 8, 2, 128, 128), .page_size = 1},
    {F32, SHAPE(2, 128, 600, 2, 2, 64, 64), .page_size = 256},
    {BF16, SHAPE(3, 64, 203, 4, 4, 64, 64), .page_size = 16, .bt_pad = 3, .use_kvlen = 1, .kvlen = {100, 1, 203},
     CAUSAL},
    {F16, SHAPE(2, 1, 4096, 8, 1, 128, 128), .page_size = 256, .use_kvlen = 1, .kvlen = {4000, 17}},
    {BF16, .nseq = 3, .lens_q = {1, 30, 64}, .lens_k = {50, 1, 300}, HEADS(4, 2, 64, 64), .page_size = 16, CAUSAL},
    {F16, SHAPE(2, 40, 100, 4, 4, 32, 32), .page_size = 1, PERHEAD, WIN(10, 10), NOLSE},
    {F16, SHAPE(2, 64, 200, 4, 2, 64, 64), .page_size = 16, .dropout = 0.1f},
    {BF16, SHAPE(1, 64, 1000, 6, 1, 128, 128), .page_size = 256, .softcap = 1.0f, .scale = 0.5f},
    {F16, SHAPE(1, 113, 203, 2, 2, 256, 256), .page_size = 16, LAYOUT(PADDED)},
    {F32, SHAPE(2, 8, 40, 4, 2, 96, 96), .page_size = 16, .use_kvlen = 1, .kvlen = {3, 20}, CAUSAL},
    {F16, SHAPE(2, 1, 512, 4, 1, 64, 64), .page_size = 256, .use_kvlen = 1, .kvlen = {257, 256}, .num_splits = 3},
    {BF16, SHAPE(3, 1, 1024, 8, 2, 128, 128), .page_size = 16, .use_kvlen = 1, .kvlen = {1000, 1, 513}, .num_splits = 4},
    {F16, .nseq = 3, .lens_q = {1, 4, 1}, .lens_k = {100, 33, 512}, HEADS(4, 1, 64, 64), .page_size = 16, .use_kvlen = 1,
     .kvlen = {100, 20, 400}, CAUSAL},

    /* ---- KV cache lengths without paging */
    {F16, SHAPE(3, 1, 300, 8, 2, 128, 128), .use_kvlen = 1, .kvlen = {300, 1, 150}},
    {BF16, SHAPE(2, 16, 256, 4, 4, 64, 64), .use_kvlen = 1, .kvlen = {0, 256}, CAUSAL},
    {F32, SHAPE(4, 113, 203, 2, 1, 64, 64), .use_kvlen = 1, .kvlen = {77, 203, 5, 128}, WIN(30, 10)},
    {F16, SHAPE(2, 32, 300, 4, 2, 64, 64), .use_kvlen = 1, .kvlen = {150, 299}, PERBATCH, CAUSAL},
    {BF16, SHAPE(2, 1, 2048, 4, 1, 64, 64), .use_kvlen = 1, .kvlen = {1500, 2048}, .num_splits = 4, NOLSE},

    /* ---- non-contiguous strides (input gaps hold NaN, output gaps must stay untouched) */
    {F16, SHAPE(2, 113, 203, 4, 2, 64, 64), LAYOUT(PADDED)},
    {BF16, SHAPE(2, 128, 217, 6, 1, 59, 59), LAYOUT(PADDED), CAUSAL},
    {F32, SHAPE(2, 128, 217, 4, 4, 64, 64), LAYOUT(BHSD), CAUSAL},
    {BF16, SHAPE(2, 113, 203, 4, 2, 128, 128), LAYOUT(KVPACKED)},
    {F16, SHAPE(2, 128, 128, 4, 4, 64, 64), LAYOUT(QKVPACKED), CAUSAL},
    {F16, SHAPE(1, 113, 203, 4, 2, 96, 96), LAYOUT(BHSD), .dropout = 0.1f},
    {BF16, SHAPE(2, 1, 4096, 4, 2, 128, 128), LAYOUT(PADDED), PERBATCH},
    {F32, SHAPE(2, 203, 113, 2, 2, 32, 64), LAYOUT(PADDED), CAUSAL, PERHEAD},
    {F16, SHAPE(1, 217, 128, 4, 2, 160, 160), LAYOUT(BHSD), WIN(20, -1)},
    {BF16, SHAPE(1, 1023, 1024, 1, 1, 64, 64), LAYOUT(PADDED), WIN(100, 100)},

    /* ================================================================ decode: short q against long KV caches */
    {BF16, SHAPE(2, 1, 8192, 8, 2, 128, 128), KVLEN(8192, 1234)},
    {F16, SHAPE(1, 16, 8192, 4, 1, 64, 64), KVLEN(8000), CAUSAL},
    {F32, SHAPE(2, 4, 4096, 4, 4, 64, 64), KVLEN(1, 4095), CAUSAL, .num_splits = 8},
    {BF16, SHAPE(1, 1, 16384, 2, 1, 128, 128), KVLEN(16384), .num_splits = 16},
    {F16, SHAPE(1, 8, 16384, 4, 1, 128, 128), KVLEN(12000), CAUSAL},
    {F16, SHAPE(2, 1, 4096, 8, 2, 111, 111), KVLEN(4000, 17), WIN(1024, -1)},
    {BF16, SHAPE(2, 3, 4096, 4, 1, 256, 256), KVLEN(3000, 4096), CAUSAL, PERHEAD, .softcap = 20.0f},
    /* fp32 dense cache read in place on the CPU: 80 = 64 in register blocks + a 16-column tail; 12 rows a head */
    {F32, SHAPE(2, 3, 4096, 16, 4, 80, 80), KVLEN(4000, 1234), CAUSAL},
    /* paged caches, page sizes 1, 16, 256 */
    {F16, SHAPE(2, 1, 4096, 8, 2, 128, 128), .page_size = 1, KVLEN(4096, 333)},
    {BF16, SHAPE(2, 2, 8192, 8, 2, 64, 64), .page_size = 16, KVLEN(8192, 5000), CAUSAL},
    {F32, SHAPE(1, 16, 16384, 2, 1, 64, 64), .page_size = 256, KVLEN(16000), CAUSAL, .num_splits = 4},
    {F16, SHAPE(3, 1, 4096, 8, 2, 128, 128), .page_size = 256, KVLEN(4096, 1, 2049)},
    {BF16, SHAPE(2, 12, 4096, 8, 2, 96, 96), .page_size = 16, .bt_pad = 2, KVLEN(4001, 2500), CAUSAL,
     .num_splits = 2},
    {F16, SHAPE(2, 1, 16384, 4, 1, 64, 64), .page_size = 1, KVLEN(16384, 9000), .num_splits = 11},

    /* ================================================================ KV-cache append (seqlen_new rows) */
    {F16, SHAPE(2, 1, 4096, 8, 2, 128, 128), KVLEN(4000, 17), APPEND(1), CAUSAL},
    {BF16, SHAPE(2, 4, 2048, 4, 2, 64, 64), KVLEN(100, 2044), APPEND(4), CAUSAL},
    {F32, SHAPE(2, 16, 4096, 4, 1, 64, 64), KVLEN(0, 4000), APPEND(16), CAUSAL},
    {F16, SHAPE(2, 3, 512, 4, 4, 64, 64), KVLEN(10, 500), APPEND(3)},
    {BF16, SHAPE(1, 8, 1024, 4, 2, 128, 64), KVLEN(700), APPEND(5), CAUSAL},
    {F16, SHAPE(2, 2, 1024, 4, 2, 64, 64), KVLEN(64, 900), APPEND(7), WIN(100, 0), PERBATCH},
    {F16, SHAPE(2, 1, 4096, 8, 2, 128, 128), .page_size = 16, KVLEN(4095, 15), APPEND(1), CAUSAL},
    {BF16, SHAPE(2, 4, 1024, 4, 2, 64, 64), .page_size = 1, KVLEN(1000, 0), APPEND(4)},
    {F16, SHAPE(1, 16, 4096, 4, 2, 64, 64), .page_size = 256, KVLEN(250), APPEND(16), CAUSAL, .num_splits = 4},
    {BF16, SHAPE(2, 4, 1024, 4, 2, 64, 64), KVLEN(33, 1000), APPEND(4), LAYOUT(PADDED), CAUSAL},
    {F16, SHAPE(2, 4, 1024, 4, 2, 64, 64), KVLEN(500, 9), APPEND(4), LAYOUT(KVPACKED), CAUSAL, NOLSE},

    /* ================================================================ append with rotary embedding */
    {F16, SHAPE(2, 1, 4096, 8, 2, 128, 128), KVLEN(4000, 17), APPEND(1), ROT(128, 0), CAUSAL},
    {BF16, SHAPE(2, 4, 2048, 4, 2, 64, 64), KVLEN(100, 2040), APPEND(4), ROT(64, 1), CAUSAL},
    {F32, SHAPE(2, 8, 1024, 4, 1, 128, 128), KVLEN(500, 3), APPEND(8), ROT(32, 0), CAUSAL},
    {F16, SHAPE(2, 4, 1024, 4, 4, 64, 64), KVLEN(10, 900), APPEND(4), ROT(16, 1)},
    {BF16, SHAPE(1, 16, 4096, 4, 2, 96, 96), .page_size = 16, KVLEN(4000), APPEND(16), ROT(96, 1), CAUSAL},
    {F16, SHAPE(2, 2, 512, 4, 2, 64, 64), .page_size = 1, KVLEN(0, 300), APPEND(2), ROT(32, 0), WIN(64, 0)},
    {F32, SHAPE(1, 1, 16384, 2, 1, 128, 128), KVLEN(16000), APPEND(1), ROT(64, 1), .num_splits = 8},
    {BF16, SHAPE(2, 5, 512, 4, 2, 59, 59), KVLEN(200, 7), APPEND(5), ROT(58, 0), CAUSAL},
    {F16, SHAPE(2, 4, 1024, 4, 2, 64, 64), KVLEN(33, 1000), APPEND(4), ROT(32, 1), LAYOUT(PADDED), CAUSAL},
    {BF16, SHAPE(2, 4, 1024, 4, 2, 128, 64), KVLEN(300, 600), APPEND(2), ROT(128, 0), CAUSAL, PERHEAD},
    {F16, SHAPE(2, 6, 2048, 6, 2, 64, 64), .page_size = 256, KVLEN(255, 1), APPEND(6), ROT(64, 0), .softcap = 10.0f,
     WIN(128, 4)},
    {F32, SHAPE(2, 1, 1024, 4, 1, 64, 64), KVLEN(700, 1), APPEND(3), ROT(48, 1), WIN(-1, 2)},

    /* ================================================================ backward: every head dim */
    {BWD, F16, SHAPE(2, 113, 203, 4, 2, 32, 32)},
    {BWD, BF16, SHAPE(2, 128, 217, 4, 4, 40, 40), CAUSAL},
    {BWD, F32, SHAPE(1, 113, 203, 2, 1, 59, 59)},
    {BWD, F16, SHAPE(2, 128, 217, 6, 2, 59, 59), CAUSAL},
    {BWD, BF16, SHAPE(1, 113, 203, 4, 4, 64, 64)},
    {BWD, F32, SHAPE(2, 128, 217, 4, 2, 64, 64), CAUSAL},
    {BWD, F16, SHAPE(1, 128, 217, 2, 2, 96, 96)},
    {BWD, BF16, SHAPE(1, 113, 203, 2, 1, 111, 111), CAUSAL},
    {BWD, F16, SHAPE(1, 128, 217, 2, 2, 111, 111)},
    {BWD, BF16, SHAPE(1, 113, 203, 4, 2, 128, 128)},
    {BWD, F16, SHAPE(1, 128, 217, 2, 2, 128, 128), CAUSAL},
    {BWD, F32, SHAPE(1, 113, 203, 2, 2, 160, 160)},
    {BWD, BF16, SHAPE(1, 128, 217, 2, 1, 192, 192), CAUSAL},
    {BWD, F16, SHAPE(1, 113, 203, 1, 1, 224, 224)},
    {BWD, BF16, SHAPE(1, 128, 217, 1, 1, 256, 256)},
    {BWD, F32, SHAPE(1, 113, 203, 2, 1, 256, 256), CAUSAL},
    /* degenerate shapes */
    {BWD, F16, SHAPE(3, 1, 1, 4, 4, 64, 64)},
    {BWD, BF16, SHAPE(2, 1, 1, 4, 2, 128, 128), CAUSAL},
    {BWD, F32, SHAPE(1, 1, 1, 2, 1, 32, 32)},
    {BWD, F16, SHAPE(2, 1, 203, 4, 2, 64, 64)},
    {BWD, BF16, SHAPE(2, 203, 1, 2, 1, 64, 64)},
    /* large (big: skipped by --quick) */
    {BWD, F16, SHAPE(1, 1023, 1024, 1, 1, 64, 64), CAUSAL},
    {BWD, BF16, SHAPE(1, 1023, 1024, 2, 1, 128, 128)},
    {BWD, F32, SHAPE(1, 1023, 1024, 1, 1, 256, 256), CAUSAL},
    /* GQA 1, 2, 6 and MQA */
    {BWD, F16, SHAPE(2, 128, 217, 6, 6, 64, 64)},
    {BWD, BF16, SHAPE(1, 113, 203, 12, 2, 64, 64), CAUSAL},
    {BWD, F32, SHAPE(1, 113, 203, 8, 1, 64, 64)},
    {BWD, F16, SHAPE(1, 128, 217, 6, 1, 64, 64), CAUSAL},
    /* causal with sq != sk (first sq - sk rows see nothing) */
    {BWD, F16, SHAPE(2, 203, 113, 4, 2, 64, 64), CAUSAL},
    {BWD, BF16, SHAPE(1, 300, 64, 2, 1, 32, 32), CAUSAL},
    {BWD, F32, SHAPE(1, 64, 1000, 2, 2, 64, 64), CAUSAL},
    /* sliding windows */
    {BWD, F16, SHAPE(2, 128, 217, 4, 2, 64, 64), WIN(32, -1)},
    {BWD, BF16, SHAPE(1, 113, 203, 4, 4, 64, 64), WIN(-1, 16)},
    {BWD, F32, SHAPE(1, 150, 50, 4, 2, 64, 64), WIN(20, 3)},
    {BWD, F16, SHAPE(1, 113, 203, 2, 2, 59, 59), WIN(0, 0)},
    {BWD, BF16, SHAPE(1, 128, 217, 6, 2, 96, 96), CAUSAL, WIN(48, -1)},
    /* softcap (d tanh = 1 - tanh^2), explicit scales */
    {BWD, F16, SHAPE(2, 128, 217, 4, 2, 64, 64), CAUSAL, .scale = 0.5f, .softcap = 1.5f},
    {BWD, BF16, SHAPE(1, 113, 203, 4, 4, 64, 64), .softcap = 30.0f},
    {BWD, F32, SHAPE(1, 128, 217, 4, 2, 96, 96), .softcap = 2.0f, .scale = 1.0f, WIN(40, 40), PERHEAD},
    {BWD, BF16, SHAPE(1, 113, 203, 2, 1, 128, 128), .softcap = 0.8f, .scale = 0.25f},
    /* ALiBi */
    {BWD, F16, SHAPE(2, 113, 203, 4, 4, 64, 64), PERHEAD},
    {BWD, BF16, SHAPE(1, 128, 217, 4, 2, 128, 128), PERBATCH, CAUSAL},
    {BWD, F32, SHAPE(2, 203, 113, 4, 1, 64, 64), PERBATCH, CAUSAL},
    /* dropout (same fa_dropout_keep mask in the forward and the backward) */
    {BWD, F16, SHAPE(2, 128, 217, 4, 2, 64, 64), .dropout = 0.1f},
    {BWD, BF16, SHAPE(1, 113, 203, 6, 3, 128, 128), .dropout = 0.17f, CAUSAL},
    {BWD, F32, SHAPE(1, 113, 203, 4, 4, 32, 32), .dropout = 0.5f},
    {BWD, F16, SHAPE(1, 113, 203, 4, 4, 96, 96), .dropout = 0.1f, PERHEAD, .softcap = 3.0f, .scale = 0.5f},
    {BWD, BF16, SHAPE(2, 203, 113, 2, 1, 64, 64), .dropout = 0.3f, CAUSAL},
    {BWD, F16, SHAPE(2, 128, 217, 4, 2, 64, 64), .dropout = 0.2f, WIN(32, 32)},
    /* head_dim_v != head_dim_qk */
    {BWD, BF16, SHAPE(1, 128, 217, 2, 1, 192, 128), CAUSAL},
    {BWD, F16, SHAPE(2, 113, 203, 4, 4, 64, 32)},
    {BWD, F32, SHAPE(1, 113, 203, 4, 2, 32, 96)},
    {BWD, BF16, SHAPE(1, 113, 203, 2, 2, 59, 111), .dropout = 0.1f},
    /* varlen (empty sequences included), seqused_k */
    {BWD, F16, .nseq = 4, .lens_q = {1, 17, 128, 60}, .lens_k = {1, 40, 150, 60}, HEADS(4, 2, 64, 64)},
    {BWD, BF16, .nseq = 3, .lens_q = {50, 1, 200}, .lens_k = {20, 64, 100}, HEADS(4, 4, 96, 96), CAUSAL},
    {BWD, F32, .nseq = 5, .lens_q = {3, 1, 40, 77, 9}, .lens_k = {5, 1, 40, 200, 90}, HEADS(2, 2, 59, 59),
     .softcap = 2.5f, .scale = 0.6f},
    {BWD, F32, .nseq = 3, .lens_q = {5, 0, 9}, .lens_k = {7, 3, 0}, HEADS(2, 1, 64, 64)},
    {BWD, BF16, .nseq = 3, .lens_q = {70, 1, 129}, .lens_k = {90, 33, 129}, HEADS(4, 1, 64, 64), .dropout = 0.15f},
    {BWD, F16, .nseq = 3, .lens_q = {64, 1, 100}, .lens_k = {64, 100, 30}, HEADS(4, 2, 128, 128), KVLEN(10, 100, 0)},
    {BWD, F16, .nseq = 3, .lens_q = {64, 1, 100}, .lens_k = {100, 1, 64}, HEADS(4, 4, 64, 64), PERBATCH, CAUSAL},
    {BWD, BF16, .nseq = 4, .lens_q = {33, 1, 77, 128}, .lens_k = {33, 5, 200, 128}, HEADS(4, 2, 64, 64), WIN(16, 8)},
    {BWD, BF16, SHAPE(2, 16, 256, 4, 4, 64, 64), KVLEN(0, 256), CAUSAL},
    {BWD, F16, SHAPE(3, 64, 203, 4, 2, 64, 64), KVLEN(100, 1, 203)},
    /* strided layouts: dq/dk/dv get their inputs' strides in buffers of their own; gaps must stay untouched */
    {BWD, F16, SHAPE(2, 113, 203, 4, 2, 64, 64), LAYOUT(PADDED)},
    {BWD, BF16, SHAPE(2, 128, 217, 6, 1, 59, 59), LAYOUT(PADDED), CAUSAL},
    {BWD, F32, SHAPE(2, 128, 217, 4, 4, 64, 64), LAYOUT(BHSD), CAUSAL},
    {BWD, BF16, SHAPE(1, 113, 203, 4, 2, 128, 128), LAYOUT(KVPACKED)},
    {BWD, F16, SHAPE(2, 128, 128, 4, 4, 64, 64), LAYOUT(QKVPACKED), CAUSAL},
    {BWD, BF16, .nseq = 3, .lens_q = {50, 1, 96}, .lens_k = {70, 9, 96}, HEADS(4, 4, 32, 32), LAYOUT(BHSD), CAUSAL},
    {BWD, F32, SHAPE(2, 203, 113, 2, 2, 32, 64), LAYOUT(PADDED), CAUSAL, PERHEAD},
    {BWD, F16, .nseq = 4, .lens_q = {1, 17, 128, 60}, .lens_k = {1, 40, 150, 60}, HEADS(4, 2, 64, 64), LAYOUT(PADDED),
     .dropout = 0.1f},

    /* ================================================================ deterministic backward */
    {BWD, DET, F16, SHAPE(1, 128, 217, 8, 2, 64, 64)},
    {BWD, DET, BF16, SHAPE(1, 113, 203, 6, 1, 128, 128), CAUSAL, .dropout = 0.1f},
    {BWD, DET, F32, .nseq = 4, .lens_q = {1, 17, 128, 60}, .lens_k = {1, 40, 150, 60}, HEADS(4, 2, 64, 64)},
    {BWD, DET, BF16, SHAPE(1, 384, 384, 2, 1, 64, 64), CAUSAL},
    {BWD, DET, F16, SHAPE(1, 113, 203, 2, 2, 256, 256), WIN(64, 64)},
    {BWD, DET, F32, SHAPE(1, 203, 113, 4, 1, 96, 96), CAUSAL, PERHEAD, .softcap = 5.0f},
    {BWD, DET, F16, SHAPE(2, 300, 300, 2, 1, 64, 32), LAYOUT(PADDED), CAUSAL},
    {BWD, DET, F16, SHAPE(2, 64, 100, 4, 2, 64, 64), CAUSAL},
    {BWD, DET, BF16, SHAPE(1, 77, 131, 6, 2, 32, 32), .dropout = 0.2f},
};

static const char *const group_names[CONF_G_COUNT] = {
    "basic", "causal", "window", "softcap", "alibi", "gqa", "varlen", "paged", "kv-cache-len", "dropout", "lse",
    "masked-rows", "strides", "dv!=dqk", "splits", "dtype-f32", "dtype-f16", "dtype-bf16", "big", "backward",
    "deterministic", "decode", "append", "rotary",
};

/* Own names (not fa_dtype_name) so that case names do not depend on the library under test. */
static const char *const dtype_names[] = {"f32", "f16", "bf16", "f8e4m3", "f8e5m2"};

static const char *const layout_names[CONF_LAYOUT_COUNT] = {"dense", "padded", "bhsd", "kvpacked", "qkvpacked"};

const char *conf_group_name(conf_group g) { return g < CONF_G_COUNT ? group_names[g] : "?"; }

int conf_case_count(void) { return (int)(sizeof cases / sizeof cases[0]); }

const conf_case *conf_case_get(int index) {
    conf_cases_init();
    return index >= 0 && index < conf_case_count() ? &cases[index] : NULL;
}

int conf_case_nseq(const conf_case *c) { return c->nseq > 0 ? c->nseq : c->batch; }
int conf_case_seq_q(const conf_case *c, int b) { return c->nseq > 0 ? c->lens_q[b] : c->sq; }
int conf_case_seq_k_capacity(const conf_case *c, int b) { return c->nseq > 0 ? c->lens_k[b] : c->sk; }
int conf_case_seq_k(const conf_case *c, int b) {
    return c->use_kvlen ? c->kvlen[b] + c->append : conf_case_seq_k_capacity(c, b);
}

int conf_case_rotary_seqlen(const conf_case *c) {
    /* Positions: k_new rows at kvlen[b] + t; q rows at kvlen[b] + i when causal or windowed, else at kvlen[b]. */
    int moving = c->causal || c->window, most = 1;
    for (int b = 0; b < conf_case_nseq(c); b++) {
        int span = c->append > (moving ? conf_case_seq_q(c, b) : 1) ? c->append : moving ? conf_case_seq_q(c, b) : 1;
        if (c->kvlen[b] + span > most) most = c->kvlen[b] + span;
    }
    return most + 3; /* a few rows past the last position, which must never be read */
}

/* 1 if some query row of the case sees no key (same window rule as the reference, kept local on purpose). */
static int has_masked_rows(const conf_case *c) {
    for (int b = 0; b < conf_case_nseq(c); b++) {
        int64_t sq = conf_case_seq_q(c, b), sk = conf_case_seq_k(c, b);
        for (int64_t i = 0; i < sq; i++) {
            int64_t diag = i + sk - sq, wl = c->window ? c->wl : -1, wr = c->causal ? 0 : c->window ? c->wr : -1;
            int64_t lo = wl >= 0 ? diag - wl : 0, hi = wr >= 0 ? diag + wr : sk - 1;
            if (lo < 0) lo = 0;
            if (hi > sk - 1) hi = sk - 1;
            if (lo > hi) return 1;
        }
    }
    return 0;
}

uint32_t conf_case_groups(const conf_case *c) {
    uint32_t g = 0;
#define SET(cond, bit) \
    if (cond) g |= 1u << (bit)
    SET(c->causal, CONF_G_CAUSAL);
    SET(c->window, CONF_G_WINDOW);
    SET(c->softcap > 0.0f, CONF_G_SOFTCAP);
    SET(c->alibi != FA_ALIBI_NONE, CONF_G_ALIBI);
    SET(c->hq != c->hk, CONF_G_GQA);
    SET(c->nseq > 0, CONF_G_VARLEN);
    SET(c->page_size > 0, CONF_G_PAGED);
    SET(c->use_kvlen, CONF_G_KVLEN);
    SET(c->dropout > 0.0f, CONF_G_DROPOUT);
    SET(!c->no_lse, CONF_G_LSE);
    SET(has_masked_rows(c), CONF_G_MASKED_ROWS);
    SET(c->layout != CONF_LAYOUT_DENSE, CONF_G_STRIDES);
    SET(c->dv != c->dqk, CONF_G_DV);
    SET(c->num_splits > 1, CONF_G_SPLITS);
    SET(c->dtype == FA_DTYPE_F32, CONF_G_F32);
    SET(c->dtype == FA_DTYPE_F16, CONF_G_F16);
    SET(c->dtype == FA_DTYPE_BF16, CONF_G_BF16);
    SET(c->big, CONF_G_BIG);
    SET(c->kind == CONF_BWD, CONF_G_BACKWARD);
    SET(c->kind == CONF_BWD && c->det, CONF_G_DETERMINISTIC);
    SET(c->append > 0, CONF_G_APPEND);
    SET(c->rotary_dim > 0, CONF_G_ROTARY);
    {
        int max_q = 0, max_k = 0;
        for (int b = 0; b < conf_case_nseq(c); b++) {
            if (conf_case_seq_q(c, b) > max_q) max_q = conf_case_seq_q(c, b);
            if (conf_case_seq_k_capacity(c, b) > max_k) max_k = conf_case_seq_k_capacity(c, b);
        }
        /* decode: at most 16 query rows against a cache of at least 1024 keys */
        SET(c->kind == CONF_FWD && max_q <= 16 && max_k >= 1024, CONF_G_DECODE);
    }
    /* basic: plain dense attention with none of the optional features */
    SET(!c->causal && !c->window && c->softcap <= 0.0f && c->alibi == FA_ALIBI_NONE && c->nseq == 0 &&
            c->page_size == 0 && !c->use_kvlen && c->dropout <= 0.0f && c->layout == CONF_LAYOUT_DENSE &&
            c->kind == CONF_FWD,
        CONF_G_BASIC);
#undef SET
    return g;
}

static int fmt_list(char *buf, size_t size, const int *v, int n) {
    int len = 0;
    for (int i = 0; i < n && (size_t)len < size; i++)
        len += snprintf(buf + len, size - (size_t)len, "%s%d", i ? "," : "", v[i]);
    return len;
}

static void make_name(conf_case *c) {
    char varlen[96] = "-", paged[48] = "-", kvlen[64] = "-", scale[24] = "auto", win[32] = "-1/-1";
    if (c->nseq > 0) {
        int n = snprintf(varlen, sizeof varlen, "q[");
        n += fmt_list(varlen + n, sizeof varlen - (size_t)n, c->lens_q, c->nseq);
        n += snprintf(varlen + n, sizeof varlen - (size_t)n, "]k[");
        n += fmt_list(varlen + n, sizeof varlen - (size_t)n, c->lens_k, c->nseq);
        snprintf(varlen + n, sizeof varlen - (size_t)n, "]");
    }
    if (c->page_size > 0) snprintf(paged, sizeof paged, "ps%d%s", c->page_size, c->bt_pad ? "+btpad" : "");
    if (c->use_kvlen) {
        int n = snprintf(kvlen, sizeof kvlen, "[");
        n += fmt_list(kvlen + n, sizeof kvlen - (size_t)n, c->kvlen, conf_case_nseq(c));
        snprintf(kvlen + n, sizeof kvlen - (size_t)n, "]");
    }
    if (c->scale != 0.0f) snprintf(scale, sizeof scale, "%g", (double)c->scale);
    if (c->window) snprintf(win, sizeof win, "%d/%d", c->wl, c->wr);
    char shape[48];
    if (c->nseq > 0)
        snprintf(shape, sizeof shape, "varlen%d", c->nseq);
    else
        snprintf(shape, sizeof shape, "b%d sq%d sk%d", c->batch, c->sq, c->sk);
    static const char *const alibi[] = {"-", "head", "batch-head"};
    int n = snprintf(c->name, sizeof c->name,
                     "c%03d %s %s %s h%d/%d d%d/%d scale=%s causal=%d win=%s softcap=%g alibi=%s drop=%g lse=%d "
                     "varlen=%s paged=%s kvlen=%s layout=%s splits=%d",
                     c->index, c->kind == CONF_FWD ? "fwd" : "bwd", dtype_names[c->dtype], shape, c->hq, c->hk,
                     c->dqk, c->dv, scale, c->causal, win, (double)c->softcap, alibi[c->alibi], (double)c->dropout,
                     c->kind == CONF_BWD || !c->no_lse, varlen, paged, kvlen, layout_names[c->layout],
                     c->num_splits);
    if (c->append > 0 && n > 0 && (size_t)n < sizeof c->name)
        n += snprintf(c->name + n, sizeof c->name - (size_t)n, " append=%d", c->append);
    if (c->rotary_dim > 0 && n > 0 && (size_t)n < sizeof c->name)
        n += snprintf(c->name + n, sizeof c->name - (size_t)n, " rotary=%d%s", c->rotary_dim,
                      c->rotary_interleaved ? "/interleaved" : "/halves");
    if (c->det && n > 0 && (size_t)n < sizeof c->name)
        snprintf(c->name + n, sizeof c->name - (size_t)n, " deterministic");
}

void conf_cases_init(void) {
    static int done;
    if (done) return;
    for (int n = 0; n < conf_case_count(); n++) {
        conf_case *c = &cases[n];
        c->index = n;
        double flop = 0.0;
        /* forward: S = QK^T, O = PV; backward adds S again, dP = dO V^T, dV, dQ, dK */
        double per = c->kind == CONF_BWD ? 4.0 * c->dqk + 3.0 * c->dv : (double)(c->dqk + c->dv);
        for (int b = 0; b < conf_case_nseq(c); b++)
            flop += 2.0 * c->hq * (double)conf_case_seq_q(c, b) * conf_case_seq_k(c, b) * per;
        c->ref_gflop = flop * 1e-9;
        c->big = c->ref_gflop > 0.3;
        make_name(c);
    }
    done = 1;
}
