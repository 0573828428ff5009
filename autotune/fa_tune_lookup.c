/* The lookup order of fa_plan_create: FLASHPORT_TILE -> user tuning cache -> install-tree cache (fa_tune_lookup.h). */
#include "fa_tune_lookup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fa_tune_cache.h"

static void ident_of(const fa_device_entry *e, fa_tune_ident *id)
{
    memset(id, 0, sizeof *id);
    snprintf(id->version, sizeof id->version, "%s", fa_version_string());
    snprintf(id->backend, sizeof id->backend, "%s", e->backend->iface->name);
    snprintf(id->device, sizeof id->device, "%s", e->props.name);
    snprintf(id->arch, sizeof id->arch, "%s", e->props.arch);
    id->shared_mem = e->props.shared_mem_per_block_optin > e->props.shared_mem_per_block
                         ? e->props.shared_mem_per_block_optin
                         : e->props.shared_mem_per_block;
    snprintf(id->kernel_hash, sizeof id->kernel_hash, "none");
    snprintf(id->runtime, sizeof id->runtime, "none");
    if (e->backend->iface->kernel_source_hash) {
        char runtime[256] = "";
        uint64_t h = e->backend->iface->kernel_source_hash(e->backend->ctx, e->backend_device, runtime, sizeof runtime);
        snprintf(id->kernel_hash, sizeof id->kernel_hash, "%016llx", (unsigned long long)h);
        if (runtime[0]) snprintf(id->runtime, sizeof id->runtime, "%s", runtime);
    }
    /* the file stores one-line values: keep the comparison on what the file can hold */
    for (char *c = id->runtime; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    for (char *c = id->device; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
}

fa_status fa_tune_device_ident(int device, fa_tune_ident *id)
{
    if (!id) return fa_set_error(FA_ERR_INVALID_ARGUMENT, "ident=NULL");
    const fa_device_entry *e = fa_registry_device(device);
    if (!e) return FA_ERR_NO_DEVICE;
    ident_of(e, id);
    return FA_OK;
}

/* The entry for desc's bucket in dir's file for this device, as a proposal. 1 if found. */
static int from_file(const fa_device_entry *e, const char *dir, const char *what, const fa_tune_bucket *b,
                     fa_tune_ident *id, int *have_id, fa_tune_proposal *p)
{
    char name[512], path[1600], why[600];
    fa_tune_ident shape;
    memset(&shape, 0, sizeof shape);
    snprintf(shape.backend, sizeof shape.backend, "%s", e->backend->iface->name);
    snprintf(shape.device, sizeof shape.device, "%s", e->props.name);
    snprintf(shape.arch, sizeof shape.arch, "%s", e->props.arch);
    fa_tune_file_name(&shape, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    if (stat(path, &st) != 0) return 0; /* no file: nothing tuned here, nothing to say */
    if (!*have_id) { /* the kernel hash costs a pass over the sources: only when there is a file to check */
        ident_of(e, id);
        *have_id = 1;
    }
    fa_tune_file f;
    fa_tune_load_result r = fa_tune_load(path, id, &f, why, sizeof why);
    if (r != FA_TUNE_LOADED) {
        if (r == FA_TUNE_INVALID) fa_log("tuning: %s %s ignored: %s", what, path, why);
        return 0;
    }
    const fa_tune_entry *t = fa_tune_file_find(&f, b);
    int found = t != NULL;
    if (t) {
        char bucket[128];
        fa_tune_bucket_format(b, bucket, sizeof bucket);
        memset(p, 0, sizeof *p);
        p->has_fwd = 1;
        p->fwd = t->fwd;
        p->has_bwd = t->has_bwd;
        p->bwd = t->bwd;
        /* a path too long for the description is cut: it only names where the config came from */
        int n = snprintf(p->source, sizeof p->source, "%s %.600s (bucket %.100s)", what, path, bucket);
        (void)n;
    }
    fa_tune_file_free(&f);
    return found;
}

int fa_tune_proposals(const fa_device_entry *e, const fa_attn_desc *desc, fa_tune_proposal *out, int max)
{
    int n = 0;
    const char *tile = getenv("FLASHPORT_TILE");
    if (tile && *tile && n < max) {
        fa_tile_config c;
        if (fa_tile_parse(tile, &c) == 0) {
            memset(&out[n], 0, sizeof out[n]);
            out[n].has_fwd = 1;
            out[n].fwd = c;
            snprintf(out[n].source, sizeof out[n].source, "FLASHPORT_TILE=%s", tile);
            n++;
        } else {
            fa_log("tuning: FLASHPORT_TILE='%s' ignored: expected BQxBKV[xSPLITS][wWARPS][sSTAGES]", tile);
        }
    }
    const char *off = getenv("FLASHPORT_TUNE");
    if (off && !strcmp(off, "off")) return n;
    fa_tune_bucket b;
    fa_tune_bucket_of(desc, &b);
    fa_tune_ident id;
    int have_id = 0;
    char dir[1024], dirs[2][1024];
    if (n < max && fa_tune_user_dir(dir, sizeof dir) && from_file(e, dir, "tuning cache", &b, &id, &have_id, &out[n]))
        n++;
    int nd = fa_tune_install_dirs(dirs);
    for (int i = 0; i < nd && n < max; i++)
        if (from_file(e, dirs[i], "install tuning cache", &b, &id, &have_id, &out[n])) {
            n++;
            break; /* the first install directory that has the bucket speaks for the install tree */
        }
    return n;
}
