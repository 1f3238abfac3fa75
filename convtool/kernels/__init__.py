"""The named kernel bank and the kernel-spec parser.

A *kernel spec* is the text a user gives to ``-k``; :func:`parse_kernel_spec`
turns it into a :class:`KernelSpec` (weights, optional bias, display name) and
:func:`parse_kernel` into the weights alone. Kernels are applied as
cross-correlations (no flip), as in the chapter, OpenCV's filter2D and torch.

Spec forms
----------
``sobel_x``, ``Sobel X``, ``sobel-x``
    A name from the bank (:func:`list_kernels`). Case does not matter, and
    ``-``, ``_`` and spaces are the same character.
``gaussian:7,1.5``, ``box:3x5``, ``motion:9,30``
    A parameterised name: the parameters follow a colon, separated by commas.
    ``gaussian[:SIZE[,SIGMA]]`` (SIZE odd, SIGMA > 0, default
    ``0.3*((SIZE-1)/2-1)+0.8`` as OpenCV's getGaussianKernel), ``box[:H[xW]]``
    (also ``box:H,W``; H rows, W columns, as every size is written),
    ``unsharp[:SIZE[,SIGMA[,AMOUNT]]]`` and ``motion[:LENGTH[,ANGLE]]``.
``sobel_x@90``, ``kirsch@45``, ``motion:9@90``
    Rotation, one rule: ``@ANGLE`` after any name, with or without parameters.
    For a name that takes no parameters, ImageMagick's ``sobel_x:90`` is
    accepted too and means the same. Angles turn the kernel *clockwise* as
    displayed (rows downward), as ImageMagick's ``Sobel:90`` does: ImageMagick's
    ``Sobel`` ``1 0 -1 / 2 0 -2 / 1 0 -1`` becomes ``1 2 1 / 0 0 0 / -1 -2 -1``,
    so ``sobel_x:90`` equals ``sobel_y``. Multiples of 90 degrees work for every
    kernel (exact, ``np.rot90``); odd multiples of 45 degrees only for 3x3
    kernels, by moving the ring of eight outer cells one place per 45 degrees
    (as ImageMagick does; ``kirsch@45`` is ``kirsch_nw``).
``im:NAME[:ARGS]``
    ImageMagick's kernel NAME with its geometry ARGS, as ImageMagick defines it
    (:mod:`convtool.kernels.imagemagick`): ``im:Gaussian:0x2``, ``im:Sobel:90``.
``sobel``, ``prewitt``, ``scharr``
    A gradient magnitude: :attr:`KernelSpec.parts` holds the x and y kernels.
``0,-1,0; -1,5,-1; 0,-1,0``
    Inline rows, split by ``;``, ``/`` or newlines; numbers split by commas
    and/or whitespace. A spec is inline when its first token is a number.
``3x3: 0,-1,0 -1,5,-1 0,-1,0``
    ImageMagick's form: ``WxH:`` (or ``N:`` for NxN), then W*H values row-major.
``@path``
    A file. ``.txt``/``.csv``/no suffix: rows of numbers (commas or whitespace;
    ``#`` starts a comment; the ``WxH:`` form is accepted too). ``.json``: a
    nested list, or an object ``{"kernel": [...], "bias": ...}``. ``.npy``: a 2-D
    (kH, kW) array or a 4-D (C_out, C_in, kH, kW) one. JSON kernels may be 2-D
    or 4-D as well; 1-D and 3-D arrays are refused as ambiguous.

Names come first from the chapter's table 17-1 (sharpness, vertical_edge,
surround, sobel_y, nothing, horizontal_edge, blur, sobel_x, embossing, with
their exact values; ``blur`` is 0.11 everywhere as the chapter has it, ``box3``
is exactly 1/9). Derivative kernels follow the chapter's sign: ``*_x`` is right
minus left, ``*_y`` bottom minus top (ImageMagick's Sobel and Prewitt are the
negatives). ``laplacian`` is ``laplacian4``, the 4-neighbour discrete Laplacian
``0 1 0 / 1 -4 1 / 0 1 0`` (OpenCV's cv2.Laplacian, scipy's laplace);
ImageMagick's Laplacian:1 and :0 are the negatives of ``laplacian4`` and
``laplacian8``.

Every failure raises :class:`KernelSpecError` (a ValueError) with a one-line
message naming the offending value. Kernels larger than ``MAX_SIDE`` rows or
columns, or with more than ``MAX_WEIGHTS`` weights, are refused.

Modules
-------
``spec``
    The spec grammar: :func:`parse_kernel_spec`, :func:`parse_kernel`.
``bank``
    The named kernels and their aliases: :func:`list_kernels`, :func:`kernel_info`.
``builders``
    Kernels from parameters (gaussian, box, unsharp, motion), rotation, normalising.
``inline``
    Kernels written as numbers, shared by inline specs and text files.
``files``
    Kernel files read (``@path``) and written (:func:`write_kernel_file`).
``imagemagick``
    ImageMagick's kernels by its names and arguments (``im:``).
``display``
    Kernels as text: :func:`format_kernel`, :func:`format_number`.
``base``
    The limits, :class:`KernelSpecError`, :class:`KernelSpec` and the checks.

This package imports numpy and the standard library only (an import-linter contract in
pyproject.toml holds it to that).
"""

from __future__ import annotations

import importlib
from typing import Any

from convtool.kernels.bank import (
    KernelInfo,
    kernel_info,
    kernels_equal_to,
    list_kernels,
    resolve_name,
)
from convtool.kernels.base import MAX_SIDE, MAX_WEIGHTS, KernelSpec, KernelSpecError
from convtool.kernels.builders import (
    box_kernel,
    dilate_kernel,
    gaussian_kernel,
    motion_kernel,
    normalize_kernel,
    rotate_kernel,
    unsharp_kernel,
)
from convtool.kernels.display import format_kernel, format_number
from convtool.kernels.spec import parse_kernel, parse_kernel_spec

__all__ = [
    "MAX_SIDE",
    "MAX_WEIGHTS",
    "KernelInfo",
    "KernelSpec",
    "KernelSpecError",
    "box_kernel",
    "dilate_kernel",
    "format_kernel",
    "format_number",
    "gaussian_kernel",
    "kernel_file_bytes",
    "kernel_info",
    "kernels_equal_to",
    "list_kernels",
    "motion_kernel",
    "normalize_kernel",
    "parse_kernel",
    "parse_kernel_spec",
    "read_kernel_file",
    "resolve_name",
    "rotate_kernel",
    "unsharp_kernel",
    "write_kernel_file",
]

for _public in (KernelInfo, KernelSpec, KernelSpecError):
    _public.__module__ = __name__  # defined in the rooms below; public here
del _public

# Kernel files load on first use: a named or written-out kernel needs none of them (about
# 1 ms of every command)
_LATER = dict.fromkeys(("kernel_file_bytes", "read_kernel_file", "write_kernel_file"), "files")


def __getattr__(name: str) -> Any:
    if name not in _LATER:
        raise AttributeError(f"module 'convtool.kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"convtool.kernels.{_LATER[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LATER))
