"""`convtool fit` hardened: every bad input gets a clear answer, and nothing is lost.

Its table of hostile command lines (pictures that cannot be read, pairs that cannot be,
impossible sizes and strides, NaN, a diverging step, outputs that cannot be written or
would overwrite an input), a subset of it in a real subprocess; then NaN, infinity and
divergence in ``fit_kernel``, and the same kernel for the same seed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage as ndi

from tests.cli.hardening import BLUR, PROC, C, Case, check_case, run_main, run_program

CASES: dict[str, Case] = {
    "fit-missing": C("fit {missing.png} {target.npy}", 1, "no such file"),
    "fit-dir": C("fit {grey.npy} {dir.png}", 2, "is a directory"),
    "fit-empty": C("fit {empty.png} {target.npy}", 1, "the file is empty"),
    "fit-text": C("fit {grey.npy} {text.png}", 1, "not a picture"),
    "fit-trunc": C("fit {trunc.png} {target.npy}", 1, "truncated or corrupt PNG"),
    "fit-zero": C("fit {zero.npy} {target.npy}", 1, "empty"),
    "fit-bomb": C("fit {bomb.png} {target.npy}", 1, "--max-pixels"),
    "fit-swapped": C("fit {target.npy} {grey.npy}", 2, "swapped"),
    "fit-mismatched": C("fit {grey.npy} {wide.npy}", 2, "wider than"),
    "fit-colour-target": C("fit {grey.npy} {colour.npy}", 2, "--color gray"),
    "fit-size-wrong": C("fit {grey.npy} {target.npy} --size 5", 2, "size-5 kernel"),
    "fit-size-0": C("fit {grey.npy} {target.npy} --size 0", 2, "at least 1"),
    "fit-stride-0": C("fit {grey.npy} {target.npy} --stride 0", 2, "at least 1"),
    "fit-stride-too-small-target": C(
        "fit {grey.npy} {target.npy} --stride 2", 2, "can be at most 15 along the height"
    ),
    "fit-tol-nan": C("fit {grey.npy} {target.npy} --tol nan", 2, "positive number"),
    "fit-nan-input": C("fit {nan.npy} {target.npy}", 1, "nan.npy holds 1 nan or infinite"),
    "fit-inf-target": C(
        "fit {grey.npy} {inf.npy} --size 11x5", 1, "inf.npy holds 1 nan or infinite"
    ),
    "fit-diverging-step": C("fit {grey.npy} {target.npy} --lr 1e6", 1, "diverge"),
    "fit-max-pixels-small": C("fit {grey.npy} {target.npy} --max-pixels 100", 1, "limit of 100"),
    "fit-output-is-input": C(
        "fit {grey.npy} {target.npy} -o {target.npy} --overwrite", 2, "is an input"
    ),
    "fit-log-is-input": C(
        "fit {grey.npy} {target.npy} --log {grey.npy} --overwrite", 2, "is an input"
    ),
    "fit-output-is-log": C(
        "fit {grey.npy} {target.npy} -o {out}/k.json --log {out}/k.json", 2, "two files"
    ),
    "fit-output-exists": C("fit {grey.npy} {target.npy} -o {grey.png}", 1, "exists"),
    "fit-folder-missing": C(
        "fit {grey.npy} {target.npy} -o {out}/nowhere/k.json", 2, "does not exist"
    ),
    "fit-folder-is-a-file": C(
        "fit {grey.npy} {target.npy} --log {ok.png}/l.csv", 2, "not a folder"
    ),
    "fit-folder-unwritable": C(
        f"fit {{grey.npy}} {{target.npy}} -o {PROC}.json", 1, "cannot write"
    ),
    "fit-output-kind": C("fit {grey.npy} {target.npy} -o {out}/k.png", 2, "kernels are written as"),
    "fit-compare-ragged": C("fit {grey.npy} {target.npy} --compare 1,2;3", 2, "row 2"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_bad_input_gets_a_clear_answer_and_nothing_is_lost(case, files, tmp_path):
    check_case(case, files, tmp_path)


SUBPROCESS = [  # the cases that also run in a real subprocess
    "fit-swapped",
    "fit-nan-input",
    "fit-folder-unwritable",
]


@pytest.mark.parametrize("name", SUBPROCESS)
def test_the_program_itself_prints_no_traceback(name, files, tmp_path):
    check_case(CASES[name], files, tmp_path, run_program)


# ----------------------------------------------------------------- numbers


def test_fit_stops_on_nan_infinity_and_divergence(tmp_path):
    from convtool.fit import DivergenceError, FitError, fit_kernel

    rng = np.random.default_rng(5)
    x = rng.random((20, 20))
    y = ndi.correlate(x, BLUR)[1:-1, 1:-1]
    for bad in (np.nan, np.inf, -np.inf):
        for which in ("input", "target"):
            xx, yy = x.copy(), y.copy()
            (xx if which == "input" else yy)[3, 4] = bad
            with pytest.raises(FitError, match=f"the {which} holds NaN or infinite values"):
                fit_kernel(xx, yy)
    with pytest.raises(DivergenceError, match="diverge"):
        fit_kernel(x, y, method="gd", lr=100.0)
    # cg starts from zero: no random start whose loss overflows on huge values
    np.testing.assert_allclose(fit_kernel(x * 1e100, y).kernel * 1e100, BLUR, rtol=1e-6)
    for method in ("cg", "gd", "lstsq"):  # sums beyond float64: a FitError, not numpy's
        with pytest.raises(FitError, match="overflow float64"):
            fit_kernel(x * 1e200, y, method=method, seed=1)
    np.testing.assert_allclose(
        fit_kernel(x * 1e100, y, method="lstsq").kernel * 1e100, BLUR, rtol=1e-6
    )


# ----------------------------------------------------------------- seeds


def test_fit_gives_the_same_kernel_for_the_same_seed(files, tmp_path):
    args = ["fit", files["grey.png"], files["target.npy"], "--method", "gd", "--json"]
    first = json.loads(run_main([*args, "--seed", "7"]).out)
    second = json.loads(run_main([*args, "--seed", "7"]).out)
    assert first["kernel"] == second["kernel"] and first["iterations"] == second["iterations"]
    unseeded = json.loads(run_main(args).out)  # a fixed default seed, reported
    assert unseeded["seed"] == 1 and json.loads(run_main([*args, "--seed", "1"]).out) == unseeded
    for method in ("cg", "gd", "lstsq"):  # the whole output, byte for byte, run after run
        plain = ["fit", files["grey.png"], files["target.npy"], "--method", method]
        assert run_main(plain).out == run_main(plain).out
    refused = run_main(["fit", files["grey.png"], files["target.npy"], "--seed", "3"])
    assert refused.code == 2 and "--seed applies to --method gd" in refused.err
    for n in (1, 2):
        done = run_main(
            [
                "fit",
                files["grey.npy"],
                files["target.npy"],
                "-o",
                tmp_path / f"k{n}.npy",
            ]
        )
        assert done.code == 0, done.err
    assert (tmp_path / "k1.npy").read_bytes() == (tmp_path / "k2.npy").read_bytes()
