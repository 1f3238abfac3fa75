"""click parameter types shared by the commands (no numpy: shapes.py is pure Python)."""

from __future__ import annotations

import click


class PairParam(click.ParamType):
    """``N`` or ``HxW``, each at least ``minimum``."""

    name = "N|HxW"

    def __init__(self, minimum: int = 1) -> None:
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        from convtool.shapes import parse_pair

        what = param.name if param is not None else "value"
        try:
            return parse_pair(str(value), what, self.minimum)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class PaddingParam(click.ParamType):
    name = "N|HxW|same|valid"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        from convtool.shapes import parse_padding

        try:
            return parse_padding(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)
