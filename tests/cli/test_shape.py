"""`convtool shape`: output sizes, layer chains and the padding solver, from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from convtool.cli import cli

CHAPTER_CNN = "1x28x28 conv:4@5 relu maxpool:2 conv:6@5 relu maxpool:2 flatten fc:120 fc:10"


def shape(*args: str):
    result = CliRunner().invoke(cli, ["shape", *args])
    assert "Traceback" not in result.output
    return result


def ok(*args: str) -> tuple[str, str]:
    result = shape(*args)
    assert result.exit_code == 0, result.output
    return result.stdout, result.stderr


# ---------------------------------------------------------------- one layer


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("28 --kernel 5", "24"),
        ("28 --size 5", "24"),
        ("5 --size 3 -s 2", "2"),
        ("4 --size 3 -p 1", "4"),
        ("28x32 --size 5 -s 2 -p 1", "13x15"),
        ("28x28 --size 5", "24x24"),
        ("28 --size 3x5", "26x24"),  # an N input prints HxW once the axes differ
        ("28 --size 5 -p 1x2", "26x28"),
        ("28 --size 3 -d 2", "24"),
        ("28 --size 3 -p 1 -s 2", "14"),  # torch refuses same with a stride
        ("28 --size 4 -p same", "28"),
        ("28 --size 4 -p valid", "25"),
        ("28 --size 2 --pool", "14"),
        ("5 --size 2 --ceil", "3"),
        ("5 --size 2", "4"),
        ("2 --size 3 -s 2 --ceil", "1"),
        ("5 --size 2 -p 1 --ceil", "3"),
    ],
)
def test_one_layer_prints_just_the_size(args, expected):
    out, _ = ok(*args.split())
    assert out == expected + "\n"


def test_json():
    out, _ = ok("28", "--size", "5", "--json")
    assert json.loads(out) == {"height": 24, "width": 24}
    out, _ = ok("28x32", "--size", "5", "-s", "2", "-p", "1", "--json")
    assert json.loads(out) == {"height": 13, "width": 15}


def test_the_remainder_note_goes_to_stderr_only_when_the_division_is_not_exact():
    out, err = ok("28", "--size", "5", "-s", "2")
    assert out == "12\n"
    assert (
        err == "note: the division is not exact: the last window leaves 1 row and 1 column unused\n"
    )
    _, err = ok("28x27", "--size", "5", "-s", "2")
    assert "leaves 1 row unused" in err
    _, err = ok("27x28", "--size", "5", "-s", "2")
    assert "leaves 1 column unused" in err
    _, err = ok("10", "--size", "3", "-s", "4")
    assert "leaves 3 rows and 3 columns unused" in err
    _, err = ok("28", "--size", "5")
    assert err == ""
    out, err = ok("28", "--size", "5", "-s", "2", "--json")
    assert json.loads(out) == {"height": 12, "width": 12}
    assert "unused" in err


def test_ceil_mode_and_same_notes():
    _, err = ok("5", "--size", "2", "--ceil")
    assert "ceil mode: the last window overhangs the padded input by 1 row and 1 column" in err
    _, err = ok("28", "--size", "4", "-p", "same")
    assert "'same' pads 1 before and 2 after" in err
    _, err = ok("28x20", "--size", "3x4", "-p", "same")
    assert "rows 1+1 and columns 1+2" in err


# ---------------------------------------------------------------- the padding solver


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ("28 --size 5 --keep", "2"),
        ("28 --size 3 --keep", "1"),
        ("28 --size 3 -d 2 --keep", "2"),
        ("28 --size 4 --keep", "1+2"),
        ("28x20 --size 3x4 --keep", "1x1+2"),
        ("28 --size 3 -s 2 --target 14", "1"),
        ("28 --size 5 --target 24", "0"),
        ("28 --size 3 --target 32", "3"),
        ("28 --size 3 --target 31", "2+3"),
        ("28x28 --size 3 --target 30x32", "2x3"),
    ],
)
def test_padding_solver(args, expected):
    out, _ = ok(*args.split())
    assert out == expected + "\n"


def test_padding_solver_notes_and_json():
    _, err = ok("28", "--size", "4", "--keep")
    assert "no symmetric padding keeps 28: pad 1 before and 2 after" in err
    _, err = ok("28", "--size", "3", "-s", "2", "--target", "14")
    assert "leaves 1 row and 1 column unused; the tightest fit pads 0 before and 1 after" in err
    out, _ = ok("28", "--size", "3", "-s", "2", "--target", "14", "--json")
    assert json.loads(out) == {
        "height": 14,
        "width": 14,
        "padding": [0, 1, 0, 1],
        "symmetric": [1, 1],
    }
    out, _ = ok("28", "--size", "4", "--keep", "--json")
    assert json.loads(out)["symmetric"] == [None, None]


# ---------------------------------------------------------------- chains


def test_the_chapters_cnn_table():
    out, _ = ok(*CHAPTER_CNN.split())
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["#", "layer", "output", "shape", "params", "mult-adds"]
    rows = {line[0]: line[1:] for line in lines if line and line[0].isdigit()}
    assert rows["1"] == ["conv:4@5", "4x24x24", "104", "57,600"]
    assert rows["3"] == ["maxpool:2", "4x12x12", "-", "-"]
    assert rows["4"] == ["conv:6@5", "6x8x8", "606", "38,400"]
    assert rows["6"] == ["maxpool:2", "6x4x4", "-", "-"]
    assert rows["7"] == ["flatten", "96", "-", "-"]
    assert rows["8"] == ["fc:120", "120", "11,640", "11,520"]
    assert rows["9"] == ["fc:10", "10", "1,210", "1,200"]
    assert ["input", "1x28x28"] in lines
    assert ["total", "10", "13,560", "108,720"] in lines
    assert all(line == line.rstrip() for line in out.splitlines())  # clean when piped


def test_chain_json():
    out, _ = ok(*CHAPTER_CNN.split(), "--json")
    result = json.loads(out)
    assert [layer["shape"] for layer in result["layers"]] == [
        [4, 24, 24],
        [4, 24, 24],
        [4, 12, 12],
        [6, 8, 8],
        [6, 8, 8],
        [6, 4, 4],
        [96],
        [120],
        [10],
    ]
    assert result["layers"][0] == {
        "layer": "conv:4@5",
        "shape": [4, 24, 24],
        "params": 104,
        "macs": 57600,
    }
    assert (result["total_params"], result["total_macs"], result["output"]) == (13560, 108720, [10])
    assert result["input"] == [1, 28, 28]


def test_chain_inputs():
    out, _ = ok("28x28", "conv:4@5", "--json")  # HxW: one channel
    assert json.loads(out)["output"] == [4, 24, 24]
    out, _ = ok("784", "fc:128", "relu", "fc:10", "--json")  # N: a flat vector
    assert json.loads(out)["total_params"] == 784 * 128 + 128 + 128 * 10 + 10
    out, _ = ok("3x224x224", "conv:64@7,s=2,p=3", "bn", "relu", "maxpool:3,s=2,p=1", "--json")
    result = json.loads(out)
    assert (result["output"], result["total_params"]) == ([64, 56, 56], 9600)


# ---------------------------------------------------------------- errors: exit 2, one message


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("3 --size 5", "kernel 5 is larger than the padded input 3 (3 + 2*0)"),
        ("3x7 --size 5", "height: kernel 5 is larger than the padded input 3 (3 + 2*0)"),
        ("3 --size 3 -d 2", "kernel 3 with dilation 2 spans 5, more than the padded input 3"),
        (
            "28 --size 5 -s 0",
            "Invalid value for '-s' / '--stride': stride must be at least 1, got 0",
        ),
        ("28 --size 0", "size must be at least 1, got 0"),
        ("28 --size 3x", "size must be an integer, got ''"),
        ("28 --size 5 -p foo", "padding must be N, HxW, 'same' or 'valid', got 'foo'"),
        ("28 --size 5 -p -1", "padding must be N, HxW, 'same' or 'valid', got '-1'"),
        ("28 --size 3 -d 0", "dilation must be at least 1, got 0"),
        ("abc --size 3", "Invalid value for INPUT: input size must be an integer, got 'abc'"),
        ("0 --size 3", "input size must be at least 1, got 0"),
        ("1x28x28 --size 5", "one layer takes N or HxW, got '1x28x28'"),
        ("28", "give a kernel size (--size 5) for one layer, or layers after the input"),
        ("28 --size 3 -p 2 --ceil", "padding 2 must be at most half the pool window 3"),
        ("28 --size 3 -p same --pool", "a pool's padding is a number"),
        ("28 --size 3 --keep --target 5", "give --keep or --target, not both"),
        ("28 --size 3 -p 1 --keep", "--keep/--target solve for the padding"),
        ("28 --size 3 --target 20", "no padding gives 20: even unpadded, size 28 gives 26"),
        ("28 --size 3 --target 0", "target must be at least 1, got 0"),
        ("1x28x28 conv:4@", "layer 'conv:4@': expected C@K after 4@"),
        ("1x28x28 conv:sobel", "sobel is the gradient magnitude of two kernels"),
        ("1x28x28 conv:blur,border=edge", "border must be one of zero, reflect"),
        ("1x28x28 conv:4@5,q=3", "unknown option 'q'"),
        ("1x28x28 foo", "unknown layer 'foo'"),
        ("1x28x28 conv:4@3,s=0", "stride must be at least 1, got 0"),
        ("1x28x28 fc:10", "layer 1 (fc:10) on input 1x28x28: needs a flat input"),
        ("1x5x5 conv:3@7", "layer 1 (conv:3@7) on input 1x5x5: kernel 7 is larger"),
        ("28 --size 5 conv:3@3", "--size is for a single layer"),
        ("28 -s 2 --ceil conv:3@3", "-s, --ceil are for a single layer"),
    ],
)
def test_errors_exit_2_with_a_message_naming_the_value(args, message):
    result = shape(*args.split())
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert message in " ".join(result.stderr.split())  # rich-free, but may wrap
    assert result.stdout == ""


def test_help_documents_the_grammar_with_examples():
    result = shape("--help")
    assert result.exit_code == 0
    for text in (
        "conv:C@K[,s=S][,p=P|same|valid][,d=D][,nobias]",
        "maxpool[:K][,s=S][,p=P][,d=D][,ceil]",
        "avgpool[:K][,s=S][,p=P][,ceil]",
        "fc:N[,nobias]",
        "convtool shape 1x28x28 conv:4@5 relu maxpool:2 conv:6@5 relu maxpool:2",
        "convtool shape 28 --size 5 --keep",
        "--target",
        "--ceil",
    ):
        assert text in result.output


# ---------------------------------------------------------------- a new process


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convtool", "shape", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_installed_entry_point_answers_and_fails_with_exit_2():
    done = run("28", "--size", "5")
    assert (done.returncode, done.stdout, done.stderr) == (0, "24\n", "")
    done = run("3", "--size", "5")
    assert done.returncode == 2
    assert "Error: kernel 5 is larger than the padded input 3 (3 + 2*0)" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


PROBE = """
import sys
from convtool.cli import main
sys.argv = ["convtool", "shape", *sys.argv[1:]]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
heavy = sorted(m for m in ("numpy", "numba", "PIL") if m in sys.modules)
print("HEAVY", heavy, file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ["28", "--size", "5"],
        ["28", "--size", "4", "--keep"],
        CHAPTER_CNN.split(),
        [*CHAPTER_CNN.split(), "--json"],
    ],
)
def test_shape_imports_neither_numpy_nor_numba(args):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stderr
    assert done.stdout


def test_a_chain_naming_kernels_loads_numpy_alone():
    # a pipeline's stage string: the kernels are read (numpy), numba and pillow are not
    args = ["3x64x64", "conv:sobel_x+gaussian:5,p=same -> relu -> maxpool:2"]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "HEAVY ['numpy']" in done.stderr
    assert "2x32x32" in done.stdout
