"""Coverage-guided fuzzing of :func:`convtool.io.read_image` with atheris (not run by pytest).

Any exception but ImageReadError, or a picture that breaks the documented promises,
is a crash that atheris reports with the input that caused it. Anything printed on
stderr by a decoder shows in the run's output. Run for a bounded time, from the
repository's root::

    pip install atheris
    python tests/fuzz/fuzz_read_image.py -max_total_time=120 [CORPUS_DIR]

Without a corpus folder it starts from the small valid pictures of tests/test_fuzz.py.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["convtool"]):
    from convtool import imaging as cio

LIMIT = 1_000_000  # pixels: a mutated header may declare any size; keep decoding cheap


def one_input(raw: bytes) -> None:
    source = io.BytesIO(raw)
    source.name = "fuzzed.bin"
    try:
        image = cio.read_image(source, max_pixels=LIMIT)
    except cio.ImageReadError as e:
        if "\n" in str(e) or not str(e).startswith("cannot read fuzzed.bin: "):
            raise AssertionError(f"message not one line naming the file: {e!r}") from None
        return
    data = image.data
    assert data.dtype.name == "float32" and data.ndim in (2, 3)
    assert 0 < data.shape[0] * data.shape[1] <= LIMIT
    if image.bit_depth != 32:
        assert 0 <= data.min() <= data.max() <= 1


def seed_corpus() -> str:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    from tests.test_fuzz import PICTURES

    folder = tempfile.mkdtemp(prefix="convtool-fuzz-")
    for name, data in PICTURES.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    return folder


if __name__ == "__main__":
    argv = list(sys.argv)
    if not any(not a.startswith("-") for a in argv[1:]):
        argv.append(seed_corpus())
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
