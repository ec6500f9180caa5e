// Losses: fused softmax cross-entropy and mean squared error.
//
// Each forward returns the mean loss and, when a gradient buffer is given,
// writes d loss / d input in the same pass (the backward of a loss is that
// buffer). Rows (cross-entropy) or fixed 4096-element chunks (MSE) are
// reduced into per-row / per-chunk partials summed in a fixed order, so the
// loss has the same bits for any thread count.
#pragma once
#include <cstdint>

#include "gradkit/common.h"

namespace gk {

// logits (N, C) row-major, labels (N,) in [0, C) (checked by the caller).
// loss = mean_i [ lse_i - (1 - eps) x_i,label - eps / C sum_j x_ij ]
// (label smoothing as PyTorch: target (1 - eps) onehot + eps / C).
// dlogits (N, C) or nullptr: (softmax - target) / N. Parallel over rows.
template <class T>
double cross_entropy_forward(T* dlogits, const T* logits, const std::int64_t* labels, index_t N, index_t C,
                             double label_smoothing, int nthreads = 0);

// x, t (n,): loss = mean (x - t)^2; d (n,) or nullptr: 2 (x - t) / n.
// Parallel over 4096-element chunks.
template <class T>
double mse_forward(T* d, const T* x, const T* t, index_t n, int nthreads = 0);

}  // namespace gk
