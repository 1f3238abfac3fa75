"""`convtool shape` hardened: impossible geometry gets a clear answer (bad usage,
naming the problem), and nothing is lost; one case in a real subprocess."""

from __future__ import annotations

import pytest

from tests.cli.hardening import C, Case, check_case, run_program

CASES: dict[str, Case] = {
    "shape-kernel-0": C("shape 28 --size 0", 2, "size must be at least 1"),
    "shape-stride-0": C("shape 28 --size 3 -s 0", 2, "stride must be at least 1"),
    "shape-padding-negative": C("shape 28 --size 3 -p -1", 2, "padding"),
    "shape-kernel-too-large": C("shape 28 --size 30", 2, "larger than the padded input"),
    "shape-input-0": C("shape 0 --size 3", 2, "at least 1"),
    "shape-input-nan": C("shape nan --size 3", 2, "integer"),
    "shape-layer-unknown": C("shape 1x28x28 conv:4@5 bogus", 2, "unknown layer"),
    "shape-layer-too-large": C("shape 1x28x28 conv:4@50", 2, "larger than the padded input"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_input_gets_a_clear_answer_and_nothing_is_lost(case, files, tmp_path):
    check_case(case, files, tmp_path)


SUBPROCESS = ["shape-stride-0"]  # also in a real subprocess


@pytest.mark.parametrize("name", SUBPROCESS)
def test_the_program_itself_prints_no_traceback(name, files, tmp_path):
    check_case(CASES[name], files, tmp_path, run_program)


def test_numbers_too_long_to_print_are_refused_in_one_line():
    # a chain's product of three 4000-digit sizes could not even be printed
    from tests.cli.hardening import run_main

    big = "9" * 4000
    done = run_main(["shape", f"3x{big}x{big}", "flatten"])
    assert done.code == 2 and "Traceback" not in done.err
    assert done.err.splitlines()[-1] == (
        "Error: Invalid value for INPUT: input size must be at most 10^15, got a number of "
        "4000 characters"
    )
