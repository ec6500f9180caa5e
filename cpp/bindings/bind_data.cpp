// Data pipeline: gather rows by index, augmentation draws and kernels (gradkit/data.h).
#include <cstdint>

#include "common.h"
#include "gradkit/data.h"

namespace gk::bind {

namespace {

bool c_contiguous(const py::array& a) {
  return (py::detail::array_proxy(a.ptr())->flags & py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_) != 0;
}

// A 4-D float32 NCHW input.
carray<float> nchw(const py::handle& obj, const char* name) {
  auto a = in<float>(obj, name);
  check_ndim(a, 4, name);
  return a;
}

void check_nthreads(int nthreads) {
  if (nthreads < 0) value_error("nthreads", "an integer >= 0 (0: the global setting)", std::to_string(nthreads));
}

}  // namespace

void bind_data(py::module_& m) {
  m.def(
      "gather_rows",
      [](const py::handle& out_obj, const py::handle& src_obj, const py::handle& idx_obj, int nthreads) {
        check_nthreads(nthreads);
        if (!py::isinstance<py::array>(src_obj)) type_error("src", "a numpy.ndarray", dtype_str(src_obj));
        auto src = py::reinterpret_borrow<py::array>(src_obj);
        if (src.ndim() < 1) value_error("src", "an array of shape (N, ...)", "a 0-d array");
        if (!c_contiguous(src)) value_error("src", "a C-contiguous array", "a non-contiguous one");
        // A row copy of Python object pointers would skip their reference counts (a crash later).
        if (src.dtype().attr("hasobject").cast<bool>()) {
          type_error("src", "an array without Python objects (gather those with numpy.take)", dtype_str(src_obj));
        }
        if (!py::isinstance<py::array>(out_obj)) type_error("out", "a numpy.ndarray", dtype_str(out_obj));
        auto out = py::reinterpret_borrow<py::array>(out_obj);
        if (!out.dtype().is(src.dtype())) {
          type_error("out", "dtype " + std::string(py::str(src.dtype())) + " (as src)", dtype_str(out_obj));
        }
        if (!c_contiguous(out)) value_error("out", "a C-contiguous array", "a non-contiguous one");
        if (!out.writeable()) value_error("out", "a writeable array", "a read-only one");
        auto idx = in<std::int64_t>(idx_obj, "idx");
        check_ndim(idx, 1, "idx");
        const index_t m_rows = idx.shape(0), n_rows = src.shape(0);
        std::vector<py::ssize_t> shape(src.shape(), src.shape() + src.ndim());
        shape[0] = m_rows;
        check_shape(out, shape, "out");
        const std::int64_t* ix = idx.data();
        for (index_t i = 0; i < m_rows; ++i) {
          if (ix[i] < 0 || ix[i] >= n_rows) {
            throw py::index_error("idx: expected indices in [0, " + std::to_string(n_rows) + "), got " +
                                  std::to_string(ix[i]) + " at position " + std::to_string(i));
          }
        }
        index_t row_bytes = static_cast<index_t>(src.itemsize());
        for (py::ssize_t d = 1; d < src.ndim(); ++d) row_bytes *= src.shape(d);
        char* po = static_cast<char*>(out.mutable_data());
        const char* ps = static_cast<const char*>(src.data());
        py::gil_scoped_release release;
        gather_rows(po, ps, ix, m_rows, row_bytes, nthreads);
      },
      py::arg("out"), py::arg("src"), py::arg("idx"), py::arg("nthreads") = 0,
      "out[i] = src[idx[i]] for rows of any dtype (src C-contiguous, e.g. a memmap); GIL released.");

  m.def(
      "random_crop_draws",
      [](index_t n, std::uint64_t key, std::uint64_t stream, std::uint32_t slot, index_t range_y, index_t range_x) {
        if (n < 0) value_error("n", "an integer >= 0", std::to_string(n));
        if (range_y < 0 || range_x < 0 || range_y >= (index_t{1} << 31) || range_x >= (index_t{1} << 31)) {
          value_error("range_y, range_x", "integers in [0, 2**31)",
                      std::to_string(range_y) + ", " + std::to_string(range_x));
        }
        auto offsets = empty<std::int32_t>({static_cast<py::ssize_t>(n), 2});
        random_crop_draws(offsets.mutable_data(), n, key, stream, slot, range_y, range_x);
        return offsets;
      },
      py::arg("n"), py::arg("key"), py::arg("stream"), py::arg("slot"), py::arg("range_y"), py::arg("range_x"),
      "Crop offsets (n, 2) int32 of image i from Philox block (key, (slot << 32) | i, stream).");
  m.def(
      "random_flip_draws",
      [](index_t n, std::uint64_t key, std::uint64_t stream, std::uint32_t slot, double p) {
        if (n < 0) value_error("n", "an integer >= 0", std::to_string(n));
        auto flags = empty<std::uint8_t>({static_cast<py::ssize_t>(n)});
        random_flip_draws(flags.mutable_data(), n, key, stream, slot, p);
        return flags;
      },
      py::arg("n"), py::arg("key"), py::arg("stream"), py::arg("slot"), py::arg("p"),
      "Flip flags (n,) uint8 of image i: 1 with probability p, from Philox block (key, (slot << 32) | i, stream).");

  m.def(
      "crop_forward",
      [](const py::handle& out_obj, const py::handle& inp_obj, const py::handle& off_obj, index_t pad, int nthreads) {
        check_nthreads(nthreads);
        auto inp = nchw(inp_obj, "inp");
        auto out = gk::bind::out<float>(out_obj, "out");
        check_ndim(out, 4, "out");
        const index_t n = inp.shape(0), c = inp.shape(1), h = inp.shape(2), w = inp.shape(3);
        const index_t oh = out.shape(2), ow = out.shape(3);
        check_shape(out, {n, c, oh, ow}, "out");
        if (pad < 0) value_error("pad", "an integer >= 0", std::to_string(pad));
        auto off = in<std::int32_t>(off_obj, "offsets");
        check_shape(off, {n, 2}, "offsets");
        const std::int32_t* po = off.data();
        for (index_t i = 0; i < n; ++i) {
          if (po[2 * i] < 0 || po[2 * i] > h + 2 * pad - oh || po[2 * i + 1] < 0 || po[2 * i + 1] > w + 2 * pad - ow) {
            value_error("offsets", "crop offsets in [0, " + std::to_string(h + 2 * pad - oh) + "] x [0, " +
                                       std::to_string(w + 2 * pad - ow) + "]",
                        std::to_string(po[2 * i]) + ", " + std::to_string(po[2 * i + 1]) + " for image " +
                            std::to_string(i));
          }
        }
        float* pout = out.mutable_data();
        const float* pin = inp.data();
        py::gil_scoped_release release;
        crop_forward(pout, pin, po, n, c, h, w, oh, ow, pad, nthreads);
      },
      py::arg("out"), py::arg("inp"), py::arg("offsets"), py::arg("pad"), py::arg("nthreads") = 0,
      "out (N,C,OH,OW) <- crops of inp (N,C,H,W) zero-padded by pad, at offsets (N,2) [oy, ox].");
  m.def(
      "hflip_forward",
      [](const py::handle& out_obj, const py::handle& inp_obj, const py::handle& flags_obj, int nthreads) {
        check_nthreads(nthreads);
        auto inp = nchw(inp_obj, "inp");
        auto out = gk::bind::out<float>(out_obj, "out");
        check_shape(out, {inp.shape(0), inp.shape(1), inp.shape(2), inp.shape(3)}, "out");
        if (out.data() == inp.data() && inp.size() > 0) value_error("out", "a buffer other than inp", "inp itself");
        auto flags = in<std::uint8_t>(flags_obj, "flags");
        check_shape(flags, {inp.shape(0)}, "flags");
        float* pout = out.mutable_data();
        const float* pin = inp.data();
        const std::uint8_t* pf = flags.data();
        py::gil_scoped_release release;
        hflip_forward(pout, pin, pf, inp.shape(0), inp.shape(1), inp.shape(2), inp.shape(3), nthreads);
      },
      py::arg("out"), py::arg("inp"), py::arg("flags"), py::arg("nthreads") = 0,
      "out (N,C,H,W) <- inp with the W axis reversed for images whose flag is set.");
  m.def(
      "normalize_forward",
      [](const py::handle& out_obj, const py::handle& inp_obj, const py::handle& scale_obj,
         const py::handle& shift_obj, int nthreads) {
        check_nthreads(nthreads);
        auto inp = nchw(inp_obj, "inp");
        auto out = gk::bind::out<float>(out_obj, "out");
        check_shape(out, {inp.shape(0), inp.shape(1), inp.shape(2), inp.shape(3)}, "out");
        auto scale = in<float>(scale_obj, "scale");
        auto shift = in<float>(shift_obj, "shift");
        check_shape(scale, {inp.shape(1)}, "scale");
        check_shape(shift, {inp.shape(1)}, "shift");
        float* pout = out.mutable_data();
        const float* pin = inp.data();
        const float *pa = scale.data(), *pb = shift.data();
        py::gil_scoped_release release;
        normalize_forward(pout, pin, pa, pb, inp.shape(0), inp.shape(1), inp.shape(2) * inp.shape(3), nthreads);
      },
      py::arg("out"), py::arg("inp"), py::arg("scale"), py::arg("shift"), py::arg("nthreads") = 0,
      "out = inp * scale[c] + shift[c] per channel of an NCHW batch (out may be inp).");
}

}  // namespace gk::bind
