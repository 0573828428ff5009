/*
 * flashport-opencl-peak: the fp32 FMA peak of every OpenCL device (the ceiling the OpenCL backend's forward is
 * measured against, issue 5), and with cl_khr_fp16 the half2 rate. Each work-item runs 16 independent FMA chains
 * (enough to cover the FMA latency on every GPU) for a fixed number of steps; the kernel is timed with profiling
 * events, best of 5 launches after a warm-up, and writes its sums so that nothing is optimised away.
 *
 *   flashport-opencl-peak [--device N]   (N: index over every platform's devices, as the backend counts them)
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *src =
    "#define CHAINS 16\n"
    "#define STEPS 1024\n"
    "__kernel void fma_f32(__global float *out, float a, float b) {\n"
    "    float x[CHAINS];\n"
    "    for (int i = 0; i < CHAINS; i++) x[i] = (float)(get_global_id(0) + i) * 1e-7f;\n"
    "    for (int s = 0; s < STEPS; s++)\n"
    "        for (int i = 0; i < CHAINS; i++) x[i] = fma(x[i], a, b);\n"
    "    float t = 0.0f;\n"
    "    for (int i = 0; i < CHAINS; i++) t += x[i];\n"
    "    out[get_global_id(0)] = t;\n"
    "}\n"
    "#ifdef HAVE_HALF\n"
    "#pragma OPENCL EXTENSION cl_khr_fp16 : enable\n"
    "__kernel void fma_f16(__global float *out, float a, float b) {\n"
    "    half2 x[CHAINS], ha = (half2)((half)a), hb = (half2)((half)b);\n"
    "    for (int i = 0; i < CHAINS; i++) x[i] = (half2)((half)(i * 1e-3f));\n"
    "    for (int s = 0; s < STEPS; s++)\n"
    "        for (int i = 0; i < CHAINS; i++) x[i] = fma(x[i], ha, hb);\n"
    "    float t = 0.0f;\n"
    "    for (int i = 0; i < CHAINS; i++) t += (float)x[i].x + (float)x[i].y;\n"
    "    out[get_global_id(0)] = t;\n"
    "}\n"
    "#endif\n";

/* FLOPs per work-item: 2 per FMA (4 per half2 FMA). Returns TFLOP/s, or a negative number on failure. */
static double run(cl_context ctx, cl_command_queue q, cl_program prog, const char *name, size_t items, double flops)
{
    cl_int err;
    cl_kernel k = clCreateKernel(prog, name, &err);
    if (err != CL_SUCCESS) return -1;
    cl_mem out = clCreateBuffer(ctx, CL_MEM_WRITE_ONLY, items * sizeof(float), NULL, &err);
    if (err != CL_SUCCESS) {
        clReleaseKernel(k);
        return -1;
    }
    float a = 0.999f, b = 1e-6f;
    clSetKernelArg(k, 0, sizeof out, &out);
    clSetKernelArg(k, 1, sizeof a, &a);
    clSetKernelArg(k, 2, sizeof b, &b);
    double best = 1e30;
    for (int r = 0; r < 6; r++) {
        cl_event ev;
        size_t local = 256;
        err = clEnqueueNDRangeKernel(q, k, 1, NULL, &items, &local, 0, NULL, &ev);
        if (err != CL_SUCCESS) break;
        clWaitForEvents(1, &ev);
        cl_ulong t0 = 0, t1 = 0;
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
        clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
        clReleaseEvent(ev);
        double s = (double)(t1 - t0) * 1e-9;
        if (r > 0 && s > 0 && s < best) best = s; /* launch 0 warms up */
    }
    clReleaseMemObject(out);
    clReleaseKernel(k);
    return err != CL_SUCCESS ? -1 : flops * (double)items / best * 1e-12;
}

int main(int argc, char **argv)
{
    int want = argc > 2 && !strcmp(argv[1], "--device") ? atoi(argv[2]) : -1;
    cl_platform_id plats[8];
    cl_uint np = 0;
    if (clGetPlatformIDs(8, plats, &np) != CL_SUCCESS || np == 0) {
        printf("no OpenCL platform\n");
        return 77;
    }
    int index = 0;
    for (cl_uint p = 0; p < np && p < 8; p++) {
        cl_device_id ids[16];
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 16, ids, &nd) != CL_SUCCESS) continue;
        for (cl_uint d = 0; d < nd && d < 16; d++, index++) {
            if (want >= 0 && index != want) continue;
            char name[256] = "", ext[8192] = "";
            cl_uint cus = 0;
            clGetDeviceInfo(ids[d], CL_DEVICE_NAME, sizeof name, name, NULL);
            clGetDeviceInfo(ids[d], CL_DEVICE_EXTENSIONS, sizeof ext, ext, NULL);
            clGetDeviceInfo(ids[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cus, &cus, NULL);
            name[sizeof name - 1] = ext[sizeof ext - 1] = 0;
            const int half = strstr(ext, "cl_khr_fp16") != NULL;
            cl_int err;
            cl_context ctx = clCreateContext(NULL, 1, &ids[d], NULL, NULL, &err);
            if (err != CL_SUCCESS) continue;
            cl_command_queue q = clCreateCommandQueue(ctx, ids[d], CL_QUEUE_PROFILING_ENABLE, &err);
            cl_program prog = clCreateProgramWithSource(ctx, 1, &src, NULL, &err);
            err = clBuildProgram(prog, 1, &ids[d], half ? "-DHAVE_HALF" : "", NULL, NULL);
            if (err != CL_SUCCESS) {
                printf("device %d (%s): build failed (%d)\n", index, name, (int)err);
            } else {
                /* enough work-items to fill every compute unit many times over */
                size_t items = (size_t)(cus ? cus : 1) * 2048 * 8;
                double f32 = run(ctx, q, prog, "fma_f32", items, 2.0 * 16 * 1024);
                double f16 = half ? run(ctx, q, prog, "fma_f16", items, 4.0 * 16 * 1024) : -1;
                printf("device %d (%s, %u compute units): fp32 FMA peak %.2f TFLOP/s", index, name, cus, f32);
                if (half) printf(", fp16x2 %.2f TFLOP/s", f16);
                printf("\n");
            }
            clReleaseProgram(prog);
            clReleaseCommandQueue(q);
            clReleaseContext(ctx);
        }
    }
    return 0;
}
