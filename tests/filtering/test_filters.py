"""convtool.filters: borders against scipy.ndimage, colour modes, value maps, combining,
alpha on the output grid, output depths; and the engine apply takes for a picture."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from convtool import filtering, vocab
from convtool.batch import apply_task
from convtool.batch.outputs import output_depth
from convtool.core import aot, engine
from convtool.filtering import to_gray
from convtool.kernels import list_kernels
from convtool.shapes import resolve_padding
from tests import naive
from tests.naive import SCIPY_MODES

# convtool border -> scipy.ndimage mode (cval 0)
ODD_KERNELS = {
    i.name: i.kernel for i in list_kernels() if i.kernel.shape[0] % 2 and i.kernel.shape[1] % 2
}
EVEN_KERNELS = {i.name: i.kernel for i in list_kernels() if i.name not in ODD_KERNELS}


def scipy_correlate(x: np.ndarray, k: np.ndarray, border: str, origin=0) -> np.ndarray:
    """SciPy's answer, channel by channel, in float64."""
    x = np.asarray(x, dtype=np.float64)
    mode = SCIPY_MODES[border]
    if x.ndim == 2:
        return ndi.correlate(x, k, mode=mode, cval=0.0, origin=origin)
    return np.stack(
        [
            ndi.correlate(x[..., c], k, mode=mode, cval=0.0, origin=origin)
            for c in range(x.shape[2])
        ],
        axis=-1,
    )


def test_the_bank_has_odd_and_even_kernels():
    assert {"sobel_x", "gaussian", "box", "motion", "unsharp", "embossing"} <= set(ODD_KERNELS)
    assert {"roberts_x", "roberts_y"} <= set(EVEN_KERNELS)


@pytest.mark.parametrize("border", list(SCIPY_MODES))
def test_every_odd_named_kernel_matches_scipy(border):
    rng = np.random.default_rng(1)
    x = rng.random((23, 31, 3), dtype=np.float32)
    for name, k in ODD_KERNELS.items():
        got = filtering.correlate(x, k, border=border)
        np.testing.assert_allclose(got, scipy_correlate(x, k, border), atol=1e-5, err_msg=name)


@settings(deadline=None, max_examples=60)
@given(
    name=st.sampled_from(sorted(ODD_KERNELS)),
    border=st.sampled_from(list(SCIPY_MODES)),
    h=st.integers(5, 24),
    w=st.integers(5, 24),
    channels=st.sampled_from([0, 1, 3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_random_pictures_match_scipy(name, border, h, w, channels, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 0 else (h, w, channels)
    x = rng.random(shape, dtype=np.float32)
    k = ODD_KERNELS[name]
    got = filtering.correlate(x, k, border=border)
    expected = scipy_correlate(x, k, border)
    if channels == 1:
        expected = expected[..., 0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


@settings(deadline=None, max_examples=60)
@given(
    dtype=st.sampled_from([np.uint8, np.uint16]),
    border=st.sampled_from(list(SCIPY_MODES)),
    color=st.sampled_from(vocab.COLORS),
    channels=st.sampled_from([0, 1, 3]),
    stride=st.sampled_from([1, 2]),
    padding=st.sampled_from(["same", "valid", 1]),
    compiled=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_samples_filter_as_the_pixels_they_read_as(
    dtype, border, color, channels, stride, padding, compiled, seed
):
    """8- and 16-bit samples give the very bytes their float pixels give, whichever route
    lays them out (the compiled core's one pass, or numpy's)."""
    rng = np.random.default_rng(seed)
    shape = (9, 11) if channels == 0 else (9, 11, channels)
    x = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    core = engine.compiled() if compiled else None
    if compiled and core is None:
        pytest.fail(f"the compiled core is not built: {aot.error()}")
    k = filtering.prepare_kernel(rng.standard_normal((3, 3)), bias=0.25)
    pixels = x.astype(np.float32) / np.float32(np.iinfo(dtype).max)  # as a reader scales
    geometry = {"border": border, "color": color, "stride": stride, "padding": padding}
    expected = filtering.correlate(pixels, k, engine=core, **geometry)
    got = filtering.correlate(x, k, engine=core, **geometry)
    np.testing.assert_array_equal(got, expected)
    alpha = rng.random(shape[:2], dtype=np.float32)
    expected = filtering.correlate_premultiplied(pixels, alpha, k, engine=core, **geometry)
    got = filtering.correlate_premultiplied(x, alpha, k, engine=core, **geometry)
    np.testing.assert_array_equal(got[0], expected[0])


@pytest.mark.parametrize("border", list(SCIPY_MODES))
@pytest.mark.parametrize("shape", [(2, 2), (4, 4), (2, 3), (4, 1)])
def test_even_kernels_put_the_extra_padding_after(border, shape):
    # SciPy centres an even kernel at k//2; the core at (k-1)//2, i.e. origin -1
    rng = np.random.default_rng(2)
    x = rng.random((17, 13), dtype=np.float32)
    k = rng.standard_normal(shape)
    origin = [(n - 1) // 2 - n // 2 for n in shape]
    got = filtering.correlate(x, k, border=border)
    np.testing.assert_allclose(got, scipy_correlate(x, k, border, origin), atol=1e-5)


@pytest.mark.parametrize("border", list(SCIPY_MODES))
@pytest.mark.parametrize("stride", [1, 2, 3, (2, 1)])
@pytest.mark.parametrize("padding", ["same", "valid", 2, (1, 3)])
def test_stride_and_padding_with_every_border(border, stride, padding):
    rng = np.random.default_rng(3)
    x = rng.random((3, 14, 11)).astype(np.float32)  # planes
    k = rng.standard_normal((3, 4))
    strides = stride if isinstance(stride, tuple) else (stride, stride)
    top, bottom, left, right = resolve_padding(padding, (14, 11), (3, 4), strides)
    numpy_mode = {"zero": "constant", "reflect": "symmetric", "mirror": "reflect"}.get(
        border, {"replicate": "edge", "wrap": "wrap"}.get(border)
    )
    padded = np.pad(x, ((0, 0), (top, bottom), (left, right)), mode=numpy_mode)
    expected = naive.conv2d(padded[:, None], k[None, None], stride=strides)[:, 0]
    got = filtering.correlate(
        x.transpose(1, 2, 0), k, border=border, padding=padding, stride=stride
    )
    np.testing.assert_allclose(got, expected.transpose(1, 2, 0), atol=1e-5)


def test_border_rows_are_as_documented():
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    pick = np.zeros((1, 5))
    pick[0, 0] = 1  # output j takes the pixel two to its left
    rows = {b: filtering.correlate(x, pick, border=b)[0, :2].tolist() for b in SCIPY_MODES}
    assert rows == {
        "zero": [0, 0],
        "reflect": [2, 1],
        "mirror": [3, 2],
        "replicate": [1, 1],
        "wrap": [3, 4],
    }


def test_colour_modes():
    rng = np.random.default_rng(4)
    x = rng.random((12, 10, 3), dtype=np.float32)
    k = ODD_KERNELS["sobel_x"]
    per_channel = scipy_correlate(x, k, "zero")
    np.testing.assert_allclose(filtering.correlate(x, k), per_channel, atol=1e-5)
    np.testing.assert_allclose(
        filtering.correlate(x, k, color="sum"), per_channel.sum(axis=2), atol=1e-5
    )
    np.testing.assert_allclose(
        filtering.correlate(x, k, color="gray"), scipy_correlate(to_gray(x), k, "zero"), atol=1e-5
    )
    gray = x[..., 0]  # a grey picture is the same in every mode
    for color in vocab.COLORS:
        np.testing.assert_allclose(
            filtering.correlate(gray, k, color=color), scipy_correlate(gray, k, "zero"), atol=1e-5
        )


def test_full_kernel_and_its_bias():
    rng = np.random.default_rng(5)
    x = rng.random((9, 8, 3), dtype=np.float32)
    w = rng.standard_normal((2, 3, 3, 3))
    b = (0.5, -1.0)
    k = filtering.prepare_kernel(w, bias=b)
    got = filtering.correlate(x, k, border="zero", padding="valid")
    expected = naive.conv2d(x.transpose(2, 0, 1)[None], w, np.array(b))[0].transpose(1, 2, 0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="takes 3 input channel"):
        filtering.correlate(x[..., 0], k)


def test_scalar_bias_is_added_everywhere():
    x = np.zeros((4, 5, 3), np.float32)
    got = filtering.correlate(
        x, filtering.prepare_kernel(np.ones((3, 3)), bias=0.25), border="wrap"
    )
    assert got.shape == (4, 5, 3) and np.all(got == 0.25)


def test_prepare_kernel_normalize_scale_flip():
    k = filtering.prepare_kernel([[1, 2], [3, 4]], normalize=True, scale=10, flip=True)
    np.testing.assert_allclose(k.weights, [[4, 3], [2, 1]])
    zero_sum = filtering.prepare_kernel(ODD_KERNELS["sobel_x"], normalize=True)
    np.testing.assert_array_equal(zero_sum.weights, ODD_KERNELS["sobel_x"])  # sum 0: unchanged
    flipped = filtering.correlate(
        np.eye(5), filtering.prepare_kernel(ODD_KERNELS["sobel_x"], flip=True)
    )
    np.testing.assert_allclose(
        flipped, ndi.convolve(np.eye(5), ODD_KERNELS["sobel_x"], mode="constant")
    )
    with pytest.raises(ValueError):
        filtering.prepare_kernel(np.ones(3))


def test_alpha_follows_the_output_grid():
    a = np.arange(48, dtype=np.float32).reshape(6, 8)
    assert filtering.resample_alpha(a, (3, 3)) is a or np.array_equal(
        filtering.resample_alpha(a, (3, 3)), a
    )
    np.testing.assert_array_equal(
        filtering.resample_alpha(a, (3, 3), padding="valid"), a[1:-1, 1:-1]
    )
    # 'same' with stride 2 pads 0 before and 1 after here: windows centre on rows 1, 3, 5
    np.testing.assert_array_equal(filtering.resample_alpha(a, (3, 3), stride=2), a[1::2, 1::2])
    np.testing.assert_array_equal(
        filtering.resample_alpha(a, (3, 3), padding=1, stride=2), a[::2, ::2]
    )
    np.testing.assert_array_equal(
        filtering.resample_alpha(a, (2, 2), padding="valid"), a[:-1, :-1]
    )  # anchors (k-1)//2 = 0
    y = filtering.correlate(np.zeros((6, 8)), np.ones((3, 3)), padding="valid", stride=(2, 3))
    assert filtering.resample_alpha(a, (3, 3), padding="valid", stride=(2, 3)).shape == y.shape


def test_map_values():
    y = np.array([[-1.0, 0.25], [2.0, np.nan]], np.float32)
    clipped, share = filtering.map_values(y, "clip")
    assert clipped.tolist() == [[0.0, 0.25], [1.0, 0.0]] and share == 0.75
    assert filtering.map_values(y, "abs")[0].tolist() == [[1.0, 0.25], [1.0, 0.0]]
    assert filtering.map_values(y, "offset")[0].tolist() == [[0.0, 0.75], [1.0, 0.0]]
    normal, share = filtering.map_values(y, "normalize")
    np.testing.assert_allclose(normal, [[0, 1.25 / 3], [1, 0]])
    assert share == 0.25  # only the NaN
    assert filtering.map_values(np.full((2, 2), 3.0), "normalize")[0].tolist() == [[0, 0], [0, 0]]
    assert y[0, 0] == -1.0  # the input is left alone
    with pytest.raises(ValueError):
        filtering.map_values(y, "wrap")


def test_clipped_share_counts_pixels_not_values():
    y = np.zeros((2, 2, 3), np.float32)
    y[0, 0] = [-1, 2, 0.5]  # one pixel, two bad values
    y[1, 1, 2] = 1 + 1e-7  # float rounding is not clipping
    assert filtering.clipped_share(y) == 0.25
    planar = np.ascontiguousarray(y.transpose(2, 0, 1)).transpose(1, 2, 0)
    assert filtering.clipped_share(planar) == 0.25


def test_combine():
    a = np.array([[3.0, -1.0]], np.float32)
    b = np.array([[4.0, 2.0]], np.float32)
    np.testing.assert_allclose(filtering.combine([a, b], "magnitude"), [[5.0, np.sqrt(5)]])
    assert filtering.combine([a, b], "max").tolist() == [[4.0, 2.0]]
    assert filtering.combine([a, b], "sum").tolist() == [[7.0, 1.0]]
    with pytest.raises(ValueError, match="different shapes"):
        filtering.combine([a, np.zeros((2, 2), np.float32)], "sum")


def test_stats_ignore_non_finite_values():
    assert filtering.stats(np.array([1.0, np.nan, -2.0, np.inf])) == (-2.0, 1.0)
    lo, hi = filtering.stats(np.array([np.nan]))
    assert np.isnan(lo) and np.isnan(hi)


@pytest.mark.parametrize(
    ("fmt", "depth_in", "asked", "expected"),
    [
        ("png", 8, None, 8),
        ("png", 16, None, 16),
        ("png", 32, None, 16),
        ("tiff", 16, None, 16),
        ("tiff", 32, None, 32),
        ("tiff", 8, 32, 32),
        ("jpeg", 16, None, 8),
        ("webp", 16, None, 8),
        ("npy", 8, None, 32),
        ("png", 8, 16, 16),
    ],
)
def test_output_depth(fmt, depth_in, asked, expected):
    assert output_depth(fmt, depth_in, asked) == expected


@pytest.mark.parametrize(("fmt", "asked"), [("jpeg", 16), ("png", 32), ("npy", 8)])
def test_output_depth_refuses(fmt, asked):
    with pytest.raises(ValueError):
        output_depth(fmt, 8, asked)


# ----------------------------------------------------------------- the engine apply takes


def test_apply_takes_the_jit_for_a_large_picture_alone(monkeypatch):
    assert engine.compiled() is not None, aot.error()
    monkeypatch.setattr(engine, "LARGE_WORK", 100)
    options = apply_task.Options(kernels=())
    assert apply_task.engine_for(options, 60).name == "aot"
    # the work before does not count: same engine, same bits
    assert apply_task.engine_for(options, 60).name == "aot"
    assert apply_task.engine_for(options, 120).name == "jit"
    assert apply_task.engine_for(options, 1).name == "aot"
    assert apply_task.engine_for(apply_task.Options(kernels=(), engine="aot"), 1e12).name == "aot"
    assert apply_task.engine_for(apply_task.Options(kernels=(), engine="jit"), 1).name == "jit"
