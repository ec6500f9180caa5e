// The GEMM driver: Goto/BLIS blocking, packing and threading around the
// micro-kernel of the current ISA's table (docs/kernels.md).
//
// A (M,K) and B (K,N) with arbitrary (row, column) strides, C (M,N) row-major
// with row stride ldc. Threads split M (ic loop) or N (jr loop), never K, and
// K is blocked by KC whatever the thread count or path: every element of C is
// the same chain of FMAs on 1 or n threads, so results are bit-identical.
#include "gradkit/gemm.h"

#include <algorithm>

#include "gradkit/isa.h"
#include "gradkit/parallel.h"

namespace gk {

const GemmTable& gemm_table() {
  static const DispatchTable<GemmTable> t(init_gemm_generic, GK_X86_INIT(init_gemm_avx2),
                                          GK_X86_INIT(init_gemm_avx512));
  return t.get();
}

namespace {

template <class T>
const GemmKernels<T>& kernels_for(const GemmTable& t) {
  if constexpr (sizeof(T) == 4) {
    return t.f32;
  } else {
    return t.f64;
  }
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

// The micro-kernel operands of one (jc, pc) step: where micro-panel `ir` of A
// and sliver `jr` of B start, and their strides (packed or in place).
template <class T>
struct Operands {
  const T* a;
  index_t a_rs, a_cs, a_panel;  // panel ir starts at a + ir * a_panel
  const T* b;
  index_t b_rs, b_sliver;  // sliver jr starts at b + (jr - s0) * b_sliver (s0: the first sliver passed)
};

struct Part {
  index_t begin, end;
};
// Part t of nt of [0, n) (static, contiguous).
inline Part part(index_t n, int t, int nt) { return {n * t / nt, n * (t + 1) / nt}; }

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
  const GemmEpilogue<T>* ep;
};

// Micro-kernel parameters for the K block starting at pc (of depth kc): the
// first block applies beta, later ones accumulate; the last adds bias and act.
template <class T>
GemmUkernelParams<T> block_params(const Problem<T>& pb, index_t pc, index_t kc) {
  GemmUkernelParams<T> prm;
  prm.alpha = pb.alpha;
  prm.beta = pc == 0 ? pb.beta : T(1);
  if (pc + kc >= pb.K) {
    prm.bias = pb.ep->bias;
    prm.bias_per_row = pb.ep->bias_per_row;
    prm.act = pb.ep->act;
  }
  return prm;
}

// The macro-kernel: the 2nd (jr) and 1st (ir) loops around the micro-kernel on
// rows [i0, i1) and slivers [s0, s1) of the current block; (ic, jc) is the
// block's origin in C, for C and bias offsets.
template <class T>
void macro_kernel(const GemmKernels<T>& kk, const Problem<T>& pb, const Operands<T>& op, index_t kc, index_t ic,
                  index_t mc, index_t jc, index_t nc, index_t s0, index_t s1, const GemmUkernelParams<T>& prm) {
  const index_t MR = kk.mr, NR = kk.nr;
  for (index_t jr = s0; jr < s1; ++jr) {  // 2nd loop (jr) around the micro-kernel
    const index_t j = jc + jr * NR;
    const index_t n = std::min(NR, jc + nc - j);
    for (index_t ir = 0; ir * MR < mc; ++ir) {  // 1st loop (ir) around the micro-kernel
      const index_t i = ic + ir * MR;
      GemmUkernelParams<T> p = prm;
      if (p.bias != nullptr) p.bias += p.bias_per_row ? i : j;
      kk.ukernel(kc, op.a + ir * op.a_panel, op.a_rs, op.a_cs, op.b + (jr - s0) * op.b_sliver, op.b_rs, pb.C + i * pb.ldc + j,
                 pb.ldc, std::min(MR, ic + mc - i), n, p);
    }
  }
}

// Runs body(t) for t < nt, on nt OpenMP threads (serially when nt == 1).
template <class F>
void run_team(int nt, const F& body) {
  if (nt == 1) {
    body(0);
    return;
  }
#pragma omp parallel num_threads(nt)
  body(omp_get_thread_num());
}

// Thread layout: split M (each thread its own rows, all of B shared) or N
// (each thread its own slivers of B and all rows), whichever balances better.
template <class T>
bool split_rows(const GemmKernels<T>& kk, index_t M, index_t N, int nt) {
  if (nt == 1) return true;
  const index_t pm = ceil_div(M, kk.mr), pn = ceil_div(N, kk.nr);
  const double eff_m = static_cast<double>(pm) / static_cast<double>(nt * ceil_div(pm, nt));
  const double eff_n = static_cast<double>(pn) / static_cast<double>(nt * ceil_div(pn, nt));
  return eff_m >= eff_n;
}

// Small or skinny problems with row-major A and B: no packing (only edge
// panels and slivers are copied, zero-padded), no barriers. Threads take
// disjoint row panels or column slivers.
template <class T>
void gemm_direct(const GemmKernels<T>& kk, const Problem<T>& pb, int nt) {
  const index_t MR = kk.mr, NR = kk.nr, KC = kk.kc;
  const index_t M = pb.M, N = pb.N, K = pb.K;
  const bool by_rows = split_rows(kk, M, N, nt);
  const index_t full_m = M / MR * MR, full_n = N / NR * NR;
  auto body = [&](int t) {
    const Part pr = by_rows ? part(ceil_div(M, MR), t, nt) : Part{0, ceil_div(M, MR)};
    const Part ps = by_rows ? Part{0, ceil_div(N, NR)} : part(ceil_div(N, NR), t, nt);
    if (pr.begin >= pr.end || ps.begin >= ps.end) return;
    const index_t kc_max = std::min(KC, K);
    T* a_edge = scratch<T, 0>(MR * kc_max);
    T* b_edge = scratch<T, 1>(NR * kc_max);
    for (index_t pc = 0; pc < K || pc == 0; pc += KC) {  // 4th loop (pc); K == 0 runs once
      const index_t kc = std::min(KC, K - pc);
      const GemmUkernelParams<T> prm = block_params(pb, pc, kc);
      const bool a_tail = pr.end * MR > full_m, b_tail = ps.end * NR > full_n;
      if (a_tail) kk.pack_a(M - full_m, kc, pb.A + full_m * pb.rsa + pc * pb.csa, pb.rsa, pb.csa, a_edge);
      if (b_tail) kk.pack_b(kc, N - full_n, pb.B + pc * pb.rsb + full_n * pb.csb, pb.rsb, pb.csb, b_edge);
      const Operands<T> full{pb.A + pc * pb.csa, pb.rsa, pb.csa, MR * pb.rsa, pb.B + pc * pb.rsb + ps.begin * NR, pb.rsb, NR};
      // Four regions: full panels x full slivers, and the zero-padded edges.
      const index_t ir_full = std::min(pr.end, full_m / MR), jr_full = std::min(ps.end, full_n / NR);
      const index_t m0 = pr.begin * MR, m_full = std::max(ir_full * MR - m0, index_t{0});
      if (m_full > 0 && jr_full > ps.begin) {
        Operands<T> op = full;
        op.a += m0 * pb.rsa;
        macro_kernel(kk, pb, op, kc, m0, m_full, 0, N, ps.begin, jr_full, prm);
      }
      if (m_full > 0 && b_tail) {
        Operands<T> op = full;
        op.a += m0 * pb.rsa;
        op.b = b_edge;
        op.b_rs = NR;
        macro_kernel(kk, pb, op, kc, m0, m_full, 0, N, full_n / NR, full_n / NR + 1, prm);
      }
      if (a_tail) {
        const Operands<T> ea{a_edge, 1, MR, 0, full.b, full.b_rs, full.b_sliver};
        if (jr_full > ps.begin) macro_kernel(kk, pb, ea, kc, full_m, M - full_m, 0, N, ps.begin, jr_full, prm);
        if (b_tail) {
          Operands<T> op = ea;
          op.b = b_edge;
          op.b_rs = NR;
          macro_kernel(kk, pb, op, kc, full_m, M - full_m, 0, N, full_n / NR, full_n / NR + 1, prm);
        }
      }
      if (K == 0) break;
    }
  };
  run_team(nt, body);
}

// The blocked path: 5th loop jc (NC) -> 4th pc (KC, pack B) -> 3rd ic (MC, pack A)
// -> macro-kernel. Packed A is private per thread. Splitting rows, packed B of
// a (jc, pc) step is shared: each thread packs part of its slivers, and two
// barriers per step guard it. Splitting columns, each thread packs its own
// slivers into its own buffer and no barrier is needed.
template <class T>
void gemm_packed(const GemmKernels<T>& kk, const Problem<T>& pb, int nt) {
  const index_t MR = kk.mr, NR = kk.nr, MC = kk.mc, KC = kk.kc, NC = kk.nc;
  const index_t M = pb.M, N = pb.N, K = pb.K;
  const bool by_rows = split_rows(kk, M, N, nt);
  const index_t kc_max = std::min(KC, K), nc_max = round_up(std::min(NC, N), NR);
  T* b_shared = by_rows ? scratch<T, 1>(kc_max * nc_max) : nullptr;  // shared by the team
  auto body = [&](int t) {
    T* a_pack = scratch<T, 0>(kc_max * std::min(MC, round_up(M, MR)));
    T* b_pack = by_rows ? b_shared : scratch<T, 1>(kc_max * nc_max);  // splitting N: this thread's own
    const Part pr = by_rows ? part(ceil_div(M, MR), t, nt) : Part{0, ceil_div(M, MR)};
    const index_t m_begin = pr.begin * MR, m_end = std::min(M, pr.end * MR);
    for (index_t jc = 0; jc < N; jc += NC) {  // 5th loop (jc) around the micro-kernel
      const index_t nc = std::min(NC, N - jc);
      const index_t slivers = ceil_div(nc, NR);
      const Part ps = part(slivers, t, nt);  // slivers this thread packs (and, splitting N, computes)
      for (index_t pc = 0; pc < K || pc == 0; pc += KC) {  // 4th loop (pc); K == 0 runs once
        const index_t kc = std::min(KC, K - pc);
        if (ps.end > ps.begin) {
          const index_t j0 = ps.begin * NR;
          kk.pack_b(kc, std::min(nc - j0, (ps.end - ps.begin) * NR), pb.B + pc * pb.rsb + (jc + j0) * pb.csb, pb.rsb,
                    pb.csb, b_pack + (by_rows ? ps.begin * NR * kc : 0));
        }
        if (by_rows && nt > 1) {
#pragma omp barrier
        }
        const GemmUkernelParams<T> prm = block_params(pb, pc, kc);
        const Part cs = by_rows ? Part{0, slivers} : ps;
        for (index_t ic = m_begin; ic < m_end && cs.end > cs.begin; ic += MC) {  // 3rd loop (ic)
          const index_t mc = std::min(MC, m_end - ic);
          kk.pack_a(mc, kc, pb.A + ic * pb.rsa + pc * pb.csa, pb.rsa, pb.csa, a_pack);
          const Operands<T> op{a_pack, 1, MR, MR * kc, b_pack, NR, NR * kc};
          macro_kernel(kk, pb, op, kc, ic, mc, jc, nc, cs.begin, cs.end, prm);
        }
        if (by_rows && nt > 1) {
#pragma omp barrier
        }
        if (K == 0) break;
      }
    }
  };
  run_team(nt, body);
}

}  // namespace

// A (M,K) at A[i*rsa + p*csa], B (K,N) at B[p*rsb + j*csb], C (M,N) row stride ldc;
// parallel over M (row panels) or N (column slivers), never K.
template <class T>
void gemm(index_t M, index_t N, index_t K, T alpha, const T* A, index_t rsa, index_t csa, const T* B, index_t rsb,
          index_t csb, T beta, T* C, index_t ldc, const GemmEpilogue<T>& ep, int nthreads) {
  if (M <= 0 || N <= 0) return;
  if (K < 0) K = 0;
  const GemmKernels<T>& kk = kernels_for<T>(gemm_table());
  // alpha == 0: A and B are not read (BLAS); C = act(beta * C + bias).
  static const T zero_operand[1] = {T(0)};
  if (alpha == T(0)) K = 0;
  if (K == 0) {
    A = zero_operand;
    B = zero_operand;
    rsa = csa = rsb = csb = 0;
  }
  const Problem<T> pb{M, N, K, alpha, A, rsa, csa, B, rsb, csb, beta, C, ldc, &ep};
  const index_t flops = M * N * std::max<index_t>(K, 1);
  int nt = nthreads <= 0 ? get_num_threads() : nthreads;
  if (omp_in_parallel() || flops < kMinParallelFlops) nt = 1;
  const index_t max_parts = std::max(ceil_div(M, kk.mr), ceil_div(N, kk.nr));
  nt = static_cast<int>(std::min<index_t>(nt, max_parts));
  const bool direct = (K == 0) || (csa == 1 && csb == 1 && flops <= kMaxDirectFlops);
  if (direct) {
    gemm_direct(kk, pb, nt);
  } else {
    gemm_packed(kk, pb, nt);
  }
}

template void gemm<float>(index_t, index_t, index_t, float, const float*, index_t, index_t, const float*, index_t,
                          index_t, float, float*, index_t, const GemmEpilogue<float>&, int);
template void gemm<double>(index_t, index_t, index_t, double, const double*, index_t, index_t, const double*, index_t,
                           index_t, double, double*, index_t, const GemmEpilogue<double>&, int);

}  // namespace gk
