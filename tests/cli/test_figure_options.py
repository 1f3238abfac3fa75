"""The figures' options on the command line: `pipeline --stretch`, `fit --report --stretch`,
and a fit report of a landscape photograph laid out with little blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from convtool.cli import cli
from tests.pipeline.test_figures import blank_share

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """The sample scene cut to a 3:2 landscape photograph."""
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.open(SAMPLES / "scene.png").crop((0, 86, 512, 427)).save(path)
    return path


def test_pipeline_stretch_draws_percentiles(tmp_path, photo):
    plain, stretched = tmp_path / "plain.png", tmp_path / "stretched.png"
    assert run("pipeline", photo, "-k", "sobel_x", "--panel", plain).exit_code == 0
    done = run("pipeline", photo, "-k", "sobel_x", "--panel", stretched, "--stretch", "1,99",
               "--save-stages", tmp_path / "st")  # fmt: skip
    assert done.exit_code == 0, done.output
    a, b = np.asarray(Image.open(plain)), np.asarray(Image.open(stretched))
    assert a.shape == b.shape and (a != b).any()
    assert blank_share(Image.open(stretched)) <= 0.25
    # the stage pictures get the stretch too: the conv map's 1st percentile is the first colour
    conv = np.load(tmp_path / "st" / "01-conv.npy")
    picture = np.asarray(Image.open(tmp_path / "st" / "01-conv.png"))
    darkest = picture[conv <= np.percentile(conv, 1)]
    assert (darkest == picture[np.unravel_index(conv.argmin(), conv.shape)]).all()


@pytest.mark.parametrize(
    ("value", "said"),
    [("99,1", "0 <= lo < hi <= 100"), ("1", "two percentiles"), ("a,b", "percentiles"),
     ("0,101", "0 <= lo < hi <= 100")],
)  # fmt: skip
def test_a_bad_stretch_is_a_usage_error_naming_it(tmp_path, value, said):
    disc = SAMPLES / "disc.png"
    for command in (["pipeline", disc, "-k", "blur", "--panel", tmp_path / "p.png"],
                    ["fit", disc, disc, "--report", tmp_path / "r.png"]):  # fmt: skip
        done = run(*command, "--stretch", value)
        assert done.exit_code == 2
        assert "--stretch" in done.output and said in done.output
        assert "Traceback" not in done.output
    assert not list(tmp_path.iterdir())


def test_fit_report_of_a_landscape_photograph_has_little_blank(tmp_path, photo):
    target = tmp_path / "sharp.npy"
    assert run("apply", photo, "-k", "sharpness", "-o", target).exit_code == 0
    report = tmp_path / "report.png"
    done = run("fit", photo, target, "--report", report, "--stretch", "1,99")
    assert done.exit_code == 0, done.output
    figure = Image.open(report).convert("RGB")
    assert blank_share(figure) <= 0.25
    from tests.pipeline.test_figures import frames

    sizes = sorted((h, w) for _, _, h, w in frames(figure) if h > 100)
    assert (240, 360) in sizes or (240, 361) in sizes  # the residual takes the photograph's shape
