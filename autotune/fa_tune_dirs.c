/* Where tuning cache files live: the user's cache and the install tree (fa_tune_cache.h). */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fa_tune_cache.h"

/* Set by the build: <prefix>/share/flashport/tune, and the same relative to the library's directory. */
#ifndef FLASHPORT_TUNE_INSTALL_DIR_DEFAULT
#define FLASHPORT_TUNE_INSTALL_DIR_DEFAULT "/usr/local/share/flashport/tune"
#endif
#ifndef FLASHPORT_TUNE_REL_DIR
#define FLASHPORT_TUNE_REL_DIR "../share/flashport/tune"
#endif

int fa_tune_user_dir(char *dir, size_t size)
{
    const char *env = getenv("FLASHPORT_TUNE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (env && !strcmp(env, "off")) return 0;
    if (env && *env) n = snprintf(dir, size, "%s", env);
    else if (xdg && *xdg) n = snprintf(dir, size, "%s/flashport/tune", xdg);
    else if (home && *home) n = snprintf(dir, size, "%s/.cache/flashport/tune", home);
    else return 0;
    return n > 0 && (size_t)n < size;
}

int fa_tune_install_dirs(char dirs[2][1024])
{
    const char *env = getenv("FLASHPORT_TUNE_INSTALL_DIR");
    if (env && *env) { /* tests and unusual layouts name it; "off" turns the install cache off */
        if (!strcmp(env, "off")) return 0;
        snprintf(dirs[0], sizeof dirs[0], "%s", env);
        return 1;
    }
    int n = 0;
    Dl_info info;
    /* the library's own file: an install tree moved elsewhere keeps its tuning files beside it */
    if (dladdr((void *)&fa_tune_install_dirs, &info) && info.dli_fname && strchr(info.dli_fname, '/')) {
        const char *slash = strrchr(info.dli_fname, '/');
        snprintf(dirs[n], sizeof dirs[n], "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname,
                 FLASHPORT_TUNE_REL_DIR);
        n++;
    }
    if (n == 0 || strcmp(dirs[0], FLASHPORT_TUNE_INSTALL_DIR_DEFAULT))
        snprintf(dirs[n++], sizeof dirs[0], "%s", FLASHPORT_TUNE_INSTALL_DIR_DEFAULT);
    return n;
}

int fa_tune_make_dir(const char *dir)
{
    char tmp[1024];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) return -1;
    for (char *s = tmp + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
            *s = '/';
        }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}
