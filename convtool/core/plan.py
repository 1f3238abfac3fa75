"""The planner: which path filters one channel with one kernel, chosen in one place.

Paths (each exact to the image's float rounding; results within that rounding of
the direct path):

- ``direct``: the core's convolution (:mod:`convtool.core.conv`), k_h k_w
  multiply-adds a pixel;
- ``separable``: the kernel as a sum of r outer products (r = 1: separable; more:
  low rank), run as r pairs of 1-D passes (:mod:`convtool.core.conv_sep`),
  r (k_h + k_w) multiply-adds a pixel. The factors come from an exact rank-1 test
  (a column times a row, equal in float64: Sobel, Prewitt, binomials), else from the
  singular value decomposition, keeping the fewest terms whose dropped rest sums to
  at most the image's unit roundoff times sum|w|: a change to any result below one
  rounding of its scale, sum|w| max|x|.

The choice rests on the kernel, the stride and the dtype alone, never on the
picture's size: a tile of a picture is planned as the whole picture is, and every
path adds each output's terms in an order set by its own window, so tiles give the
whole picture's bytes and ``--jobs`` changes nothing. Costs are in nanoseconds per
output pixel on one thread (:data:`COSTS`, measured with ``benchmarks/bench_kernels.py``).

This module imports numpy only: planning needs no numba, and a plan is run by the
engine the caller passes (:func:`run`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convtool.core import conv_fft, tasks

__all__ = ["BOX_RESTART", "COSTS", "Plan", "direct_plan", "factors", "gemm_plan", "plan_channels"]
__all__ += ["ALL_LAYER_PATHS", "LAYER_COSTS", "LAYER_PATHS", "layer_costs", "plan_filter"]
__all__ += ["plan_layer", "run"]
__all__ += ["WINOGRAD_TILES", "paths_for", "plan_backward", "winograd_fits"]

# The cost model, in ns per output pixel on one thread (1024x1024 float32, measured
# here with ``benchmarks/bench_kernels.py --only calibrate``): direct, per tap (it
# grows from 0.048 a tap at 3x3 to 0.062 at 15x15); separable, per term of the rank:
# the vertical pass (per tap and per input column a stride covers), the horizontal
# pass (per tap) and the two passes' set-up (3x3 kernels stay direct); box, the same
# for any size (2048x2048). The FFT's is conv_fft.block_cost.
COSTS = {
    "direct_tap": 0.055,
    "direct_base": 0.0,
    "down_tap": 0.04,
    "along_tap": 0.04,
    "term_base": 0.3,
    "box": 2.2,  # running sums: the same for any size
}

# conv_box.RESTART (that module imports numba; this one may not): the running sums'
# restart grid, and the tiles' block for boxes
BOX_RESTART = 32

_UNIT_ROUNDOFF = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}
_CACHE_SIZE = 64  # plans remembered, by kernel bytes, stride and dtype


@dataclass(frozen=True, eq=False)
class Plan:
    """How one channel is filtered: the path, its factors, and its estimated cost.

    ``cols`` (rank, kH) and ``rows`` (rank, kW) are float64, for the separable path.
    """

    path: str
    cost: float  # ns per output pixel, one thread (see COSTS)
    cols: np.ndarray | None = field(default=None, repr=False)
    rows: np.ndarray | None = field(default=None, repr=False)
    block: tuple[int, int] = (1, 1)  # output blocks anchored on the whole output's grid
    parts: tuple = field(default=(), repr=False)  # 'channels': each pair's plan, row-major

    @property
    def taps(self) -> float:
        """The direct path's multiply-adds a pixel that cost as much: the work an engine
        is chosen by (:func:`convtool.core.engine.choose`)."""
        return self.cost / COSTS["direct_tap"]

    @property
    def rank(self) -> int:
        return 0 if self.cols is None else int(self.cols.shape[0])

    def describe(self) -> str:
        """The plan in a few words, for ``--verbose`` and ``--json``: 'direct',
        'separable', 'low-rank 2'."""
        if self.path == "separable":
            return "separable" if self.rank == 1 else f"low-rank {self.rank}"
        if self.path == "channels":
            return "per channel pair: " + ", ".join(sorted({p.describe() for p in self.parts}))
        return self.path


def direct_plan(kh: int, kw: int) -> Plan:
    """The direct path for a kH x kW kernel."""
    return Plan("direct", _direct_cost(kh, kw))


def _exact_rank1(w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(column, row) whose outer product is ``w`` exactly in float64, or None."""
    i, j = np.unravel_index(np.argmax(np.abs(w)), w.shape)
    pivot = w[i, j]
    if pivot == 0:
        return None
    col, row = w[:, j].copy(), w[i, :] / pivot
    if not np.array_equal(np.outer(col, row), w):
        return None
    # balance the two factors' scales, in powers of two (exact)
    shift = np.round(np.log2(np.abs(col).max() / np.abs(row).max()) / 2)
    return col * 2.0**-shift, row * 2.0**shift


def factors(w: np.ndarray, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """The fewest outer products whose sum is ``w`` to within ``dtype``'s rounding.

    Returns (cols, rows), (rank, kH) and (rank, kW) float64, with
    ``sum|w - cols^T rows| <= u sum|w|`` (u: ``dtype``'s unit roundoff), the rank-1
    case found exactly where it is exact.
    """
    w = np.asarray(w, dtype=np.float64)
    exact = _exact_rank1(w)
    if exact is not None:
        return exact[0][None], exact[1][None]
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    tol = _UNIT_ROUNDOFF.get(np.dtype(dtype), 2.0**-24) * np.abs(w).sum()
    root = np.sqrt(s)
    for r in range(1, s.size + 1):
        cols, rows = (u[:, :r] * root[:r]).T, vt[:r] * root[:r, None]
        if np.abs(w - cols.T @ rows).sum() <= tol:
            return cols, rows
    return (u * root).T, vt * root[:, None]


def _direct_cost(kh: int, kw: int) -> float:
    return COSTS["direct_base"] + COSTS["direct_tap"] * kh * kw


def _separable_cost(rank: int, kh: int, kw: int, sw: int) -> float:
    per_term = COSTS["term_base"] + COSTS["down_tap"] * kh * sw + COSTS["along_tap"] * kw
    return rank * per_term


_plans: dict[tuple, Plan] = {}


def plan_filter(w: np.ndarray, dtype: Any, stride: tuple[int, int] = (1, 1)) -> Plan:
    """The cheapest exact path for kernel ``w`` (kH, kW) on an image of ``dtype``.

    Remembered for the process (by the kernel's bytes, the stride and the dtype): a
    batch plans each kernel once.
    """
    w = np.ascontiguousarray(w, dtype=np.float64)
    key = (w.tobytes(), w.shape, tuple(stride), np.dtype(dtype).str)
    found = _plans.get(key)
    if found is None:
        found = _plan(w, np.dtype(dtype), stride)
        if len(_plans) >= _CACHE_SIZE:
            _plans.clear()
        _plans[key] = found
    return found


def _plan(w: np.ndarray, dtype: np.dtype, stride: tuple[int, int]) -> Plan:
    kh, kw = w.shape
    best = direct_plan(kh, kw)
    if not np.isfinite(w).all():
        return best
    if tuple(stride) == (1, 1) and w.flat[0] != 0 and (w == w.flat[0]).all():
        box = Plan("box", COSTS["box"], block=(BOX_RESTART, BOX_RESTART))
        best = box if box.cost < best.cost else best
    if tuple(stride) == (1, 1) and min(kh, kw) > 1:
        fft = Plan("fft", conv_fft.block_cost(kh, kw), block=conv_fft.blocks(kh, kw))
        best = fft if fft.cost < best.cost else best
    # the least a separable plan can cost is rank 1's: factor only if that would pay
    if _separable_cost(1, kh, kw, stride[1]) < best.cost:
        cols, rows = factors(w, dtype)
        cost = _separable_cost(cols.shape[0], kh, kw, stride[1])
        if cost < best.cost:
            # rows in pairs on the whole output's grid (conv_sep): a tile starts on one
            best = Plan("separable", cost, cols, rows, block=(2 if stride[0] == 1 else 1, 1))
    return best


SUM_NS = 0.3  # ns per output pixel to add one channel pair's result into its sum
_channel_plans: dict[tuple, Plan] = {}


def plan_channels(w: np.ndarray, dtype: Any, stride: tuple[int, int] = (1, 1)) -> Plan:
    """The plan for a (C_out, C_in, kH, kW) kernel: 'channels' (each channel pair on its
    own planned path, the pairs summed in input-channel order) where that costs less
    than the direct path, which takes the channels' taps together; else 'direct'.

    Costs are per channel pair, as :func:`plan_filter`'s; remembered as it does.
    """
    w = np.ascontiguousarray(w, dtype=np.float64)
    dtype = np.dtype(dtype)
    c_out, c_in, kh, kw = w.shape
    key = (w.tobytes(), w.shape, tuple(stride), dtype.str)
    found = _channel_plans.get(key)
    if found is not None:
        return found
    found = direct_plan(kh, kw)
    least = min(_separable_cost(1, kh, kw, stride[1]), COSTS["box"]) + SUM_NS
    if least < found.cost:  # else no pair can pay: spare the factoring
        parts = tuple(
            plan_filter(w[o, c], dtype, stride) for o in range(c_out) for c in range(c_in)
        )
        cost = sum(p.cost + SUM_NS for p in parts) / len(parts)
        if all(p.path != "direct" for p in parts) and cost < found.cost:
            block = (int(np.lcm.reduce([p.block[0] for p in parts])),
                     int(np.lcm.reduce([p.block[1] for p in parts])))  # fmt: skip
            found = Plan("channels", cost, block=block, parts=parts)
    if len(_channel_plans) >= _CACHE_SIZE:
        _channel_plans.clear()
    _channel_plans[key] = found
    return found


def _run_channels(plan, engine, x, bias, out, stride, pads, origin, weights) -> None:
    """out[:, o] = bias[o] + the sum over c of x[:, c] on pair (o, c)'s path, in order."""
    c_out, c_in = weights.shape[:2]
    part = np.empty((x.shape[0], 1, *out.shape[2:]), dtype=x.dtype)
    zero = np.zeros(1, dtype=x.dtype)
    planes = [np.ascontiguousarray(x[:, c : c + 1]) for c in range(c_in)]
    for o in range(c_out):
        for c in range(c_in):
            pair = plan.parts[o * c_in + c]
            run(pair, engine, planes[c], zero, part, stride, pads, origin, weights[o, c])
            if c == 0:
                np.add(part[:, 0], bias[o], out=out[:, o])
            else:
                out[:, o] += part[:, 0]


def _threads(engine: Any) -> int:
    """Threads for the FFT's blocks: the engine's (:mod:`convtool.core.tasks`), one for a
    compiled core that is not ``threaded``, as its kernels."""
    return tasks.threads() if engine.threaded else 1


def run(
    plan: Plan,
    engine: Any,
    x: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
    stride: tuple[int, int],
    pads: tuple[int, int],
    origin: tuple[int, int] = (0, 0),
    weights: np.ndarray | None = None,
) -> None:
    """Run ``plan`` (not 'direct') by ``engine`` on x (N, C, H, W) into out (N, O, H', W')
    (one channel each, but for 'channels'),
    zero padding ``pads`` (top, left) before, the rest implied by ``out``'s shape.

    ``origin``: where out's first pixel lies in the whole output, when out is a tile of
    it (blocks are anchored there); ``weights``: the kernel (float64), for the FFT.
    """
    dtype = x.dtype
    if plan.path == "separable":
        cols = np.ascontiguousarray(plan.cols, dtype=dtype)
        rows = np.ascontiguousarray(plan.rows, dtype=dtype)
        sh, sw = stride
        engine.sep_forward(x, cols, rows, bias, out, sh, sw, pads[0], pads[1], origin[0])
        return
    if plan.path == "box":
        scale = np.full(1, weights.flat[0], dtype=dtype)
        kh, kw = weights.shape
        engine.box_forward(x, scale, bias, out, kh, kw, pads[0], pads[1], origin[0], origin[1])
        return
    if plan.path == "fft":

        def direct(window: np.ndarray, w: np.ndarray, b: np.ndarray, y: np.ndarray) -> None:
            engine.conv2d_forward(window, w, b, y, 1, 0, 0)

        threads = _threads(engine)
        conv_fft.fft_forward(x, weights, bias, out, pads, origin, direct, threads)
        return
    if plan.path == "channels":
        _run_channels(plan, engine, x, bias, out, stride, pads, origin, weights)
        return
    raise ValueError(f"no such path: {plan.path!r}")


# The layer's cost model, in ns per output pixel (every output channel) on one thread,
# measured here (1 thread each, float32, OpenBLAS 0.3.31) over C_out 4..256, C_in 3..256,
# 1x1 to 5x5 kernels, strides 1 and 2. The direct path costs per multiply-add, more for a
# 1x1 kernel (no taps to share a load), a column stride (its phases) or a deep K (its
# lines leave the cache); the GEMM path costs per element of its columns (the copy and
# BLAS's packing) plus per multiply-add, near the machine's peak. The Winograd path
# (3x3, stride 1) costs per channel pair (its 16 products: 4 multiply-adds an output
# pixel), per input and per output channel (the transforms), and a base (its tiles'
# loops; measured on VGG's conv2_1..conv4_2 and the 16-channel foundation layer). The
# register-blocked path (:mod:`convtool.core.blocked`) costs per multiply-add of its
# blocks of 16 output channels (C_out rounded up) and per output element (the sums'
# way out to the planes), whatever the stride: fitted to the order of the measured
# times against the GEMM path's on the layers of benchmarks/bench_layers.py (AlexNet's
# conv2 and ResNet's strided 3x3 and VGG's conv1_1 faster blocked, ResNet's 1x1 by
# GEMM). The backward plans its blocked kernels at their cost before the forward's
# passes, 0.025 ns a multiply-add (the kernel gradient's kernel has none).
# Winograd's F(4x4, 3x3) ('winograd4') has F(2x2)'s transforms' costs (36 points for 16
# outputs: about the same work a pixel) and 2.25 multiply-adds a pair where F(2x2) has 4
# (its pair cost fitted on VGG's conv2_1 and conv3_1: 0.78 and 0.82 of F(2x2)'s time).
# Its kernels' transform writes 36 planes of C_out x C_in a call (2.25x F(2x2)'s, at
# memory's pace): past WINOGRAD4_PAIRS channel pairs, deep layers whose pictures are
# small, that cost more than its products saved (VGG's conv4_2, 256x256 at 28^2: 1.1x
# F(2x2)'s time), so it is not planned there.
LAYER_COSTS = {
    "direct_mac": 0.035,
    "direct_pointwise": 2.5,  # factor for a 1x1 kernel
    "direct_strided": 3.5,  # factor for a column stride
    "direct_deep": 1.7,  # factor past DEEP_K multiply-adds an output
    "gemm_element": 0.6,
    "gemm_mac": 0.017,
    "winograd_pair": 0.075,
    "winograd_in": 1.0,
    "winograd_out": 2.2,
    "winograd_base": 16.0,
    "winograd4_pair": 0.055,
    "blocked_mac": 0.0165,
    "blocked_out": 0.24,
    "blocked_backward_mac": 0.025,
}
DEEP_K = 1024
WINOGRAD4_PAIRS = 128 * 256
# Every layer path. F(4x4, 3x3)'s float32 error (5e-6 to 8e-6 of max|y| on VGG's layers,
# 20-30x torch's and F(2x2)'s) is past float32 rounding, which every other path keeps:
# it is planned only where $CONVTOOL_WINOGRAD4=1 asks for it.
ALL_LAYER_PATHS = ("direct", "gemm", "winograd", "winograd4", "blocked")
LAYER_PATHS = tuple(
    p for p in ALL_LAYER_PATHS if p != "winograd4" or os.environ.get("CONVTOOL_WINOGRAD4") == "1"
)
WINOGRAD_TILES = {"winograd": 2, "winograd4": 4}  # each Winograd path's output tiles
BLOCKED_CHANNELS = 16  # blocked.CHANNELS: output channels a block


def winograd_fits(shape: tuple[int, int, int, int], stride: tuple[int, int]) -> bool:
    """Whether the Winograd path (:mod:`convtool.core.winograd`) can run the layer: a 3x3
    kernel at stride 1 (of several channel pairs: one pair is :func:`plan_filter`'s)."""
    return shape[2:] == (3, 3) and tuple(stride) == (1, 1) and shape[0] * shape[1] > 1


def layer_costs(
    shape: tuple[int, int, int, int], stride: tuple[int, int], backward: bool = False
) -> dict[str, float]:
    """The estimated cost of each path for a (C_out, C_in, kH, kW) kernel at ``stride``,
    in ns per output pixel on one thread (:data:`LAYER_COSTS`); 'winograd' only where it
    fits (:func:`winograd_fits`), 'winograd4' there up to WINOGRAD4_PAIRS channel pairs;
    the blocked path at the backward's cost where ``backward``."""
    c_out, c_in, kh, kw = shape
    k = c_in * kh * kw
    direct = LAYER_COSTS["direct_mac"] * c_out * k
    if kh * kw == 1:
        direct *= LAYER_COSTS["direct_pointwise"]
    if stride[1] > 1:
        direct *= LAYER_COSTS["direct_strided"]
    if k > DEEP_K:
        direct *= LAYER_COSTS["direct_deep"]
    gemm = k * (LAYER_COSTS["gemm_element"] + LAYER_COSTS["gemm_mac"] * c_out)
    lanes = -(-c_out // BLOCKED_CHANNELS) * BLOCKED_CHANNELS
    blocked = lanes * (LAYER_COSTS["blocked_mac"] * k + LAYER_COSTS["blocked_out"])
    if backward:
        blocked = lanes * LAYER_COSTS["blocked_backward_mac"] * k
    costs = {"direct": direct, "gemm": gemm, "blocked": blocked}
    if winograd_fits(shape, stride):
        transforms = (
            LAYER_COSTS["winograd_base"]
            + LAYER_COSTS["winograd_in"] * c_in
            + LAYER_COSTS["winograd_out"] * c_out
        )
        costs["winograd"] = transforms + LAYER_COSTS["winograd_pair"] * c_in * c_out
        if c_in * c_out <= WINOGRAD4_PAIRS:
            costs["winograd4"] = transforms + LAYER_COSTS["winograd4_pair"] * c_in * c_out
    return costs


def plan_layer(
    shape: tuple[int, int, int, int], stride: tuple[int, int] = (1, 1), paths=LAYER_PATHS
) -> str:
    """'gemm' (:mod:`convtool.core.gemm`), 'winograd' or 'winograd4' (F(2x2, 3x3) or
    F(4x4, 3x3): :mod:`convtool.core.winograd`),
    'blocked' (:mod:`convtool.core.blocked`) or 'direct' for a (C_out, C_in, kH, kW)
    kernel at ``stride``, whichever of ``paths``
    :func:`layer_costs` finds cheapest (the backward has no Winograd path: it asks for
    ('direct', 'gemm')); one channel pair is always 'direct' (:func:`plan_filter` plans
    it further).

    Like the other plans, the choice rests on the kernel's shape and the stride alone,
    never on the picture's size: a tile of a picture takes the path the whole takes.
    """
    if shape[0] * shape[1] == 1:
        return "direct"
    costs = layer_costs(shape, stride)
    return min((p for p in paths if p in costs), key=costs.__getitem__)


def plan_backward(
    shape: tuple[int, int, int, int], stride: tuple[int, int] = (1, 1), blocked: bool = True
):
    """The backward's paths for a (C_out, C_in, kH, kW) kernel at ``stride``: ('gemm',
    'gemm') (:func:`convtool.core.gemm.backward`: both gradients from one im2col), or
    the kernel gradient's and the input gradient's paths each on its own, 'direct' or
    'blocked' (the input gradient's 'blocked' at stride 1 only), whichever
    :func:`layer_costs` finds cheaper: the GEMM path twice its forward's cost (two
    products), the input gradient costed as the layer of the rotated kernels (C_in,
    C_out, kH, kW), per input pixel (a stride's spread gradient: sh*sw of them an
    output pixel). Without ``blocked`` (an engine that runs that path slowly:
    :func:`paths_for`), the cheaper of GEMM and direct for both. Where GEMM is chosen,
    the input gradient may be ('gemm', 'winograd'): the rotated layer forward on the
    Winograd path, where that layer takes it (:func:`_winograd_input`)."""
    c_out, c_in, kh, kw = shape
    if c_out * c_in == 1:
        return "direct", "direct"
    if not blocked:
        path = plan_layer(shape, stride, ("direct", "gemm"))
        return path, _winograd_input(shape, stride) if path == "gemm" else path
    costs = layer_costs(shape, stride, backward=True)
    w_path = min(("direct", "blocked"), key=costs.__getitem__)
    turned = layer_costs((c_in, c_out, kh, kw), (1, 1), backward=True)
    x_costs = {"direct": turned["direct"] * stride[0] * stride[1]}
    if tuple(stride) == (1, 1):
        x_costs["blocked"] = turned["blocked"]
    x_path = min(x_costs, key=x_costs.__getitem__)
    if 2 * costs["gemm"] < costs[w_path] + x_costs[x_path]:
        return "gemm", _winograd_input(shape, stride)
    return w_path, x_path


def _winograd_input(shape: tuple[int, int, int, int], stride: tuple[int, int]) -> str:
    """The GEMM backward's input gradient: 'gemm' (its second product, laid back by
    col2im), or at stride 1 the Winograd path that the turned layer (C_in, C_out, kH, kW)
    takes forward (VGG's conv2_1 on 2 threads: 5.1 ms, where the product and col2im took
    ~9; the kernel gradient's product then runs alone)."""
    if tuple(stride) != (1, 1):
        return "gemm"
    path = plan_layer((shape[1], shape[0], *shape[2:]), (1, 1))
    return path if path in WINOGRAD_TILES else "gemm"


def paths_for(engine: Any) -> tuple[str, ...]:
    """The layer paths worth planning for ``engine``: all where its register blocks fit
    (``engine.blocks_fit()``: the JIT on a CPU with AVX-512); else no 'blocked': the
    compiled core may be built for a generic CPU (narrow vectors: its blocks spilled
    their registers, 3.6x slower than the GEMM path on ResNet's conv1) and runs on one
    thread where BLAS's products run on all."""
    return LAYER_PATHS if engine.blocks_fit() else tuple(p for p in LAYER_PATHS if p != "blocked")


def gemm_plan(
    shape: tuple[int, int, int, int], stride: tuple[int, int] = (1, 1), paths=LAYER_PATHS
) -> Plan | None:
    """The plan of a layer :func:`plan_layer` gives a path of its own ('gemm', 'blocked',
    'winograd' or 'winograd4': the latter two in 2x2 or 4x4 blocks of outputs, anchored
    on the whole output's grid), else None; its cost per channel pair, as the other
    plans'. ``paths``: those the engine runs (:func:`paths_for`)."""
    path = plan_layer(shape, stride, paths)
    if path == "direct":
        return None
    tile = WINOGRAD_TILES.get(path, 1)
    block = (tile, tile)
    return Plan(path, layer_costs(shape, stride)[path] / (shape[0] * shape[1]), block=block)
