"""`convtool shape` answers as torch does: where torch refuses a layer, shape refuses it
(exit 2), and where torch takes it, shape gives torch's size. Checked against torch itself."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from convtool.cli import cli

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_size(kind, n, k, s, p, d, ceil=False):
    """torch's output size along one axis, or None where torch refuses."""
    x = torch.zeros(1, 1, n, n)
    try:
        if kind == "conv":
            y = F.conv2d(x, torch.zeros(1, 1, k, k), stride=s, padding=p, dilation=d)
        elif kind == "maxpool":
            y = F.max_pool2d(x, k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
        else:
            y = F.avg_pool2d(x, k, stride=s, padding=p, ceil_mode=ceil)
    except RuntimeError:
        return None
    return y.shape[-1] if y.shape[-1] > 0 else None


def shape_size(kind, n, k, s, p, d, ceil=False):
    """shape's answer for the same layer: the size, or None for a refusal (exit 2)."""
    if kind == "avgpool":  # avg_pool2d has no dilation: through the chain's grammar
        spec = f"avgpool:{k},s={s},p={p}" + (",ceil" if ceil else "")
        done = CliRunner().invoke(cli, ["shape", f"1x{n}x{n}", spec, "--json"])
        if done.exit_code == 2:
            return None
        assert done.exit_code == 0, done.output
        import json

        return json.loads(done.stdout)["output"][-1]
    args = ["shape", str(n), "--size", str(k), "-s", str(s), "-p", str(p), "-d", str(d)]
    args += ["--pool"] * (kind == "maxpool") + ["--ceil"] * ceil
    done = CliRunner().invoke(cli, args)
    if done.exit_code == 2:
        return None
    assert done.exit_code == 0, done.output
    return int(done.stdout)


CASES = [  # (kind, n, k, s, p, d, ceil): the refusals torch 2.x makes, and their edges
    ("conv", 28, 30, 1, 0, 1, False),  # a kernel larger than the input
    ("conv", 28, 30, 1, 1, 1, False),  # ... but not than the padded input
    ("conv", 28, 3, 1, 5, 1, False),  # conv padding may pass half the kernel
    ("conv", 5, 3, 1, 0, 3, False),  # a dilated kernel spanning more than the input
    ("maxpool", 28, 3, 3, 2, 1, False),  # pool padding more than half the window
    ("maxpool", 28, 3, 3, 2, 2, False),  # ... even where the dilated window is larger
    ("maxpool", 28, 3, 3, 3, 2, False),
    ("maxpool", 28, 30, 30, 0, 1, False),  # no window fits: output size too small
    ("maxpool", 28, 29, 29, 1, 1, False),
    ("maxpool", 5, 2, 2, 1, 1, True),  # ceil mode's last window
    ("avgpool", 28, 3, 3, 2, 1, False),
    ("avgpool", 28, 2, 2, 1, 1, False),
    ("avgpool", 28, 28, 1, 0, 1, True),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_shape_refuses_what_torch_refuses(case):
    assert shape_size(*case) == torch_size(*case)


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["conv", "maxpool", "avgpool"]),
    n=st.integers(1, 12),
    k=st.integers(1, 6),
    s=st.integers(1, 4),
    p=st.integers(0, 4),
    d=st.integers(1, 3),
    ceil=st.booleans(),
)
def test_shape_agrees_with_torch_on_any_layer(kind, n, k, s, p, d, ceil):
    ceil = ceil and kind != "conv"
    d = 1 if kind == "avgpool" else d
    assert shape_size(kind, n, k, s, p, d, ceil) == torch_size(kind, n, k, s, p, d, ceil)


@pytest.mark.parametrize(
    ("n", "k", "s", "d"), [(28, 3, 2, 1), (28, 4, 2, 1), (27, 2, 3, 1), (9, 3, 2, 2), (7, 5, 3, 1)]
)
def test_same_padding_with_a_stride_is_refused_with_what_torch_takes(n, k, s, d):
    with pytest.raises(RuntimeError, match="not supported for strided"):
        F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding="same")
    for args in (
        ["shape", str(n), "--size", str(k), "-s", str(s), "-d", str(d), "-p", "same"],
        ["shape", f"1x{n}x{n}", f"conv:1@{k},s={s},d={d},p=same"],
    ):
        done = CliRunner().invoke(cli, args)
        assert done.exit_code == 2 and "torch refuses padding 'same'" in done.stderr
        said = " ".join(done.stderr.split())
        wanted = int(re.search(r"for the same output, (\d+),", said).group(1))
        assert wanted == -(-n // s)  # what convtool's own 'same' gives
        pad = re.search(r"give padding (\d+)", said)
        x = torch.zeros(1, 1, n, n)
        if pad is not None:  # torch's own padding gives that size
            y = F.conv2d(x, torch.zeros(1, 1, k, k), stride=s, padding=int(pad[1]), dilation=d)
        else:  # through F.pad first
            rows = re.search(r"rows (\d+) before and (\d+) after", said)
            cols = re.search(r"columns (\d+) before and (\d+) after", said)
            x = F.pad(x, (int(cols[1]), int(cols[2]), int(rows[1]), int(rows[2])))
            y = F.conv2d(x, torch.zeros(1, 1, k, k), stride=s, dilation=d)
        assert y.shape[-1] == wanted


def test_a_stride_on_one_axis_with_an_even_kernel_needs_torch_s_pad_first():
    done = CliRunner().invoke(cli, ["shape", "28", "--size", "4", "-s", "2x1", "-p", "same"])
    said = " ".join(done.stderr.split())
    assert done.exit_code == 2 and "torch.nn.functional.pad" in said, said
    rows = re.search(r"rows (\d+) before and (\d+) after", said)
    cols = re.search(r"columns (\d+) before and (\d+) after", said)
    x = F.pad(torch.zeros(1, 1, 28, 28), (int(cols[1]), int(cols[2]), int(rows[1]), int(rows[2])))
    y = F.conv2d(x, torch.zeros(1, 1, 4, 4), stride=(2, 1))
    assert tuple(y.shape[-2:]) == (14, 28)
