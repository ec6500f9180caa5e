// CPU feature detection and the process-wide ISA choice.
#include "gradkit/isa.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace gk {
namespace {

bool cpu_has(Isa isa) {
#if defined(GK_X86)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::generic:
      return true;
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return false;
#else
  return isa == Isa::generic;
#endif
}

Isa best_isa() {
  for (Isa isa : {Isa::avx512, Isa::avx2}) {
    if (cpu_has(isa)) return isa;
  }
  return Isa::generic;
}

std::atomic<int> g_isa{static_cast<int>(best_isa())};

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic:
      return "generic";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
  }
  return "unknown";
}

Isa parse_isa(const std::string& name) {
  for (int i = 0; i < kNumIsa; ++i) {
    if (name == isa_name(static_cast<Isa>(i))) return static_cast<Isa>(i);
  }
  throw std::invalid_argument("unknown ISA '" + name + "': expected one of generic, avx2, avx512");
}

bool isa_supported(Isa isa) { return cpu_has(isa); }

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (int i = 0; i < kNumIsa; ++i) {
    if (cpu_has(static_cast<Isa>(i))) out.push_back(static_cast<Isa>(i));
  }
  return out;
}

Isa current_isa() { return static_cast<Isa>(g_isa.load(std::memory_order_relaxed)); }

void set_isa(Isa isa) {
  if (!isa_supported(isa)) {
    throw std::runtime_error(std::string("ISA '") + isa_name(isa) + "' is not supported by this CPU or build (best: " +
                             isa_name(best_isa()) + ")");
  }
  g_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
}

void init_isa_from_env() {
  const char* env = std::getenv("GRADKIT_ISA");
  if (env == nullptr || *env == '\0') return;
  Isa isa;
  try {
    isa = parse_isa(env);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(std::string("GRADKIT_ISA: ") + e.what());
  }
  if (!isa_supported(isa)) {
    throw std::runtime_error(std::string("GRADKIT_ISA=") + env + " but this CPU or build does not support it (best: " +
                             isa_name(best_isa()) + ")");
  }
  set_isa(isa);
}

}  // namespace gk
