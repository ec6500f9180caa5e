// Runtime CPU dispatch.
//
// At import the best ISA the CPU supports is chosen from cpuid; GRADKIT_ISA
// (generic|avx2|avx512) overrides it. Each kernel area keeps one table of
// function pointers (and block sizes) per ISA, filled once by per-ISA init
// functions, BLIS-style: the generic init fills every entry with the reference
// kernels, the avx2 init starts from a copy of that and overrides what it has,
// the avx512 init starts from the avx2 table. Generic code asks the area's
// table for a kernel and never names an ISA.
#pragma once
#include <string>
#include <vector>

namespace gk {

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };
constexpr int kNumIsa = 3;

const char* isa_name(Isa isa);
// Parses "generic", "avx2" or "avx512"; throws std::invalid_argument otherwise.
Isa parse_isa(const std::string& name);
// True when this build has the ISA's kernels and this CPU (and OS) can run them.
bool isa_supported(Isa isa);
std::vector<Isa> supported_isas();
// The ISA every table lookup uses now. Set once at import (cpuid or GRADKIT_ISA).
Isa current_isa();
// Switches the ISA of every table; throws std::runtime_error if unsupported.
void set_isa(Isa isa);
// Applies GRADKIT_ISA if set (throws std::runtime_error naming it if the CPU lacks it).
void init_isa_from_env();

// Per-ISA init function declarations exist on every platform; on non-x86
// builds the x86 ones are never referenced (GK_X86_INIT gives nullptr).
#if defined(GK_X86)
#define GK_X86_INIT(fn) (&(fn))
#else
#define GK_X86_INIT(fn) nullptr
#endif

template <class Table>
class DispatchTable {
 public:
  using InitFn = void (*)(Table&);
  DispatchTable(InitFn generic, InitFn avx2, InitFn avx512) {
    generic(tables_[0]);
    tables_[1] = tables_[0];
    // An ISA's init runs only where the CPU has that ISA: it is compiled with
    // that ISA's flags, so even copying the table may use its instructions.
    if (avx2 != nullptr && isa_supported(Isa::avx2)) avx2(tables_[1]);
    tables_[2] = tables_[1];
    if (avx512 != nullptr && isa_supported(Isa::avx512)) avx512(tables_[2]);
  }
  const Table& get() const { return tables_[static_cast<int>(current_isa())]; }
  const Table& get(Isa isa) const { return tables_[static_cast<int>(isa)]; }

 private:
  Table tables_[kNumIsa]{};
};

}  // namespace gk
