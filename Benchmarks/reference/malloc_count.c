/*
 * malloc_count: an LD_PRELOAD shim that counts heap allocations, for "allocations per datagram".
 *
 * Every call of malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign, valloc and pvalloc adds one to a
 * 64-bit counter, and is then served by glibc's own allocator (__libc_*), so behaviour and speed barely change.
 * The counter lives in a file mapped MAP_SHARED (path in MALLOC_COUNT_FILE), so the benchmark reads it at any
 * moment with pread, without signals and without stopping the process: allocations per datagram are
 * (count after N datagrams - count before) / N.
 *
 * Build: cc -O2 -shared -fPIC -o malloc_count.so malloc_count.c
 * Use:   MALLOC_COUNT_FILE=/tmp/counter LD_PRELOAD=./malloc_count.so udpd -c ...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

/* Allocations made before the constructor mapped the file are kept here and carried over. */
static uint64_t early_count;
static uint64_t *volatile shared_count;

__attribute__((constructor)) static void malloc_count_init(void) {
    const char *path = getenv("MALLOC_COUNT_FILE");
    if (!path) return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    if (ftruncate(fd, sizeof(uint64_t)) != 0) {
        close(fd);
        return;
    }
    void *mapped = mmap(NULL, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (mapped == MAP_FAILED) return;
    uint64_t *counter = mapped;
    __atomic_store_n(counter, __atomic_load_n(&early_count, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
    shared_count = counter;
}

static inline void count_one(void) {
    uint64_t *counter = shared_count;
    __atomic_fetch_add(counter ? counter : &early_count, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t size) {
    count_one();
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size) {
    count_one();
    return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size) {
    count_one();
    return __libc_realloc(pointer, size);
}

void *memalign(size_t alignment, size_t size) {
    count_one();
    return __libc_memalign(alignment, size);
}

void *aligned_alloc(size_t alignment, size_t size) {
    count_one();
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    count_one();
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *pointer = __libc_memalign(alignment, size);
    if (!pointer && size != 0) return ENOMEM;
    *result = pointer;
    return 0;
}

void *valloc(size_t size) {
    count_one();
    return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), size);
}

void *pvalloc(size_t size) {
    count_one();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return __libc_memalign(page, (size + page - 1) & ~(page - 1));
}
