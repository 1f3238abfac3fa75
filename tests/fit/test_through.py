"""Fitting through stages: pipeline's conv -> relu -> pool made by `convtool pipeline`,
and the kernel found back by back-propagation (convtool.fit.through)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from convtool.cli import cli
from convtool.fit.through import ConvSpec, Layer, fit_through, lbfgs

ROOT = Path(__file__).resolve().parents[2]
PHOTO = ROOT / "tests" / "data" / "fit" / "input.png"  # 256x256 RGB
SOBEL_X = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
RANDOM3 = np.array([[0.3, -0.62, 0.18], [0.05, 0.91, -0.44], [-0.27, 0.33, 0.12]])


def pipeline_target(tmp_path, kernel, *args):
    """`convtool pipeline PHOTO -k K -o t.npy` with the given stages/colour options."""
    spec = kernel
    if isinstance(kernel, np.ndarray):
        np.save(tmp_path / "k.npy", kernel)
        spec = f"@{tmp_path / 'k.npy'}"
    out = tmp_path / "t.npy"
    made = CliRunner().invoke(cli, ["pipeline", str(PHOTO), "-k", spec, *args, "-o", str(out)])
    assert made.exit_code == 0, made.output
    return out


def fit(*args):
    return CliRunner().invoke(cli, ["fit", str(PHOTO), *map(str, args), "--json"])


@pytest.mark.parametrize(
    ("kernel", "stages", "colour"),
    [
        ("sobel_x", (), ()),  # pipeline's default chain: valid conv, relu, maxpool:2
        (RANDOM3, (), ()),
        ("sobel_x", (), ("--color", "gray")),
        (RANDOM3, ("--stage", "conv -> relu -> avgpool:2"), ("--color", "gray")),
        (RANDOM3, ("--stage", "conv:s=2 -> relu -> maxpool:3,s=2"), ()),
    ],
)
def test_the_kernel_comes_back_through_relu_and_pooling(tmp_path, kernel, stages, colour):
    target = pipeline_target(tmp_path, kernel, *stages, *colour)
    chain = stages[1] if stages else "conv -> relu -> maxpool:2"
    result = fit(target, "--stage", chain, *colour)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    want = SOBEL_X if isinstance(kernel, str) else kernel
    np.testing.assert_allclose(data["kernel"], want, atol=1e-3)
    assert abs(data["bias"]) < 1e-3 and data["method"] == "lbfgs"
    assert np.array(data["stderr"]).max() < 1e-4  # a float32 target: tiny, but said
    again = fit(target, "--stage", chain, *colour)
    assert again.stdout == result.stdout  # deterministic


def test_the_gradient_is_the_finite_difference_of_the_loss():
    """The backward pass (conv2d_backward, relu and pool backwards) against central
    differences of the forward loss."""
    from convtool.fit.through import _Model

    rng = np.random.default_rng(4)
    s = rng.random((30, 34))
    y = rng.random((14, 16))
    layers = [Layer("relu"), Layer("avgpool", (2, 2), (2, 2))]
    model = _Model(s, ConvSpec((3, 3)), layers, y, True, None)
    p = rng.normal(size=10)
    _, grad = model.loss_grad(p)
    h = 1e-6
    numeric = [
        (model.loss_grad(p + h * e)[0] - model.loss_grad(p - h * e)[0]) / (2 * h)
        for e in np.eye(10)
    ]
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9)


def test_lbfgs_minimises_a_quadratic_exactly():
    a = np.diag([1.0, 10.0, 100.0])
    b = np.array([1.0, -2.0, 3.0])
    quadratic = lambda p: (0.5 * p @ a @ p - b @ p, a @ p - b)  # noqa: E731
    p, _, history = lbfgs(quadratic, np.zeros(3), 200, -np.inf)
    np.testing.assert_allclose(p, np.linalg.solve(a, b), rtol=1e-8)
    assert history == sorted(history, reverse=True)


def test_stages_that_do_not_fit_are_refused(tmp_path):
    target = pipeline_target(tmp_path, "sobel_x")
    for args, words in [
        (("--stage", "conv:sobel_x -> relu"), "naming no kernel"),
        (("--stage", "relu -> conv"), "start with the one conv"),
        (("--stage", "conv -> relu -> maxpool:3"), "the stages make 84x84"),
        (("--stage", "conv -> relu", "--method", "cg"), "--method does not apply"),
        (("--stage", "conv -> relu", "--color", "channels"), "--color channels does not apply"),
        (("--stage", "conv -> frobnicate"), "unknown stage"),
        (("--stage", "conv:4@3 -> relu"), "naming no kernel"),
        (("--stage", "conv:d=2 -> relu"), "leave d= out"),
    ]:
        result = fit(target, *args)
        assert result.exit_code == 2, result.output
        assert words in result.output, result.output
        assert "Traceback" not in result.output


def test_a_plane_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="one plane in and one out"):
        fit_through(np.zeros((3, 8, 8)), np.zeros((3, 3)), [Layer("relu")], ConvSpec())


def test_an_8_bit_target_clipped_at_1_still_gives_the_kernel(tmp_path):
    """pipeline -o t.png clips (here most of) the map at 1 and rounds it to 8 bits: a
    pixel at 1 takes any prediction above it, and the kernel comes back to rounding."""
    kernel = np.array([[0.1, 0.2, 0.1], [0.0, 0.3, 0.0], [-0.1, 0.2, 0.05]])
    np.save(tmp_path / "k.npy", kernel)
    out = tmp_path / "t.png"
    made = CliRunner().invoke(
        cli, ["pipeline", str(PHOTO), "-k", f"@{tmp_path / 'k.npy'}", "-o", str(out)]
    )
    assert made.exit_code == 0, made.output
    result = fit(out, "--stage", "conv -> relu -> maxpool:2")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(json.loads(result.stdout)["kernel"], kernel, atol=2e-3)
