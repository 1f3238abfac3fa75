"""Coverage-guided fuzzing of :func:`convtool.kernels.parse_kernel_spec` with atheris.

Not run by pytest. Any exception but KernelSpecError, a warning, or an accepted kernel
that is empty, non-finite or beyond the size limits is a crash. From the repository's
root::

    pip install atheris
    python tests/fuzz/fuzz_kernel_spec.py -max_total_time=120
"""

from __future__ import annotations

import sys
import warnings

import atheris

with atheris.instrument_imports(include=["convtool"]):
    import numpy as np

    from convtool.kernels import MAX_SIDE, MAX_WEIGHTS, KernelSpecError, parse_kernel_spec

SEEDS = ["sobel_x@90", "gaussian:7,1.5", "box:5x3", "motion:9,30", "3x3: 1 2 1 2 4 2 1 2 1",
         "0,-1,0; -1,5,-1; 0,-1,0", "unsharp:5,1,2", "kirsch@45"]  # fmt: skip


def one_input(raw: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(raw)
    spec = fdp.ConsumeUnicodeNoSurrogates(200)
    if fdp.ConsumeBool():  # half the time, a valid spec with the fuzzed text spliced in
        seed = SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)]
        cut = fdp.ConsumeIntInRange(0, len(seed))
        spec = seed[:cut] + spec + seed[cut + fdp.ConsumeIntInRange(0, 3) :]
    if spec.lstrip().startswith("@"):
        return  # files: tests/test_fuzz.py mutates real ones
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            k = parse_kernel_spec(spec)
        except KernelSpecError as e:
            assert "\n" not in str(e), repr(str(e))
            return
    w = k.weights
    assert w.size and np.isfinite(w).all(), spec
    assert max(w.shape[-2:]) <= MAX_SIDE and w.size <= MAX_WEIGHTS, spec


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
