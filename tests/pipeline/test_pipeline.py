"""convtool.pipeline: the stage grammar, and every stage against independent references
(scipy for convolutions, plain loops with torch's pooling rules for the pools)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.signal
from hypothesis import given, settings
from hypothesis import strategies as st

from convtool import imaging
from convtool import pipeline as pl
from convtool.kernels import parse_kernel
from tests import naive

ROOT = Path(__file__).resolve().parents[2]
DISC = ROOT / "samples" / "disc.png"
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
LUMA = np.array([0.299, 0.587, 0.114])


def disc() -> np.ndarray:
    """The chapter's disc as (H, W, 3) floats in [0, 1]."""
    return imaging.read_image(DISC).data.astype(np.float64)


# ------------------------------------------------------------ pooling references


def _pool_len(n: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """torch's output length, written out: floor or ceil of (n + 2p - k) / s, plus one;
    with ceil_mode a last window must start inside the input or its left padding."""
    room = (n + 2 * p - k) / s
    out = (math.ceil(room) if ceil_mode else math.floor(room)) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def ref_max_pool(x, k, s, p, ceil_mode):
    """Max over each window; padding never wins (torch pads with -inf)."""
    c, h, w = x.shape
    ho, wo = _pool_len(h, k[0], s[0], p[0], ceil_mode), _pool_len(w, k[1], s[1], p[1], ceil_mode)
    out = np.empty((c, ho, wo))
    for ch in range(c):
        for i in range(ho):
            for j in range(wo):
                best = -np.inf
                for a in range(k[0]):
                    for b in range(k[1]):
                        r, q = i * s[0] - p[0] + a, j * s[1] - p[1] + b
                        if 0 <= r < h and 0 <= q < w:
                            best = max(best, x[ch, r, q])
                out[ch, i, j] = best
    return out


def ref_avg_pool(x, k, s, p, ceil_mode):
    """Mean with zero padding counted (count_include_pad); a window running past the
    padded input divides by the part inside it (torch's ceil_mode rule)."""
    c, h, w = x.shape
    ho, wo = _pool_len(h, k[0], s[0], p[0], ceil_mode), _pool_len(w, k[1], s[1], p[1], ceil_mode)
    padded = np.zeros((c, h + 2 * p[0], w + 2 * p[1]))
    padded[:, p[0] : p[0] + h, p[1] : p[1] + w] = x
    out = np.empty((c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            window = padded[:, i * s[0] : i * s[0] + k[0], j * s[1] : j * s[1] + k[1]]
            out[:, i, j] = window.sum(axis=(1, 2)) / (window.shape[1] * window.shape[2])
    return out


@st.composite
def pool_cases(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    h = draw(st.integers(max(1, k[0] - 2 * p[0]), 9))
    w = draw(st.integers(max(1, k[1] - 2 * p[1]), 9))
    c = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31))
    x = np.random.default_rng(seed).normal(size=(c, h, w)).astype(np.float32)
    return x, k, s, p, draw(st.booleans())


def _spec(kind, k, s, p, ceil_mode):
    return f"{kind}:{k[0]}x{k[1]},s={s[0]}x{s[1]},p={p[0]}x{p[1]}" + (",ceil" if ceil_mode else "")


@settings(deadline=None, max_examples=60)
@given(pool_cases())
def test_maxpool_stage_has_torch_semantics(case):
    x, k, s, p, ceil_mode = case
    got = pl.run_pipeline(x, _spec("maxpool", k, s, p, ceil_mode))[0].data
    np.testing.assert_array_equal(got, ref_max_pool(x, k, s, p, ceil_mode))
    want, _ = naive.max_pool2d(x[None].astype(np.float64), k, s, p, ceil_mode)
    np.testing.assert_array_equal(got, want[0])


@settings(deadline=None, max_examples=60)
@given(pool_cases())
def test_avgpool_stage_has_torch_semantics(case):
    x, k, s, p, ceil_mode = case
    got = pl.run_pipeline(x, _spec("avgpool", k, s, p, ceil_mode))[0].data
    np.testing.assert_allclose(got, ref_avg_pool(x, k, s, p, ceil_mode), atol=1e-6)
    np.testing.assert_allclose(
        got, naive.avg_pool2d(x[None].astype(np.float64), k, s, p, ceil_mode)[0], atol=1e-6
    )


def test_pool_hand_worked_cases():
    x = np.arange(1.0, 26.0).reshape(1, 5, 5)  # 1..25, row by row
    assert pl.run_pipeline(x, "maxpool:2")[0].data.tolist() == [[[7, 9], [17, 19]]]
    # ceil keeps the last, partial windows: row/column 5 alone
    assert pl.run_pipeline(x, "maxpool:2,ceil")[0].data.tolist() == [
        [[7, 9, 10], [17, 19, 20], [22, 24, 25]]
    ]
    # 3x3 mean with one zero row/column of padding around the top-left corner: (1+2+6+7)/9
    out = pl.run_pipeline(x, "avgpool:3,s=3,p=1")[0].data
    assert out.shape == (1, 2, 2) and out[0, 0, 0] == pytest.approx(16 / 9)


def test_pool_stride_defaults_to_window_and_window_to_2():
    assert pl.parse_stage("maxpool").size == (2, 2) and pl.parse_stage("maxpool").stride == (2, 2)
    stage = pl.parse_stage("avgpool:3x2")
    assert stage.size == (3, 2) and stage.stride == (3, 2)


# ------------------------------------------------------------ the chapter's settings


def test_disc_default_chain_is_figure_17_7():
    x = disc()
    planes, names = pl.source_planes(x)
    stages = pl.parse_stages(kernels=["sobel_x"])
    results = pl.run_stages(planes, stages, names)
    assert [r.shape for r in results] == [(1, 78, 78), (1, 78, 78), (1, 39, 39)]
    assert [r.stage.kind for r in results] == ["conv", "relu", "maxpool"]
    # the 3-in, 1-out filter: sobel-x correlated with each channel, then summed
    want = sum(scipy.signal.correlate2d(x[..., c], SOBEL_X, mode="valid") for c in range(3))
    np.testing.assert_allclose(results[0].data[0], want, atol=1e-5)
    np.testing.assert_allclose(results[1].data[0], np.maximum(want, 0), atol=1e-5)
    pooled = np.maximum(want, 0).reshape(39, 2, 39, 2).max(axis=(1, 3))
    np.testing.assert_allclose(results[2].data[0], pooled, atol=1e-5)
    assert results[0].labels == ("sobel_x",) == results[2].labels
    assert results[0].range == (float(want.min()), float(want.max()))


def test_gray_source_takes_the_luma():
    planes, names = pl.source_planes(disc(), "gray")
    assert planes.shape == (1, 80, 80) and names == ("grey",)
    np.testing.assert_allclose(planes[0], disc() @ LUMA, atol=1e-6)
    colour, names = pl.source_planes(disc())
    assert colour.shape == (3, 80, 80) and names == ("red", "green", "blue")
    with pytest.raises(ValueError, match="color"):
        pl.source_planes(disc(), "colour")


def test_channels_filters_each_channel_alike():
    # --color channels: a 2-D kernel on each channel gives a map per channel (depthwise),
    # where the default sums them; scipy's correlate of each plane is the reference
    planes, names = pl.source_planes(disc(), "channels")
    defaults = pl.ConvDefaults(padding="same", per_channel=True)
    stages = pl.parse_stages(["conv:sobel_x+blur"], defaults=defaults)
    (result,) = pl.run_stages(planes, stages, names)
    assert result.labels == tuple(f"{k}[{c}]" for k in ("sobel_x", "blur") for c in names)
    for i, spec in enumerate(("sobel_x", "blur")):
        weights = parse_kernel(spec)
        for c in range(3):
            want = ndi.correlate(planes[c].astype(np.float64), weights, mode="constant")
            np.testing.assert_allclose(result.data[3 * i + c], want, atol=1e-5)


# ------------------------------------------------------------ conv stages


def test_several_kernels_flow_on_as_channels():
    x = disc()
    planes, _ = pl.source_planes(x)
    results = pl.run_pipeline(planes, "conv:sobel_x+sobel_y+blur -> relu -> maxpool:2")
    assert [r.shape for r in results] == [(3, 78, 78), (3, 78, 78), (3, 39, 39)]
    assert results[-1].labels == ("sobel_x", "sobel_y", "blur")
    for c, name in enumerate(["sobel_x", "sobel_y", "blur"]):
        k = parse_kernel(name)
        want = sum(scipy.signal.correlate2d(x[..., ch], k, mode="valid") for ch in range(3))
        np.testing.assert_allclose(results[0].data[c], want, atol=1e-5)
    # a later 2-D kernel sums over the three maps
    two = pl.run_pipeline(planes, "conv:sobel_x+sobel_y -> conv:box3")
    want = sum(scipy.signal.correlate2d(m, parse_kernel("box3"), "valid") for m in two[0].data)
    np.testing.assert_allclose(two[1].data[0], want, atol=1e-4)


@pytest.mark.parametrize(
    ("options", "stride", "pad"),
    [
        ("s=2,p=1", (2, 2), (1, 1, 1, 1)),
        ("s=1x3,p=2x0", (1, 3), (2, 2, 0, 0)),
        ("p=same", (1, 1), (1, 1, 1, 1)),
    ],
)
def test_conv_stride_and_padding_match_the_naive_loop(options, stride, pad):
    x = np.random.default_rng(3).normal(size=(2, 9, 11))
    k = np.random.default_rng(4).normal(size=(3, 3))
    got = pl.run_pipeline(x, f"conv:{_inline(k)},{options}")[0].data
    want = naive.conv2d(x[None], np.repeat(k[None, None], 2, axis=1), stride=stride, pad=pad)
    np.testing.assert_allclose(got, want[0], atol=1e-4)


def _inline(k: np.ndarray) -> str:
    return ";".join(" ".join(repr(float(v)) for v in row) for row in k)


@pytest.mark.parametrize(
    ("border", "mode"),
    [("reflect", "reflect"), ("mirror", "mirror"), ("replicate", "nearest"), ("wrap", "wrap")],
)
def test_conv_borders_match_scipy(border, mode):
    x = disc()
    planes, _ = pl.source_planes(x)
    got = pl.run_pipeline(planes, f"conv:sobel_x,p=same,border={border}")[0].data[0]
    want = sum(ndi.correlate(x[..., c], SOBEL_X, mode=mode) for c in range(3))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_conv_flip_bias_normalize_scale():
    x = np.random.default_rng(5).random((12, 10))
    k = np.random.default_rng(6).random((3, 4))
    flipped = pl.run_pipeline(x, f"conv:{_inline(k)},flip,bias=0.25")[0].data[0]
    np.testing.assert_allclose(flipped, scipy.signal.convolve2d(x, k, "valid") + 0.25, atol=1e-5)
    scaled = pl.run_pipeline(x, f"conv:{_inline(k)},normalize,scale=3")[0].data[0]
    np.testing.assert_allclose(
        scaled, scipy.signal.correlate2d(x, 3 * k / k.sum(), "valid"), atol=1e-5
    )


def test_defaults_fill_what_a_conv_stage_leaves_out():
    defaults = pl.ConvDefaults(stride=(2, 2), padding="same", border="wrap", flip=True, bias=1.0)
    stage = pl.parse_stage("conv:sobel_x", defaults=defaults)
    assert (stage.stride, stage.padding, stage.border) == ((2, 2), "same", "wrap")
    np.testing.assert_array_equal(stage.kernels[0].weights, SOBEL_X[::-1, ::-1])
    assert stage.kernels[0].bias == 1.0
    own = pl.parse_stage("conv:sobel_x,s=1,p=valid,border=zero,bias=0", defaults=defaults)
    assert (own.stride, own.padding, own.border, own.kernels[0].bias) == (
        (1, 1),
        "valid",
        "zero",
        0,
    )


def test_4d_kernel_file_with_json_bias(tmp_path):
    rng = np.random.default_rng(7)
    w = rng.normal(size=(2, 3, 3, 2))
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"kernel": w.tolist(), "bias": [0.5, -1.0]}))
    x = rng.normal(size=(3, 8, 7))
    result = pl.run_pipeline(x, f"conv:@{path},p=1")[0]
    want = naive.conv2d(x[None], w, b=[0.5, -1.0], pad=(1, 1, 1, 1))[0]
    np.testing.assert_allclose(result.data, want, atol=1e-5)
    assert result.labels == ("w[0]", "w[1]")
    np.save(tmp_path / "w4.npy", w[:, :2])  # takes 2 channels, gets 3
    with pytest.raises(pl.StageError, match=r"stage 1 .*takes 2 input channel\(s\).* has 3"):
        pl.run_pipeline(x, f"conv:@{tmp_path / 'w4.npy'}")


def test_kernels_of_several_sizes_and_biases_in_one_stage(tmp_path):
    x = np.random.default_rng(9).random((3, 14, 12))
    (tmp_path / "k.json").write_text(json.dumps({"kernel": [[1, 2], [3, 4]], "bias": 0.5}))
    spec = f"conv:sobel_x+gaussian:5+@{tmp_path / 'k.json'}+blur,p=same"
    got = pl.run_pipeline(x, spec)[0]
    assert got.labels == ("sobel_x", "gaussian:5", "k", "blur")
    kernels = [
        SOBEL_X,
        parse_kernel("gaussian:5"),
        np.array([[1.0, 2], [3, 4]]),
        parse_kernel("blur"),
    ]
    for c, (k, bias) in enumerate(zip(kernels, [0, 0, 0.5, 0], strict=True)):
        alone = pl.run_pipeline(x, f"conv:{_inline(k)},p=same,bias={bias}")[0].data[0]
        np.testing.assert_allclose(got.data[c], alone, atol=1e-5)
        if k.shape[0] % 2:  # odd kernels: 'same' centres them, as scipy does
            want = sum(ndi.correlate(x[ch], k, mode="constant") for ch in range(3)) + bias
            np.testing.assert_allclose(got.data[c], want, atol=1e-5)


def test_run_errors_name_the_stage():
    x = np.zeros((3, 10, 10))
    with pytest.raises(pl.StageError, match=r"stage 3 \(conv:gaussian:5.*padded image is only 4x4"):
        pl.run_pipeline(x, "conv:box3 -> maxpool:2 -> conv:gaussian:5")
    with pytest.raises(
        pl.StageError, match=r"different sizes.*sobel_x 8x8, gaussian:5 6x6.*p=same"
    ):
        pl.run_pipeline(x, "conv:sobel_x+gaussian:5")
    with pytest.raises(pl.StageError, match=r"stage 1 \(maxpool:4,s=4\).*window is 4x4"):
        pl.run_pipeline(np.zeros((2, 3)), "maxpool:4")


# ------------------------------------------------------------ grammar


@pytest.mark.parametrize(
    ("spec", "kind", "names", "extra"),
    [
        ("conv:sobel_x", "conv", ["sobel_x"], {"stride": (1, 1), "padding": "valid"}),
        (
            "Conv2d:sobel-x+Sobel Y,s=2,p=same",
            "conv",
            ["sobel_x", "sobel_y"],
            {"stride": (2, 2), "padding": "same"},
        ),
        (
            "conv:gaussian:5,1.5,s=2x1,p=1x2",
            "conv",
            ["gaussian:5,1.5"],
            {"stride": (2, 1), "padding": (1, 2)},
        ),
        (
            "conv:sobel_x@90+motion:5,30,border=mirror",
            "conv",
            ["sobel_x@90", "motion:5,30"],
            {"border": "mirror"},
        ),
        ("conv:0,-1,0; -1,5,-1; 0,-1,0,p=valid", "conv", ["custom"], {"padding": "valid"}),
        ("conv:3x3: 1,2,1 2,4,2 1,2,1", "conv", ["custom"], {}),
        ("conv:1e+0,-1", "conv", ["custom"], {}),
        ("relu", "relu", [], {}),
        (
            " maxpool:3,s=1,p=1,ceil ",
            "maxpool",
            [],
            {"size": (3, 3), "stride": (1, 1), "padding": (1, 1), "ceil_mode": True},
        ),
        ("pool", "maxpool", [], {"size": (2, 2), "stride": (2, 2)}),
        ("max_pool:2x3,stride=1", "maxpool", [], {"size": (2, 3), "stride": (1, 1)}),
        ("avg_pool:4,pad=2", "avgpool", [], {"size": (4, 4), "stride": (4, 4), "padding": (2, 2)}),
    ],
)
def test_good_specs(spec, kind, names, extra):
    stage = pl.parse_stage(spec)
    assert stage.kind == kind and stage.text == spec.strip()
    assert [k.name for k in stage.kernels] == names
    for field, value in extra.items():
        assert getattr(stage, field) == value, field


def test_inline_kernels_keep_their_values():
    stage = pl.parse_stage("conv:0,-1,0; -1,5,-1; 0,-1,0,s=2")
    np.testing.assert_array_equal(stage.kernels[0].weights, [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    assert stage.stride == (2, 2)
    np.testing.assert_array_equal(pl.parse_stage("conv:1e+0,-1").kernels[0].weights, [[1, -1]])


def test_bare_conv_takes_the_kernels_given_apart():
    stage = pl.parse_stage("conv:flip,p=same", kernels=["sobel_x", "blur"])
    assert stage.shared and [k.name for k in stage.kernels] == ["sobel_x", "blur"]
    np.testing.assert_array_equal(stage.kernels[0].weights, SOBEL_X[::-1, ::-1])
    assert not pl.parse_stage("conv:box3", kernels=["sobel_x"]).shared


def test_chains_arrows_and_the_default():
    stages = pl.parse_stages(["conv:sobel_x -> relu", "maxpool:2 ->avgpool:3,s=1"])
    assert [s.kind for s in stages] == ["conv", "relu", "maxpool", "avgpool"]
    default = pl.parse_stages(kernels=["sobel_x"])
    assert [s.describe() for s in default] == ["conv:sobel_x,s=1,p=valid", "relu", "maxpool:2,s=2"]
    with pytest.raises(pl.StageError, match="nothing to run"):
        pl.parse_stages([])


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("sigmoid", "stage 'sigmoid' is for convtool shape's tables; pipeline's stages are conv["),
        ("bogus", "unknown stage 'bogus'; stages are conv["),
        ("fc:10", "stage 'fc:10' is for convtool shape's tables"),
        ("maxpool:3,d=2", "the pipeline's pools take no dilation"),
        ("conv:4@3,flip", "flip is for named kernels; C@K's are random"),
        ("conv:4@", "expected C@K after 4@"),
        ("conv:blur,d=100000", "dilated kernel is 200001x200001; at most"),  # before it is made
        ("conv:4@3,d=100000", "dilated kernel is 200001x200001; at most"),
        ("", "an empty stage"),
        ("conv:sobel_q", "stage 'conv:sobel_q': unknown kernel 'sobel_q'; did you mean"),
        ("conv", "no kernel: name one (conv:sobel_x) or give -k"),
        ("conv:sobel_x,sobel_y", "unknown flag 'sobel_y'; several kernels are joined with '+'"),
        ("conv:sobel_x,q=1", "unknown option 'q'; expected conv[:C@K|KERNEL"),
        ("conv:sobel_x,s=0", "stride must be at least 1, got 0"),
        ("conv:sobel_x,s=1,stride=2", "stride given twice"),
        ("conv:sobel_x,p=big", "padding must be N, HxW, 'same' or 'valid'"),
        (
            "conv:sobel_x,border=edge",
            "border must be one of zero, reflect, mirror, replicate, wrap",
        ),
        ("conv:sobel_x,bias=x", "bias must be a number, got 'x'"),
        ("conv:sobel_x,scale=inf", "scale must be finite"),
        (
            "conv:sobel_x,scale=1e300",
            "stage 'conv:sobel_x,scale=1e300': scale=1e+300 makes kernel sobel_x reach 2e+300, "
            "beyond float32's 3.4e+38",
        ),
        ("conv:blur,scale=1e308", "scale=1e+308 makes kernel blur reach 1.1e+307, beyond"),
        ("conv:sobel_x,scale=1e309", "scale must be finite, got '1e309'"),
        ("conv:1e39,1", "stage 'conv:1e39,1': kernel custom reaches 1e+39, beyond float32's"),
        ("conv:sobel_x,bias=-4e38", "bias=-4e+38 is beyond float32's 3.4e+38"),
        ("conv:1,-0.999999,normalize,scale=1e33", "scale=1e+33 and normalize make kernel"),
        ("conv:sobel_x,ceil", "unknown flag 'ceil'; expected conv"),
        ("relu:2", "relu takes no options"),
        ("maxpool:0", "window must be at least 1, got 0"),
        ("maxpool:2,p=2", "padding 2 is more than half the window 2"),
        ("avgpool:3,p=same", "a pool's padding is N or HxW, not 'same'"),
        ("maxpool:2,border=wrap", "unknown option 'border'; expected maxpool[:K]"),
        ("avgpool:2,flip", "unknown flag 'flip'"),
        ("maxpool:2x3x4", "window must be N or HxW"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, needle):
    with pytest.raises(pl.StageError) as info:
        pl.parse_stage(spec)
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_float32_limits_blame_the_parameter_that_set_the_value():
    from convtool import vocab
    from convtool._shared import message

    limit = float(np.finfo(np.float32).max)
    for defaults, kernels, option, words, flagged in [
        (
            pl.ConvDefaults(scale=1e300),
            ["blur"],
            "scale",
            "scale=1e+300 makes kernel blur",
            "--scale 1e+300 makes kernel blur",
        ),
        (
            pl.ConvDefaults(bias=-1e39),
            ["blur"],
            "bias",
            "bias=-1e+39 is beyond",
            "--bias -1e+39 is beyond",
        ),
        (pl.ConvDefaults(), ["1e39"], "kernels", "kernel custom reaches 1e+39", None),
    ]:
        with pytest.raises(pl.StageError) as info:
            pl.parse_stages(["conv -> relu"], kernels=kernels, defaults=defaults)
        # the library names the parameter; the command line says it as its flag
        assert info.value.option == option and str(info.value).startswith(words)
        said = message(info.value, vocab.as_flag)
        assert said.startswith(flagged or words), said
    # a stage's own value and an option together: the stage is named; float32's largest passes
    with pytest.raises(pl.StageError) as info:
        pl.parse_stage("conv:1,-0.999999,scale=1e33", defaults=pl.ConvDefaults(normalize=True))
    assert info.value.option is None
    assert str(info.value).startswith(
        "stage 'conv:1,-0.999999,scale=1e33': scale=1e+33 and normalize=True"
    )
    assert message(info.value, vocab.as_flag).startswith(
        "stage 'conv:1,-0.999999,scale=1e33': scale=1e+33 and --normalize"
    )
    stage = pl.parse_stage(f"conv:1,scale={limit!r},bias={-limit!r}")
    assert stage.kernels[0].weights.max() == limit


def test_stage_records_count_nan_and_infinity():
    x = np.ones((1, 6, 6), np.float32)
    x[0, 2, 3] = np.nan
    x[0, 5, 5] = np.inf
    results = pl.run_pipeline(x, "conv:box3,p=same -> relu -> maxpool:3")
    want = [int(np.count_nonzero(~np.isfinite(r.data))) for r in results]
    assert want[0] == 9 + 4 and want[2] > 0  # two 3x3 reaches, one cut by the corner
    assert [r.nonfinite for r in results] == want == [r.record()["nonfinite"] for r in results]
    assert pl.run_pipeline(np.ones((5, 5)), "conv:box3")[0].record()["nonfinite"] == 0


def test_chain_with_an_empty_stage_is_refused():
    with pytest.raises(pl.StageError, match="an empty stage"):
        pl.parse_stages(["conv:sobel_x -> -> relu"])


@settings(deadline=None, max_examples=50)
@given(
    kind=st.sampled_from(["maxpool", "avgpool"]),
    k=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    s=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    frac=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    ceil_mode=st.booleans(),
)
def test_describe_parses_back_to_the_same_pool(kind, k, s, frac, ceil_mode):
    p = (int(frac[0] * (k[0] // 2)), int(frac[1] * (k[1] // 2)))
    stage = pl.parse_stage(_spec(kind, k, s, p, ceil_mode))
    again = pl.parse_stage(stage.describe())
    fields = ("kind", "size", "stride", "padding", "ceil_mode")
    assert [getattr(again, f) for f in fields] == [getattr(stage, f) for f in fields]
    assert (stage.size, stage.stride, stage.padding, stage.ceil_mode) == (k, s, p, ceil_mode)


@pytest.mark.parametrize("extra", ["", ",flip", ",normalize,scale=2.5,bias=-0.5", ",bias=1"])
def test_describe_parses_back_to_the_same_conv(extra):
    stage = pl.parse_stage("conv:sobel_x+gaussian:5,1+kirsch@45,s=2x1,p=same,border=wrap" + extra)
    again = pl.parse_stage(stage.describe())
    assert again.describe() == stage.describe()
    assert [k.name for k in again.kernels] == ["sobel_x", "gaussian:5,1", "kirsch@45"]
    assert (again.stride, again.padding, again.border) == ((2, 1), "same", "wrap")
    assert [k.bias for k in again.kernels] == [k.bias for k in stage.kernels]
    for a, b in zip(stage.kernels, again.kernels, strict=True):
        np.testing.assert_array_equal(a.weights, b.weights)


def test_run_pipeline_takes_strings_or_stages():
    x = np.random.default_rng(8).random((2, 12, 12))
    stages = pl.parse_stages(["conv:blur -> relu -> avgpool:2"])
    a = pl.run_pipeline(x, stages)
    b = pl.run_pipeline(x, "conv:blur -> relu -> avgpool:2")
    c = pl.run_pipeline(x, ["conv", "relu", "avgpool:2"], kernels=["blur"])
    for one, two, three in zip(a, b, c, strict=True):
        np.testing.assert_array_equal(one.data, two.data)
        np.testing.assert_array_equal(one.data, three.data)
        assert one.seconds >= 0
    same = pl.run_pipeline(x[0], kernels=["blur"], padding="same", stride=2)
    assert [r.shape for r in same] == [(1, 6, 6), (1, 6, 6), (1, 3, 3)]
    record = a[0].record()
    assert record["spec"] == "conv:blur,s=1,p=valid" and record["shape"] == [1, 10, 10]


# ------------------------------------------------- one grammar with convtool shape


def test_random_convs_and_dilation_are_torch_s():
    # conv:C@K: C kernels over every channel, drawn as torch's Conv2d starts them, and d=
    # a dilation: both equal torch's conv2d with those weights
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).random((3, 23, 31)).astype(np.float32)
    for spec, dilation in (("conv:4@3,d=2,p=1", 2), ("conv:2@3x5,d=1x2", (1, 2))):
        (stage,) = pl.parse_stages([spec])
        (result,) = pl.run_stages(x, [stage])
        kernel = pl.random_kernel(stage, 3)
        _, (kh, kw) = stage.random
        bound = 1 / math.sqrt(3 * kh * kw)
        assert np.abs(kernel.weights).max() <= bound and np.abs(kernel.bias).max() <= bound
        raw = kernel.weights[..., :: stage.dilation[0], :: stage.dilation[1]]
        want = torch.nn.functional.conv2d(
            torch.from_numpy(x[None].astype(np.float64)),
            torch.from_numpy(raw),
            torch.tensor(kernel.bias, dtype=torch.float64),
            dilation=dilation,
            padding=stage.padding if stage.padding != "valid" else 0,
        )[0].numpy()
        assert result.shape == want.shape and result.labels[0] == "random[0]"
        np.testing.assert_allclose(result.data, want, atol=1e-5)
    named = pl.run_stages(x, pl.parse_stages(["conv:sobel_x,d=3,p=3"]))[0].data
    w = torch.from_numpy(np.repeat(parse_kernel("sobel_x")[None, None], 3, axis=1))
    want = torch.nn.functional.conv2d(torch.from_numpy(x[None].astype(np.float64)), w,
                                      dilation=3, padding=3)[0].numpy()  # fmt: skip
    np.testing.assert_allclose(named, want, atol=1e-5)


def test_random_convs_are_seeded():
    x = np.random.default_rng(4).random((1, 12, 12)).astype(np.float32)

    def maps(specs, seed=1):
        defaults = pl.ConvDefaults(seed=seed)
        return [r.data for r in pl.run_stages(x, pl.parse_stages(specs, defaults=defaults))]

    chain = ["conv:2@3,nobias -> conv:2@3"]
    first, again = maps(chain), maps(chain)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)  # the same every run
    assert not np.array_equal(maps(chain, seed=2)[0], first[0])
    # each C@K conv its own stream: the second is not the first's kernel again
    one = pl.parse_stages(chain)
    w0, w1 = pl.random_kernel(one[0], 2), pl.random_kernel(one[1], 2)
    assert w0.bias is None and not np.array_equal(w0.weights, w1.weights)


@pytest.mark.parametrize(
    "chain",
    [
        "conv:8@3,d=2,p=same -> relu -> maxpool:2 -> conv:4@3x5,s=2,nobias -> avgpool:3,s=1",
        "conv:sobel_x+blur,p=same -> relu -> maxpool:3,s=2,p=1,ceil -> conv:2@2",
    ],
)
def test_shape_sizes_a_pipeline_as_it_runs(chain):
    # the one grammar: convtool shape's table has the shapes the pipeline's maps have
    from click.testing import CliRunner

    from convtool.cli import cli

    x = np.random.default_rng(5).random((3, 37, 50)).astype(np.float32)
    ran = [r.shape for r in pl.run_stages(x, pl.parse_stages([chain]))]
    done = CliRunner().invoke(cli, ["shape", "3x37x50", chain, "--json"])
    assert done.exit_code == 0, done.output
    sized = [tuple(layer["shape"]) for layer in json.loads(done.stdout)["layers"]]
    assert sized == ran
