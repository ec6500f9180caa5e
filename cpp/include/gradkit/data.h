// Data pipeline kernels: gather rows by index, and augmentation of NCHW float32
// batches (crop with zero padding, horizontal flip, per-channel normalize).
//
// These are memory-bound and compiled without ISA flags (auto-vectorised).
// Random draws are separate from the kernels: per image i, draw block
// philox4x32(key, (slot << 32) | i, stream), so a batch's augmentation depends
// only on (key, stream, slot), never on the thread count.
#pragma once
#include <cstdint>

#include "gradkit/common.h"

namespace gk {

// out (m, row_bytes) <- src rows idx[0..m) (each row row_bytes bytes). Rows are read
// in increasing source order (page-cache friendly for memmaps); idx must be in range.
void gather_rows(char* out, const char* src, const std::int64_t* idx, index_t m, index_t row_bytes,
                 int nthreads = 0);

// Per-image crop offsets into the zero-padded image: oy in [0, range_y], ox in [0, range_x].
// offsets (n, 2) int32.
void random_crop_draws(std::int32_t* offsets, index_t n, std::uint64_t key, std::uint64_t stream,
                       std::uint32_t slot, index_t range_y, index_t range_x);
// Per-image flip flags: flags[i] = 1 with probability p. flags (n,) uint8.
void random_flip_draws(std::uint8_t* flags, index_t n, std::uint64_t key, std::uint64_t stream,
                       std::uint32_t slot, double p);

// out (n,c,oh,ow), inp (n,c,h,w), offsets (n,2): out[..,y,x] = inp[..,y+oy-pad,x+ox-pad] or 0
// outside the image. Parallel over n*c planes.
void crop_forward(float* out, const float* inp, const std::int32_t* offsets, index_t n, index_t c, index_t h,
                  index_t w, index_t oh, index_t ow, index_t pad, int nthreads = 0);
// out (n,c,h,w), inp (n,c,h,w), flags (n,): rows of image i reversed where flags[i]. Parallel over n*c planes.
void hflip_forward(float* out, const float* inp, const std::uint8_t* flags, index_t n, index_t c, index_t rows,
                   index_t w, int nthreads = 0);
// out (n,c,hw), inp (n,c,hw), scale/shift (c,): out = inp * scale[c] + shift[c]. out may be inp.
// Parallel over n*c planes.
void normalize_forward(float* out, const float* inp, const float* scale, const float* shift, index_t n, index_t c,
                       index_t hw, int nthreads = 0);

}  // namespace gk
