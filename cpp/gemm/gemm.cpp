// The GEMM driver: Goto/BLIS blocking, packing and threading around the
// micro-kernel of the current ISA's table (docs/kernels.md).
//
// A (M,K) and B (K,N) with arbitrary (row, column) strides, C (M,N) row-major
// with row stride ldc. Threads take disjoint blocks of rows or of columns of C
// and run the serial algorithm on them with their own packing buffers: no
// barrier, nothing shared but the read-only inputs. K is never split and KC
// never depends on the thread count, so every element of C is the same chain
// of FMAs on 1 or n threads: results are bit-identical.
#include "gradkit/gemm.h"

#include <algorithm>
#include <array>
#include <cstdlib>

#include "gradkit/cpu_cache.h"
#include "gradkit/isa.h"
#include "gradkit/parallel.h"

namespace gk {

GK_DEFINE_DISPATCH(gemm, GemmTable)

// The cache blocks and the loop order, derived from this core's caches (cpu_cache.h) and the
// micro-tile (BLIS's analytical model, Low et al. 2016, in capacities rather than ways). Our
// micro-kernel broadcasts A and loads B vectors. Two orders of the loops around it
// (GemmOrder), each with its blocks:
// - A panel in L1 (ir outside jr): the MR x kc micro-panel of A stays in L1 while the kc x NR
//   slivers of B stream through it from the packed B block in L2.
//   kc: the streaming sliver of B gets 2/3 of L1 and the resident panel of A 1/3 (the largest
//   multiple of 8 with both in their share). nc: the kc x nc block of packed B keeps half of L2
//   (whole slivers, at least 4). mc: the packed mc x kc block of A, read once right after
//   packing, takes a quarter of L2 (whole micro-panels, at least one).
//   Its cost: A is packed again for every nc columns of C, kPackCost / nc of the product.
// - B sliver in L1 (jr outside ir, BLIS's): the kc x NR sliver of B stays in L1 while the
//   micro-panels of A stream through it from the packed A block in L2; nothing is packed twice.
//   kc: the sliver of B and one micro-panel of A fill 7/8 of L1 (one way of 8 is left to C and
//   the next panel). mc: the mc x kc block of A takes half of L2. nc (L3): the kc x nc block of
//   packed B takes half of the core's share of L3, read once per block of A; at least
//   kMinL3Nc columns (the share cpuid reports can be a small fraction of what a core gets) and
//   at most kMaxPackedB bytes (the per-thread buffer).
// The first order is taken where its repacking of A costs at most 1 / kMaxRepackA of the
// product (nc >= 320): on 2 MiB-L2 Xeons (f32 8x32 mc/kc/nc 512/256/1024, f64 8x16 256/256/512:
// the AVX-512 table's former constants, and the order measured there as 10-15% faster than
// BLIS's); the second elsewhere (Zen 3, 32 KiB L1d / 512 KiB L2 / 32 MiB L3 per CCX: AVX2 f32
// 6x16 mc/kc/nc 204/320/3264, where the first order would pack A again every 192 columns).
// Unknown sizes count as 32 KiB L1d, 512 KiB L2 and 2 MiB of L3 per
// core. Only kc changes results: each element's chain of FMAs is cut at the K blocks alone.
// Cost of packing one element, in multiply-adds (to choose the order and the thread split).
constexpr index_t kPackCost = 8;
constexpr index_t kMaxRepackA = 40;
constexpr index_t kMinL3Nc = 1024;
constexpr index_t kMaxPackedB = index_t{4} << 20;

GemmBlocking gemm_blocking_for(index_t mr, index_t nr, index_t elem_bytes, const CacheSizes& cs) {
  const index_t l1 = cs.l1d > 0 ? cs.l1d : 32 * 1024;
  const index_t l2 = cs.l2 > 0 ? cs.l2 : 512 * 1024;
  const index_t l3 = cs.l3 > 0 ? cs.l3 : 2048 * 1024;
  const index_t kc = std::max<index_t>(std::min(2 * l1 / (3 * nr * elem_bytes), l1 / (3 * mr * elem_bytes)) / 8 * 8, 8);
  const index_t nc = std::max<index_t>(l2 / 2 / (kc * elem_bytes) / nr, 4) * nr;
  if (kPackCost * kMaxRepackA <= nc) {
    const index_t mc = std::max<index_t>(l2 / 4 / (kc * elem_bytes) / mr, 1) * mr;
    return {mr, nr, mc, kc, nc, GemmOrder::a_panel_in_l1, cs.l1d, cs.l2, cs.l3};
  }
  const index_t kc_b = std::max<index_t>(l1 * 7 / 8 / ((mr + nr) * elem_bytes) / 8 * 8, 8);
  const index_t mc_b = std::max<index_t>(l2 / 2 / (kc_b * elem_bytes) / mr, 1) * mr;
  const index_t nc_max = std::max<index_t>(kMaxPackedB / (kc_b * elem_bytes) / nr, 1) * nr;
  const index_t nc_b = std::min(nc_max, std::max(round_up(kMinL3Nc, nr), l3 / 2 / (kc_b * elem_bytes) / nr * nr));
  return {mr, nr, mc_b, kc_b, nc_b, GemmOrder::b_sliver_in_l1, cs.l1d, cs.l2, cs.l3};
}

namespace {

// The current table's kernels with their blocks (worked out once per ISA: the caches never change).
template <class T>
GemmKernels<T> blocked(GemmKernels<T> kk) {
  static const auto per_isa = [] {
    std::array<GemmBlocking, kNumIsa> out{};
    for (int i = 0; i < kNumIsa; ++i) out[i] = gemm_blocking(static_cast<Isa>(i), sizeof(T) == 8);
    return out;
  }();
  const GemmBlocking& b = per_isa[static_cast<int>(gemm_table_isa())];
  kk.mc = b.mc;
  kk.kc = b.kc;
  kk.nc = b.nc;
  kk.order = b.order;
  return kk;
}

// The depth of the K blocks of a product of depth K: equal blocks of at most kc_max
// (a multiple of 8), not kc_max blocks and a thin last one (K = 1024 with kc_max = 336:
// four of 256, not 336 + 336 + 336 + 16). Depends on K and kc_max only.
index_t kc_for(index_t K, index_t kc_max) {
  if (K <= kc_max) return kc_max;
  return std::min(kc_max, round_up(ceil_div(K, ceil_div(K, kc_max)), 8));
}

// Per-thread scratch, kept between calls (packing buffers are reused, never
// reallocated per call). Separate slots so one thread can hold A and B panels.
template <class T, int Slot>
T* scratch(index_t n) {
  thread_local AlignedBuffer<T> buf;
  buf.resize(std::max<index_t>(n, 1));
  return buf.data();
}

// Below this many multiply-adds (M*N*K) one thread is faster than two.
constexpr index_t kMinParallelFlops = index_t{96} * 96 * 96;
// Up to this many multiply-adds, row-major A and B are read in place (no packing).
constexpr index_t kMaxDirectFlops = index_t{160} * 160 * 160;

template <class T>
struct Problem {
  index_t M, N, K;
  T alpha;
  const T* A;
  index_t rsa, csa;
  const T* B;
  index_t rsb, csb;
  T beta;
  T* C;
  index_t ldc;
  GemmEpilogue<T> ep;

  // Rows [i0, i1) and columns [j0, j1) of C as a problem of their own.
  Problem block(index_t i0, index_t i1, index_t j0, index_t j1) const {
    Problem s = *this;
    s.M = i1 - i0;
    s.N = j1 - j0;
    s.A += i0 * rsa;
    s.B += j0 * csb;
    s.C += i0 * ldc + j0;
    if (s.ep.bias != nullptr) s.ep.bias += ep.bias_per_row ? i0 : j0;
    return s;
  }
};

// Micro-kernel parameters for the K block starting at pc (of depth kc): the
// first block applies beta, later ones accumulate; the last adds bias and act.
template <class T>
GemmUkernelParams<T> block_params(const Problem<T>& pb, index_t pc, index_t kc) {
  GemmUkernelParams<T> prm;
  prm.alpha = pb.alpha;
  prm.beta = pc == 0 ? pb.beta : T(1);
  if (pc + kc >= pb.K) {
    prm.bias = pb.ep.bias;
    prm.bias_per_row = pb.ep.bias_per_row;
    prm.act = pb.ep.act;
  }
  return prm;
}

// The operands of one macro-kernel call: micro-panel ir of A starts at
// a + ir * a_panel, sliver jr of B at b + jr * b_sliver (packed or in place).
template <class T>
struct Operands {
  const T* a;
  index_t a_rs, a_cs, a_panel;
  const T* b;
  index_t b_rs, b_sliver;
};

// The macro-kernel: the loops around the micro-kernel over an mc x nc block of C whose
// top-left element is (ic, jc), in either order (GemmOrder): ir outside (the MR x kc panel of
// A stays in L1, the slivers of B stream) or jr outside (the kc x NR sliver of B stays in L1,
// the panels of A stream).
template <class T>
void macro_kernel(const GemmKernels<T>& kk, const Problem<T>& pb, const Operands<T>& op, index_t kc, index_t ic,
                  index_t mc, index_t jc, index_t nc, const GemmUkernelParams<T>& prm, GemmOrder order) {
  const index_t MR = kk.mr, NR = kk.nr;
  auto tile = [&](index_t ir, index_t jr) {
    const index_t i = ic + ir * MR, j = jc + jr * NR;
    GemmUkernelParams<T> p = prm;
    if (p.bias != nullptr) p.bias += p.bias_per_row ? i : j;
    kk.ukernel(kc, op.a + ir * op.a_panel, op.a_rs, op.a_cs, op.b + jr * op.b_sliver, op.b_rs,
               pb.C + i * pb.ldc + j, pb.ldc, std::min(MR, mc - ir * MR), std::min(NR, nc - jr * NR), p);
  };
  const index_t panels = ceil_div(mc, MR), slivers = ceil_div(nc, NR);
  if (order == GemmOrder::b_sliver_in_l1) {
    for (index_t jr = 0; jr < slivers; ++jr) {  // 2nd loop (jr) around the micro-kernel
      for (index_t ir = 0; ir < panels; ++ir) tile(ir, jr);  // 1st loop (ir)
    }
  } else {
    for (index_t ir = 0; ir < panels; ++ir) {  // 2nd loop (ir) around the micro-kernel
      for (index_t jr = 0; jr < slivers; ++jr) tile(ir, jr);  // 1st loop (jr)
    }
  }
}

// Small problems with row- or column-major A: A is read in place (no packing).
// A row-major B is read in place too, and only its edge sliver (N % NR
// columns) is copied, zero-padded; any other B (NT: B^T) is packed whole, one
// K block at a time, which is cheaper than the extra pass over A that the
// blocked path would add. Only the edge panel of A (M % MR rows) is copied,
// so that nothing outside A or B is read.
template <class T>
void gemm_direct(const GemmKernels<T>& kk, const Problem<T>& pb) {
  const index_t MR = kk.mr, NR = kk.nr;
  const index_t M = pb.M, N = pb.N, K = pb.K, KC = kc_for(K, kk.kc);
  const index_t full_m = M / MR * MR;
  const bool pack_b = pb.csb != 1;
  const index_t full_n = pack_b ? 0 : N / NR * NR;  // columns of B read in place
  const index_t kc_max = std::min(KC, K);
  T* a_edge = scratch<T, 0>(MR * kc_max);
  T* b_edge = scratch<T, 1>(round_up(N - full_n, NR) * kc_max);
  for (index_t pc = 0; pc < K || pc == 0; pc += KC) {  // 4th loop (pc); K == 0 runs it once
    const index_t kc = std::min(KC, K - pc);
    const GemmUkernelParams<T> prm = block_params(pb, pc, kc);
    if (full_m < M) kk.pack_a(M - full_m, kc, pb.A + full_m * pb.rsa + pc * pb.csa, pb.rsa, pb.csa, a_edge);
    if (full_n < N) kk.pack_b(kc, N - full_n, pb.B + pc * pb.rsb + full_n * pb.csb, pb.rsb, pb.csb, b_edge);
    const Operands<T> in_place{pb.A + pc * pb.csa, pb.rsa, pb.csa, MR * pb.rsa, pb.B + pc * pb.rsb, pb.rsb, NR};
    const Operands<T> edge_a{a_edge, 1, MR, 0, in_place.b, in_place.b_rs, in_place.b_sliver};
    const Operands<T> edge_b{in_place.a, in_place.a_rs, in_place.a_cs, in_place.a_panel, b_edge, NR, NR * kc};
    const Operands<T> edge_ab{a_edge, 1, MR, 0, b_edge, NR, NR * kc};
    constexpr GemmOrder order = GemmOrder::a_panel_in_l1;  // the rows of A read in place stay in L1
    if (full_m > 0 && full_n > 0) macro_kernel(kk, pb, in_place, kc, 0, full_m, 0, full_n, prm, order);
    if (full_m > 0 && full_n < N) macro_kernel(kk, pb, edge_b, kc, 0, full_m, full_n, N - full_n, prm, order);
    if (full_m < M && full_n > 0) macro_kernel(kk, pb, edge_a, kc, full_m, M - full_m, 0, full_n, prm, order);
    if (full_m < M && full_n < N) macro_kernel(kk, pb, edge_ab, kc, full_m, M - full_m, full_n, N - full_n, prm, order);
    if (K == 0) break;
  }
}

// The blocked path: 5th loop jc (NC) -> 4th pc (KC, pack B: the kc x nc block stays
// in L2 or L3, by the order) -> 3rd ic (MC, pack A) -> macro-kernel.
template <class T>
void gemm_packed(const GemmKernels<T>& kk, const Problem<T>& pb) {
  const index_t MR = kk.mr, NR = kk.nr, MC = kk.mc, NC = kk.nc;
  const index_t M = pb.M, N = pb.N, K = pb.K, KC = kc_for(K, kk.kc);
  const index_t kc_max = std::min(KC, K);
  T* a_pack = scratch<T, 0>(kc_max * std::min(MC, round_up(M, MR)));
  T* b_pack = scratch<T, 1>(kc_max * std::min(NC, round_up(N, NR)));
  for (index_t jc = 0; jc < N; jc += NC) {  // 5th loop (jc) around the micro-kernel
    const index_t nc = std::min(NC, N - jc);
    for (index_t pc = 0; pc < K || pc == 0; pc += KC) {  // 4th loop (pc); K == 0 runs it once
      const index_t kc = std::min(KC, K - pc);
      kk.pack_b(kc, nc, pb.B + pc * pb.rsb + jc * pb.csb, pb.rsb, pb.csb, b_pack);
      const GemmUkernelParams<T> prm = block_params(pb, pc, kc);
      for (index_t ic = 0; ic < M; ic += MC) {  // 3rd loop (ic) around the micro-kernel
        const index_t mc = std::min(MC, M - ic);
        kk.pack_a(mc, kc, pb.A + ic * pb.rsa + pc * pb.csa, pb.rsa, pb.csa, a_pack);
        const Operands<T> op{a_pack, 1, MR, MR * kc, b_pack, NR, NR * kc};
        macro_kernel(kk, pb, op, kc, ic, mc, jc, nc, prm, kk.order);
      }
      if (K == 0) break;
    }
  }
}

template <class T>
void gemm_serial(const GemmKernels<T>& kk, const Problem<T>& pb, bool direct) {
  if (pb.M <= 0 || pb.N <= 0) return;
  if (direct) {
    gemm_direct(kk, pb);
  } else {
    gemm_packed(kk, pb);
  }
}

// The 6th loop: the threads take contiguous runs of MR-row panels (split M) or
// of NR-column slivers (split N). Splitting M, each run packs all of B;
// splitting N, all of A: the split with the smaller slowest thread wins.
// Each thread gets one run, except that large packed products are cut into
// kRunsPerThread runs per thread, handed out as threads come free: on a shared
// machine a stalled core then costs a run, not half the product. Each extra run
// packs the other operand again, kPackCost / extent of the product (the extent
// along the split), so the nt extra runs are taken only while that stays below
// 1 / kMaxRepackShare of it (at least 320 rows or columns with 2 threads). Each run
// is a block of C computed whole by one thread, so the bits never depend on which.
constexpr index_t kRunsPerThread = 2;
constexpr index_t kMaxRepackShare = 20;

template <class T>
void gemm_threads(const GemmKernels<T>& kk, const Problem<T>& pb, bool direct, int nt) {
  const index_t MR = kk.mr, NR = kk.nr, M = pb.M, N = pb.N, K = pb.K;
  const index_t pm = ceil_div(M, MR), pn = ceil_div(N, NR);
  const index_t rows_t = ceil_div(pm, nt) * MR, cols_t = ceil_div(pn, nt) * NR;
  const index_t pack_a = direct ? 0 : kPackCost;                     // per element of A
  const index_t pack_b = direct && pb.csb == 1 ? 0 : kPackCost;      // per element of B
  const index_t cost_m = rows_t * pn * NR * K + pack_b * K * pn * NR + pack_a * rows_t * K;
  const index_t cost_n = pm * MR * cols_t * K + pack_a * M * K + pack_b * cols_t * K;
  bool by_rows = cost_m <= cost_n;
  const index_t parts = by_rows ? pm : pn;
  const bool more_runs = !direct && (by_rows ? M : N) >= kMaxRepackShare * kPackCost * nt;
  const index_t nruns = std::min<index_t>(more_runs ? nt * kRunsPerThread : nt, parts);
  nt = static_cast<int>(std::min<index_t>(nt, nruns));
  if (nt <= 1) {
    gemm_serial(kk, pb, direct);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (index_t r = 0; r < nruns; ++r) {
    const index_t p0 = parts * r / nruns, p1 = parts * (r + 1) / nruns;
    if (by_rows) {
      gemm_serial(kk, pb.block(p0 * MR, std::min(M, p1 * MR), 0, N), direct);
    } else {
      gemm_serial(kk, pb.block(0, M, p0 * NR, std::min(N, p1 * NR)), direct);
    }
  }
}

// Direct: A in place; B in place if row-major, else packed whole (at most KC x NC, the
// blocked path's B buffer).
template <class T>
bool direct_path(const GemmKernels<T>& kk, const Problem<T>& pb) {
  return pb.K == 0 || ((pb.csa == 1 || pb.rsa == 1) && (pb.csb == 1 || pb.N <= kk.nc) &&
                       pb.M * pb.N * pb.K <= kMaxDirectFlops);
}

// Long, thin products (a small C and a long K: weight gradients summed over many pixels)
// split along M or N would have every thread pack a whole operand. They are cut along K
// into fixed chunks of kKChunk instead, each multiplied into its own partial C; the
// partials are then summed in chunk order and the epilogue applied, so the bits depend on
// the shape only, never on the thread count.
constexpr index_t kKChunk = 4096;
constexpr index_t kKSplitMaxC = 128 * 128;  // elements of C

template <class T>
void gemm_ksplit(const GemmKernels<T>& kk, const Problem<T>& pb, int nt) {
  const index_t M = pb.M, N = pb.N, nch = ceil_div(pb.K, kKChunk), csize = M * N;
  T* const part = scratch<T, 2>(nch * csize);  // the caller's; chunk threads write their own parts
  nt = static_cast<int>(std::min<index_t>(nt, nch));
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) if (nt > 1)
  for (index_t c = 0; c < nch; ++c) {
    Problem<T> s = pb;
    const index_t k0 = c * kKChunk;
    s.K = std::min(kKChunk, pb.K - k0);
    s.A = pb.A + k0 * pb.csa;
    s.B = pb.B + k0 * pb.rsb;
    s.alpha = T(1);
    s.beta = T(0);
    s.C = part + c * csize;
    s.ldc = N;
    s.ep = {};
    gemm_serial(kk, s, direct_path(kk, s));
  }
  // C = act(alpha * (sum of the partials, in chunk order) + beta * C + bias), as the micro-kernel's epilogue.
  const T* p = part;
  for (index_t i = 0; i < M; ++i) {
    for (index_t j = 0; j < N; ++j) {
      T sum = p[i * N + j];
      for (index_t c = 1; c < nch; ++c) sum += p[c * csize + i * N + j];
      T v = pb.alpha * sum;
      T* cij = pb.C + i * pb.ldc + j;
      if (pb.beta != T(0)) v += pb.beta * *cij;
      if (pb.ep.bias != nullptr) v += pb.ep.bias[pb.ep.bias_per_row ? i : j];
      if (pb.ep.act == Activation::relu) v = T(0) > v ? T(0) : v;  // NaN propagates, as the micro-kernel's
      *cij = v;
    }
  }
}

}  // namespace

// A (M,K) at A[i*rsa + p*csa], B (K,N) at B[p*rsb + j*csb], C (M,N) row stride ldc;
// parallel over M (row panels) or N (column slivers), or over fixed K chunks for long,
// thin products (gemm_ksplit).
template <class T>
void gemm(index_t M, index_t N, index_t K, T alpha, const T* A, index_t rsa, index_t csa, const T* B, index_t rsb,
          index_t csb, T beta, T* C, index_t ldc, const GemmEpilogue<T>& ep, int nthreads) {
  if (M <= 0 || N <= 0) return;
  if (K < 0) K = 0;
  const GemmKernels<T> kk = blocked(gemm_table().get<T>());
  // alpha == 0: A and B are not read (BLAS); C = act(beta * C + bias).
  static const T zero_operand[1] = {T(0)};
  if (alpha == T(0)) K = 0;
  if (K == 0) {
    A = zero_operand;
    B = zero_operand;
    rsa = csa = rsb = csb = 0;
  }
  const Problem<T> pb{M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, ep};
  const index_t flops = M * N * std::max<index_t>(K, 1);
  const bool direct = direct_path(kk, pb);
  int nt = nthreads <= 0 ? get_num_threads() : nthreads;
  if (omp_in_parallel() || flops < kMinParallelFlops) nt = 1;
  if (K >= 2 * kKChunk && M * N <= kKSplitMaxC) {
    gemm_ksplit(kk, pb, nt);
    return;
  }
  gemm_threads(kk, pb, direct, nt);
}

GemmBlocking gemm_blocking(Isa isa, bool f64) {
  const GemmTable& t = gemm_tables.of(isa);
  return f64 ? gemm_blocking_for(t.f64.mr, t.f64.nr, sizeof(double), cache_sizes())
             : gemm_blocking_for(t.f32.mr, t.f32.nr, sizeof(float), cache_sizes());
}

template void gemm<float>(index_t, index_t, index_t, float, const float*, index_t, index_t, const float*, index_t,
                          index_t, float, float*, index_t, const GemmEpilogue<float>&, int);
template void gemm<double>(index_t, index_t, index_t, double, const double*, index_t, index_t, const double*, index_t,
                           index_t, double, double*, index_t, const GemmEpilogue<double>&, int);

}  // namespace gk
