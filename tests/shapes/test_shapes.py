"""Output-size arithmetic and layer chains (convtool.shapes): pure Python.

Checked against the chapter's hand-worked cases, a table of shapes computed once
with torch (tests/data/torch_shapes.json; torch is not imported here) and
hypothesis properties.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtool.shapes import (
    Layer,
    chain,
    leftover,
    output_size,
    output_size_padded,
    parse_dims,
    parse_layer,
    parse_padding,
    parse_pair,
    pool_output_size,
    resolve_padding,
    same_padding,
    solve_padding,
    summary,
)

TABLE = Path(__file__).resolve().parents[1] / "data" / "torch_shapes.json"

# ---------------------------------------------------------------- the formula


@pytest.mark.parametrize(
    ("n", "k", "s", "p", "expected"),
    [
        (28, 5, 1, 0, 24),  # the chapter: a 5x5 kernel on MNIST
        (5, 3, 2, 0, 2),  # the chapter: stride 2
        (4, 3, 1, 1, 4),  # the chapter: padding 1 keeps the size
        (7, 7, 1, 0, 1),  # kernel as large as the input: one window
        (28, 5, 2, 0, 12),  # (28 - 5) / 2 = 11.5 truncates to 11
        (3, 5, 1, 1, 1),  # the padded input 5 just holds the kernel
    ],
)
def test_chapter_formula(n, k, s, p, expected):
    assert output_size(n, k, stride=s, padding=p) == expected
    assert output_size(n, k, s, p) == math.floor((n - k + 2 * p) / s) + 1


def test_dilation_spans_d_times_k_minus_1_plus_1():
    # torch: H_out = floor((H + 2P - D*(K-1) - 1) / S) + 1
    assert output_size(28, 3, dilation=2) == 24  # a 3x3 kernel dilated by 2 spans 5
    assert output_size(28, 3, dilation=3) == 22
    assert output_size(10, 3, stride=2, padding=1, dilation=2) == 4


def test_ceil_mode_keeps_an_overhanging_last_window():
    assert output_size(5, 2, stride=2) == 2
    assert output_size(5, 2, stride=2, ceil_mode=True) == 3
    # the window overhangs past the (unpadded) input: torch still keeps it
    assert output_size(2, 3, stride=2, ceil_mode=True) == 1
    assert leftover(2, 3, stride=2, ceil_mode=True) == -1


def test_ceil_mode_drops_a_last_window_starting_in_the_trailing_padding():
    # padded 7 = 1 + 5 + 1: ceil((7 - 2) / 2) + 1 = 4 windows, but the 4th would
    # start at 6, in the right padding, so torch drops it
    assert output_size(5, 2, stride=2, padding=1, ceil_mode=True) == 3
    assert output_size(5, 2, stride=2, padding=1) == 3


def test_asymmetric_padding():
    assert output_size_padded(28, 4, 1, 1, 2) == 28
    assert output_size_padded(6, 3, 2, 0, 1) == 3  # same_padding(6, 3, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((28, 5, 0), "stride must be at least 1, got 0"),
        ((28, 0), "kernel must be at least 1, got 0"),
        ((0, 3), "size must be at least 1, got 0"),
        ((28, 3, 1, 0, 0), "dilation must be at least 1, got 0"),
        ((3, 5), r"kernel 5 is larger than the padded input 3 \(3 \+ 2\*0\)"),
        ((3, 3, 1, 0, 2), r"kernel 3 with dilation 2 spans 5, more than the padded input 3"),
        ((28, 3, 1, -1), "padding must not be negative"),
    ],
)
def test_invalid_arguments_raise_value_error(args, message):
    with pytest.raises(ValueError, match=message):
        output_size(*args)


def test_pool_output_size():
    assert pool_output_size(24, 2) == 12  # stride defaults to the window
    assert pool_output_size(5, 2, ceil_mode=True) == 3
    assert pool_output_size(28, 3, stride=2, padding=1) == 14
    with pytest.raises(ValueError, match="padding 2 must be at most half the pool window 3"):
        pool_output_size(28, 3, padding=2)


def test_leftover_counts_the_rows_the_last_window_leaves_unused():
    assert leftover(28, 5) == 0
    assert leftover(28, 5, stride=2) == 1  # windows start 0, 2, ..., 22 and end at 27
    assert leftover(10, 3, stride=4) == 3  # windows at 0 and 4 end at 7; 7, 8, 9 unused
    assert leftover(5, 2, stride=2, ceil_mode=True) == -1


# ---------------------------------------------------------------- padding


def test_same_padding_split_puts_the_extra_row_after():
    assert same_padding(5, 3) == (1, 1)
    assert same_padding(6, 4) == (1, 2)
    assert same_padding(28, 3, stride=2) == (0, 1)
    assert same_padding(28, 1, stride=2) == (0, 0)
    assert resolve_padding("same", (28, 28), (4, 3), (1, 1)) == (1, 2, 1, 1)
    assert resolve_padding("valid", (28, 28), (4, 3), (1, 1)) == (0, 0, 0, 0)
    assert resolve_padding((1, 2), (28, 28), (3, 3), (1, 1)) == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="'same' or 'valid'"):
        resolve_padding("full", (28, 28), (3, 3), (1, 1))


def test_solve_padding_keep():
    sol = solve_padding(28, 5)
    assert (sol.output, sol.before, sol.after, sol.symmetric) == (28, 2, 2, 2)
    sol = solve_padding(28, 3, dilation=2)
    assert (sol.before, sol.after, sol.symmetric) == (2, 2, 2)


def test_solve_padding_even_kernel_has_no_symmetric_answer():
    sol = solve_padding(28, 4)
    assert (sol.before, sol.after, sol.symmetric) == (1, 2, None)


def test_solve_padding_target_with_stride():
    sol = solve_padding(28, 3, stride=2, target=14)
    # tightest 0 + 1 (as TensorFlow's SAME); the usual 1 per side also gives 14
    assert (sol.before, sol.after, sol.symmetric, sol.symmetric_unused) == (0, 1, 1, 1)
    assert output_size(28, 3, stride=2, padding=1) == 14
    assert solve_padding(28, 5, target=24).symmetric == 0


def test_solve_padding_unreachable_target():
    with pytest.raises(ValueError, match="no padding gives 20: even unpadded, size 28 gives 26"):
        solve_padding(28, 3, target=20)
    with pytest.raises(ValueError, match="target size must be at least 1"):
        solve_padding(28, 3, target=0)


# ---------------------------------------------------------------- parsing


def test_parse_pair_and_dims():
    assert parse_pair("5", "kernel") == (5, 5)
    assert parse_pair("3x5", "kernel") == (3, 5)
    assert parse_pair("3X5", "kernel") == (3, 5)
    assert parse_pair("0", "padding", minimum=0) == (0, 0)
    assert parse_dims("28") == (28,)
    assert parse_dims("28x32") == (28, 32)
    assert parse_dims("3x28x32") == (3, 28, 32)
    assert parse_padding("same") == "same"
    assert parse_padding("VALID") == "valid"
    assert parse_padding("1x2") == (1, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: parse_pair("0", "stride"), "stride must be at least 1, got 0"),
        (lambda: parse_pair("a", "kernel"), "kernel must be an integer, got 'a'"),
        (lambda: parse_pair("1x2x3", "kernel"), "kernel must be N or HxW"),
        (lambda: parse_pair("", "kernel"), "kernel must be an integer"),
        (lambda: parse_padding("-1"), "padding must be N, HxW, 'same' or 'valid'"),
        (lambda: parse_dims("1x2x3x4"), "input must be N, HxW or CxHxW"),
        (lambda: parse_dims("28x0"), "input size must be at least 1, got 0"),
    ],
)
def test_parse_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_parse_layer_grammar():
    assert parse_layer("conv:8@3") == Layer("conv", "conv:8@3", size=8, kernel=(3, 3))
    layer = parse_layer("conv:8@3x5,s=2,p=same,d=2,nobias")
    assert (layer.size, layer.kernel, layer.stride, layer.padding) == (8, (3, 5), (2, 2), "same")
    assert (layer.dilation, layer.bias) == ((2, 2), False)
    long = parse_layer("CONV2D:8@3,stride=2,padding=1,dilation=1x2")
    assert (long.stride, long.padding, long.dilation) == ((2, 2), (1, 1), (1, 2))
    pool = parse_layer("maxpool:3,s=2,p=1,ceil")
    assert (pool.kind, pool.kernel, pool.stride, pool.padding, pool.ceil_mode) == (
        "maxpool",
        (3, 3),
        (2, 2),
        (1, 1),
        True,
    )
    assert parse_layer("maxpool:2").stride is None  # the window, when applied
    assert parse_layer("avgpool:2").kind == "avgpool"
    assert parse_layer("linear:10") == Layer("fc", "linear:10", size=10)
    assert parse_layer("fc:10,nobias").bias is False
    for name in ("relu", "flatten", "bn", "sigmoid", "dropout", "dropout:0.5"):
        assert parse_layer(name).text == name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("conv:4", r"'4' names kernels; give C@K"),  # a 1x1 kernel, sized with kernel_shape
        ("conv:4@", "expected C@K after 4@"),
        ("conv:", r"missing '@K' .* or kernels; expected conv\[:C@K\|KERNEL"),
        ("conv", "missing '@K'"),
        ("conv:sobel_x", "'sobel_x' names kernels; give C@K"),  # without kernel_shape
        ("conv:0@3", "output channels must be at least 1, got 0"),
        ("conv:4@3,q=1", "unknown option 'q'"),
        ("conv:4@3,s=1,s=2", "stride given twice"),
        ("conv:4@3,ceil", "unknown flag 'ceil'"),
        ("conv:4@3,scale=2", "scale is for named kernels; C@K's are random"),
        ("conv:4@3,s=0", "stride must be at least 1, got 0"),
        ("maxpool:3,p=same", "a pool's padding is N or HxW, not 'same'"),
        ("avgpool:3,d=2", "unknown option 'd'"),
        ("fc:ten", "output features must be an integer, got 'ten'"),
        ("relu:3", "relu takes no arguments"),
        ("dropout:1.5", r"the dropout rate must be in \[0, 1\)"),
        ("pooling:2", r"unknown layer 'pooling:2'; known layers: conv\[:C@K"),
    ],
)
def test_parse_layer_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_layer(spec)


# ---------------------------------------------------------------- chains

CHAPTER_CNN = "conv:4@5 relu maxpool:2 conv:6@5 relu maxpool:2 flatten fc:120 fc:10"


def layers(text: str) -> list[Layer]:
    return [parse_layer(spec) for spec in text.split()]


def test_the_chapters_cnn():
    rows = chain((1, 28, 28), layers(CHAPTER_CNN))
    assert [r.shape for r in rows] == [
        (4, 24, 24),
        (4, 24, 24),
        (4, 12, 12),
        (6, 8, 8),
        (6, 8, 8),
        (6, 4, 4),
        (96,),
        (120,),
        (10,),
    ]
    # checked once against torch.nn: Conv2d(1, 4, 5) has 4*1*5*5 + 4 parameters, ...
    assert [r.params for r in rows] == [104, 0, 0, 606, 0, 0, 0, 11640, 1210]
    assert [r.macs for r in rows] == [57600, 0, 0, 38400, 0, 0, 0, 11520, 1200]


def test_summary_is_json_ready():
    result = summary((1, 28, 28), layers(CHAPTER_CNN))
    assert json.loads(json.dumps(result)) == result
    assert result["total_params"] == 13560
    assert result["total_macs"] == 108720
    assert result["output"] == [10]
    assert result["input"] == [1, 28, 28]
    assert result["layers"][0] == {
        "layer": "conv:4@5",
        "shape": [4, 24, 24],
        "params": 104,
        "macs": 57600,
    }
    assert summary((3, 8, 8), [])["output"] == [3, 8, 8]


def test_resnet_stem():
    rows = chain((3, 224, 224), layers("conv:64@7,s=2,p=3 bn relu maxpool:3,s=2,p=1"))
    assert [r.shape for r in rows] == [(64, 112, 112)] * 3 + [(64, 56, 56)]
    assert [r.params for r in rows] == [9472, 128, 0, 0]  # as torch.nn counts them
    assert rows[0].macs == 118_013_952  # torchinfo: 118.01M


def test_chain_options():
    rows = chain((3, 32, 32), layers("conv:16@3,p=same,nobias conv:8@4,p=1,s=2 avgpool:3,ceil"))
    assert [r.shape for r in rows] == [(16, 32, 32), (8, 16, 16), (8, 6, 6)]
    assert rows[0].params == 16 * 3 * 9  # no bias
    assert chain((2, 9, 9), layers("maxpool:3,d=2"))[0].shape == (2, 2, 2)
    assert chain((784,), layers("fc:128 relu dropout:0.2 fc:10"))[-1].shape == (10,)


@pytest.mark.parametrize(
    ("shape", "text", "message"),
    [
        ((1, 5, 5), "conv:3@7", r"layer 1 \(conv:3@7\) on input 1x5x5: kernel 7 is larger"),
        ((1, 28, 28), "fc:10", "needs a flat input, got 1x28x28; put 'flatten' before it"),
        ((28,), "conv:3@3", r"needs a CxHxW input, got the flat 28 \(an input N is a flat"),
        ((1, 4, 4), "flatten maxpool:2", r"layer 2 \(maxpool:2\) on input 16: needs a CxHxW"),
        ((1, 8, 8), "maxpool:2,p=2", "padding 2 must be at most half the pool window 2"),
        ((1, 8, 8), "conv:3@3,s=2,p=same", "torch refuses padding .same. with stride 2"),
    ],
)
def test_chain_errors(shape, text, message):
    with pytest.raises(ValueError, match=message):
        chain(shape, layers(text))


# ---------------------------------------------------------------- torch's table


def _torch_cases() -> list[dict]:
    data = json.loads(TABLE.read_text())
    return [dict(zip(data["fields"], row, strict=True)) for row in data["cases"]]


CASES = _torch_cases()


def _ours(c: dict) -> list[int] | None:
    axes = [
        (c["h"], c["kh"], c["sh"], c["ph"], c["dh"]),
        (c["w"], c["kw"], c["sw"], c["pw"], c["dw"]),
    ]
    try:
        if c["op"] == "conv2d":
            return [output_size(n, k, s, p, d) for n, k, s, p, d in axes]
        return [pool_output_size(n, k, s, p, d, c["ceil"]) for n, k, s, p, d in axes]
    except ValueError:
        return None


@pytest.mark.parametrize("op", ["conv2d", "max_pool2d"])
def test_equal_to_torch_output_shapes(op):
    cases = [c for c in CASES if c["op"] == op]
    assert len(cases) >= 3000
    wrong = [(c, _ours(c)) for c in cases if _ours(c) != c["out"]]
    assert not wrong, f"{len(wrong)} of {len(cases)} differ from torch, e.g. {wrong[:3]}"


def test_torch_table_covers_the_tricky_cases():
    kinds: dict[str, int] = {}

    def count(kind: str) -> None:
        kinds[kind] = kinds.get(kind, 0) + 1

    for c in CASES:
        count(f"{c['op']} error {c['error']}" if c["error"] else c["op"])
        if c["op"] != "max_pool2d" or not c["ceil"] or c["error"]:
            continue
        count("ceil")
        for n, k, s, p, d in [
            (c["h"], c["kh"], c["sh"], c["ph"], c["dh"]),
            (c["w"], c["kw"], c["sw"], c["pw"], c["dw"]),
        ]:
            span = d * (k - 1) + 1
            if span > n + 2 * p:
                count("ceil: window longer than the padded input")
            elif leftover(n, k, s, p, p, d, True) < 0:
                count("ceil: last window overhangs")
            if -(-(n + 2 * p - span) // s) + 1 > output_size(n, k, s, p, d, True):
                count("ceil: last window dropped")
        if c["dh"] > 1 or c["dw"] > 1:
            count("ceil with dilation")
    for kind in [
        "conv2d error kernel",
        "max_pool2d error too_small",
        "max_pool2d error pad",
        "ceil: window longer than the padded input",
        "ceil: last window overhangs",
        "ceil: last window dropped",
        "ceil with dilation",
    ]:
        assert kinds.get(kind, 0) >= 20, (kind, kinds)


# ---------------------------------------------------------------- properties

sizes = st.integers(1, 200)
kernels = st.integers(1, 11)
strides = st.integers(1, 6)
dilations = st.integers(1, 4)


@given(sizes, kernels, strides, dilations)
def test_same_padding_gives_ceil_n_over_s(n, k, s, d):
    before, after = same_padding(n, k, s, d)
    assert after - before in (0, 1)
    assert output_size_padded(n, k, s, before, after, d) == math.ceil(n / s)


@given(sizes, kernels, strides, st.integers(0, 6), dilations)
def test_the_windows_and_the_leftover_fill_the_padded_input(n, k, s, p, d):
    span = d * (k - 1) + 1
    if span > n + 2 * p:
        with pytest.raises(ValueError):
            output_size(n, k, s, p, d)
        return
    out = output_size(n, k, s, p, d)
    rest = leftover(n, k, s, p, p, d)
    assert (out - 1) * s + span + rest == n + 2 * p
    assert 0 <= rest < s
    assert out <= output_size(n + 1, k, s, p, d)  # more input, never fewer outputs


@given(sizes, kernels, strides, dilations, st.data())
def test_ceil_mode_rounds_up_but_starts_every_window_in_bounds(n, k, s, d, data):
    p = data.draw(st.integers(0, k // 2))
    span = d * (k - 1) + 1
    try:
        ceil = pool_output_size(n, k, s, p, d, ceil_mode=True)
    except ValueError:
        assert n + 2 * p - span <= -s  # not even an overhanging window fits
        return
    # torch: the last window starts inside the input or the leading padding
    assert (ceil - 1) * s < n + p
    if span <= n + 2 * p:
        floor = pool_output_size(n, k, s, p, d)
        assert floor <= ceil <= floor + 1
        # one more window when the division is not exact and that window starts in bounds
        assert ceil == floor + (leftover(n, k, s, p, p, d) > 0 and floor * s < n + p)
    else:
        assert ceil == 1


def _out(n, k, s, before, after, d) -> int:
    """Output size, 0 where the kernel does not fit."""
    try:
        return output_size_padded(n, k, s, before, after, d)
    except ValueError:
        return 0


@given(sizes, kernels, strides, dilations, st.integers(1, 120))
def test_solved_padding_reaches_the_target_and_is_the_smallest(n, k, s, d, target):
    try:
        sol = solve_padding(n, k, s, d, target)
    except ValueError:
        assert _out(n, k, s, 0, 0, d) > target
        return
    total = sol.before + sol.after
    assert sol.after - sol.before in (0, 1)
    assert _out(n, k, s, sol.before, sol.after, d) == target
    assert total == 0 or _out(n, k, s, 0, total - 1, d) < target
    if sol.symmetric is not None:
        q = sol.symmetric
        assert _out(n, k, s, q, q, d) == target
        assert q == 0 or _out(n, k, s, q - 1, q - 1, d) < target
        assert leftover(n, k, s, q, q, d) == leftover(n, k, s, sol.before, sol.after, d) + (
            sol.symmetric_unused
        )
    else:
        assert all(_out(n, k, s, q, q, d) != target for q in range(total + s + 1))


@given(st.integers(1, 64), st.integers(1, 7), dilations)
def test_keep_with_stride_1_is_same_padding(n, k, d):
    sol = solve_padding(n, k, dilation=d)
    assert (sol.before, sol.after) == same_padding(n, k, dilation=d)
