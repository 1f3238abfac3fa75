"""Make the picture pairs that tests/test_fit.py recovers kernels from: filtered by *other*
programs, ImageMagick and OpenCV, and saved as 8-bit PNGs of the input's size.

Run once, from the repository root: ``python tests/data/fit/make_fit_data.py``. Needs
ImageMagick's ``convert`` and OpenCV (``cv2``), which the tests themselves do not: the
outputs are committed. Writes, next to this script:

- ``input.png``: a 256x256 crop of samples/scene.png (rows and columns 128..383), as is;
- ``custom3_imagemagick.png``: ``convert input.png -define convolve:scale=1
  -morphology Correlate "3x3: ..."`` with the custom 3x3 kernel below (Correlate: no
  rotation; ImageMagick's default border, edge replication);
- ``custom5_opencv.png``: ``cv2.filter2D(input, -1, kernel)`` with the custom 5x5 kernel
  below (a correlation; OpenCV's default border, BORDER_REFLECT_101; saturated to uint8);
- ``sobel_imagemagick.png``: ``convert input.png -morphology Convolve Sobel``: ImageMagick's
  Sobel is ``1 0 -1 / 2 0 -2 / 1 0 -1`` and Convolve turns it 180 degrees, so the kernel
  applied, as a correlation, is convtool's ``sobel_x``. Negative results are clipped to 0
  and those above 1 to 1: about three quarters of the pixels;
- ``kernels.json``: the true kernels (as correlations) and the tools' versions.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SCENE = HERE.parents[2] / "samples" / "scene.png"

CUSTOM3 = [[0.1, -0.2, 0.3], [0.05, 0.6, -0.15], [0.2, 0.0, 0.1]]
CUSTOM5 = [
    [0.02, -0.05, 0.1, -0.05, 0.02],
    [0.04, 0.1, -0.2, 0.1, 0.04],
    [-0.1, 0.15, 0.7, 0.15, -0.1],
    [0.03, -0.06, 0.1, 0.05, 0.0],
    [0.01, 0.02, -0.03, 0.02, 0.01],
]
SOBEL_X = [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]


def _im_kernel(k: list[list[float]]) -> str:
    return f"{len(k[0])}x{len(k)}: " + " ".join(",".join(repr(v) for v in row) for row in k)


def main() -> None:
    import cv2  # only for making the data

    src = HERE / "input.png"
    Image.open(SCENE).convert("RGB").crop((128, 128, 384, 384)).save(src, optimize=True)
    im3 = ["-define", "convolve:scale=1", "-morphology", "Correlate", _im_kernel(CUSTOM3)]
    sobel = ["-morphology", "Convolve", "Sobel"]
    for args, name in ((im3, "custom3_imagemagick.png"), (sobel, "sobel_imagemagick.png")):
        subprocess.run(["convert", str(src), *args, str(HERE / name)], check=True)
    bgr = cv2.imread(str(src), cv2.IMREAD_COLOR)
    out = cv2.filter2D(bgr, -1, np.array(CUSTOM5, dtype=np.float64))
    cv2.imwrite(str(HERE / "custom5_opencv.png"), out)
    for name in ("custom3_imagemagick.png", "custom5_opencv.png", "sobel_imagemagick.png"):
        with Image.open(HERE / name) as im:  # the same pixels, smaller files
            im.load()
        im.save(HERE / name, optimize=True)
    version = subprocess.run(["convert", "-version"], capture_output=True, text=True, check=True)
    im, cv = "ImageMagick", "OpenCV"
    meta = {  # border: the name `convtool fit --border` gives the tool's default border
        "custom3_imagemagick.png": {"kernel": CUSTOM3, "border": "replicate", "tool": im},
        "custom5_opencv.png": {"kernel": CUSTOM5, "border": "mirror", "tool": cv},
        "sobel_imagemagick.png": {"kernel": SOBEL_X, "border": "replicate", "tool": im},
        "versions": {
            "imagemagick": version.stdout.splitlines()[0],
            "opencv": cv2.__version__,
        },
    }
    (HERE / "kernels.json").write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
