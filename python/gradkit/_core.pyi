"""
gradkit C++ kernels (internal; use gradkit.ops)
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['OptimHyper', 'activation_stats', 'avg_pool2d_backward', 'avg_pool2d_forward', 'batch_norm_backward', 'batch_norm_forward', 'batch_norm_relu_backward', 'batch_norm_relu_forward', 'batch_norm_relu_pool2_backward', 'batch_norm_relu_pool2_forward', 'build_info', 'clip_grad_norm', 'conv2d_backward', 'conv2d_forward', 'crop_forward', 'cross_entropy', 'dropout_backward', 'dropout_forward', 'elu_backward', 'elu_forward', 'gather_rows', 'gelu_backward', 'gelu_forward', 'gemm', 'gemm_blocking', 'get_isa', 'get_num_threads', 'global_avg_pool2d_backward', 'global_avg_pool2d_forward', 'group_norm_backward', 'group_norm_forward', 'hflip_forward', 'kernel_isas', 'layer_norm_backward', 'layer_norm_forward', 'leaky_relu_backward', 'leaky_relu_forward', 'manual_seed', 'max_pool2d_backward', 'max_pool2d_forward', 'mse', 'normalize_forward', 'optim_step', 'random_crop_draws', 'random_flip_draws', 'relu_backward', 'relu_forward', 'rng_bits', 'rng_normal', 'rng_state', 'rng_uniform', 'set_isa', 'set_num_threads', 'set_rng_state', 'sigmoid_backward', 'sigmoid_forward', 'supported_isas', 'tanh_backward', 'tanh_forward']
class OptimHyper:
    """
    The hyperparameters of one param group's update, by name (PyTorch's meanings; gradkit/optim.h). weight_decay is the coupled L2 term except with decoupled (AdamW); l1 adds l1 * sign(p) to the gradient.
    """
    def __init__(self, *, kind: str, lr: typing.SupportsFloat | typing.SupportsIndex, weight_decay: typing.SupportsFloat | typing.SupportsIndex = 0.0, l1: typing.SupportsFloat | typing.SupportsIndex = 0.0, eps: typing.SupportsFloat | typing.SupportsIndex = 0.0, momentum: typing.SupportsFloat | typing.SupportsIndex = 0.0, dampening: typing.SupportsFloat | typing.SupportsIndex = 0.0, nesterov: bool = False, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0, centered: bool = False, lr_decay: typing.SupportsFloat | typing.SupportsIndex = 0.0, beta1: typing.SupportsFloat | typing.SupportsIndex = 0.0, beta2: typing.SupportsFloat | typing.SupportsIndex = 0.0, amsgrad: bool = False, decoupled: bool = False) -> None:
        ...
    def __repr__(self) -> str:
        ...
    @property
    def alpha(self) -> float:
        """
        RMSprop
        """
    @alpha.setter
    def alpha(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def amsgrad(self) -> bool:
        """
        Adam
        """
    @amsgrad.setter
    def amsgrad(self, arg0: bool) -> None:
        ...
    @property
    def beta1(self) -> float:
        """
        Adam
        """
    @beta1.setter
    def beta1(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def beta2(self) -> float:
        """
        Adam
        """
    @beta2.setter
    def beta2(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def centered(self) -> bool:
        """
        RMSprop
        """
    @centered.setter
    def centered(self, arg0: bool) -> None:
        ...
    @property
    def dampening(self) -> float:
        """
        SGD
        """
    @dampening.setter
    def dampening(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def decoupled(self) -> bool:
        """
        Adam: AdamW's decoupled weight decay
        """
    @decoupled.setter
    def decoupled(self, arg0: bool) -> None:
        ...
    @property
    def eps(self) -> float:
        ...
    @eps.setter
    def eps(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def kind(self) -> str:
        """
        'sgd', 'adagrad', 'rmsprop' or 'adam' (Adam and AdamW)
        """
    @kind.setter
    def kind(self, arg1: str) -> None:
        ...
    @property
    def l1(self) -> float:
        ...
    @l1.setter
    def l1(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def lr(self) -> float:
        ...
    @lr.setter
    def lr(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def lr_decay(self) -> float:
        """
        Adagrad
        """
    @lr_decay.setter
    def lr_decay(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def momentum(self) -> float:
        """
        SGD and RMSprop
        """
    @momentum.setter
    def momentum(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def nesterov(self) -> bool:
        """
        SGD
        """
    @nesterov.setter
    def nesterov(self, arg0: bool) -> None:
        ...
    @property
    def weight_decay(self) -> float:
        ...
    @weight_decay.setter
    def weight_decay(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
def activation_stats(x: typing.Any, moments: typing.Any, counts: typing.Any, positive: typing.Any = None, scale: typing.Any = None, shift: typing.Any = None, relu: bool = False, lo: typing.SupportsFloat | typing.SupportsIndex = 0.0, hi: typing.SupportsFloat | typing.SupportsIndex = 1.0, sat_lo: typing.SupportsFloat | typing.SupportsIndex = ..., sat_hi: typing.SupportsFloat | typing.SupportsIndex = ...) -> None:
    """
    Adds one pass of statistics of x (N, C, ...) into moments (2,) float64 [sum, sum of squares], counts (nbins + 1,) int64 [histogram over nbins equal bins of [lo, hi] (ends clamped), then the number of values <= sat_lo or >= sat_hi] and positive (C,) uint8 (1 where a channel had a value > 0). With scale and shift (C,) float64, measures max(scale * x + shift, 0) if relu else scale * x + shift.
    """
def avg_pool2d_backward(dy: typing.Any, input_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], kernel_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], padding: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"]) -> numpy.ndarray:
    ...
def avg_pool2d_forward(x: typing.Any, kernel_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], padding: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"]) -> numpy.ndarray:
    ...
def batch_norm_backward(dy: typing.Any, input: typing.Any, mean: typing.Any, rstd: typing.Any, weight: typing.Any, dweight: typing.Any, dbias: typing.Any, training: bool) -> numpy.ndarray:
    """
    Batch norm backward -> dx; adds into dweight and dbias.
    """
def batch_norm_forward(input: typing.Any, weight: typing.Any, bias: typing.Any, running_mean: typing.Any, running_var: typing.Any, training: bool, momentum: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex) -> tuple:
    """
    Batch norm of (N, C, ...) input -> (y, mean, rstd); updates running stats in place when training.
    """
def batch_norm_relu_backward(dy: typing.Any, output: typing.Any, input: typing.Any, mean: typing.Any, rstd: typing.Any, weight: typing.Any, dweight: typing.Any, dbias: typing.Any, need_dresidual: bool, training: bool) -> tuple:
    """
    Gradient of batch_norm_relu_forward -> (dx, dresidual or None); adds into dweight and dbias.
    """
def batch_norm_relu_forward(input: typing.Any, residual: typing.Any, weight: typing.Any, bias: typing.Any, running_mean: typing.Any, running_var: typing.Any, training: bool, momentum: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex) -> tuple:
    """
    relu(batch_norm(x) + residual) (residual may be None) -> (y, mean, rstd); running stats as batch_norm_forward.
    """
def batch_norm_relu_pool2_backward(dy: typing.Any, input: typing.Any, code: typing.Any, mean: typing.Any, rstd: typing.Any, weight: typing.Any, dweight: typing.Any, dbias: typing.Any, training: bool) -> numpy.ndarray:
    """
    Gradient of batch_norm_relu_pool2_forward -> dx (N, C, H, W); adds into dweight and dbias.
    """
def batch_norm_relu_pool2_forward(input: typing.Any, weight: typing.Any, bias: typing.Any, running_mean: typing.Any, running_var: typing.Any, training: bool, momentum: typing.SupportsFloat | typing.SupportsIndex, eps: typing.SupportsFloat | typing.SupportsIndex) -> tuple:
    """
    max_pool2d(relu(batch_norm(x)), 2) of (N, C, H, W) input -> (y, code (uint8), mean, rstd).
    """
def clip_grad_norm(grads: list, max_norm: typing.SupportsFloat | typing.SupportsIndex, norm_type: typing.SupportsFloat | typing.SupportsIndex = 2.0) -> float:
    """
    Total norm (2 or inf) of all arrays, accumulated in double; scales them in place by max_norm / (total + 1e-6) when that is below 1. Returns the total before clipping.
    """
def conv2d_backward(dy: typing.Any, x: typing.Any, weight: typing.Any, stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], padding: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], dilation: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], groups: typing.SupportsInt | typing.SupportsIndex, dweight: typing.Any = None, dbias: typing.Any = None, need_dx: bool = True, need_dweight: bool = True, need_dbias: bool = True) -> tuple:
    """
    (dx, dweight, dbias): dx new; dweight/dbias ADDED into the given arrays (new zeros if None); None for what is not needed.
    """
def conv2d_forward(x: typing.Any, weight: typing.Any, bias: typing.Any, stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], padding: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], dilation: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], groups: typing.SupportsInt | typing.SupportsIndex, activation: str = 'none') -> numpy.ndarray:
    """
    y = act(conv2d(x, weight) + bias): x (N,C,H,W), weight (OC,C/groups,KH,KW), bias (OC,) or None.
    """
def crop_forward(out: typing.Any, inp: typing.Any, offsets: typing.Any, pad: typing.SupportsInt | typing.SupportsIndex, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    """
    out (N,C,OH,OW) <- crops of inp (N,C,H,W) zero-padded by pad, at offsets (N,2) [oy, ox].
    """
def cross_entropy(input: typing.Any, target: typing.Any, label_smoothing: typing.SupportsFloat | typing.SupportsIndex = 0.0, grad: bool = True) -> tuple:
    """
    Softmax cross-entropy, mean over rows: (loss, dinput or None).
    """
def dropout_backward(dy: typing.Any, mask: typing.Any, p: typing.SupportsFloat | typing.SupportsIndex) -> numpy.ndarray:
    """
    dx = dy * mask / (1 - p).
    """
def dropout_forward(x: typing.Any, p: typing.SupportsFloat | typing.SupportsIndex) -> tuple:
    """
    Inverted dropout: (y, packed uint8 keep-mask).
    """
def elu_backward(dy: typing.Any, x: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    d elu / dx from dy and the saved input
    """
def elu_forward(x: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    elu(x) element-wise; alpha is the negative slope (leaky_relu) or alpha (elu).
    """
def gather_rows(out: typing.Any, src: typing.Any, idx: typing.Any, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    """
    out[i] = src[idx[i]] for rows of any dtype (src C-contiguous, e.g. a memmap); GIL released.
    """
def gelu_backward(dy: typing.Any, x: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    d gelu / dx from dy and the saved input
    """
def gelu_forward(x: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    gelu(x) element-wise; alpha is the negative slope (leaky_relu) or alpha (elu).
    """
def gemm(a: typing.Any, b: typing.Any, trans_a: bool = False, trans_b: bool = False, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 1.0, beta: typing.SupportsFloat | typing.SupportsIndex = 0.0, bias: typing.Any = None, bias_per_row: bool = False, activation: str = 'none') -> numpy.ndarray:
    """
    out = act(alpha * op(a) @ op(b) + beta * out + bias). op(x) = x.T when trans_x. bias has one value per column of out (or per row with bias_per_row).
    """
def gemm_blocking(isa: str | None = None, dtype: str = 'float32') -> dict:
    """
    The GEMM blocking of `isa`'s kernels (default: the current ISA) for dtype, derived from this core's caches (l3_bytes: one core's share; 0 = unknown), and the packed path's loop order: which operand stays in L1 ('a_panel_in_l1' or 'b_sliver_in_l1', BLIS's). GRADKIT_L1_CACHE_BYTES, GRADKIT_L2_CACHE_BYTES and GRADKIT_L3_CACHE_BYTES override the sizes.
    """
def get_isa() -> str:
    """
    The ISA the kernels dispatch to now.
    """
def get_num_threads() -> int:
    ...
def global_avg_pool2d_backward(dy: typing.Any, input_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> numpy.ndarray:
    ...
def global_avg_pool2d_forward(x: typing.Any) -> numpy.ndarray:
    ...
def group_norm_backward(dy: typing.Any, input: typing.Any, mean: typing.Any, rstd: typing.Any, num_groups: typing.SupportsInt | typing.SupportsIndex, weight: typing.Any, dweight: typing.Any, dbias: typing.Any) -> numpy.ndarray:
    """
    Group norm backward -> dx; adds into dweight and dbias.
    """
def group_norm_forward(input: typing.Any, num_groups: typing.SupportsInt | typing.SupportsIndex, weight: typing.Any, bias: typing.Any, eps: typing.SupportsFloat | typing.SupportsIndex) -> tuple:
    """
    Group norm of (N, C, ...) input -> (y, mean (N, G), rstd (N, G)).
    """
def hflip_forward(out: typing.Any, inp: typing.Any, flags: typing.Any, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    """
    out (N,C,H,W) <- inp with the W axis reversed for images whose flag is set.
    """
def kernel_isas() -> dict:
    """
    The ISA of the dispatch table each kernel area uses now.
    """
def layer_norm_backward(dy: typing.Any, input: typing.Any, mean: typing.Any, rstd: typing.Any, normalized_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], weight: typing.Any, dweight: typing.Any, dbias: typing.Any) -> numpy.ndarray:
    """
    Layer norm backward -> dx; adds into dweight and dbias.
    """
def layer_norm_forward(input: typing.Any, normalized_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], weight: typing.Any, bias: typing.Any, eps: typing.SupportsFloat | typing.SupportsIndex) -> tuple:
    """
    Layer norm over the trailing normalized_shape dims -> (y, mean, rstd).
    """
def leaky_relu_backward(dy: typing.Any, x: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    d leaky_relu / dx from dy and the saved input
    """
def leaky_relu_forward(x: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    leaky_relu(x) element-wise; alpha is the negative slope (leaky_relu) or alpha (elu).
    """
def manual_seed(seed: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def max_pool2d_backward(dy: typing.Any, indices: typing.Any, input_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], kernel_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], padding: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"]) -> numpy.ndarray:
    ...
def max_pool2d_forward(x: typing.Any, kernel_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"], padding: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(2)"]) -> tuple:
    """
    (y, indices): window max and the int32 flat index (ih*W+iw) of each max in its plane.
    """
def mse(input: typing.Any, target: typing.Any, grad: bool = True) -> tuple:
    """
    Mean squared error: (loss, dinput or None).
    """
def normalize_forward(out: typing.Any, inp: typing.Any, scale: typing.Any, shift: typing.Any, nthreads: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
    """
    out = inp * scale[c] + shift[c] per channel of an NCHW batch (out may be inp).
    """
def optim_step(groups: list) -> None:
    """
    One optimizer update of every param group in place: groups is a list of tuples (hyper, params, grads, state0, state1, state2, steps) with hyper an OptimHyper. state0..2 are lists of arrays (or None) in the slots of gradkit/optim.h; steps[i] is tensor i's step count after this update (SGD: 1 when its momentum buffer is new). All arrays are validated before any is updated; float32 and float64 may be mixed; all tensors of all groups are updated in one parallel region per dtype.
    """
def random_crop_draws(n: typing.SupportsInt | typing.SupportsIndex, key: typing.SupportsInt | typing.SupportsIndex, stream: typing.SupportsInt | typing.SupportsIndex, slot: typing.SupportsInt | typing.SupportsIndex, range_y: typing.SupportsInt | typing.SupportsIndex, range_x: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.int32]:
    """
    Crop offsets (n, 2) int32 of image i from Philox block (key, (slot << 32) | i, stream).
    """
def random_flip_draws(n: typing.SupportsInt | typing.SupportsIndex, key: typing.SupportsInt | typing.SupportsIndex, stream: typing.SupportsInt | typing.SupportsIndex, slot: typing.SupportsInt | typing.SupportsIndex, p: typing.SupportsFloat | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint8]:
    """
    Flip flags (n,) uint8 of image i: 1 with probability p, from Philox block (key, (slot << 32) | i, stream).
    """
def relu_backward(dy: typing.Any, y: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    d relu / dx from dy and the saved output
    """
def relu_forward(x: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    relu(x) element-wise; alpha is the negative slope (leaky_relu) or alpha (elu).
    """
def rng_bits(n: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint32]:
    """
    n random uint32 words from the library generator.
    """
def rng_normal(out: typing.Any, mean: typing.SupportsFloat | typing.SupportsIndex = 0.0, std: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
    """
    Fill `out` in place with N(mean, std^2).
    """
def rng_state() -> tuple[int, int]:
    ...
def rng_uniform(out: typing.Any, low: typing.SupportsFloat | typing.SupportsIndex = 0.0, high: typing.SupportsFloat | typing.SupportsIndex = 1.0) -> None:
    """
    Fill `out` in place with U[low, high).
    """
def set_isa(name: str) -> None:
    """
    Switch every dispatch table to `name` (tests use this to cover each ISA).
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def set_rng_state(seed: typing.SupportsInt | typing.SupportsIndex, offset: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def sigmoid_backward(dy: typing.Any, y: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    d sigmoid / dx from dy and the saved output
    """
def sigmoid_forward(x: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    sigmoid(x) element-wise; alpha is the negative slope (leaky_relu) or alpha (elu).
    """
def supported_isas() -> list[str]:
    """
    The ISAs this CPU and build can run, from generic up.
    """
def tanh_backward(dy: typing.Any, y: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    d tanh / dx from dy and the saved output
    """
def tanh_forward(x: typing.Any, out: typing.Any = None, alpha: typing.SupportsFloat | typing.SupportsIndex = 0.0) -> numpy.ndarray:
    """
    tanh(x) element-wise; alpha is the negative slope (leaky_relu) or alpha (elu).
    """
__version__: str = '0.1.0+dev'
build_info: dict = {'compiler': 'GNU 12.2.0', 'flags': '-O3 -fno-math-errno -fopenmp', 'avx2_flags': '-mavx2 -mfma -mf16c', 'avx512_flags': '-mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma -mf16c', 'x86_kernels': True}
