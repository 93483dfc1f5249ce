/* test.h — the smallest unit-test harness that does the job.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ_INT(a, b); CHECK_EQ_STR(s, "x"); }
 *   int main(void) { RUN(name); return test_report(); }
 *
 * Every RUN counts as one test; it fails if any CHECK in it failed. The last
 * line a test binary prints is "N passed, N failed" (tests/run.sh sums them).
 * test_skip("why") marks the current test skipped, printed visibly. */
#ifndef TEST_H
#define TEST_H

#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static int t_pass, t_fail, t_skip, t_cur_failed, t_cur_skipped;

#define TEST(name) static void name(void)

#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
    t_cur_failed = 1; } } while (0)

#define CHECK_EQ_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); \
    if (_a != _b) { fprintf(stderr, "  %s:%d: %s == %lld, expected %lld\n", \
        __FILE__, __LINE__, #a, _a, _b); t_cur_failed = 1; } } while (0)

#define CHECK_EQ_STR(a, b) do { const char *_a = (a), *_b = (b); \
    if (!_a || !_b || strcmp(_a, _b)) { fprintf(stderr, "  %s:%d: %s == \"%s\", expected \"%s\"\n", \
        __FILE__, __LINE__, #a, _a ? _a : "(null)", _b ? _b : "(null)"); t_cur_failed = 1; } } while (0)

static inline void test_skip(const char *why)
{
    fprintf(stderr, "  SKIP: %s\n", why);
    t_cur_skipped = 1;
}

#define RUN(name) do { t_cur_failed = 0; t_cur_skipped = 0; name(); \
    if (t_cur_skipped && !t_cur_failed) { t_skip++; printf("skip %s\n", #name); } \
    else if (t_cur_failed) { t_fail++; printf("FAIL %s\n", #name); } \
    else { t_pass++; printf("ok   %s\n", #name); } fflush(stdout); } while (0)

static inline int test_report(void)
{
    printf("%d passed, %d failed, %d skipped\n", t_pass, t_fail, t_skip);
    return t_fail ? 1 : 0;
}

/* Path of the shared data folder (../shared relative to the repo root), or
 * NULL with a visible skip when it is absent. GLM_SHARED overrides. */
static inline const char *test_shared_dir(void)
{
    const char *e = getenv("GLM_SHARED");
    return e ? e : "../shared";
}

/* Remove a scratch directory a test made with mkdtemp (and all it holds);
 * a failure is reported and returned (-1), never fatal. */
static inline int test_rmtree(const char *dir)
{
    char cmd[4200];
    if (!dir || !dir[0]) return 0;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!system(cmd)) return 0;
    fprintf(stderr, "could not remove %s\n", dir);
    return -1;
}

#endif
