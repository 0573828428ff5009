/* The backends' shared on-disk cache (see fa_disk_cache.h). */
#include "fa_disk_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t fa_hash64(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

int fa_cache_dir(const char *sub, char *dir, size_t size)
{
    const char *env = getenv("FLASHPORT_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char base[1024];
    if (env && !strcmp(env, "off")) return 0;
    if (env && *env) snprintf(base, sizeof base, "%s", env);
    else if (xdg && *xdg) snprintf(base, sizeof base, "%s/flashport", xdg);
    else if (home && *home) snprintf(base, sizeof base, "%s/.cache/flashport", home);
    else return 0;
    if (snprintf(dir, size, "%s/%s", base, sub) >= (int)size) return 0;
    /* mkdir -p of the base, then the backend's own folder */
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s", base);
    for (char *s = tmp + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(tmp, 0755);
            *s = '/';
        }
    mkdir(tmp, 0755);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return 0;
    return 1;
}

int fa_cache_read(const char *path, int text, void **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n <= 0) {
        fclose(f);
        return -1;
    }
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    *size = (size_t)n + (text ? 1 : 0);
    return 0;
}

int fa_cache_write_atomic(const char *path, const void *data, size_t size)
{
    char tmp[1300];
    const char *slash = strrchr(path, '/');
    int n = slash ? snprintf(tmp, sizeof tmp, "%.*s/.%s.XXXXXX", (int)(slash - path), path, slash + 1)
                  : snprintf(tmp, sizeof tmp, ".%s.XXXXXX", path);
    if (n < 0 || n >= (int)sizeof tmp) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = mkstemp(tmp);
    if (fd < 0) return -1;
    const char *p = data;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, p + done, size - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    int ok = done == size && fchmod(fd, 0644) == 0 && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok && rename(tmp, path) == 0) return 0; /* readers see the old file or the whole new one */
    const int err = errno ? errno : EIO;
    unlink(tmp);
    errno = err;
    return -1;
}
