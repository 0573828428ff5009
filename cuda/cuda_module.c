/* Kernel images to modules and back, the same way for every kernel file of the backend. */
#include "cuda_module.h"

#include <stdio.h>

fa_status cuda_module_open(cuda_ctx *c, int device, cuda_image *img, const char *what, const char *options,
                           CUmodule *module, int n, const char *const *names, CUfunction *fns, const int *smem)
{
    *module = NULL;
    fa_status st = cuda_ctx_push(c, device);
    if (st != FA_OK) {
        cuda_image_free(img);
        return st;
    }
    const char *step = "cuModuleLoadData";
    CUresult r = c->api.cuModuleLoadData(module, img->data);
    cuda_image_free(img);
    for (int i = 0; r == 0 && i < n; i++) {
        step = names[i];
        r = c->api.cuModuleGetFunction(&fns[i], *module, names[i]);
        if (r == 0 && smem && smem[i] > 48 * 1024)
            r = c->api.cuFuncSetAttribute(fns[i], CU_FUNC_ATTR_MAX_DYNAMIC_SHARED, smem[i]);
    }
    if (r != 0) {
        fa_set_error(FA_ERR_BACKEND, "cuda: loading %s (%s): %s: %s", what, options, step,
                     cuda_error_string(&c->api, r));
        if (*module) c->api.cuModuleUnload(*module);
        *module = NULL;
    }
    cuda_ctx_pop(c);
    return r == 0 ? FA_OK : FA_ERR_BACKEND;
}

void cuda_module_close(cuda_ctx *c, int device, CUmodule module)
{
    if (!module || cuda_ctx_push(c, device) != FA_OK) return;
    c->api.cuModuleUnload(module);
    cuda_ctx_pop(c);
}

int cuda_describe_origin(char *buf, size_t size, int n, int from_cache, double compile_ms)
{
    if (n < 0 || (size_t)n >= size) return n;
    int m = from_cache ? snprintf(buf + n, size - (size_t)n, "from the disk cache")
                       : snprintf(buf + n, size - (size_t)n, "compiled now in %.0f ms", compile_ms);
    return m < 0 ? n : n + m;
}
