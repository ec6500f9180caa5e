// Runtime CPU dispatch.
//
// At import the best ISA the CPU supports is chosen from cpuid; GRADKIT_ISA
// (generic|avx2|avx512) overrides it. Each kernel area has one table of
// function pointers (and block sizes) per ISA: constant data that the ISA's
// translation unit exports (XNNPACK's configs, ATen's DispatchStub). No code
// compiled with an ISA's flags runs to build it; generic code picks the table
// of the current ISA, and a kernel of an ISA is only ever reached through its
// table, which only becomes current after the CPU check (docs/design.md).
#pragma once
#include <cstddef>
#include <string>
#include <type_traits>
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

// Each area declares its tables on every platform; on non-x86 builds the x86
// ones are never defined or referenced (GK_X86_TABLE gives nullptr).
#if defined(GK_X86)
#define GK_X86_TABLE(table) (&(table))
#else
#define GK_X86_TABLE(table) nullptr
#endif

// An area's kernels for float32 and float64, and the one accessor of a dtype's:
// table.get<T>(). An area's table is one of these (or derives from one and adds
// kernels that take no dtype).
template <template <class> class Kernels>
struct DtypeTable {
  Kernels<float> f32;
  Kernels<double> f64;
  template <class T>
  constexpr const Kernels<T>& get() const {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");
    if constexpr (std::is_same_v<T, float>) {
      return f32;
    } else {
      return f64;
    }
  }
};

// An area's tables, one per ISA. Built at compile time (GK_DEFINE_DISPATCH):
// nothing runs at load. A build without x86 tables passes nullptr for them and
// uses the generic table for every ISA. (Two constructors rather than a test
// of the pointers: a symbol's address compared with null is not a constant
// expression under -fsanitize=address.)
template <class Table>
class DispatchTable {
 public:
  constexpr DispatchTable(const Table& generic, const Table* avx2, const Table* avx512)
      : tables_{&generic, avx2, avx512}, isas_{Isa::generic, Isa::avx2, Isa::avx512} {}
  constexpr DispatchTable(const Table& generic, std::nullptr_t, std::nullptr_t)
      : tables_{&generic, &generic, &generic}, isas_{Isa::generic, Isa::generic, Isa::generic} {}
  // The current ISA's table (set_isa only accepts an ISA the CPU has).
  const Table& get() const { return of(current_isa()); }
  // The ISA whose kernels get() returns now (for show_config).
  Isa isa() const { return isas_[static_cast<int>(current_isa())]; }
  // The table of `isa` (the generic one in a build without it). Only its data may be
  // read: its kernels run only once `isa` is current (the CPU check).
  const Table& of(Isa isa) const { return *tables_[static_cast<int>(isa)]; }

 private:
  const Table* tables_[kNumIsa];
  Isa isas_[kNumIsa];
};

// In an area's header (inside namespace gk): its tables, area_table_generic,
// area_table_avx2 and area_table_avx512 (constant data, each defined by the ISA's
// code generated from cpp/<area>/<area>_isa.cpp.in), and the current one,
// area_table() with area_table_isa(), the ISA it belongs to.
#define GK_DECLARE_DISPATCH(area, Table)                                              \
  extern const Table area##_table_generic, area##_table_avx2, area##_table_avx512;    \
  const Table& area##_table();                                                        \
  Isa area##_table_isa();

// In the area's driver (inside namespace gk): defines area_table() and
// area_table_isa(), and area_tables, the DispatchTable over its ISAs.
#define GK_DEFINE_DISPATCH(area, Table)                                                                  \
  namespace {                                                                                           \
  constexpr DispatchTable<Table> area##_tables(area##_table_generic, GK_X86_TABLE(area##_table_avx2),   \
                                               GK_X86_TABLE(area##_table_avx512));                      \
  }                                                                                                     \
  const Table& area##_table() { return area##_tables.get(); }                                           \
  Isa area##_table_isa() { return area##_tables.isa(); }

}  // namespace gk
