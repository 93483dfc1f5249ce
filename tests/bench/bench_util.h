/* bench_util.h — small pieces the C benchmarks share (header-only: each
 * benchmark is one program). Wall time: pl_mono_s() from common/pl.h. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <sys/resource.h>

/* This process's CPU time so far, user + system, in seconds. */
static inline double bench_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

#endif
