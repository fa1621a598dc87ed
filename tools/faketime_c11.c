/*
 * faketime_c11 - a companion to libfaketime for the clock-step test.
 *
 * libfaketime 0.9.10 (Debian bookworm) fakes timespec_get() and clock_gettime() and
 * translates the deadlines given to pthread_cond_timedwait(), but not those given to
 * C11's cnd_timedwait(), which glibc implements without going through the interposed
 * pthread symbol. librdkafka waits with cnd_timedwait() on deadlines it computes with
 * timespec_get(): under a fake offset of +1 day every such wait lasted a day, under
 * -1 h none waited at all. Neither is what a real clock step does.
 *
 * This library, preloaded before libfaketime, translates a cnd_timedwait() deadline
 * from the faked CLOCK_REALTIME (what the caller read) to the kernel's, the same way
 * libfaketime already does for pthread_cond_timedwait(). Nothing else is touched.
 *
 *   LD_PRELOAD="libsluice-faketime-c11.so libfaketimeMT.so.1" ...
 */
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

typedef int (*cnd_timedwait_fn)(cnd_t *, mtx_t *, const struct timespec *);

static int64_t ns_of(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

int cnd_timedwait(cnd_t *restrict cond, mtx_t *restrict mtx,
                  const struct timespec *restrict deadline)
{
    static cnd_timedwait_fn next;
    struct timespec faked, kernel, real_deadline;
    int64_t ns;

    if (!next) {
        void *sym = dlsym(RTLD_NEXT, "cnd_timedwait");
        memcpy(&next, &sym, sizeof(next));  /* POSIX: object to function pointer */
    }
    /* clock_gettime resolves to libfaketime's; the raw system call does not. */
    clock_gettime(CLOCK_REALTIME, &faked);
    syscall(SYS_clock_gettime, CLOCK_REALTIME, &kernel);
    ns = ns_of(deadline) - ns_of(&faked) + ns_of(&kernel);
    real_deadline.tv_sec = (time_t)(ns / 1000000000);
    real_deadline.tv_nsec = (long)(ns % 1000000000);
    return next(cond, mtx, &real_deadline);
}
