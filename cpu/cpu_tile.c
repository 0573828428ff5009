/* Tile helpers shared by the CPU forward and backward (see cpu_tile.h). */
#include "cpu_tile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_convert.h"
#include "fa_philox.h"

cpu_mask cpu_mask_for(const fa_plan_info *p, int64_t sq, int64_t sk)
{
    cpu_mask m = {p->window_left, p->window_right, sk - sq, p->desc.softcap, 1.0f};
    return m;
}

void cpu_visible_keys(const cpu_mask *m, int64_t sk, int64_t i0, int64_t rows, int64_t *lo, int64_t *hi)
{
    int64_t a = 0, b = sk;
    if (m->window_left >= 0 && i0 + m->offset - m->window_left > a) a = i0 + m->offset - m->window_left;
    if (m->window_right >= 0 && i0 + rows - 1 + m->offset + m->window_right + 1 < b)
        b = i0 + rows - 1 + m->offset + m->window_right + 1;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

void cpu_visible_rows(const cpu_mask *m, int64_t sq, int64_t j0, int64_t cols, int64_t *lo, int64_t *hi)
{
    /* row i sees key j iff i + offset - wl <= j <= i + offset + wr */
    int64_t a = 0, b = sq;
    if (m->window_right >= 0 && j0 - m->offset - m->window_right > a) a = j0 - m->offset - m->window_right;
    if (m->window_left >= 0 && j0 + cols - 1 - m->offset + m->window_left + 1 < b)
        b = j0 + cols - 1 - m->offset + m->window_left + 1;
    if (b < a) b = a;
    *lo = a;
    *hi = b;
}

int cpu_tile_needs_mask(const cpu_mask *m, int64_t i0, int64_t rows, int64_t j0, int64_t cols)
{
    return (m->window_left >= 0 && j0 < i0 + rows - 1 + m->offset - m->window_left) ||
           (m->window_right >= 0 && j0 + cols - 1 > i0 + m->offset + m->window_right);
}

int64_t cpu_edge_step(const cpu_mask *m, int64_t i0, int64_t rows, int64_t j0, int64_t cols)
{
    return cpu_tile_needs_mask(m, i0, rows, j0, cols) ? CPU_EDGE_ROWS : rows;
}

int64_t cpu_keys_seen(const cpu_mask *m, int64_t sk, int64_t i0, int64_t rows, int64_t j0, int64_t cols)
{
    int64_t lo, hi;
    cpu_visible_keys(m, sk, i0, rows, &lo, &hi);
    if (j0 >= hi || j0 + cols <= lo) return 0;
    return hi - j0 < cols ? hi - j0 : cols;
}

void cpu_scores_epilogue(const cpu_mask *m, float *s, int64_t ld, int64_t width, const cpu_rows *rows, int64_t nc,
                         int64_t j0, int need_mask, float *tanh_out)
{
    const float cap = m->softcap * m->units; /* cap * tanh(s / cap) is the same in any units */
    for (int64_t r = 0; r < rows->n; r++) {
        float *srow = s + r * ld;
        int64_t diag = rows->pos[r] + m->offset; /* the key aligned with this query row */
        if (cap > 0.0f) {
            float *t = tanh_out ? tanh_out + r * ld : NULL;
            for (int64_t c = 0; c < nc; c++) {
                float th = tanhf(srow[c] / cap);
                if (t) t[c] = th;
                srow[c] = cap * th;
            }
        }
        float slope = rows->slope[r] * m->units;
        if (slope != 0.0f)
            for (int64_t c = 0; c < nc; c++) srow[c] -= slope * (float)llabs(diag - (j0 + c));
        for (int64_t c = nc; c < width; c++) srow[c] = -INFINITY;
        if (!need_mask) continue;
        for (int64_t c = 0; c < nc; c++) {
            int64_t j = j0 + c;
            if ((m->window_left >= 0 && j < diag - m->window_left) || (m->window_right >= 0 && j > diag + m->window_right))
                srow[c] = -INFINITY;
        }
    }
}

void cpu_dropout_apply(float *x, int64_t ld, const cpu_rows *rows, int64_t nc, uint64_t seed, uint64_t offset,
                       uint32_t threshold, int64_t b, int64_t j0, float keep_value)
{
    for (int64_t r = 0; r < rows->n; r++) {
        float *row = x + r * ld;
        fa_u32x4 draw = {0, 0, 0, 0};
        for (int64_t c = 0; c < nc; c++) {
            int64_t j = j0 + c;
            if (c == 0 || (j & 3) == 0)
                draw = fa_dropout_draw4(seed, offset, (uint32_t)b, (uint32_t)rows->head[r], (uint32_t)rows->pos[r],
                                        (uint32_t)(j >> 2));
            row[c] = fa_u32x4_get(draw, (int)(j & 3)) < threshold ? 0.0f : row[c] * keep_value;
        }
    }
}

void cpu_pack_q_rows(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t h, int64_t i0, int64_t n,
                     int64_t dim, float mul, float *dst, int64_t ld)
{
    for (int64_t r = 0; r < n; r++) {
        float *d = dst + r * ld;
        fa_load_row(cpu_elem_ptr(t, cpu_q_offset(l, t, b, i0 + r, h)), t->dtype, dim, mul, d);
        if (ld > dim) memset(d + dim, 0, sizeof(float) * (size_t)(ld - dim));
    }
}

/* Row r of a panel-stored matrix (see cpu_tile.h): dim values from src, zeros up to width. */
static void load_panel_row(const char *src, fa_dtype dtype, int64_t dim, int64_t width, float *row, int64_t stride)
{
    for (int64_t x0 = 0; x0 < width; x0 += CPU_SIMD_PAD) {
        float *d = row + x0 / CPU_SIMD_PAD * stride;
        int64_t take = dim - x0 < CPU_SIMD_PAD ? (dim > x0 ? dim - x0 : 0) : CPU_SIMD_PAD;
        if (take > 0) fa_load_row(src + x0 * fa_dtype_size(dtype), dtype, take, 1.0f, d);
        if (take < CPU_SIMD_PAD) memset(d + take, 0, sizeof(float) * (size_t)(CPU_SIMD_PAD - take));
    }
}

void cpu_pack_kv_rows(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t hk, int64_t j0, int64_t n,
                      int64_t dim, float *dst, int64_t width, int64_t panel_stride)
{
    for (int64_t r = 0; r < n; r++)
        load_panel_row(cpu_elem_ptr(t, cpu_kv_offset(l, t, b, j0 + r, hk)), t->dtype, dim, width,
                       dst + r * CPU_SIMD_PAD, panel_stride);
}

void cpu_pack_kv_cols(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t hk, int64_t j0, int64_t n,
                      int64_t dim, float *dst, int64_t width)
{
    /*
     * Transpose in blocks of 16 keys (inside one panel): each pass writes one 64-byte run per dimension and
     * reads 16 rows in order, instead of striding a whole tile's width per element.
     */
    enum { KEYS = 16 };
    const int64_t stride = dim * CPU_SIMD_PAD;
    float rows[KEYS][64];
    for (int64_t c0 = 0; c0 < n; c0 += KEYS) {
        int64_t kc = n - c0 < KEYS ? n - c0 : KEYS;
        const char *src[KEYS];
        float *panel = dst + c0 / CPU_SIMD_PAD * stride + c0 % CPU_SIMD_PAD;
        for (int64_t c = 0; c < kc; c++) src[c] = cpu_elem_ptr(t, cpu_kv_offset(l, t, b, j0 + c0 + c, hk));
        for (int64_t d0 = 0; d0 < dim; d0 += 64) {
            int64_t dc = dim - d0 < 64 ? dim - d0 : 64;
            for (int64_t c = 0; c < kc; c++)
                fa_load_row(src[c] + d0 * fa_dtype_size(t->dtype), t->dtype, dc, 1.0f, rows[c]);
            for (int64_t d = 0; d < dc; d++) {
                float *out = panel + (d0 + d) * CPU_SIMD_PAD;
                for (int64_t c = 0; c < kc; c++) out[c] = rows[c][d];
            }
        }
    }
    for (int64_t c = n; c < width; c++) {
        float *col = dst + c / CPU_SIMD_PAD * stride + c % CPU_SIMD_PAD;
        for (int64_t d = 0; d < dim; d++) col[d * CPU_SIMD_PAD] = 0.0f;
    }
}

void cpu_pack_kv_all_heads(const cpu_layout *l, const fa_tensor *k, const fa_tensor *v, int64_t b, int64_t heads,
                           int64_t j0, int64_t n, int64_t dim, int64_t dim_v, float *k_out, int64_t ld_k,
                           int64_t k_head, float *v_out, int64_t v_width, int64_t v_panel_stride, int64_t v_head)
{
    for (int64_t c = 0; c < n; c++)
        for (int64_t x = 0; x < heads; x++) {
            float *kr = k_out + x * k_head + c * ld_k;
            fa_load_row(cpu_elem_ptr(k, cpu_kv_offset(l, k, b, j0 + c, x)), k->dtype, dim, 1.0f, kr);
            if (ld_k > dim) memset(kr + dim, 0, sizeof(float) * (size_t)(ld_k - dim));
            load_panel_row(cpu_elem_ptr(v, cpu_kv_offset(l, v, b, j0 + c, x)), v->dtype, dim_v, v_width,
                           v_out + x * v_head + c * CPU_SIMD_PAD, v_panel_stride);
        }
}

void cpu_prefetch_kv(const cpu_layout *l, const fa_tensor *k, const fa_tensor *v, int64_t b, int64_t h0,
                     int64_t heads, int64_t j0, int64_t n, int64_t dim, int64_t dim_v)
{
    int64_t kbytes = dim * fa_dtype_size(k->dtype), vbytes = dim_v * fa_dtype_size(v->dtype);
    for (int64_t c = 0; c < n; c++)
        for (int64_t x = h0; x < h0 + heads; x++) {
            const char *kr = cpu_elem_ptr(k, cpu_kv_offset(l, k, b, j0 + c, x));
            const char *vr = cpu_elem_ptr(v, cpu_kv_offset(l, v, b, j0 + c, x));
            for (int64_t o = 0; o < kbytes; o += 64) __builtin_prefetch(kr + o, 0, 2);
            for (int64_t o = 0; o < vbytes; o += 64) __builtin_prefetch(vr + o, 0, 2);
        }
}

void cpu_prefetch_q_rows(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t h, int64_t i0, int64_t n,
                         int64_t dim, int for_write)
{
    int64_t bytes = dim * fa_dtype_size(t->dtype);
    for (int64_t r = 0; r < n; r++) {
        const char *row = cpu_elem_ptr(t, cpu_q_offset(l, t, b, i0 + r, h));
        for (int64_t o = 0; o < bytes; o += 64) {
            if (for_write)
                __builtin_prefetch(row + o, 1, 2);
            else
                __builtin_prefetch(row + o, 0, 2);
        }
    }
}

void cpu_store_q_rows(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t h, int64_t i0, int64_t n,
                      int64_t dim, float mul, const float *src, int64_t ld)
{
    for (int64_t r = 0; r < n; r++)
        fa_store_row((char *)t->data + cpu_q_offset(l, t, b, i0 + r, h) * fa_dtype_size(t->dtype), t->dtype, dim, mul,
                     src + r * ld);
}

void cpu_store_kv_rows(const cpu_layout *l, const fa_tensor *t, int64_t b, int64_t hk, int64_t j0, int64_t n,
                       int64_t dim, float mul, const float *src, int64_t ld)
{
    for (int64_t r = 0; r < n; r++)
        fa_store_row((char *)t->data + cpu_kv_offset(l, t, b, j0 + r, hk) * fa_dtype_size(t->dtype), t->dtype, dim, mul,
                     src + r * ld);
}
