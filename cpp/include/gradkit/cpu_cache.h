// The data caches of the cores this process runs on, read once (cache blocking: GEMM).
#pragma once
#include "gradkit/common.h"

namespace gk {

// Sizes in bytes (0 when unknown). l3 is one core's share of the L3 (the cache's size
// divided by the cores sharing it). l1d_ways is the L1d's associativity (0 when unknown).
struct CacheSizes {
  index_t l1d = 0, l2 = 0, l3 = 0;
  index_t l1d_ways = 0;
};

// Read at first use: cpuid (leaf 0x8000001D on AMD, leaf 4 on Intel), else the C
// library's sysconf. GRADKIT_L1_CACHE_BYTES, GRADKIT_L2_CACHE_BYTES and
// GRADKIT_L3_CACHE_BYTES override each size (tests and benchmarks run the blocking
// another CPU gets); a bad value raises std::runtime_error naming the variable.
const CacheSizes& cache_sizes();

}  // namespace gk
