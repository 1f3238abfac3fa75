"""Format names: extensions, the bit depths each written format takes, signatures.

Reading sniffs the bytes (:func:`claimed_format`, the magics below); the
extensions are for the command line and for writing. Format names are lower
case ('png', 'jpeg', 'tiff', 'bmp', 'webp', 'gif', 'npy'); GIF is read only.
"""

from __future__ import annotations

import os

from convtool.imaging.png import SIGNATURE as PNG_SIGNATURE

__all__ = [
    "FORMAT_NAMES",
    "NPY_MAGIC",
    "PIL_FORMATS",
    "PNG_SIGNATURE",
    "READ_EXTENSIONS",
    "TIFF_MAGICS",
    "WRITE_BIT_DEPTHS",
    "WRITE_EXTENSIONS",
    "claimed_format",
    "extension_for",
    "format_for",
    "format_named",
    "write_format",
    "written_as",
]

PathLike = str | os.PathLike

# extension -> format name; reading sniffs the bytes, these are for the CLI and writing
_EXTENSIONS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".bmp": "bmp",
    ".webp": "webp",
    ".gif": "gif",
    ".npy": "npy",
}
READ_EXTENSIONS: tuple[str, ...] = tuple(sorted(_EXTENSIONS))
WRITE_EXTENSIONS: tuple[str, ...] = tuple(e for e in READ_EXTENSIONS if e != ".gif")
# bit depths each written format takes; .npy is always raw float32 and ignores bit_depth
WRITE_BIT_DEPTHS: dict[str, tuple[int, ...]] = {
    "png": (8, 16),
    "jpeg": (8,),
    "tiff": (8, 16, 32),
    "bmp": (8,),
    "webp": (8,),
    "npy": (8, 16, 32),
}
PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")  # the Pillow plugins reading may use
FORMAT_NAMES = "PNG, JPEG, TIFF, BMP, WebP or GIF"  # the pictures Pillow reads, in messages
NPY_MAGIC = b"\x93NUMPY"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_SIGNATURES = (
    (PNG_SIGNATURE, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)


def format_for(path: PathLike, *, writing: bool = False) -> str:
    """Return the format name for ``path``'s extension: 'png', 'jpeg', 'tiff', ...

    Raises ValueError naming the extension and the known ones (GIF is read-only).

    >>> format_for("out/edges.PNG")
    'png'
    """
    name = os.fspath(path)
    known = WRITE_EXTENSIONS if writing else READ_EXTENSIONS
    ext = os.path.splitext(name)[1].lower()
    if name == "-":
        raise ValueError("'-' (standard input/output) has no extension: give the format")
    if ext not in known:
        what = f"extension {ext!r}" if ext else "no extension"
        verb = "write" if writing else "read"
        raise ValueError(f"{name}: {what}; can {verb} {', '.join(known)}")
    return _EXTENSIONS[ext]


def format_named(fmt: str) -> str:
    """Return the written format a name such as 'png', '.jpg' or 'TIF' stands for.

    What ``--format`` takes: an extension with or without its dot, any case.
    Raises ValueError as :func:`format_for` does for the file 'output.<fmt>'.

    >>> format_named(".JPG")
    'jpeg'
    """
    return format_for(f"output.{fmt.lstrip('.')}", writing=True)


def write_format(fmt: str) -> str:
    """Return the format ``write_image(format=fmt)`` writes: 'jpg' is 'jpeg', 'tif' 'tiff'.

    Raises ValueError for a format that cannot be written, naming those that can.
    """
    key = fmt.lower().lstrip(".")
    key = _EXTENSIONS.get("." + key, key)
    if key not in WRITE_BIT_DEPTHS:
        raise ValueError(f"unknown format {fmt!r}; can write {', '.join(sorted(WRITE_BIT_DEPTHS))}")
    return key


def written_as(fmt: str) -> str:
    """Return the format a picture read as ``fmt`` is written back in: itself, PNG for GIF.

    >>> written_as("GIF")
    'png'
    """
    key = fmt.lower()
    return "png" if key == "gif" else key


def extension_for(fmt: str) -> str:
    """Return the usual extension of a format name: '.jpg' for 'jpeg', '.tif' for 'tiff', ...

    The shortest of the format's extensions; raises ValueError for an unknown name.

    >>> extension_for("JPEG")
    '.jpg'
    """
    key = fmt.lower()
    extensions = [ext for ext, name in _EXTENSIONS.items() if name == key]
    if not extensions:
        raise ValueError(
            f"unknown format {fmt!r}; known: {', '.join(sorted(WRITE_BIT_DEPTHS))}, gif"
        )
    return min(extensions, key=len)


def claimed_format(buf: bytes) -> str | None:
    """The format a file's first bytes claim (a signature), or None."""
    if buf.startswith(b"RIFF") and buf[8:12] == b"WEBP":
        return "WebP"
    for magic, kind in _SIGNATURES:
        if buf.startswith(magic):
            return kind
    return None
