"""Kernel files, read and written: ``.npy``, ``.json`` (with a bias), ``.txt``/``.csv``.

Reading checks everything a file can get wrong (size, type, shape, finite values) and raises
:class:`~convtool.kernels.KernelSpecError` naming the file.
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from convtool._shared import one_line
from convtool.kernels.base import (
    MAX_FILE_BYTES,
    KernelSpec,
    KernelSpecError,
    check_finite,
    check_size,
    parse_number,
    plural,
)
from convtool.kernels.inline import parse_numbers

if TYPE_CHECKING:
    from pathlib import Path

_TEXT_SUFFIXES = {"", ".txt", ".csv", ".tsv", ".dat", ".kernel"}
WRITE_SUFFIXES = (".npy", ".txt", ".json")  # the kinds of kernel file written

# ----------------------------------------------------------------------------- reading


def read_kernel_file(path: str | os.PathLike[str]) -> KernelSpec:
    """Read a kernel file (the ``@path`` of a spec), named after the file's stem.

    ``.txt``/``.csv``/no suffix: rows of numbers (commas or whitespace; ``#`` starts a
    comment; the ``WxH:`` form too). ``.json``: a nested list, or ``{"kernel": [...],
    "bias": ...}``. ``.npy``: a 2-D or 4-D array. Every problem raises
    :class:`KernelSpecError` naming the file.
    """
    from pathlib import Path  # here: a command without a kernel file needs no pathlib

    path_text = os.fspath(path)
    if not path_text:
        raise KernelSpecError("missing file name after '@'")
    try:
        path = Path(path_text).expanduser()
    except RuntimeError:  # '~name' of no known user: taken literally
        path = Path(path_text)
    try:
        if not path.exists():
            raise KernelSpecError(f"kernel file {path_text!r} does not exist")
        if path.is_dir():
            raise KernelSpecError(f"kernel file {path_text!r} is a directory")
        if not path.is_file():
            raise KernelSpecError(f"kernel file {path_text!r} is not a regular file")
        size = path.stat().st_size
        if size == 0:
            raise KernelSpecError(f"kernel file {path_text!r} is empty")
        if size > MAX_FILE_BYTES:
            raise KernelSpecError(
                f"kernel file {path_text!r} is {size} bytes; at most {MAX_FILE_BYTES} are read"
            )
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return KernelSpec(_read_npy(path, path_text), path.stem)
        if suffix not in _TEXT_SUFFIXES and suffix != ".json":
            raise KernelSpecError(
                f"unsupported kernel file type {suffix!r} in {path_text!r}; "
                "use .txt, .csv, .json or .npy"
            )
        raw = path.read_bytes()
    except (OSError, ValueError) as e:
        if isinstance(e, KernelSpecError):
            raise
        raise KernelSpecError(f"cannot read kernel file {path_text!r}: {e}") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise KernelSpecError(f"kernel file {path_text!r} is not UTF-8 text") from None
    if suffix == ".json":
        weights, bias = _read_json(content, path_text)
        return KernelSpec(weights, path.stem, bias)
    content = re.sub(r"#[^\n]*", "", content)
    try:
        return KernelSpec(parse_numbers(content), path.stem)
    except KernelSpecError as e:
        raise KernelSpecError(f"{path_text}: {e}") from None


def _check_npy_header(raw: bytes, path_text: str) -> None:
    """Check a .npy header's dtype and shape against the data, before numpy allocates."""
    fp = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, ...
        raise KernelSpecError(f"cannot read {path_text!r} as .npy: {one_line(e)}") from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biuf":
        raise KernelSpecError(f"{path_text!r} holds {dtype} values; kernels must be real numbers")
    if any(n < 0 for n in shape):
        raise KernelSpecError(f"cannot read {path_text!r} as .npy: bad header (shape {shape})")
    if len(shape) in (2, 4):
        check_size(shape, f"kernel in {path_text}")
    needed = math.prod(shape) * dtype.itemsize
    if needed > len(raw) - fp.tell():
        raise KernelSpecError(
            f"{path_text!r} is a truncated .npy file: shape {shape} needs {needed} bytes of "
            f"data, {len(raw) - fp.tell()} found"
        )


def _read_npy(path: Path, path_text: str) -> np.ndarray:
    raw = path.read_bytes()  # at most MAX_FILE_BYTES: the caller checked
    try:
        with warnings.catch_warnings():  # numpy's header parser may warn on odd bytes
            warnings.simplefilter("ignore")
            if raw.startswith(b"\x93NUMPY"):
                _check_npy_header(raw, path_text)
            arr = np.load(io.BytesIO(raw), allow_pickle=False)
    except KernelSpecError:
        raise
    except Exception as e:  # numpy raises many kinds for a bad file
        raise KernelSpecError(f"cannot read {path_text!r} as .npy: {one_line(e)}") from None
    if not isinstance(arr, np.ndarray):
        if hasattr(arr, "close"):
            arr.close()
        raise KernelSpecError(f"{path_text!r} holds several arrays (an .npz?); give one .npy array")
    if arr.dtype.kind not in "biuf":
        raise KernelSpecError(
            f"{path_text!r} holds {arr.dtype} values; kernels must be real numbers"
        )
    return _check_array(arr.astype(np.float64), path_text)


def _check_array(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.ndim not in (2, 4):
        raise KernelSpecError(
            f"{where} holds a {arr.ndim}-D array of shape {arr.shape}; give a 2-D (kH, kW) "
            "or a 4-D (C_out, C_in, kH, kW) kernel (3-D would be ambiguous)"
        )
    check_size(arr.shape, f"kernel in {where}")
    check_finite(arr, f"kernel in {where}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _read_json(content: str, where: str) -> tuple[np.ndarray, float | tuple[float, ...] | None]:
    import json  # loaded with the first .json kernel file

    try:
        obj = json.loads(content)
    except (ValueError, RecursionError) as e:
        raise KernelSpecError(f"{where} is not valid JSON: {e}") from None
    bias_obj = None
    if isinstance(obj, dict):
        if "kernel" not in obj:
            raise KernelSpecError(f"{where}: a JSON object needs a 'kernel' key")
        obj, bias_obj = obj["kernel"], obj.get("bias")
    if not isinstance(obj, list):
        raise KernelSpecError(f"{where}: expected a list of rows or an object with a 'kernel' key")
    weights = _check_array(_nested(obj, where), where)
    return weights, _bias(bias_obj, weights, where)


def _nested(obj: list, where: str) -> np.ndarray:
    import json

    shape: list[int] = []
    x = obj
    while isinstance(x, list) and len(shape) < 5:
        shape.append(len(x))
        if not x:
            break
        x = x[0]
    if len(shape) not in (2, 4):
        raise KernelSpecError(
            f"{where} holds a {len(shape)}-D list; give rows (2-D) or a 4-D "
            "(C_out, C_in, kH, kW) nested list"
        )
    check_size(tuple(shape), f"kernel in {where}")
    flat: list[float] = []

    def walk(x: object, index: tuple[int, ...]) -> None:
        depth = len(index)
        if depth == len(shape):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise KernelSpecError(f"{where}: {json.dumps(x)} at {list(index)} is not a number")
            flat.append(parse_number(repr(x), f"{where}: value at {list(index)}"))
            return
        if not isinstance(x, list):
            raise KernelSpecError(f"{where}: {json.dumps(x)} at {list(index)} should be a list")
        if len(x) != shape[depth]:
            if len(shape) == 2:
                raise KernelSpecError(
                    f"{where}: row {index[0] + 1} has {plural(len(x), 'value')}, "
                    f"row 1 has {shape[1]}"
                )
            raise KernelSpecError(
                f"{where}: the list at {list(index)} has {len(x)} entries, expected {shape[depth]}"
            )
        for i, y in enumerate(x):
            walk(y, (*index, i))

    walk(obj, ())
    return np.array(flat, dtype=np.float64).reshape(shape)


def _bias(obj: object, weights: np.ndarray, where: str) -> float | tuple[float, ...] | None:
    import json

    if obj is None:
        return None
    values = obj if isinstance(obj, list) else [obj]
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise KernelSpecError(f"{where}: bias {json.dumps(v)} is not a number")
        out.append(parse_number(repr(v), f"{where}: bias"))
    if len(out) == 1:
        return out[0]
    channels = weights.shape[0] if weights.ndim == 4 else 1
    if len(out) != channels:
        raise KernelSpecError(
            f"{where}: bias has {len(out)} values but the kernel has {channels} output channel(s)"
        )
    return tuple(out)


# ----------------------------------------------------------------------------- writing


def kernel_file_bytes(
    kernel: Any,
    suffix: str,
    bias: float | tuple[float, ...] | np.ndarray | None = None,
    *,
    comment: str | None = None,
) -> bytes:
    """The bytes of a kernel file of kind ``suffix`` (one of :data:`WRITE_SUFFIXES`).

    ``.npy`` holds the kernel alone, as float64; ``.json`` one line ``{"kernel": [...],
    "bias": ...}`` (the bias only when given); ``.txt`` (2-D kernels only) the rows, each
    weight as Python's shortest exact text, after one ``#`` line holding ``comment`` and
    the bias, which is not part of the kernel. :func:`read_kernel_file` reads each back.
    """
    import json

    kernel = np.asarray(kernel, dtype=np.float64)
    suffix = suffix.lower()
    if suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, kernel, allow_pickle=False)
        return buffer.getvalue()
    if suffix == ".json":
        data: dict[str, Any] = {"kernel": kernel.tolist()}
        if bias is not None:
            data["bias"] = bias.tolist() if isinstance(bias, np.ndarray) else bias
        return (json.dumps(data) + "\n").encode()
    if suffix != ".txt":
        raise ValueError(f"kernel files are written as {', '.join(WRITE_SUFFIXES)}, not {suffix!r}")
    if kernel.ndim != 2:
        raise ValueError(f"a .txt kernel file holds a 2-D kernel, not shape {kernel.shape}")
    notes = [comment] if comment else []
    if bias is not None:
        notes.append(f"bias {float(bias)!r} (not part of the kernel)")
    rows = [" ".join(repr(float(v)) for v in row) for row in kernel]
    head = ["# " + "; ".join(notes)] if notes else []
    return ("\n".join([*head, *rows]) + "\n").encode()


def _write_new(path: str, data: bytes, *, overwrite: bool = False) -> None:
    with open(path, "wb" if overwrite else "xb") as f:
        f.write(data)


def write_kernel_file(
    path: str | os.PathLike[str],
    kernel: Any,
    bias: float | tuple[float, ...] | np.ndarray | None = None,
    *,
    comment: str | None = None,
    overwrite: bool = False,
    write_bytes: Callable[..., None] | None = None,
) -> None:
    """Write a kernel file, its kind from the suffix (see :func:`kernel_file_bytes`).

    ``write_bytes(path, data, overwrite=overwrite)`` does the writing: by default a plain
    write that refuses an existing file unless ``overwrite``; the command line passes
    :func:`convtool.imaging.atomic_write_bytes`.
    """
    data = kernel_file_bytes(kernel, os.path.splitext(path)[1], bias, comment=comment)
    (write_bytes or _write_new)(path, data, overwrite=overwrite)
