/*
 * Device memory as addresses (see cl_backend.h). Each allocation reserves as much host address space as the
 * buffer has bytes, inaccessible and never backed (PROT_NONE, MAP_NORESERVE): the addresses are unique in the
 * process, a host access faults as one to CUDA device memory would, and a table maps them back to the cl_mem.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cl_backend.h"

typedef struct allocation {
    char *base;
    int64_t bytes;
    size_t reserved; /* bytes of address space (bytes rounded up to whole pages) */
    cl_mem mem;
    int device;
} allocation;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static allocation *table;
static int table_len, table_cap;

void *cl_mem_alloc(cl_ctx *c, int device, int64_t bytes)
{
    if (cl_device_open(c, device) != FA_OK) return NULL;
    cl_int err = CL_SUCCESS;
    cl_mem mem = clCreateBuffer(c->dev[device].ctx, CL_MEM_READ_WRITE, (size_t)bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        fa_set_error(FA_ERR_OUT_OF_MEMORY, "opencl: clCreateBuffer of %lld bytes on %s: %s", (long long)bytes,
                     c->dev[device].props.name, cl_error_name(err));
        return NULL;
    }
    size_t page = 4096, reserved = ((size_t)bytes + page - 1) / page * page;
    void *base = mmap(NULL, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) {
        clReleaseMemObject(mem);
        fa_set_error(FA_ERR_OUT_OF_MEMORY, "opencl: no address space for a buffer of %lld bytes", (long long)bytes);
        return NULL;
    }
    pthread_mutex_lock(&table_lock);
    if (table_len == table_cap) {
        int cap = table_cap ? 2 * table_cap : 64;
        allocation *t = realloc(table, (size_t)cap * sizeof *t);
        if (!t) {
            pthread_mutex_unlock(&table_lock);
            munmap(base, reserved);
            clReleaseMemObject(mem);
            fa_set_error(FA_ERR_OUT_OF_MEMORY, "opencl: no memory for the allocation table");
            return NULL;
        }
        table = t, table_cap = cap;
    }
    table[table_len++] = (allocation){base, bytes, reserved, mem, device};
    pthread_mutex_unlock(&table_lock);
    return base;
}

void cl_mem_free(cl_ctx *c, int device, void *ptr)
{
    (void)c;
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < table_len; i++)
        if (table[i].base == ptr && table[i].device == device) {
            allocation a = table[i];
            table[i] = table[--table_len];
            pthread_mutex_unlock(&table_lock);
            clReleaseMemObject(a.mem);
            munmap(a.base, a.reserved);
            return;
        }
    pthread_mutex_unlock(&table_lock);
    fa_set_error(FA_ERR_INVALID_ARGUMENT, "ptr=%p is not an allocation of OpenCL device memory (fa_device_alloc)", ptr);
}

int cl_mem_lookup(int device, const void *ptr, int64_t bytes, cl_mem *mem, size_t *offset)
{
    const char *p = ptr;
    int found = -1;
    pthread_mutex_lock(&table_lock);
    for (int i = 0; i < table_len && found < 0; i++) {
        const allocation *a = &table[i];
        if (a->device == device && p >= a->base && p < a->base + a->bytes && bytes >= 0 &&
            bytes <= a->bytes - (p - a->base)) {
            *mem = a->mem;
            *offset = (size_t)(p - a->base);
            found = 0;
        }
    }
    pthread_mutex_unlock(&table_lock);
    return found;
}

fa_status cl_mem_copy(cl_ctx *c, int device, void *dst, const void *src, int64_t bytes, fa_copy_kind kind,
                      void *stream)
{
    cl_command_queue q = NULL;
    fa_status st = cl_queue_of(c, device, stream, &q);
    if (st != FA_OK) return st;
    const int to_device = kind == FA_COPY_HOST_TO_DEVICE || kind == FA_COPY_DEVICE_TO_DEVICE;
    const int from_device = kind == FA_COPY_DEVICE_TO_HOST || kind == FA_COPY_DEVICE_TO_DEVICE;
    cl_mem dm = NULL, sm = NULL;
    size_t doff = 0, soff = 0;
    if (to_device && cl_mem_lookup(device, dst, bytes, &dm, &doff) != 0)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "dst=%p (%lld bytes) is not inside one fa_device_alloc buffer of "
                            "OpenCL device %s", dst, (long long)bytes, c->dev[device].props.name);
    if (from_device && cl_mem_lookup(device, src, bytes, &sm, &soff) != 0)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "src=%p (%lld bytes) is not inside one fa_device_alloc buffer of "
                            "OpenCL device %s", src, (long long)bytes, c->dev[device].props.name);
    const cl_bool block = stream == NULL; /* with NULL the copy has completed on return (fa_device_copy) */
    cl_int err;
    if (kind == FA_COPY_HOST_TO_DEVICE) err = clEnqueueWriteBuffer(q, dm, block, doff, (size_t)bytes, src, 0, NULL, NULL);
    else if (kind == FA_COPY_DEVICE_TO_HOST) err = clEnqueueReadBuffer(q, sm, block, soff, (size_t)bytes, dst, 0, NULL, NULL);
    else {
        err = clEnqueueCopyBuffer(q, sm, dm, soff, doff, (size_t)bytes, 0, NULL, NULL);
        if (err == CL_SUCCESS && block) err = clFinish(q);
    }
    if (err != CL_SUCCESS) return fa_set_error(FA_ERR_BACKEND, "opencl: copy of %lld bytes: %s", (long long)bytes, cl_error_name(err));
    return FA_OK;
}

fa_status cl_bind(int device, const char *what, const void *ptr, int64_t bytes, int64_t elem, cl_mem *mem,
                  int64_t *off)
{
    size_t byte_off = 0;
    if (cl_mem_lookup(device, ptr, bytes, mem, &byte_off) != 0)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "%s=%p (%lld bytes) is not inside one fa_device_alloc buffer of "
                            "this OpenCL device", what, ptr, (long long)bytes);
    if (byte_off % (size_t)elem)
        return fa_set_error(FA_ERR_INVALID_ARGUMENT, "%s=%p is not aligned to its %lld-byte elements", what, ptr,
                            (long long)elem);
    *off = (int64_t)(byte_off / (size_t)elem);
    return FA_OK;
}

/* Bytes a tensor spans from its data pointer: the last element's offset + 1, times the element size. */
static int64_t extent_bytes(const fa_tensor *t)
{
    int64_t last = 0;
    for (int i = 0; i < t->rank; i++) {
        if (t->shape[i] == 0) return 0;
        last += (t->shape[i] - 1) * t->stride[i];
    }
    return (last + 1) * (int64_t)fa_dtype_size(t->dtype);
}

fa_status cl_bind_tensor(int device, const char *what, const fa_tensor *t, cl_mem *mem, int64_t *off)
{
    const int64_t bytes = extent_bytes(t);
    if (bytes == 0) return FA_OK;
    return cl_bind(device, what, t->data, bytes, (int64_t)fa_dtype_size(t->dtype), mem, off);
}
