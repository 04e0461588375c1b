/*
 * alloc_count: an LD_PRELOAD library that counts the calls to malloc,
 * calloc, realloc, free and the aligned allocators of the process it is
 * loaded into, so that the benchmark can tell what one request costs in
 * allocations. SIGUSR2 writes the counts so far to the file named by
 * MT_ALLOC_COUNT_FILE (written beside it, then renamed into place):
 *
 *   malloc N calloc N realloc N free N aligned N
 *
 * The calls go on to glibc's own allocator (its __libc_* entry points, which
 * never call back into these).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t size);

enum { C_MALLOC, C_CALLOC, C_REALLOC, C_FREE, C_ALIGNED, C__COUNT };
static const char *const names[C__COUNT] = {"malloc", "calloc", "realloc", "free", "aligned"};
static uint64_t counts[C__COUNT];
static char path[512], tmp_path[520];

static void count(int which)
{
    __atomic_fetch_add(&counts[which], 1, __ATOMIC_RELAXED);
}

void *malloc(size_t size)
{
    count(C_MALLOC);
    return __libc_malloc(size);
}

void *calloc(size_t n, size_t size)
{
    count(C_CALLOC);
    return __libc_calloc(n, size);
}

void *realloc(void *p, size_t size)
{
    count(C_REALLOC);
    return __libc_realloc(p, size);
}

void free(void *p)
{
    if (p)
        count(C_FREE); /* free(NULL) is no work */
    __libc_free(p);
}

void *memalign(size_t align, size_t size)
{
    count(C_ALIGNED);
    return __libc_memalign(align, size);
}

void *aligned_alloc(size_t align, size_t size)
{
    return memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    void *p = memalign(align, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

/* Decimal digits of v at out; returns the length (async-signal-safe). */
static size_t put_u64(char *out, uint64_t v)
{
    char tmp[24];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static void dump_cb(int sig)
{
    char line[256];
    size_t n = 0;
    int saved = errno, fd;

    (void)sig;
    for (int i = 0; i < C__COUNT; i++) {
        size_t l = strlen(names[i]);
        memcpy(line + n, names[i], l);
        n += l;
        line[n++] = ' ';
        n += put_u64(line + n, __atomic_load_n(&counts[i], __ATOMIC_RELAXED));
        line[n++] = i + 1 < C__COUNT ? ' ' : '\n';
    }
    fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (write(fd, line, n) == (ssize_t)n)
            rename(tmp_path, path);
        close(fd);
    }
    errno = saved;
}

__attribute__((constructor)) static void alloc_count_init(void)
{
    const char *p = getenv("MT_ALLOC_COUNT_FILE");
    struct sigaction sa;

    if (!p || strlen(p) >= sizeof(path))
        return;
    memcpy(path, p, strlen(p) + 1);
    memcpy(tmp_path, path, strlen(path));
    memcpy(tmp_path + strlen(path), ".tmp", 5);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = dump_cb;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
}
