/* fuzz_check.h - CHECK(c) for the fuzz targets: a broken invariant prints where and
 * what, then aborts, which libFuzzer reports as a crash with the input that caused
 * it (and the corpus replay as a failed test). */
#ifndef SLUICE_FUZZ_CHECK_H
#define SLUICE_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                      \
    do {                                                                              \
        if (!(c)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);    \
            abort();                                                                  \
        }                                                                             \
    } while (0)

#endif
