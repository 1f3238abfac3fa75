"""What keeps the JIT's cold compile short: each helper compiled once per dtype."""

from __future__ import annotations

from numba import types

from convtool.core import conv, conv_lines, conv_rows, fit

I8, F8 = types.int64, types.float64


def _dispatchers(module):
    return [v for v in vars(module).values() if hasattr(v, "py_func") and hasattr(v, "signatures")]


def test_no_helper_is_compiled_for_a_literal():
    """A constant argument (``a = 0``, ``fresh = True``) has numba compile the function it
    is passed to once for the literal and once more for the plain type: a compile wasted."""
    row, x4 = F8[::1], F8[:, :, :, ::1]
    conv_rows._filter_row.compile((row, x4, I8, I8, x4, row, I8, I8, I8, I8))
    compiled = 0
    for module in (conv, conv_rows, conv_lines, fit):
        for dispatcher in _dispatchers(module):
            for signature in dispatcher.signatures:
                compiled += 1
                literal = [t for t in signature if isinstance(t, types.Literal)]
                assert not literal, (dispatcher.__name__, signature)
    assert compiled >= 4  # _filter_row and the three it calls, at least
