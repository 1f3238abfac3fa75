"""`convtool fit --report`: the picture of a fit, laid out with the pipeline's panels."""

from __future__ import annotations

import click

from convtool.cli._params import said


def residual_of(pair, result, border):
    """The residual map of an ordinary fit of a prepared pair (censored pixels left out)."""
    from convtool.fit.figure import residual_map
    from convtool.fit.pairs import censored_pixels

    exclude = censored_pixels(pair, result, border)
    return residual_map(pair.x, pair.y, result, border=border, clip=pair.clip, exclude=exclude)


def write_figure(imaging, path, result, matches, residual, title, overwrite, stretch=None) -> None:
    """--report: the kernel and its named match as heat maps, the residual, the loss curve;
    each tile as its map's shape makes it, the residual's colours over ``stretch``."""
    import numpy as np

    from convtool.fit.figure import decades, loss_curve
    from convtool.fit.match import describe_match
    from convtool.kernels import parse_kernel
    from convtool.pipeline.figures import Tile, colorize, map_tile

    kernel = result.kernel if result.kernel.ndim == 2 else result.kernel[0]
    size = f"{kernel.shape[0]}x{kernel.shape[1]}"
    # one title line a tile: the figure is mostly its maps
    tiles = [map_tile(kernel, "diverging", (f"fitted kernel {size}",))]
    match = matches[0]
    if match is not None:
        named = match.scale * parse_kernel(match.name)
        tiles.append(Tile(colorize(named, "diverging"), (f"match: {describe_match(match)}",),
                          f"relative difference {match.error:.1%}"))  # fmt: skip
    else:
        tiles.append(Tile(np.full((*kernel.shape, 3), 235, np.uint8), ("named match: none",)))
    res = np.asarray(residual, dtype=np.float64)
    finite = np.isfinite(res)
    rms = float(np.sqrt(np.mean(res[finite] ** 2))) if finite.any() else 0.0
    shown = map_tile(res, "diverging", (f"prediction - target, rms {rms:.3g}",), stretch)
    shown.pixels[~finite] = 200  # not fitted: grey
    tiles.append(shown)
    tiles.append(Tile(loss_curve(result.history), ("loss, log scale",), decades(result.history)))
    from convtool.pipeline.figures import draw

    figure = draw([tiles], tile=240, title=title)
    pixels = np.asarray(figure).astype(np.float32) / np.float32(255)
    try:
        imaging.write_image(path, pixels, bit_depth=8, overwrite=overwrite)
    except imaging.ImageWriteError as e:
        raise click.ClickException(said(e)) from None
