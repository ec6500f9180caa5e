// Data cache sizes, for cache blocking: cpuid's deterministic cache parameters (leaf 4 on
// Intel, leaf 0x8000001D on AMD: the same layout), else sysconf (glibc), else unknown.
#include "gradkit/cpu_cache.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <string>

#if defined(GK_X86)
#include <cpuid.h>
#endif

namespace gk {
namespace {

#if defined(GK_X86)
// One level's data (or unified) cache from a deterministic-cache-parameters leaf:
// EAX[4:0] type (1 data, 3 unified), EAX[7:5] level, EAX[25:14] + 1 logical processors
// sharing it, EBX ways/partitions/line size (each minus 1), ECX sets - 1.
bool cpuid_caches(unsigned leaf, CacheSizes& out) {
  unsigned a, b, c, d;
  if (__get_cpuid_max(leaf & 0x80000000u, nullptr) < leaf) return false;
  bool found = false;
  for (unsigned sub = 0; sub < 16; ++sub) {
    __cpuid_count(leaf, sub, a, b, c, d);
    const unsigned type = a & 31u;
    if (type == 0) break;
    if (type != 1 && type != 3) continue;  // instruction caches
    const index_t ways = (b >> 22) + 1, parts = ((b >> 12) & 0x3ffu) + 1, line = (b & 0xfffu) + 1;
    const index_t bytes = ways * parts * line * (index_t{c} + 1);
    const index_t sharing = ((a >> 14) & 0xfffu) + 1;
    switch ((a >> 5) & 7u) {
      case 1:
        out.l1d = bytes;
        out.l1d_ways = ways;
        break;
      case 2:
        out.l2 = bytes;
        break;
      case 3:
        out.l3 = bytes / sharing;
        break;
      default:
        break;
    }
    found = true;
  }
  return found && out.l1d > 0 && out.l2 > 0;
}
#endif

CacheSizes detect() {
  CacheSizes cs;
#if defined(GK_X86)
  unsigned a, b, c, d;
  __cpuid(0, a, b, c, d);
  const bool amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;  // "AuthenticAMD"
  const bool amd_topoext = amd && __get_cpuid(0x80000001u, &a, &b, &c, &d) && ((c >> 22) & 1u);
  if (amd_topoext ? cpuid_caches(0x8000001Du, cs) : (!amd && cpuid_caches(4, cs))) return cs;
  cs = {};
#endif
#if defined(_SC_LEVEL1_DCACHE_SIZE)
  cs.l1d = std::max<long>(sysconf(_SC_LEVEL1_DCACHE_SIZE), 0);
  cs.l1d_ways = std::max<long>(sysconf(_SC_LEVEL1_DCACHE_ASSOC), 0);
  cs.l2 = std::max<long>(sysconf(_SC_LEVEL2_CACHE_SIZE), 0);
  cs.l3 = std::max<long>(sysconf(_SC_LEVEL3_CACHE_SIZE), 0);  // the whole L3: sharing is unknown here
#endif
  return cs;
}

// The value of an override variable, or `dflt` when unset or empty.
index_t env_bytes(const char* name, index_t dflt) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return dflt;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  if (errno != 0 || *end != '\0' || v < 1024 || v > (index_t{1} << 40)) {
    throw std::runtime_error(std::string(name) + ": expected a cache size in bytes (an integer from 1024), got '" +
                             env + "'");
  }
  return static_cast<index_t>(v);
}

}  // namespace

const CacheSizes& cache_sizes() {
  static const CacheSizes sizes = [] {
    CacheSizes cs = detect();
    cs.l1d = env_bytes("GRADKIT_L1_CACHE_BYTES", cs.l1d);
    cs.l2 = env_bytes("GRADKIT_L2_CACHE_BYTES", cs.l2);
    cs.l3 = env_bytes("GRADKIT_L3_CACHE_BYTES", cs.l3);
    return cs;
  }();
  return sizes;
}

}  // namespace gk
