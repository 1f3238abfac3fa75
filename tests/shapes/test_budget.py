"""The job's arrays planned before any is made: shapes against the arrays the code really
makes, the peak against the memory it really takes, and the refusals' words."""

from __future__ import annotations

import re
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convtool import filtering, ops
from convtool.shapes import budget
from convtool.shapes.budget import Conv, Pool, Relu, SizeError, check, plan

# ------------------------------------------------------------------ shapes


@st.composite
def conv_jobs(draw):
    """A picture (C, H, W), one to three kernels, a stride, a padding and a border."""
    c = draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    sizes = draw(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=3))
    stride = draw(st.tuples(st.integers(1, 40), st.integers(1, 40)))
    padding = draw(
        st.one_of(
            st.sampled_from(["same", "valid"]), st.tuples(st.integers(0, 6), st.integers(0, 6))
        )
    )
    border = draw(st.sampled_from(["zero", "replicate", "wrap"]))
    color = draw(st.sampled_from(["channels", "sum", "gray"]))
    return (c, h, w), sizes, stride, padding, border, color


def _apply_step(c, sizes, stride, padding, border, color) -> Conv:
    maps = c if color == "channels" else 1
    kernels = tuple((maps, kh, kw) for kh, kw in sizes)
    fan = 1 if color == "gray" else c
    return Conv("-k", "-k", kernels, stride, padding, border != "zero", fan)


@settings(deadline=None, max_examples=80)
@given(conv_jobs())
def test_a_conv_plan_gives_the_shapes_correlate_makes(job):
    (c, h, w), sizes, stride, padding, border, color = job
    rng = np.random.default_rng(0)
    picture = rng.random((h, w, c) if c > 1 else (h, w)).astype(np.float32)
    step = _apply_step(c, sizes, stride, padding, border, color)
    planned = plan((c, h, w), [step], chained=False)
    results = []
    for kh, kw in sizes:
        try:
            y = filtering.correlate(
                picture, rng.random((kh, kw)), color=color, border=border,
                padding=padding, stride=stride,
            )  # fmt: skip
        except ValueError:  # the window does not fit: the plan stops there too
            assert not planned.steps
            return
        results.append(y.shape if y.ndim == 3 else (*y.shape, 1))
    assert len(planned.steps) == 1
    kept = planned.steps[0].kept
    assert [(a.shape[1], a.shape[2], a.shape[0]) for a in kept] == results


@settings(deadline=None, max_examples=60)
@given(
    st.integers(1, 3),
    st.integers(1, 15),
    st.integers(1, 15),
    st.tuples(st.integers(1, 6), st.integers(1, 6)),
    st.tuples(st.integers(1, 9), st.integers(1, 9)),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.booleans(),
)
def test_a_pool_plan_gives_the_shapes_the_pools_make(c, h, w, window, stride, padding, ceil):
    padding = tuple(min(p, k // 2) for p, k in zip(padding, window, strict=True))
    step = Pool("maxpool", "--stage", window, stride, padding, ceil)
    planned = plan((c, h, w), [step])
    x = np.zeros((c, h, w), np.float32)
    try:
        y = ops.max_pool2d(x, window, stride, padding, ceil_mode=ceil)
    except ValueError:
        assert not planned.steps
        return
    assert planned.steps[0].result == (c, *y.shape[-2:])


def test_a_chain_passes_each_result_on_and_keeps_them_all():
    steps = [
        Conv("stage 1", "--stage", ((2, 3, 3), (1, 5, 5)), (1, 1), "same"),
        Relu("stage 2", "--stage"),
        Pool("stage 3", "--stage", (2, 2), (2, 2)),
        Conv("stage 4", "--stage", ((4, 3, 3),), (2, 2), 1, fan_in=3),
    ]
    job = plan((3, 40, 30), steps)
    assert [s.result for s in job.steps] == [(3, 40, 30), (3, 40, 30), (3, 20, 15), (4, 10, 8)]
    kept = 4 * (3 * 40 * 30 * 2 + 3 * 20 * 15 + 4 * 10 * 8)
    assert job.peak >= kept
    # a step whose window does not fit its input ends the plan: the run says why
    tight = plan(
        (1, 4, 4),
        [Pool("p", "--stage", (2, 2), (2, 2)), Conv("c", "--stage", ((1, 5, 5),), padding="valid")],
    )
    assert len(tight.steps) == 1


# ------------------------------------------------------------------ memory


@pytest.mark.parametrize(
    ("shape", "size", "stride", "padding", "border", "color"),
    [
        ((3, 200, 160), (7, 7), (1, 1), "same", "zero", "channels"),
        ((3, 200, 160), (5, 9), (1, 3), "same", "mirror", "sum"),
        ((1, 120, 120), (3, 3), (1, 1), (60, 60), "replicate", "channels"),
        ((3, 80, 80), (3, 3), (1, 10**6), "same", "zero", "channels"),  # a silly stride
        ((3, 80, 80), (3, 3), (7, 10**5), (500, 2000), "wrap", "gray"),
    ],
)
def test_the_planned_peak_bounds_the_memory_correlate_takes(
    shape, size, stride, padding, border, color
):
    c, h, w = shape
    picture = np.random.default_rng(1).random((h, w, c) if c > 1 else (h, w)).astype(np.float32)
    kernel = filtering.prepare_kernel(np.ones(size))
    filtering.correlate(picture[:9, :9], kernel, color=color, stride=1)  # compiled: not traced
    job = plan(shape, [_apply_step(c, [size], stride, padding, border, color)], chained=False)
    tracemalloc.start()
    try:
        y = filtering.correlate(
            picture, kernel, color=color, border=border, padding=padding, stride=stride
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the picture as read is counted by the plan, not allocated here; the result, its
    # scratch and the copies writing makes are all within the plan, and not far under it
    assert job.steps[0].result[1:] == y.shape[:2]
    assert peak <= job.peak
    assert job.peak <= 8 * peak + (1 << 20)


def test_machine_memory_honours_an_address_space_limit():
    code = (
        "import resource\n"
        "from convtool.shapes.budget import machine_memory, _status_bytes\n"
        "held = _status_bytes('VmSize')\n"
        "resource.setrlimit(resource.RLIMIT_AS, (held + (300 << 20), resource.RLIM_INFINITY))\n"
        "print(machine_memory())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 0 < int(done.stdout) <= 300 << 20
    free = budget.machine_memory()
    assert free is None or free > 300 << 20


# ------------------------------------------------------------------ refusals


def _padded(p: int) -> Conv:
    return Conv(f"--padding {p}", "--padding", ((3, 3, 3),), padding=(p, p))


def test_an_output_over_max_pixels_is_refused_naming_the_option_and_size():
    with pytest.raises(SizeError) as e:
        check(plan((3, 80, 80), [_padded(10**8)], chained=False), max_pixels=89478485)
    assert e.value.option == "--padding"
    assert str(e.value) == (
        "--padding 100000000 would make an output of 200000078x200000078 (4e+16 pixels), more "
        "than the limit of 89,478,485 (--max-pixels)"
    )
    check(plan((3, 80, 80), [_padded(10)], chained=False), max_pixels=10000)  # 100x100: fits


def test_memory_over_the_machines_is_refused_saying_how_much_it_would_need():
    job = plan((3, 80, 80), [_padded(10**8)], chained=False)
    with pytest.raises(SizeError) as e:
        check(job, max_pixels=None, memory=8 << 30)
    assert e.value.option == "--padding"
    assert str(e.value).startswith(
        "--padding 100000000 would make a result of 3x200000078x200000078 (426 PiB): the job "
        "would need "
    )
    assert str(e.value).endswith("of memory, more than the 8 GiB this machine has free")
    check(job, max_pixels=None, memory=None)  # no limit, no refusal
    small = plan((3, 80, 80), [_padded(1)], chained=False)
    check(small, max_pixels=10**4, memory=small.peak)  # exactly what it needs: fits
    with pytest.raises(SizeError):
        check(small, memory=small.peak - 1)


def test_the_step_that_takes_most_memory_is_named_in_a_chain():
    steps = [
        Conv("stage 1 (conv:blur)", "--stage", ((1, 3, 3),)),
        Conv("stage 2 (conv:blur,p=3000)", "--stage", ((1, 3, 3),), padding=3000),
        Pool("stage 3 (maxpool:2)", "--stage", (2, 2), (2, 2)),
    ]
    with pytest.raises(SizeError) as e:
        check(plan((1, 100, 100), steps), memory=64 << 20)
    assert str(e.value).startswith("stage 2 (conv:blur,p=3000) would make a result of 1x6098x6098")


def test_a_floor_plan_says_it_holds_for_every_picture():
    with pytest.raises(
        SizeError, match=r"output of 19997x19997 \(399,880,009 pixels\) even from a 1x1"
    ):
        check(plan((1, 1, 1), [_padded(9999)]), max_pixels=10**6, floor=True)


def test_byte_counts_read_as_people_read_them():
    assert [budget._bytes(n) for n in (5, 2048, 3 << 29, 426 << 50, 10**30)] == [
        "5 bytes", "2 KiB", "1.5 GiB", "426 PiB", "827181 YiB",
    ]  # fmt: skip


def test_work_that_options_alone_ask_for_is_held_to_the_floor_limit():
    # a 31x31 kernel over 6000x6000 wrapped copies of one pixel: the padding's work
    wrap = Conv("--padding 3000", "--padding", ((1, 31, 31),), padding=3000, copies_border=True)
    floor = plan((1, 1, 1), [wrap])
    assert floor.macs == 5971**2 * 31 * 31
    with pytest.raises(SizeError, match=r"--padding 3000 would take 3.4e\+10 multiply-adds even"):
        check(floor, floor=True)
    check(plan((3, 4000, 4000), [wrap]))  # a picture's own work is not limited
    # zeros around the picture cost nothing: the core skips them
    zero = plan((1, 1, 1), [wrap._replace(copies_border=False)])
    assert zero.macs == 5971**2
    check(zero, floor=True)
    pool = plan((2, 10, 10), [Pool("p", "--stage", (100, 100), (1, 1), (50, 50))])
    assert pool.macs == 2 * 11 * 11 * 10 * 10


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1000000000000001", "padding must be at most 10^15, got 1000000000000001"),
        ("9" * 4000, "padding must be at most 10^15, got a number of 4000 characters"),
        ("3x" + "1" * 41, "got a number of 41 characters"),
    ],
)
def test_every_number_typed_is_at_most_a_quadrillion(text, words):
    from convtool.shapes import parse_pair

    with pytest.raises(ValueError, match=re.escape(words)):
        parse_pair(text, "padding", 0)
    assert parse_pair("1000000000000000", "padding", 0) == (10**15, 10**15)
