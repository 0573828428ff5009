/*
 * Compiles the CUDA kernels' default specialisations with NVRTC for sm_80 and sm_90 on a machine without a
 * GPU (the SIMT backward bwd_f32.cu among them), so a kernel that does not compile fails CI, not a user's first
 * call; and the forward's fp16 Turing
 * form as compute_75 PTX. Then checks the disk cache:
 * the same specialisation a second time comes from the cache, byte for byte.
 * Exit 77 (skipped) when NVRTC cannot be loaded here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_jit.h"

extern const char fa_cuda_src_fwd_sm80[];
extern const char fa_cuda_src_bwd_sm80[];
extern const char fa_cuda_src_append_sm80[];
extern const char fa_cuda_src_fwd_f32[];
extern const char fa_cuda_src_bwd_f32[];

/* The forward's feature switches of one specialisation (kernels/fwd_sm80.cu): all on unless named here
   (FA_DROPOUT: off unless named). */
static const char *g_features = "";

/*
 * Appends the space-separated words of `words` (extra -D options) to opts[n..max), copying each into words_buf
 * (up to 8 words of under 40 characters); returns the new option count.
 */
static int add_words(const char *words, char words_buf[8][40], const char **opts, int n, int max)
{
    int used = 0;
    for (const char *w = words; *w && n < max && used < 8;) {
        size_t len = strcspn(w, " ");
        if (len > 0 && len < sizeof words_buf[0]) {
            memcpy(words_buf[used], w, len);
            words_buf[used][len] = 0;
            opts[n++] = words_buf[used++];
        }
        w += len + (w[len] == ' ');
    }
    return n;
}

static int compile_one(const cuda_api *api, const char *arch, int bf16, int dqk, int dv, int warps, int bkv, int mt,
                       cuda_image *img)
{
    char o[7][32];
    snprintf(o[0], sizeof o[0], "-arch=%s", arch);
    snprintf(o[1], sizeof o[1], "-DFA_BF16=%d", bf16);
    snprintf(o[2], sizeof o[2], "-DFA_DQK=%d", dqk);
    snprintf(o[3], sizeof o[3], "-DFA_DV=%d", dv);
    snprintf(o[4], sizeof o[4], "-DFA_WARPS=%d", warps);
    snprintf(o[5], sizeof o[5], "-DFA_BKV=%d", bkv);
    snprintf(o[6], sizeof o[6], "-DFA_MT=%d", mt);
    /* up to 8 extra defines, space-separated in g_features */
    char feat[8][40];
    const char *opts[16] = {o[0], o[1], o[2], o[3], o[4], o[5], o[6], "-std=c++17"};
    const int n = add_words(g_features, feat, opts, 8, 16);
    char why[8192];
    if (cuda_jit_get(api, fa_cuda_src_fwd_sm80, "fwd_sm80.cu", opts, n, 0, img, why, sizeof why) != 0) {
        fprintf(stderr, "FAIL %s bf16=%d d=%d/%d warps=%d bkv=%d %s: %s\n", arch, bf16, dqk, dv, warps, bkv, g_features,
                why);
        return 1;
    }
    if (img->size < 1024) {
        fprintf(stderr, "FAIL %s: a %zu-byte cubin is not a kernel\n", arch, img->size);
        return 1;
    }
    return 0;
}

/*
 * The forward's Turing form: fp16 specialisations compiled to PTX for compute_75 (what FLASHPORT_CUDA_ARCH=
 * compute_75 and sm_7x devices load; the driver JIT-compiles it). The PTX must target sm_75, use m16n8k8 mma
 * and none of cp.async, m16n8k16 or cvt to f16x2 (sm_80+). bf16 must not compile there.
 */
static int compile_ptx75(const cuda_api *api, int bf16, int dqk, int dv, int warps, int bkv, int mt, const char *feat)
{
    char o[7][32], f[8][40];
    snprintf(o[0], sizeof o[0], "-arch=compute_75");
    snprintf(o[1], sizeof o[1], "-DFA_BF16=%d", bf16);
    snprintf(o[2], sizeof o[2], "-DFA_DQK=%d", dqk);
    snprintf(o[3], sizeof o[3], "-DFA_DV=%d", dv);
    snprintf(o[4], sizeof o[4], "-DFA_WARPS=%d", warps);
    snprintf(o[5], sizeof o[5], "-DFA_BKV=%d", bkv);
    snprintf(o[6], sizeof o[6], "-DFA_MT=%d", mt);
    const char *opts[16] = {o[0], o[1], o[2], o[3], o[4], o[5], o[6], "-std=c++17"};
    const int n = add_words(feat, f, opts, 8, 16);
    char why[8192];
    cuda_image img;
    int rc = cuda_jit_get(api, fa_cuda_src_fwd_sm80, "fwd_sm80.cu", opts, n, 1, &img, why, sizeof why);
    if (bf16) {
        if (rc == 0) {
            fprintf(stderr, "FAIL compute_75 bf16 d=%d/%d: compiled, but Turing has no bf16 mma\n", dqk, dv);
            cuda_image_free(&img);
            return 1;
        }
        if (!strstr(why, "bf16 needs sm_80")) {
            fprintf(stderr, "FAIL compute_75 bf16: not the kernel's #error: %s\n", why);
            return 1;
        }
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "FAIL compute_75 d=%d/%d warps=%d bkv=%d mt=%d %s: %s\n", dqk, dv, warps, bkv, mt, feat, why);
        return 1;
    }
    const char *ptx = img.data;
    int bad = 0;
    if (img.size < 1024 || img.from_cache || ptx[img.size - 1] != 0) bad = 1; /* PTX text is NUL-terminated */
    if (!bad && !strstr(ptx, ".target sm_75")) bad = 2;
    if (!bad && !strstr(ptx, "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32")) bad = 3;
    if (!bad && (strstr(ptx, "m16n8k16") || strstr(ptx, "cp.async") || strstr(ptx, "f16x2.f32"))) bad = 4;
    if (bad)
        fprintf(stderr, "FAIL compute_75 d=%d/%d %s: %s\n", dqk, dv, feat,
                bad == 1 ? "not a fresh NUL-terminated PTX text"
                : bad == 2 ? "no .target sm_75"
                : bad == 3 ? "no mma.sync.aligned.m16n8k8"
                           : "an sm_80 instruction (m16n8k16, cp.async or cvt to f16x2)");
    cuda_image_free(&img);
    return bad != 0;
}

/*
 * The backward's kernels of one specialisation; atomic = 0 builds the deterministic dQ kernel instead of post.
 * Head dims over 128 split each 16 keys over a pair of warps (FA_DSPLIT 2, as cuda_bwd_dsplit), so block_kv is
 * 8 keys per warp there.
 */
static int compile_bwd(const cuda_api *api, const char *arch, int bf16, int dqk, int dv, int warps, int bq, int atomic,
                       int dropout, int varlen)
{
    const int split = dqk > 128 || dv > 128 ? 2 : 1;
    char o[11][32];
    snprintf(o[0], sizeof o[0], "-arch=%s", arch);
    snprintf(o[1], sizeof o[1], "-DFA_BF16=%d", bf16);
    snprintf(o[2], sizeof o[2], "-DFA_DQK=%d", dqk);
    snprintf(o[3], sizeof o[3], "-DFA_DV=%d", dv);
    snprintf(o[4], sizeof o[4], "-DFA_WARPS=%d", warps);
    snprintf(o[5], sizeof o[5], "-DFA_BKV=%d", 16 * warps / split);
    snprintf(o[6], sizeof o[6], "-DFA_BQ=%d", bq);
    snprintf(o[7], sizeof o[7], "-DFA_DQ_ATOMIC=%d", atomic);
    snprintf(o[8], sizeof o[8], "-DFA_DROPOUT=%d", dropout);
    snprintf(o[9], sizeof o[9], "-DFA_VARLEN=%d", varlen);
    snprintf(o[10], sizeof o[10], "-DFA_DSPLIT=%d", split);
    const char *opts[] = {o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7], o[8], o[9], o[10], "-std=c++17"};
    char why[8192];
    cuda_image img;
    if (cuda_jit_get(api, fa_cuda_src_bwd_sm80, "bwd_sm80.cu", opts, 12, 0, &img, why, sizeof why) != 0) {
        fprintf(stderr, "FAIL bwd %s bf16=%d d=%d/%d warps=%d bq=%d atomic=%d dropout=%d varlen=%d: %s\n", arch, bf16,
                dqk, dv, warps, bq, atomic, dropout, varlen, why);
        return 1;
    }
    int bad = img.size < 1024 || img.from_cache;
    if (bad) fprintf(stderr, "FAIL bwd %s: %zu-byte cubin, from_cache=%d with the cache off\n", arch, img.size, img.from_cache);
    cuda_image_free(&img);
    return bad;
}

/* The KV-cache append kernel (kernels/append_sm80.cu): one specialisation per dtype (FA_STORAGE 0 fp32, 1 fp16,
   2 bf16), as cuda_append.c passes it. */
static int compile_append(const cuda_api *api, const char *arch, int storage)
{
    char o[2][32];
    snprintf(o[0], sizeof o[0], "-arch=%s", arch);
    snprintf(o[1], sizeof o[1], "-DFA_STORAGE=%d", storage);
    const char *opts[] = {o[0], o[1], "-std=c++17"};
    char why[8192];
    cuda_image img;
    if (cuda_jit_get(api, fa_cuda_src_append_sm80, "append_sm80.cu", opts, 3, 0, &img, why, sizeof why) != 0) {
        fprintf(stderr, "FAIL append %s storage=%d: %s\n", arch, storage, why);
        return 1;
    }
    int bad = img.size < 1024 || img.from_cache;
    if (bad) fprintf(stderr, "FAIL append %s: %zu-byte cubin, from_cache=%d with the cache off\n", arch, img.size, img.from_cache);
    cuda_image_free(&img);
    return bad;
}

/* 1 if the n bytes at data hold the string s. */
static int holds(const void *data, size_t n, const char *s)
{
    const size_t k = strlen(s);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp((const char *)data + i, s, k) == 0) return 1;
    return 0;
}

/* The exact fp32 forward (kernels/fwd_f32.cu): head dims, tiles and feature switches of one specialisation. */
static int compile_f32(const cuda_api *api, const char *arch, int dqk, int dv, int bq, int bkv, const char *features)
{
    char o[5][32], feat[8][40];
    snprintf(o[0], sizeof o[0], "-arch=%s", arch);
    snprintf(o[1], sizeof o[1], "-DFA_DQK=%d", dqk);
    snprintf(o[2], sizeof o[2], "-DFA_DV=%d", dv);
    snprintf(o[3], sizeof o[3], "-DFA_BQ=%d", bq);
    snprintf(o[4], sizeof o[4], "-DFA_BKV=%d", bkv);
    const char *opts[14] = {o[0], o[1], o[2], o[3], o[4], "-std=c++17"};
    const int n = add_words(features, feat, opts, 6, 14);
    char why[8192];
    cuda_image img;
    if (cuda_jit_get(api, fa_cuda_src_fwd_f32, "fwd_f32.cu", opts, n, 0, &img, why, sizeof why) != 0) {
        fprintf(stderr, "FAIL f32 %s d=%d/%d bq=%d bkv=%d %s: %s\n", arch, dqk, dv, bq, bkv, features, why);
        return 1;
    }
    int bad = img.size < 1024 || img.from_cache;
    if (bad) fprintf(stderr, "FAIL f32 %s: %zu-byte cubin, from_cache=%d with the cache off\n", arch, img.size, img.from_cache);
    /* split plans launch the combine kernel of the same module */
    if (!bad && strstr(features, "FA_SPLIT=1") && !holds(img.data, img.size, "fa_combine_f32")) {
        fprintf(stderr, "FAIL f32 %s %s: no fa_combine_f32 in the cubin\n", arch, features);
        bad = 1;
    }
    cuda_image_free(&img);
    return bad;
}

/* The SIMT backward (kernels/bwd_f32.cu): storage, 16-bit tiles, head dims, tiles and feature switches. */
static int compile_bwd_f32(const cuda_api *api, const char *arch, int dqk, int dv, int bq, int bkv, int storage,
                           const char *features)
{
    char o[7][32], feat[8][40];
    snprintf(o[0], sizeof o[0], "-arch=%s", arch);
    snprintf(o[1], sizeof o[1], "-DFA_DQK=%d", dqk);
    snprintf(o[2], sizeof o[2], "-DFA_DV=%d", dv);
    snprintf(o[3], sizeof o[3], "-DFA_BQ=%d", bq);
    snprintf(o[4], sizeof o[4], "-DFA_BKV=%d", bkv);
    snprintf(o[5], sizeof o[5], "-DFA_STORAGE=%d", storage);
    snprintf(o[6], sizeof o[6], "-DFA_L16=%d", storage != 0 && (dqk > 128 || dv > 128)); /* as fa_gpu_bwd_l16 */
    const char *opts[16] = {o[0], o[1], o[2], o[3], o[4], o[5], o[6], "-std=c++17"};
    const int n = add_words(features, feat, opts, 8, 16);
    char why[8192];
    cuda_image img;
    if (cuda_jit_get(api, fa_cuda_src_bwd_f32, "bwd_f32.cu", opts, n, 0, &img, why, sizeof why) != 0) {
        fprintf(stderr, "FAIL bwd_f32 %s d=%d/%d bq=%d bkv=%d storage=%d %s: %s\n", arch, dqk, dv, bq, bkv, storage,
                features, why);
        return 1;
    }
    int bad = img.size < 1024 || img.from_cache;
    if (bad) fprintf(stderr, "FAIL bwd_f32 %s: %zu-byte cubin, from_cache=%d with the cache off\n", arch, img.size,
                     img.from_cache);
    cuda_image_free(&img);
    return bad;
}

int main(void)
{
    cuda_api api;
    char why[512];
    if (cuda_api_open(&api, 0, why, sizeof why) != 0) {
        printf("skipped: %s\n", why);
        return 77;
    }
    int fails = 0, done = 0;
    setenv("FLASHPORT_CACHE_DIR", "off", 1);
    const char *archs[] = {"sm_80", "sm_90"};
    static const int dims[][2] = {{64, 64}, {128, 128}, {256, 256}, {128, 64}};
    static const int tiles[][3] = {{4, 64, 1}, {8, 32, 1}, {4, 32, 2}}; /* warps, block_kv, m-tiles */
    for (int a = 0; a < 2; a++)
        for (int bf = 0; bf < 2; bf++)
            for (int d = 0; d < 4; d++) {
                int t = (d + bf) % 3; /* a spread of tiles without the full cross product */
                cuda_image img;
                fails += compile_one(&api, archs[a], bf, dims[d][0], dims[d][1], tiles[t][0], tiles[t][1], tiles[t][2],
                                     &img);
                if (!img.data) continue;
                if (img.from_cache) {
                    fprintf(stderr, "FAIL: the cache was off but %s came from it\n", archs[a]);
                    fails++;
                }
                cuda_image_free(&img);
                done++;
            }

    /* The forward's other forms: decode (packed, split), varlen, paged, features off, dropout */
    static const char *const forms[] = {
        "-DFA_PACK=1 -DFA_GROUP=4 -DFA_SPLIT=1 -DFA_LAZY=0 -DFA_STAGES=3",
        "-DFA_PACK=1 -DFA_GROUP=8 -DFA_SPLIT=1 -DFA_PAGED=1 -DFA_VARLEN=1 -DFA_LAZY=0",
        "-DFA_VARLEN=1 -DFA_SOFTCAP=0 -DFA_ALIBI=0",
        "-DFA_PAGED=1 -DFA_LOCAL=0 -DFA_LAZY=0",
        "-DFA_DROPOUT=1 -DFA_PACK=1 -DFA_GROUP=4 -DFA_SPLIT=1 -DFA_LAZY=0",
        "-DFA_DROPOUT=1 -DFA_LAZY=1",
    };
    for (int a = 0; a < 2; a++)
        for (size_t f = 0; f < sizeof forms / sizeof forms[0]; f++) {
            cuda_image img;
            g_features = forms[f];
            int mt = f < 2 || f == 4 ? 1 : 2, warps = f < 2 || f == 4 ? 2 : 4;
            fails += compile_one(&api, archs[a], (int)f & 1, 128, 128, warps, 64, mt, &img);
            if (img.data) cuda_image_free(&img), done++;
        }
    g_features = "";

    /*
     * The decode form with the keys of each tile split across the warps (FA_KSPLIT: 16 rows, every warp its share
     * of the keys, merged at the end): the planner's pick for GQA decode (16x64 over 4 warps, 3 stages, the L2
     * hint), with d256 (Q not held in registers there) and paged/varlen/split/dropout, and 64 keys a warp; at most 8
     * rows (FA_ROWS8: rows 8-15 without softmax) with and without masks.
     */
    static const struct {
        int dqk, warps, bkv;
        const char *feat;
    } kforms[] = {
        {128, 4, 64, "-DFA_PACK=1 -DFA_GROUP=4 -DFA_KSPLIT=1 -DFA_STAGES=3 -DFA_L2_PREFETCH=256 -DFA_LOCAL=0 -DFA_ROWS8=1"},
        {256, 4, 64, "-DFA_PACK=1 -DFA_GROUP=4 -DFA_KSPLIT=1 -DFA_STAGES=2 -DFA_L2_PREFETCH=256"},
        {128, 4, 128, "-DFA_PACK=1 -DFA_GROUP=8 -DFA_KSPLIT=1 -DFA_SPLIT=1 -DFA_PAGED=1 -DFA_VARLEN=1 -DFA_ROWS8=1"},
        {64, 2, 128, "-DFA_PACK=1 -DFA_GROUP=4 -DFA_KSPLIT=1 -DFA_SPLIT=1 -DFA_DROPOUT=1 -DFA_LAZY=1 -DFA_ROWS8=1"},
    };
    for (int a = 0; a < 2; a++)
        for (size_t f = 0; f < sizeof kforms / sizeof kforms[0]; f++) {
            cuda_image img;
            g_features = kforms[f].feat;
            fails += compile_one(&api, archs[a], (int)(f + a) & 1, kforms[f].dqk, kforms[f].dqk, kforms[f].warps,
                                 kforms[f].bkv, 1, &img);
            if (img.data) cuda_image_free(&img), done++;
        }
    g_features = "";

    /*
     * Head dims padded to multiples of 16 (FA_DQK/FA_DV) with the real ones below them: multiples of 8
     * (cp.async with zero-filled padding) and others (element-wise staging, 16-bit stores), dv != dqk, and the
     * decode form (the combine's real columns) and paged K/V on padded dims.
     */
    static const int rdims[][2] = {{8, 8}, {40, 72}, {104, 200}, {36, 36}, {100, 130}, {130, 36}, {36, 100}, {72, 40}};
    static const char *const rforms[] = {"", "", "", "", "", "-DFA_VARLEN=1", "-DFA_PACK=1 -DFA_GROUP=4 -DFA_SPLIT=1",
                                         "-DFA_PACK=1 -DFA_GROUP=8 -DFA_SPLIT=1 -DFA_PAGED=1 -DFA_VARLEN=1"};
    for (int i = 0; i < 8; i++) {
        static char feat[192];
        int qk = rdims[i][0], v = rdims[i][1], pack = i >= 6;
        snprintf(feat, sizeof feat, "-DFA_DQK_REAL=%d -DFA_DV_REAL=%d %s", qk, v, rforms[i]);
        g_features = feat;
        cuda_image img;
        fails += compile_one(&api, archs[i % 2], (i / 2) & 1, (qk + 15) / 16 * 16, (v + 15) / 16 * 16, pack ? 2 : 4,
                             64, pack ? 1 : 2 - (i & 1), &img);
        if (img.data) cuda_image_free(&img), done++;
    }
    g_features = "";

    /* The forward's compute_75 PTX (fp16): dense, decode (packed, split, dropout), padded dims, varlen/paged */
    static const struct {
        int dqk, dv, warps, bkv, mt;
        const char *feat;
    } p75[] = {
        {64, 64, 4, 64, 1, ""},
        {128, 128, 4, 64, 2, ""},
        {256, 256, 4, 32, 1, "-DFA_SOFTCAP=0 -DFA_ALIBI=0"},
        {128, 64, 8, 32, 1, "-DFA_DROPOUT=1 -DFA_LAZY=0"},
        {128, 128, 2, 64, 1, "-DFA_PACK=1 -DFA_GROUP=4 -DFA_SPLIT=1 -DFA_LAZY=0 -DFA_STAGES=3 -DFA_DROPOUT=1"},
        {128, 128, 2, 64, 1, "-DFA_PACK=1 -DFA_GROUP=8 -DFA_SPLIT=1 -DFA_PAGED=1 -DFA_VARLEN=1"},
        {128, 128, 4, 64, 1, "-DFA_PACK=1 -DFA_GROUP=4 -DFA_KSPLIT=1 -DFA_STAGES=3 -DFA_ROWS8=1"},
        {48, 112, 4, 64, 2, "-DFA_DQK_REAL=36 -DFA_DV_REAL=100 -DFA_VARLEN=1"},
        {48, 80, 4, 64, 1, "-DFA_DQK_REAL=40 -DFA_DV_REAL=72 -DFA_PAGED=1 -DFA_LOCAL=0"},
    };
    int n75 = (int)(sizeof p75 / sizeof *p75);
    for (int i = 0; i < n75; i++)
        fails += compile_ptx75(&api, 0, p75[i].dqk, p75[i].dv, p75[i].warps, p75[i].bkv, p75[i].mt, p75[i].feat);
    fails += compile_ptx75(&api, 1, 128, 128, 4, 64, 1, ""); /* must fail: no bf16 on Turing */
    printf("%d compute_75 PTX specialisations compiled (fp16), bf16 refused\n", n75);

    /* The backward: both dQ modes, fp16 and bf16, dv != dqk, d 64/96/128, each tile shape */
    static const int bdims[][2] = {{64, 64}, {128, 128}, {128, 64}, {96, 96}};
    static const int btiles[][2] = {{4, 64}, {8, 64}, {4, 32}, {4, 128}}; /* warps, block_q */
    int bdone = 0;
    for (int a = 0; a < 2; a++)
        for (int bf = 0; bf < 2; bf++)
            for (int d = 0; d < 4; d++) {
                int t = (d + bf + a) % 4, atomic = (d + a) % 2;
                if (btiles[t][1] == 128 && bdims[d][0] > 64) t = 0; /* block_q 128 only fits registers at d64 */
                fails += compile_bwd(&api, archs[a], bf, bdims[d][0], bdims[d][1], btiles[t][0], btiles[t][1], atomic,
                                     0, 0);
                bdone++;
            }
    /* with dropout: both dQ modes, each dtype */
    for (int a = 0; a < 2; a++)
        for (int bf = 0; bf < 2; bf++)
            for (int atomic = 0; atomic < 2; atomic++) {
                fails += compile_bwd(&api, archs[a], bf, 128, 128, 4, 64, atomic, 1, 0);
                bdone++;
            }
    /* varlen (cu_seqlens, seqused_k): both dQ modes on each arch, one of them with dropout */
    for (int a = 0; a < 2; a++)
        for (int atomic = 0; atomic < 2; atomic++) {
            fails += compile_bwd(&api, archs[a], (a + atomic) % 2, atomic ? 128 : 64, atomic ? 128 : 64, atomic ? 4 : 8,
                                 64, atomic, a == atomic, 1);
            bdone++;
        }
    /*
     * Head dims over 128 (pairs of warps, FA_DSPLIT 2): d160/d192/d256 in fp16 and bf16, both dQ modes, with the
     * mask features on (the defaults: causal/window, softcap, ALiBi); an odd count of 16-column pairs (d176),
     * dv != dqk across the split, the 4-warp 32-key tile (sm_86/89), dropout and varlen.
     */
    static const int bwide[][4] = {{160, 160, 8, 64}, {192, 192, 8, 64}, {256, 256, 8, 64}, {256, 256, 8, 32},
                                   {176, 176, 8, 64}, {256, 128, 8, 64}, {64, 192, 4, 32}, {240, 240, 4, 32}};
    for (int a = 0; a < 2; a++)
        for (int bf = 0; bf < 2; bf++)
            for (int atomic = 0; atomic < 2; atomic++) {
                for (int d = 0; d < 3; d++) { /* d160, d192, d256: each dtype and mode (sm_80: two of them) */
                    if (a == 0 && bf == atomic) continue;
                    fails += compile_bwd(&api, archs[a], bf, bwide[d][0], bwide[d][1], bwide[d][2], bwide[d][3],
                                         atomic, 0, 0);
                    bdone++;
                }
                int d = 3 + (2 * a + bf + atomic) % 5; /* one of the others, turn about */
                fails += compile_bwd(&api, archs[a], bf, bwide[d][0], bwide[d][1], bwide[d][2], bwide[d][3], atomic,
                                     (a + bf) % 2, (bf + atomic) % 2);
                bdone++;
            }
    printf("%d backward specialisations compiled\n", bdone);
    for (int a = 0; a < 2; a++)
        for (int st = 0; st < 3; st++) fails += compile_append(&api, archs[a], st);
    printf("6 append specialisations compiled\n");

    /* The fp32 SIMT forward: dims 1-256 (not multiples of 4 too), dv != dqk, each tile, each feature form */
    static const struct {
        int dqk, dv, bq, bkv;
        const char *feat;
    } f32s[] = {
        {64, 64, 64, 32, ""},
        {128, 128, 64, 64, "-DFA_SOFTCAP=0 -DFA_ALIBI=0 -DFA_LOCAL=0"},
        {256, 256, 32, 16, "-DFA_VARLEN=1"},
        {256, 256, 64, 32, "-DFA_VARLEN=1 -DFA_PAGED=1"},
        {36, 100, 32, 32, ""},
        {1, 7, 64, 16, "-DFA_PAGED=1 -DFA_LOCAL=0"},
        {130, 72, 64, 64, "-DFA_VARLEN=1"},
        /* dropout (Philox mask), split-KV (+ combine), both, with varlen/paged as the decode plans have them */
        {64, 64, 64, 32, "-DFA_DROPOUT=1"},
        {128, 128, 32, 16, "-DFA_SPLIT=1"},
        {100, 36, 32, 64, "-DFA_SPLIT=1 -DFA_VARLEN=1 -DFA_DROPOUT=1"},
        {256, 256, 32, 16, "-DFA_SPLIT=1 -DFA_PAGED=1 -DFA_LOCAL=0"},
    };
    int fdone = 0;
    for (int a = 0; a < 2; a++)
        for (size_t i = 0; i < sizeof f32s / sizeof f32s[0]; i++) {
            if ((i + a) % 2 && i > 1 && i < 7) continue; /* a spread over both archs without the full product */
            fails += compile_f32(&api, archs[a], f32s[i].dqk, f32s[i].dv, f32s[i].bq, f32s[i].bkv, f32s[i].feat);
            fdone++;
        }
    printf("%d fp32 forward specialisations compiled\n", fdone);

    /* The SIMT backward: each storage, dims 1-256 (odd ones, dv != dqk), each tile size, each feature form */
    static const struct {
        int dqk, dv, bq, bkv, storage;
        const char *feat;
    } b32s[] = {
        {64, 64, 64, 64, 0, "-DFA_DROPOUT=1"},
        {128, 128, 64, 64, 0, "-DFA_VARLEN=1 -DFA_DROPOUT=1"},
        {128, 128, 32, 32, 1, "-DFA_SOFTCAP=0 -DFA_ALIBI=0 -DFA_LOCAL=0"},
        {256, 256, 16, 16, 0, "-DFA_VARLEN=1"},
        {256, 256, 32, 32, 2, "-DFA_DROPOUT=1"},
        {200, 72, 64, 16, 1, "-DFA_VARLEN=1 -DFA_LOCAL=0"},
        {36, 100, 32, 16, 2, ""},
        {1, 7, 16, 64, 0, "-DFA_ALIBI=0"},
    };
    int bfdone = 0;
    for (int a = 0; a < 2; a++)
        for (size_t i = 0; i < sizeof b32s / sizeof b32s[0]; i++) {
            fails += compile_bwd_f32(&api, archs[a], b32s[i].dqk, b32s[i].dv, b32s[i].bq, b32s[i].bkv, b32s[i].storage,
                                     b32s[i].feat);
            bfdone++;
        }
    printf("%d SIMT backward specialisations compiled\n", bfdone);

    /* The cache: a fresh folder; first call compiles and stores, second reads the same bytes. */
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    int len = snprintf(dir, sizeof dir, "%s/flashport-jit-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (len < 0 || (size_t)len >= sizeof dir) { /* a cut template would lose its XXXXXX */
        fprintf(stderr, "FAIL: TMPDIR is longer than %zu bytes\n", sizeof dir - 32);
        return 1;
    }
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("FLASHPORT_CACHE_DIR", dir, 1);
    cuda_image first, second;
    fails += compile_one(&api, "sm_90", 1, 128, 128, 4, 64, 1, &first);
    fails += compile_one(&api, "sm_90", 1, 128, 128, 4, 64, 1, &second);
    if (first.data && second.data) {
        if (first.from_cache || !second.from_cache || first.size != second.size ||
            memcmp(first.data, second.data, first.size) != 0) {
            fprintf(stderr, "FAIL: cache: first from_cache=%d, second from_cache=%d, sizes %zu/%zu\n", first.from_cache,
                    second.from_cache, first.size, second.size);
            fails++;
        } else {
            printf("cache: compiled in %.0f ms, then read back from %s (%zu bytes)\n", first.compile_ms, dir,
                   second.size);
        }
    }
    cuda_image_free(&first);
    cuda_image_free(&second);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    cuda_api_close(&api);
    printf("%d specialisations compiled for sm_80 and sm_90, %d failure(s)\n", done, fails);
    return fails ? 1 : 0;
}
