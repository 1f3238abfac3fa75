"""The Python API for pictures: ``convtool apply`` on arrays, kernels by their specs, and
pictures read and written as the command line reads and writes them.

:func:`apply` is the command's own computation (:func:`convtool.batch.apply_task.filter_picture`,
which ``convtool apply`` runs on every whole picture): ``apply(read_image(p), k)`` is, byte
for byte, the float32 array ``convtool apply p -k k -o out.npy`` writes. The words are the
command line's (:mod:`convtool.vocab`): ``border``, ``color``, ``padding``, ``stride``,
``flip``, ``normalize``, ``scale``, ``bias``, ``alpha``.

Arrays are pictures as ``convtool.read_image`` gives them: (H, W) grey or (H, W, C) with
C = 1 (grey), 2 (grey and alpha), 3 (RGB) or 4 (RGB and alpha), the alpha last, as the
command line reads a ``.npy`` picture. 8- and 16-bit unsigned integers are read as [0, 1]
(divided by 255 and 65535, as pixels read from files are); floats are taken as they are.
"""

from __future__ import annotations

import os
from numbers import Real
from typing import Any

import numpy as np

from convtool import vocab
from convtool.shapes import PaddingSpec

__all__ = ["apply", "kernel", "read_image", "write_image"]


def _pixels(image: Any, name: str = "image") -> np.ndarray:
    """``image`` as float32 (H, W) or (H, W, C), C in 1..4, by the dtype policy above."""
    if isinstance(image, str | bytes | os.PathLike):
        raise TypeError(f"{name} must be an array; read a file with convtool.read_image({image!r})")
    try:
        a = np.asarray(image)
    except (TypeError, ValueError) as e:  # ragged nested lists
        raise TypeError(f"{name} must be an array of numbers: {e}") from None
    if a.dtype.name in vocab.FULL_SCALE:
        from convtool.imaging import unit_scaled

        a = unit_scaled(a, 8 if a.dtype == np.uint8 else 16)
    elif a.dtype.kind == "f":
        a = a.astype(np.float32, copy=False)
    else:
        raise TypeError(
            f"{name} has dtype {a.dtype}; pictures are uint8 or uint16 (read as [0, 1]) "
            "or float (taken as they are)"
        )
    if a.ndim not in (2, 3) or (a.ndim == 3 and not 1 <= a.shape[2] <= 4):
        hint = "; a channels-first array needs np.moveaxis(a, 0, -1)" if a.ndim == 3 else ""
        raise ValueError(
            f"{name} must be (H, W) or (H, W, C) with C in 1..4; got shape {a.shape}{hint}"
        )
    if 0 in a.shape:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    return a


def _split_alpha(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour and alpha as the command line reads a .npy picture: the last of 2 or 4
    channels is alpha; one channel is grey (see ``convtool.imaging.arrays.image_from_npy``)."""
    if a.ndim == 2 or a.shape[2] == 3:
        return a, None  # no copy: the filters read it as it is
    if a.shape[2] == 1:
        return a[:, :, 0], None
    return np.array(a[:, :, :-1] if a.shape[2] == 4 else a[:, :, 0]), np.array(a[:, :, -1])


def _prepared(spec: Any, *, bias: Any, normalize: bool, scale: float, flip: bool) -> Any:
    """A kernel spec (text) or weights (array) prepared as ``apply -k`` prepares it."""
    from convtool.filtering import prepare_kernel
    from convtool.kernels import KernelSpec, parse_kernel_spec
    from convtool.kernels.base import check_finite, check_size

    if isinstance(spec, str):
        parsed = parse_kernel_spec(spec)
    else:
        try:
            w = np.array(spec, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise TypeError(f"kernel must be a spec (text) or an array of numbers: {e}") from None
        if w.ndim not in (2, 4):
            raise ValueError(f"kernel must be (kH, kW) or (C_out, C_in, kH, kW); got {w.shape}")
        check_size(w.shape)
        check_finite(w, "kernel")
        parsed = KernelSpec(w, "kernel")
    if not (isinstance(scale, Real) and np.isfinite(scale)):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    if bias is not None and not (isinstance(bias, Real) and np.isfinite(bias)):
        raise ValueError(f"bias must be a finite number or None, got {bias!r}")
    return prepare_kernel(
        parsed.weights,
        name=parsed.name,
        slug=parsed.slug,
        bias=parsed.bias if bias is None else float(bias),
        normalize=normalize,
        scale=float(scale),
        flip=flip,
        parts=parsed.parts,
        chain=parsed.chain,
    )


def _stride(stride: Any) -> tuple[int, int]:
    """``stride`` as (rows, columns), each at least 1 (the command line's ``N`` or ``HxW``
    as text too)."""
    from convtool.shapes import as_pair, parse_pair

    pair = parse_pair(stride, "stride") if isinstance(stride, str) else as_pair(stride, "stride")
    if min(pair) < 1:
        raise ValueError(f"stride must be at least 1, got {stride!r}")
    return pair


def _padding(padding: Any) -> PaddingSpec:
    """``padding`` checked: 'same', 'valid', or (rows, columns) at least 0 (text too)."""
    from convtool.shapes import as_pair, parse_padding

    if isinstance(padding, str):
        return parse_padding(padding)
    pair = as_pair(padding, "padding")
    if min(pair) < 0:
        raise ValueError(f"padding must not be negative, got {padding!r}")
    return pair


def apply(
    image: Any,
    kernel: Any,
    *,
    border: str = "replicate",
    color: str = "channels",
    stride: int | tuple[int, int] = 1,
    padding: PaddingSpec = "same",
    flip: bool = False,
    normalize: bool = False,
    scale: float = 1.0,
    bias: float | None = None,
    alpha: str = "premultiply",
) -> np.ndarray:
    """Filter a picture with a kernel, as ``convtool apply`` does.

    Parameters
    ----------
    image : array, (H, W) or (H, W, C)
        The picture: uint8 or uint16 (read as [0, 1]) or float (as it is); C = 2 or 4
        ends in alpha, as in a ``.npy`` picture the command line reads.
    kernel : str or array
        Anything ``-k`` takes (``'sobel_x'``, ``'gaussian:0x2'``, ``'im:DoG:0,1,1.6'``,
        ``'0,-1,0; -1,5,-1; 0,-1,0'``, ``'@k.json'``; see :func:`kernel`), or weights,
        (kH, kW) or (C_out, C_in, kH, kW).
    border : {'replicate', 'zero', 'reflect', 'mirror', 'wrap'}
        What lies outside the picture, for a row ``a b c d``: ``a a | a b c d``
        (replicate, scipy's 'nearest'), ``0 0 |`` (zero, scipy's 'constant'),
        ``b a |`` (reflect, scipy's 'reflect'), ``c b |`` (mirror, scipy's 'mirror')
        or ``c d |`` (wrap).
    color : {'channels', 'gray', 'sum'}
        What a 2-D kernel does with colour: each channel alike; the ITU-R 601 luma
        first; or the kernel on every channel, summed into one map. A 4-D kernel sets
        the channels itself, and takes only the default.
    stride : int or (int, int)
        Rows, columns.
    padding : 'same', 'valid', int or (int, int)
        'same' gives ``ceil(size / stride)`` outputs (an even kernel's extra row and
        column after, as torch).
    flip : bool
        Rotate the kernel 180 degrees: the mathematical convolution (without it the
        kernel correlates, as in OpenCV and torch).
    normalize, scale : bool, float
        Divide the kernel by its sum (where that is not 0), then multiply it by ``scale``.
    bias : float, optional
        Added to every result; None keeps a kernel file's own bias (or none).
    alpha : {'premultiply', 'keep'}
        A picture with alpha: filtered with its colour premultiplied by the alpha and
        the alpha with it, as ImageMagick does; or the alpha carried through untouched.

    Returns
    -------
    ndarray, float32
        The raw result, nothing clipped: (H', W') for a grey result, (H', W', C) for
        'channels' on colour or a 4-D kernel's C_out maps; a picture's alpha is the
        last channel again.

    Raises
    ------
    ValueError
        A name, size or value that does not fit, named in the message.
    TypeError
        An image or kernel that is not numbers of a picture's dtype.

    Notes
    -----
    It runs on the compiled core, as the command line does (a job past 10^10
    multiply-adds on numba's threads); where the install could not compile it, the first
    call builds it once into ``~/.cache/convtool`` (about 30 s).

    Examples
    --------
    >>> import numpy as np, convtool
    >>> x = np.zeros((4, 5), np.uint8); x[:, 2:] = 255
    >>> convtool.apply(x, "sobel_x")[0].tolist()
    [0.0, 4.0, 4.0, 0.0, 0.0]
    >>> convtool.apply(x, [[1, 1]], border="zero", stride=2).shape
    (2, 3)
    >>> convtool.apply(np.ones((6, 6, 3)), "blur", color="sum", padding="valid").shape
    (4, 4)
    """
    from convtool.batch import apply_task
    from convtool.core import engine

    picture = _pixels(image)
    vocab.check("border", border, vocab.BORDERS)
    vocab.check("color", color, vocab.COLORS)
    vocab.check("alpha", alpha, vocab.ALPHAS)
    k = _prepared(kernel, bias=bias, normalize=normalize, scale=scale, flip=flip)
    if k.full and color != "channels":
        raise ValueError(
            f"kernel {k.name} is a full (C_out, C_in, kH, kW) kernel: it sets the channels "
            f"itself, so color={color!r} does not apply"
        )
    data, a = _split_alpha(picture)
    options = apply_task.Options(
        kernels=(k,),
        color=color,
        border=border,
        padding=_padding(padding),
        stride=_stride(stride),
        alpha=alpha,
        max_pixels=None,  # an array in memory: only the machine's memory holds it
    )
    apply_task.check_sizes((1 if data.ndim == 2 else data.shape[2], *data.shape[:2]), options)
    engine.compiled()  # as the command line: the compiled core, built once if missing
    results = apply_task.filter_picture(data, a, options, {0})
    y, a = apply_task.result_of(a, apply_task.Output("", (0,)), results, options)
    if y.ndim == 3 and y.shape[2] != 3:  # as a .npy output: alpha only beside 1 or 3 maps
        a = None
    return np.ascontiguousarray(_with_alpha(y, a), dtype=np.float32)


def kernel(spec: str) -> np.ndarray:
    """The weights a ``-k`` spec gives, float64: (kH, kW), or (C_out, C_in, kH, kW) from a file.

    The command line's parser (:mod:`convtool.kernels`): bank names with parameters and
    rotations, ImageMagick's ``im:NAME[:ARGS]``, inline rows, ``WxH:`` and ``@FILE``.

    Raises
    ------
    ValueError
        Text that is not a kernel spec (:class:`convtool.kernels.KernelSpecError`), or a
        spec that is more than one kernel: a gradient magnitude (``sobel``) or one of
        ImageMagick's kernel lists, which :func:`apply` takes but no single array holds.

    Examples
    --------
    >>> import convtool
    >>> convtool.kernel("sobel_x@90").tolist()
    [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]
    >>> convtool.kernel("box:3x1").shape
    (3, 1)
    """
    from convtool.kernels import KernelSpecError, parse_kernel_spec

    parsed = parse_kernel_spec(spec)
    if parsed.parts:
        raise KernelSpecError(
            f"{parsed.name} is a gradient magnitude of {len(parsed.parts)} kernels, not one "
            "array: convtool.apply takes it; its kernels are its _x and _y names"
        )
    if parsed.chain:
        raise KernelSpecError(
            f"{parsed.name} is a list of {len(parsed.chain) + 1} kernels applied one after "
            "another, not one array: convtool.apply takes it"
        )
    return np.array(parsed.weights)


def read_image(path: str | os.PathLike, *, max_pixels: int | str | None = "default") -> np.ndarray:
    """A picture file (or ``.npy``) as the float32 array the command line filters.

    (H, W) grey or (H, W, 3) colour, 8- and 16-bit pictures in [0, 1], ``.npy`` and
    float TIFF as stored; a picture's alpha is the last channel, (H, W, 2) or (H, W, 4).
    ``max_pixels`` refuses pictures declaring more pixels, before decoding them
    ('default': Pillow's limit, about 89 million; None: no limit).

    Raises :class:`convtool.imaging.ImageReadError` with a one-line message naming the
    file, for anything that cannot be read.

    Examples
    --------
    >>> import convtool, numpy as np
    >>> convtool.read_image("samples/disc.png").shape
    (80, 80, 3)
    """
    from convtool import imaging

    limit = imaging.DEFAULT if max_pixels == "default" else max_pixels
    image = imaging.read_image(path, max_pixels=limit)
    return _with_alpha(image.data, image.alpha)


def _with_alpha(data: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """``data`` with ``alpha`` as its last channel, as a .npy picture holds them."""
    if alpha is None:
        return data
    return np.concatenate([data.reshape(*data.shape[:2], -1), alpha[:, :, None]], axis=2)


def write_image(
    path: str | os.PathLike,
    array: Any,
    *,
    depth: int | None = None,
    quality: int | None = None,
    compression: int = 1,
    overwrite: bool = True,
) -> None:
    """Write a picture, atomically (the file appears whole or not at all), as ``apply`` writes.

    Parameters
    ----------
    path : str or path
        Its extension sets the format: .png, .jpg, .tif, .bmp, .webp or .npy.
    array : array, (H, W) or (H, W, C)
        As :func:`apply` takes it (C = 2 or 4 ends in alpha). Values outside [0, 1]
        are clipped for 8- and 16-bit files; .npy and 32-bit TIFF keep them raw.
    depth : {8, 16, 32}, optional
        Bits per sample. None: a uint8 array's 8, a uint16 one's 16; a float array
        as the command line writes a float picture: 16-bit PNG, 32-bit (float) TIFF,
        8 bits where the format has no other.
    quality : int, optional
        1..100 for JPEG (default 95) and WebP (default lossless).
    compression : int
        PNG's effort, 0..9, as ``apply --compression``: 1 is fast, 9 the smallest file.
    overwrite : bool
        Replace an existing file (False: refuse it, as the command line does without
        ``--overwrite``).

    Raises :class:`convtool.imaging.ImageWriteError` naming the file for what cannot be
    written (a missing folder, an existing file kept); ValueError for a format or depth
    that does not fit.

    Examples
    --------
    >>> import convtool, numpy as np, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "ramp.png")
    >>> convtool.write_image(path, np.linspace(0, 1, 12).reshape(3, 4), depth=8)
    >>> (convtool.read_image(path) * 255).round().astype(int)[0].tolist()
    [0, 23, 46, 70]
    """
    from convtool import imaging
    from convtool.batch.outputs import output_depth

    raw = np.asarray(array)
    pixels = _pixels(array, "array")
    target = os.fspath(path)
    fmt = imaging.format_for(target, writing=True)
    if depth is not None:
        vocab.check("depth", str(depth), vocab.DEPTHS)
    stored = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(raw.dtype, 32)
    bits = output_depth(fmt, stored, None if depth is None else int(depth))
    imaging.write_image(
        target,
        pixels,
        bit_depth=bits,
        overwrite=overwrite,
        format=fmt,
        quality=quality,
        compress_level=compression,
    )
