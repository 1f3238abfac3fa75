"""Benchmark one picture per command against libvips and ImageMagick: the per-picture
floor of a command run from scripts. Whole commands, as child processes, side by side.

Run from the repository root, after installing convtool the way a user does, with
libvips's command line (Debian: ``apt-get install libvips-tools``) and ImageMagick::

    python benchmarks/bench_vips.py            # 7 rounds
    python benchmarks/bench_vips.py --quick    # 3 rounds

The jobs (a 1024x1024 RGB photograph-like picture: the sample scene, blurred a little
and given sensor noise, so that it compresses as a photograph does, not as a drawing):

- PNG in and out, Sobel: ``convtool apply in.png -k sobel_x -o out.png`` against
  ``vips conv in.png out.png sobel.mat`` and ``convert in.png -morphology Convolve
  Sobel out.png``;
- the same with JPEG in and out, beside ``python -c "import numpy, click"``: the floor
  of any command over numpy, which the JPEG job's ratio is measured against too;
- PNG, a Gaussian of sigma 10: ``convtool apply in.png -k gaussian:63,10`` against
  ``vips gaussblur in.png out.png 10`` and ``convert in.png -blur 31x10 out.png``;
- 24 PNGs of 512x512, two at a time: ``convtool apply ... --jobs 2`` against
  ``vips conv`` under ``xargs -P2`` and ``mogrify`` (ImageMagick's own threads).

Ratios are convtool / libvips (and / ImageMagick), formed per round from interleaved
runs, shown as "median (min..max)". Targets: one PNG at most 1.2x vips, one JPEG at most
2.0x, the Gaussian at most 1.5x, the batch at most 0.6x; convtool's PNG at most 30 %
larger than ImageMagick's encoding of the same pixels. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _commands import child_env, convtool_command, draw_pictures, find_binary, run
from _timing import Contender, fmt_ratio, fmt_time, format_table, measure, ratio_stats

# job -> (convtool / vips at most, convtool / ImageMagick at most, or None)
TARGETS = {"png sobel": 1.2, "jpeg sobel": 2.0, "png gaussian 10": 1.5, "batch 24 png": 0.6}
SIZE_TARGET = 1.3  # convtool's PNG bytes / ImageMagick's, the same pixels
PEERS = ("convtool", "libvips", "ImageMagick")


def photograph(picture: np.ndarray, seed: int = 0) -> np.ndarray:
    """A drawn picture made to compress like a photograph: softened a little (a lens)
    and given noise of about 3 levels (a sensor)."""
    from PIL import ImageFilter

    soft = np.asarray(Image.fromarray(picture).filter(ImageFilter.GaussianBlur(0.8)), np.float32)
    noise = np.random.default_rng(seed).normal(0.0, 3.0, picture.shape)
    return np.clip(np.rint(soft + noise), 0, 255).astype(np.uint8)


def make_pictures(work: Path) -> None:
    """in.png and in.jpg (1024x1024), batch/p00.png .. p23.png (512x512), sobel.mat."""
    draw_pictures(work)  # in.png and batch/*.png, drawn
    for path in [work / "in.png", *sorted((work / "batch").glob("*.png"))]:
        Image.fromarray(photograph(np.asarray(Image.open(path)))).save(path)
    Image.open(work / "in.png").save(work / "in.jpg", quality=90)
    # libvips's matrix file: width height scale offset, then the rows (ImageMagick's Sobel)
    (work / "sobel.mat").write_text("3 3 1 0\n1 0 -1\n2 0 -2\n1 0 -1\n")
    clear(work)


def commands(work: Path, vips: str, convert: str, mogrify: str) -> dict[str, dict[str, list]]:
    tool = convtool_command()
    apply = [*tool, "apply", "--overwrite"]
    batch = sorted(str(p.relative_to(work)) for p in (work / "batch").glob("*.png"))
    xargs = f"printf '%s\\n' {' '.join(batch)} | xargs -P2 -I{{}} sh -c "
    xargs += f"'{vips} conv {{}} out/vips/$(basename {{}}) sobel.mat'"
    return {
        "png sobel": {
            "convtool": [*apply, "in.png", "-k", "sobel_x", "-o", "ct.png"],
            "libvips": [vips, "conv", "in.png", "vips.png", "sobel.mat"],
            "ImageMagick": [convert, "in.png", "-morphology", "Convolve", "Sobel", "im.png"],
        },
        "jpeg sobel": {
            "convtool": [*apply, "in.jpg", "-k", "sobel_x", "-o", "ct.jpg"],
            "libvips": [vips, "conv", "in.jpg", "vips.jpg", "sobel.mat"],
            "ImageMagick": [convert, "in.jpg", "-morphology", "Convolve", "Sobel", "im.jpg"],
            # the floor of any command over numpy: the interpreter and the two imports
            "python floor": [sys.executable, "-c", "import numpy, click"],
        },
        "png gaussian 10": {
            "convtool": [*apply, "in.png", "-k", "gaussian:63,10", "-o", "ct_blur.png"],
            "libvips": [vips, "gaussblur", "in.png", "vips_blur.png", "10"],
            "ImageMagick": [convert, "in.png", "-blur", "31x10", "im_blur.png"],
        },
        "batch 24 png": {
            "convtool": [*apply, *batch, "-k", "sobel_x", "-o", "out/ct/", "--jobs", "2"],
            "libvips": ["sh", "-c", xargs],
            "ImageMagick": [
                mogrify, "-path", "out/im", "-morphology", "Convolve", "Sobel", *batch
            ],
        },
    }  # fmt: skip


def clear(work: Path) -> None:
    """Empty the batch's output folders: each run writes into new files, as a user's."""
    for name in ("vips", "im", "ct"):
        shutil.rmtree(work / "out" / name, ignore_errors=True)
        (work / "out" / name).mkdir(parents=True)


def png_size_ratio(work: Path, convert: str) -> float:
    """convtool's PNG bytes over ImageMagick's encoding of the very same pixels."""
    run([convert, "ct.png", "im_same_pixels.png"], child_env(), work)
    return (work / "ct.png").stat().st_size / (work / "im_same_pixels.png").stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    args = parser.parse_args()
    vips = find_binary("vips")
    convert, mogrify = find_binary("magick", "convert"), find_binary("mogrify")
    if vips is None or convert is None or mogrify is None:
        raise SystemExit("needs libvips and ImageMagick: apt-get install libvips-tools imagemagick")
    print(f"convtool: {' '.join(convtool_command())}; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    rows, verdicts, notes = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-vips-") as tmp:
        work = Path(tmp)
        make_pictures(work)
        env = child_env()
        for job, contenders in commands(work, vips, convert, mogrify).items():
            timed = [
                Contender(name, lambda _, c=command: run(c, env, work), lambda: clear(work))
                for name, command in contenders.items()
            ]
            res = measure(timed, rounds=3 if args.quick else args.rounds, warmup=1, min_time=0.0)
            vs_vips = ratio_stats(res["convtool"], res["libvips"])
            vs_im = ratio_stats(res["convtool"], res["ImageMagick"])
            rows.append(
                [job, *(fmt_time(res[n].median) for n in PEERS), fmt_ratio(vs_vips),
                 fmt_ratio(vs_im)]
            )  # fmt: skip
            if "python floor" in res:
                floor = res["python floor"]
                over = ratio_stats(res["convtool"], floor)
                notes.append(
                    f"{job}: python -c 'import numpy, click' alone takes {fmt_time(floor.median)}"
                    f", {fmt_ratio(ratio_stats(floor, res['libvips']))}x libvips; convtool "
                    f"takes {fmt_ratio(over)}x that floor"
                )
            verdicts.append((f"{job}: convtool / libvips <= {TARGETS[job]:g}x",
                             fmt_ratio(vs_vips), vs_vips.median <= TARGETS[job]))  # fmt: skip
        size = png_size_ratio(work, convert)
        verdicts.append((f"PNG bytes / ImageMagick's, same pixels <= {SIZE_TARGET:g}",
                         f"{size:.2f}", size <= SIZE_TARGET))  # fmt: skip
    headers = ["job", "convtool", "libvips", "ImageMagick", "ct / vips", "ct / IM"]
    print(format_table(headers, rows))
    for note in notes:
        print(note)
    failed = False
    for name, value, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {value}")
        failed |= not ok
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
