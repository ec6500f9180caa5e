// Element-wise kernels: activations (forward and backward) and dropout.
//
// Every kernel is element-wise, so results are the same bits for any thread
// count. The per-ISA kernels work on one contiguous range; the drivers
// (cpp/eltwise/eltwise.cpp) split the range over threads and pick streaming
// stores for outputs larger than the cache.
#pragma once
#include <cstdint>

#include "gradkit/common.h"
#include "gradkit/isa.h"

namespace gk {

// The activations. Backward reads the saved OUTPUT y for sigmoid, tanh and
// relu (the module keeps only y) and the saved INPUT x for the others.
enum class Act : int { sigmoid = 0, tanh, relu, leaky_relu, elu, gelu };
constexpr int kNumAct = 6;
const char* act_name(Act act);
// True when backward takes the forward output (else the forward input).
constexpr bool act_backward_from_output(Act act) {
  return act == Act::sigmoid || act == Act::tanh || act == Act::relu;
}

// y = f(x) on n elements; alpha is leaky_relu's negative_slope or elu's alpha.
// stream: y is written with non-temporal stores (large outputs).
template <class T>
using ActForwardFn = void (*)(T* y, const T* x, index_t n, T alpha, bool stream);
// dx = dy * f'(.) from s = y or x (see act_backward_from_output).
template <class T>
using ActBackwardFn = void (*)(T* dx, const T* dy, const T* s, index_t n, T alpha, bool stream);
// y[i] = x[i] * (bit i of mask ? scale : 0); mask is packed 8 elements a byte,
// little-endian bit order (numpy.packbits(bitorder="little")).
template <class T>
using DropoutApplyFn = void (*)(T* y, const T* x, const std::uint8_t* mask, index_t n, T scale);
// Softmax cross-entropy on rows [0, rows) of (rows, C) logits: writes each row's
// loss to row_loss and, when dlogits != nullptr,
//   dlogits = grad_scale * (softmax - (1 - eps) onehot(label) - eps / C),
// using scratch (C values) for one row at a time; stream: non-temporal stores.
template <class T>
using CrossEntropyFn = void (*)(T* dlogits, double* row_loss, T* scratch, const T* logits,
                                const std::int64_t* labels, index_t rows, index_t C, T eps, T grad_scale, bool stream);
// Returns sum((x - t)^2) over n elements; when d != nullptr writes
// d = grad_scale * (x - t).
template <class T>
using SquaredErrorFn = double (*)(T* d, const T* x, const T* t, index_t n, T grad_scale);

// Dropout keep-mask bytes [byte0, byte1) for n elements: bit j of byte b is
// (Philox word (b * 8 + j) % 4 of block offset + (b * 8 + j) / 4 under key) >= threshold;
// bits at or beyond n are 0.
using DropoutMaskFn = void (*)(std::uint8_t* mask, index_t byte0, index_t byte1, index_t n, std::uint64_t key,
                               std::uint64_t offset, std::uint32_t threshold);

template <class T>
struct EltwiseKernels {
  ActForwardFn<T> forward[kNumAct];
  ActBackwardFn<T> backward[kNumAct];
  DropoutApplyFn<T> dropout_apply;
  CrossEntropyFn<T> cross_entropy;
  SquaredErrorFn<T> squared_error;
};

struct EltwiseTable : DtypeTable<EltwiseKernels> {
  DropoutMaskFn dropout_mask;
};
GK_DECLARE_DISPATCH(eltwise, EltwiseTable)

// x (n,) -> y (n,); y may be x (in place). Parallel over contiguous blocks.
// nthreads: 0 = the global setting.
template <class T>
void act_forward(Act act, T* y, const T* x, index_t n, T alpha, int nthreads = 0);
// dy, s (n,) -> dx (n,); dx may be dy.
template <class T>
void act_backward(Act act, T* dx, const T* dy, const T* s, index_t n, T alpha, int nthreads = 0);

// Inverted dropout: element i is kept when the 32-bit Philox word for i is
// >= p * 2^32 (Philox block offset + i / 4, word i % 4, offset from
// rng_reserve), so the mask depends on the seed only, never on the thread
// count. y = x / (1 - p) where kept, 0 elsewhere; mask ((n + 7) / 8 bytes)
// records the kept elements. 0 <= p < 1.
template <class T>
void dropout_forward(T* y, std::uint8_t* mask, const T* x, index_t n, double p, int nthreads = 0);
// dx = dy / (1 - p) where the mask bit is set, 0 elsewhere; dx may be dy.
template <class T>
void dropout_backward(T* dx, const T* dy, const std::uint8_t* mask, index_t n, double p, int nthreads = 0);

}  // namespace gk
