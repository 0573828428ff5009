/*
 * The backend registry. The CPU backend is built in and is always device 0; GPU backends are shared
 * libraries (libflashport_cuda.so, ...) opened at run time from the directory libflashport itself was loaded
 * from, then from FLASHPORT_PLUGIN_DIR. A missing plugin or vendor runtime means a missing backend, never a
 * failed load; FLASHPORT_LOG=1 says why each one is absent.
 */
#include "fa_internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BACKENDS 8
#define MAX_DEVICES 64

static fa_backend backends[MAX_BACKENDS];
static int n_backends;
static fa_device_entry devices[MAX_DEVICES];
static int n_devices;
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;

/* hipnv (the HIP backend built for NVIDIA, hip/) last: it registers devices only under FLASHPORT_HIP_NVIDIA=1 and
   must not move the other backends' device numbers when it does */
static const char *const plugin_names[] = {"cuda", "hip", "opencl", "hipnv"};

static void add_devices(const fa_backend *b)
{
    int count = b->iface->device_count(b->ctx);
    for (int i = 0; i < count && n_devices < MAX_DEVICES; i++) {
        fa_device_entry *e = &devices[n_devices];
        memset(e, 0, sizeof *e);
        if (b->iface->device_props(b->ctx, i, &e->props) != FA_OK) {
            fa_log("%s backend: device %d skipped: %s", b->iface->name, i, fa_last_error());
            continue;
        }
        e->backend = b;
        e->backend_device = i;
        e->props.backend = b->iface->kind;
        e->props.index_in_backend = i;
        fa_log("device %d: %s %s (%s)", n_devices, b->iface->name, e->props.name, e->props.arch);
        n_devices++;
    }
}

static void register_backend(const fa_backend_iface *iface, void *ctx)
{
    if (n_backends >= MAX_BACKENDS) return;
    backends[n_backends].iface = iface;
    backends[n_backends].ctx = ctx;
    add_devices(&backends[n_backends]);
    n_backends++;
}

/* Opens one plugin by path. Every failure is logged and leaves the registry as it was. */
static int try_plugin(const char *path, const char *label)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fa_log("%s backend absent: %s", label, dlerror());
        return 0;
    }
    fa_backend_plugin_init_fn init = (fa_backend_plugin_init_fn)dlsym(lib, FA_BACKEND_PLUGIN_ENTRY);
    if (!init) {
        fa_log("%s backend absent: %s has no %s", label, path, FA_BACKEND_PLUGIN_ENTRY);
        dlclose(lib);
        return 0;
    }
    const fa_backend_iface *iface = NULL;
    void *ctx = NULL;
    char why[512] = "";
    fa_status st = init(FA_BACKEND_ABI_VERSION, &iface, &ctx, why, sizeof why);
    if (st != FA_OK || !iface) {
        fa_log("%s backend absent: %s", label, why[0] ? why : fa_status_string(st));
        dlclose(lib);
        return 0;
    }
    if (iface->abi_version != FA_BACKEND_ABI_VERSION) {
        fa_log("%s backend refused: built for backend ABI %u, this flashport speaks %u", label,
               iface->abi_version, FA_BACKEND_ABI_VERSION);
        if (iface->shutdown) iface->shutdown(ctx);
        dlclose(lib);
        return 0;
    }
    fa_log("%s backend loaded from %s", label, path);
    register_backend(iface, ctx); /* the library stays open for the life of the process */
    return 1;
}

/* Directory holding libflashport itself, found through one of our own symbols. */
static int own_directory(char *dir, size_t size)
{
    Dl_info info;
    if (!dladdr((void *)&fa_device_count, &info) || !info.dli_fname) return 0;
    snprintf(dir, size, "%s", info.dli_fname);
    char *slash = strrchr(dir, '/');
    if (!slash) return 0;
    *slash = 0;
    return 1;
}

static void load_plugins(void)
{
    char own[4096] = "";
    int have_own = own_directory(own, sizeof own);
    const char *env_dir = getenv("FLASHPORT_PLUGIN_DIR");
    for (size_t i = 0; i < sizeof plugin_names / sizeof plugin_names[0]; i++) {
        char path[4200];
        int loaded = 0;
        if (env_dir && env_dir[0]) {
            snprintf(path, sizeof path, "%s/libflashport_%s.so", env_dir, plugin_names[i]);
            loaded = try_plugin(path, plugin_names[i]);
        }
        if (!loaded && have_own) {
            snprintf(path, sizeof path, "%s/libflashport_%s.so", own, plugin_names[i]);
            loaded = try_plugin(path, plugin_names[i]);
        }
    }
    /* Extra plugins by full path (colon-separated), for tests and out-of-tree backends. */
    const char *extra = getenv("FLASHPORT_EXTRA_PLUGINS");
    if (extra && extra[0]) {
        char list[4096];
        snprintf(list, sizeof list, "%s", extra);
        char *save = NULL;
        for (char *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save)) try_plugin(p, p);
    }
}

static void registry_init(void)
{
    const fa_backend_iface *iface = NULL;
    void *ctx = NULL;
    char why[256] = "";
    if (fa_cpu_backend_init(&iface, &ctx, why, sizeof why) == FA_OK)
        register_backend(iface, ctx);
    else
        fa_log("cpu backend absent: %s", why);
    load_plugins();
}

int fa_device_count(void)
{
    pthread_once(&registry_once, registry_init);
    return n_devices;
}

const fa_device_entry *fa_registry_device(int device)
{
    int n = fa_device_count();
    if (device < 0 || device >= n) {
        fa_set_error(FA_ERR_NO_DEVICE, "device=%d is out of range: %d device(s) found (FLASHPORT_LOG=1 says why "
                                       "a backend is absent)", device, n);
        return NULL;
    }
    return &devices[device];
}

fa_status fa_device_get(int device, fa_device_props *props)
{
    if (!props) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "props=NULL must point to an fa_device_props");
    const fa_device_entry *e = fa_registry_device(device);
    if (!e) return FA_ERR_NO_DEVICE;
    *props = e->props;
    return FA_OK;
}

int fa_device_best(void)
{
    int n = fa_device_count();
    /* GPU-class: not the CPU backend, and not an OpenCL CPU device (PoCL; its arch says "-cpu") */
    for (int i = 0; i < n; i++)
        if (devices[i].props.backend != FA_BACKEND_CPU && !strstr(devices[i].props.arch, "-cpu")) return i;
    return 0;
}
