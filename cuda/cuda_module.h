/* Loading a compiled kernel image as a module of a device's primary context, and releasing it. */
#ifndef CUDA_MODULE_H
#define CUDA_MODULE_H

#include "cuda_backend.h"

/*
 * Makes img a module of the device's context (img is freed either way) and looks up the n kernels named, each
 * allowed the dynamic shared memory in smem[i] when above the 48 KiB default (smem may be NULL). On failure
 * nothing stays loaded and the error names `what`, `options` and the step that failed.
 */
fa_status cuda_module_open(cuda_ctx *c, int device, cuda_image *img, const char *what, const char *options,
                           CUmodule *module, int n, const char *const *names, CUfunction *fns, const int *smem);
/* Unloads a module opened by cuda_module_open (NULL: nothing). */
void cuda_module_close(cuda_ctx *c, int device, CUmodule module);
/* Appends where the image came from ("from the disk cache" / "compiled now in N ms") at buf + n; returns the new length. */
int cuda_describe_origin(char *buf, size_t size, int n, int from_cache, double compile_ms);

#endif
