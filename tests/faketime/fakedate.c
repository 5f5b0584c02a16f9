/* The system date moved for a test run (scripts/test-dates): an LD_PRELOAD library that adds
 * FAKEDATE_OFFSET_SECONDS seconds to the wall clock (CLOCK_REALTIME and its variants,
 * gettimeofday, time) of every process of the run, and leaves everything else alone: monotonic
 * clocks, sleeps, timed waits.
 *
 * Why not libfaketime: Debian's 0.9.10 also intercepts pthread_cond_timedwait and rewrites the
 * deadline as if it were on the (faked) wall clock. CPython's GIL waits on a condition bound to
 * CLOCK_MONOTONIC, so each of those waits timed out at once: threads handed the GIL back and forth
 * without pause (ten times the futex calls, multi-threaded tests ten times slower), and its
 * sleeps failed with EINVAL unless monotonic time was faked too. */
/* (Named without billfold's BILLFOLD_ prefix: tests that start billfold with a clean
 * configuration drop those variables, and must keep the moved date.) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static time_t offset;
static int (*real_clock_gettime)(clockid_t, struct timespec *);

__attribute__((constructor)) static void load(void) {
    const char *value = getenv("FAKEDATE_OFFSET_SECONDS");
    offset = value ? (time_t)atoll(value) : 0;
    real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
}

static int is_wall_clock(clockid_t id) {
    return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    if (!real_clock_gettime) load();
    int result = real_clock_gettime(id, ts);
    if (result == 0 && is_wall_clock(id)) ts->tv_sec += offset;
    return result;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    struct timespec ts;
    int result = clock_gettime(CLOCK_REALTIME, &ts);
    if (result == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return result;
}

time_t time(time_t *out) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (time_t)-1;
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}

int timespec_get(struct timespec *ts, int base) {
    if (base != TIME_UTC || clock_gettime(CLOCK_REALTIME, ts) != 0) return 0;
    return base;
}
