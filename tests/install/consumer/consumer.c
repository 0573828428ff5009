/* A program outside the tree, built against the installed flashport. */
#include <flashport.h>
#include <stdio.h>
#include <stdlib.h>

int main(void)
{
    enum { S = 16, D = 32 };
    float q[S * D], k[S * D], v[S * D], o[S * D];
    for (int i = 0; i < S * D; i++) q[i] = k[i] = v[i] = (float)(i % 7) * 0.1f;
    fa_attn_desc d;
    fa_attn_desc_init(&d);
    d.dtype = FA_DTYPE_F32;
    d.seqlen_q = d.seqlen_k = S;
    d.head_dim_qk = d.head_dim_v = D;
    fa_plan *plan;
    if (fa_plan_create(&plan, 0, &d) != FA_OK) return fprintf(stderr, "%s\n", fa_last_error()), 1;
    fa_fwd_args a = {0};
    a.q = fa_tensor_4d(q, FA_DTYPE_F32, 1, S, 1, D);
    a.k = fa_tensor_4d(k, FA_DTYPE_F32, 1, S, 1, D);
    a.v = fa_tensor_4d(v, FA_DTYPE_F32, 1, S, 1, D);
    a.out = fa_tensor_4d(o, FA_DTYPE_F32, 1, S, 1, D);
    fa_status st = fa_fwd(plan, &a, NULL);
    fa_plan_destroy(plan);
    if (st != FA_OK) return fprintf(stderr, "%s\n", fa_last_error()), 1;
    printf("consumer: flashport %s, %d device(s), out[0]=%g\n", fa_version_string(), fa_device_count(), o[0]);
    return 0;
}
