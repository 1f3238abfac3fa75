"""`convtool kernels` hardened: every broken kernel spec gets a clear answer (bad
usage, naming the problem), and nothing is lost; one of them in a real subprocess."""

from __future__ import annotations

import pytest

from tests.cli.hardening import SPECS, Case, check_case, run_program

CASES: dict[str, Case] = {
    f"kernels-spec-{n}": Case(("kernels", s), 2, w) for n, (s, w) in SPECS.items()
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_input_gets_a_clear_answer_and_nothing_is_lost(case, files, tmp_path):
    check_case(case, files, tmp_path)


SUBPROCESS = ["kernels-spec-file-huge-npy"]  # also in a real subprocess


@pytest.mark.parametrize("name", SUBPROCESS)
def test_the_program_itself_prints_no_traceback(name, files, tmp_path):
    check_case(CASES[name], files, tmp_path, run_program)
