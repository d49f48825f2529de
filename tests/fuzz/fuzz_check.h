// Invariant checks for the fuzz targets: a violation prints what was expected and aborts, which libFuzzer
// reports as a crash and keeps the input that caused it.
#pragma once

#include <cstdio>
#include <cstdlib>

// FUZZ_CHECK(condition, printf-format, args...)
#define FUZZ_CHECK(cond, ...)                                                 \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "%s:%d: invariant violated: %s\n  ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                      \
      std::fputc('\n', stderr);                                               \
      std::abort();                                                           \
    }                                                                         \
  } while (0)
