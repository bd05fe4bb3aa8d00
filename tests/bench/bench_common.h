/*
 * bench_common.h — what the C benchmarks share: a monotonic clock and the median of runs.
 */
#ifndef JIAYIN_TESTS_BENCH_COMMON_H
#define JIAYIN_TESTS_BENCH_COMMON_H

#include <stdlib.h>
#include <time.h>

static inline double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static inline int cmp_double(const void *a, const void *b)
{
	double d = *(const double *)a - *(const double *)b;
	return (d > 0) - (d < 0);
}

/* The median of n values (sorted in place). */
static inline double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return v[n / 2];
}

#endif
