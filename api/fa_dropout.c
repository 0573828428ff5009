/* The public face of the shared dropout mask (fa_philox.h). */
#include "fa_philox.h"
#include "flashport.h"

int fa_dropout_keep(uint64_t seed, uint64_t offset, int64_t batch, int64_t head, int64_t row, int64_t col,
                    float dropout_p)
{
    if (!(dropout_p > 0.0f)) return 1;
    fa_u32x4 r = fa_dropout_draw4(seed, offset, (uint32_t)batch, (uint32_t)head, (uint32_t)row,
                                  (uint32_t)(col >> 2));
    return fa_u32x4_get(r, (int)(col & 3)) >= fa_dropout_threshold(dropout_p);
}
