// Data pipeline kernels (see gradkit/data.h): plain loops, auto-vectorised.
#include "gradkit/data.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "gradkit/parallel.h"
#include "gradkit/rng.h"

namespace gk {

namespace {

// Below this many bytes moved, one thread: a batch of a few hundred KB copies in tens of
// microseconds, less than waking a team costs (far less on a loaded machine).
constexpr index_t kSerialBytes = index_t{4} << 20;

int data_threads(index_t bytes, int nthreads) { return bytes < kSerialBytes ? 1 : nthreads; }

}  // namespace

// out (m, row_bytes), src (*, row_bytes), idx (m,); parallel over rows in sorted source order.
void gather_rows(char* out, const char* src, const std::int64_t* idx, index_t m, index_t row_bytes, int nthreads) {
  if (m <= 0 || row_bytes <= 0) return;
  // (source row, destination row) sorted by source: each thread then reads an increasing
  // run of the source, so a memmap is read forward instead of at random.
  std::vector<std::pair<std::int64_t, index_t>> order(static_cast<size_t>(m));
  for (index_t i = 0; i < m; ++i) order[i] = {idx[i], i};
  std::sort(order.begin(), order.end());
  parallel_for(
      m, m * row_bytes,
      [&](index_t i0, index_t i1) {
        for (index_t i = i0; i < i1; ++i) {
          std::memcpy(out + order[i].second * row_bytes, src + order[i].first * row_bytes,
                      static_cast<size_t>(row_bytes));
        }
      },
      data_threads(m * row_bytes, nthreads));
}

namespace {

GK_ALWAYS_INLINE Philox4x32 image_draw(std::uint64_t key, std::uint64_t stream, std::uint32_t slot, index_t i) {
  return philox4x32(key, (static_cast<std::uint64_t>(slot) << 32) | static_cast<std::uint64_t>(i), stream);
}

}  // namespace

// offsets (n, 2); one Philox block per image. The modulo bias is below 2^-20 for ranges < 4096.
void random_crop_draws(std::int32_t* offsets, index_t n, std::uint64_t key, std::uint64_t stream,
                       std::uint32_t slot, index_t range_y, index_t range_x) {
  for (index_t i = 0; i < n; ++i) {
    const Philox4x32 r = image_draw(key, stream, slot, i);
    offsets[2 * i] = static_cast<std::int32_t>(r.v[0] % static_cast<std::uint32_t>(range_y + 1));
    offsets[2 * i + 1] = static_cast<std::int32_t>(r.v[1] % static_cast<std::uint32_t>(range_x + 1));
  }
}

// flags (n,); one Philox block per image, compared as a 24-bit uniform.
void random_flip_draws(std::uint8_t* flags, index_t n, std::uint64_t key, std::uint64_t stream, std::uint32_t slot,
                       double p) {
  for (index_t i = 0; i < n; ++i) {
    const Philox4x32 r = image_draw(key, stream, slot, i);
    flags[i] = static_cast<double>(uint_to_unit_float(r.v[0])) < p ? 1 : 0;
  }
}

// out (n,c,oh,ow), inp (n,c,h,w), offsets (n,2) into the image padded by `pad`; parallel over n*c planes.
void crop_forward(float* out, const float* inp, const std::int32_t* offsets, index_t n, index_t c, index_t h,
                  index_t w, index_t oh, index_t ow, index_t pad, int nthreads) {
  const index_t bytes = n * c * oh * ow * 8;  // read and written
  parallel_for(
      n * c, bytes,
      [&](index_t p0, index_t p1) {
        for (index_t p = p0; p < p1; ++p) {
          const index_t img = p / c;
          const index_t y0 = offsets[2 * img] - pad, x0 = offsets[2 * img + 1] - pad;  // source of out (0, 0)
          const float* src = inp + p * h * w;
          float* dst = out + p * oh * ow;
          // Output columns [xa, xb) come from the image; the rest are padding.
          const index_t xa = std::clamp<index_t>(-x0, 0, ow), xb = std::clamp<index_t>(w - x0, xa, ow);
          for (index_t y = 0; y < oh; ++y) {
            float* row = dst + y * ow;
            const index_t sy = y + y0;
            if (sy < 0 || sy >= h) {
              std::fill(row, row + ow, 0.0f);
              continue;
            }
            std::fill(row, row + xa, 0.0f);
            if (xb > xa) std::memcpy(row + xa, src + sy * w + x0 + xa, static_cast<size_t>(xb - xa) * sizeof(float));
            std::fill(row + xb, row + ow, 0.0f);
          }
        }
      },
      data_threads(bytes, nthreads));
}

// out (n,c,rows,w), inp (n,c,rows,w), flags (n,); parallel over n*c planes.
void hflip_forward(float* out, const float* inp, const std::uint8_t* flags, index_t n, index_t c, index_t rows,
                   index_t w, int nthreads) {
  const index_t bytes = n * c * rows * w * 8;  // read and written
  parallel_for(
      n * c, bytes,
      [&](index_t p0, index_t p1) {
        for (index_t p = p0; p < p1; ++p) {
          const float* src = inp + p * rows * w;
          float* dst = out + p * rows * w;
          if (!flags[p / c]) {
            std::memcpy(dst, src, static_cast<size_t>(rows * w) * sizeof(float));
            continue;
          }
          for (index_t y = 0; y < rows; ++y) {
            const float* s = src + y * w;
            float* d = dst + y * w;
            for (index_t x = 0; x < w; ++x) d[x] = s[w - 1 - x];
          }
        }
      },
      data_threads(bytes, nthreads));
}

// out (n,c,hw), inp (n,c,hw), scale/shift (c,); parallel over n*c planes.
void normalize_forward(float* out, const float* inp, const float* scale, const float* shift, index_t n, index_t c,
                       index_t hw, int nthreads) {
  const index_t bytes = n * c * hw * 8;  // read and written
  parallel_for(
      n * c, bytes,
      [&](index_t p0, index_t p1) {
        for (index_t p = p0; p < p1; ++p) {
          const float a = scale[p % c], b = shift[p % c];
          const float* s = inp + p * hw;
          float* d = out + p * hw;
          for (index_t k = 0; k < hw; ++k) d[k] = s[k] * a + b;
        }
      },
      data_threads(bytes, nthreads));
}

}  // namespace gk
