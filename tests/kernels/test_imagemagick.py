"""ImageMagick's kernels (``im:NAME[:ARGS]`` and the unprefixed names): every one against the
kernel ImageMagick itself builds (its morphology:showKernel output, six digits), and the
spec grammar around them."""

from __future__ import annotations

import numpy as np
import pytest

from convtool.kernels import KernelSpecError, parse_kernel_spec
from convtool.kernels.imagemagick import im_kernel, parse_geometry
from tests.imagemagick import needs_imagemagick, shown_kernel, shown_kernels

# every kernel of the issue, with defaults, radii, sigmas, and rotations
SPECS = [
    "Unity", "Unity:0.5", "Gaussian:2", "Gaussian:0x1", "Gaussian:0x3", "Gaussian:x2",
    "Gaussian:1x1", "Gaussian:0x0.4", "Gaussian:0x5", "LoG:0x1", "LoG:2x1.5", "LoG:0x2",
    "DoG:0,1,2", "DoG:0,2,1", "DoG:3,1,1.6", "Blur:0x1", "Blur:0x1,90", "Blur:2x1",
    "Blur:0x2,270", "Blur:0x0.5", "Blur:0x7", "Comet:0x1", "Comet:3x1+90", "Comet:0x2,90",
    "Comet:0x2,180", "Comet:0x2,270", "Binomial", "Binomial:2", "Laplacian", "Laplacian:1",
    "Laplacian:2", "Laplacian:3", "Laplacian:4", "Laplacian:5", "Laplacian:7",
    "Laplacian:15", "Laplacian:19", "Sobel", "Sobel:45", "Sobel:-90", "Sobel:135",
    "Roberts", "Roberts:90", "Prewitt", "Prewitt:45", "Compass", "Compass:180", "Kirsch",
    "Kirsch:30", "Kirsch:315", "FreiChen", "FreiChen:1", "FreiChen:2", "FreiChen:1,45",
    "FreiChen:45", "FreiChen:11", "FreiChen:12", "FreiChen:13", "FreiChen:14",
    "FreiChen:15", "FreiChen:16", "FreiChen:17", "FreiChen:18", "FreiChen:19",
]  # fmt: skip


@needs_imagemagick
@pytest.mark.parametrize("spec", SPECS)
def test_every_kernel_is_the_one_imagemagick_builds(spec):
    expected = shown_kernel(spec)
    name, _, args = spec.partition(":")
    got = im_kernel(name, args)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    # and through the spec grammar, in any case
    assert np.array_equal(parse_kernel_spec(f"im:{spec.lower()}").weights, got)


@needs_imagemagick
@pytest.mark.parametrize(
    "spec",
    ["Sobel:>", "Sobel:@", "Sobel:<", "Sobel:45>", "Kirsch:@", "Compass:@", "Blur:0x2>",
     "Comet:0x2<", "Comet:0x1,90>", "Gaussian:0x1@", "Laplacian:1@", "FreiChen:@",
     "Sobel;Prewitt:90", "Blur:0x1;Blur:0x1,90;Unity:0.5"],
)  # fmt: skip
def test_kernel_lists_are_imagemagicks(spec):
    expected = shown_kernels(spec)
    k = parse_kernel_spec(f"im:{spec}")
    got = [k.weights, *k.chain]
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6 * np.abs(e).max())


def test_geometry_arguments():
    assert parse_geometry("0x2") == ([0.0, 2.0, 0.0, 0.0], 2)
    assert parse_geometry("3x1+90") == ([3.0, 1.0, 90.0, 0.0], 3)
    assert parse_geometry("0,1,1.6") == ([0.0, 1.0, 1.6, 0.0], 3)
    assert parse_geometry("x2") == ([0.0, 2.0, 0.0, 0.0], 2)
    assert parse_geometry("-90") == ([-90.0, 0.0, 0.0, 0.0], 1)
    assert parse_geometry("") == ([0.0, 0.0, 0.0, 0.0], 0)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("im:", "needs an ImageMagick kernel name"),
        ("im:Disk", "unknown ImageMagick kernel 'Disk'"),
        ("im:;", "needs an ImageMagick kernel name"),
        ("im:Sobel;;Disk", "unknown ImageMagick kernel 'Disk'"),
        ("im:Sobel;3x3:1", "expected NAME"),
        ("im:Gaussian:0xa", "cannot read"),
        ("im:Gaussian:1,2,3,4,5", "at most 4 numbers"),
        ("im:Binomial:11", "past radius 10"),
        ("im:FreiChen:10", "nine kernels"),
        ("im:Gaussian:600x1", "at most 1024"),
    ],
)
def test_bad_imagemagick_specs_say_what_is_wrong(spec, words):
    with pytest.raises(KernelSpecError, match=words) as e:
        parse_kernel_spec(spec)
    assert "\n" not in str(e.value)


def test_unprefixed_names_are_imagemagick_kernels():
    assert np.array_equal(parse_kernel_spec("dog:0,1,2").weights, im_kernel("DoG", "0,1,2"))
    assert np.array_equal(parse_kernel_spec("LoG").weights, im_kernel("LoG", "0x1.4"))
    assert np.array_equal(parse_kernel_spec("comet:0x2,90").weights, im_kernel("Comet", "0x2,90"))
    assert np.array_equal(parse_kernel_spec("roberts@45").weights, im_kernel("Roberts", "45"))
    assert np.array_equal(parse_kernel_spec("compass:90").weights, im_kernel("Compass", "90"))
    assert np.array_equal(parse_kernel_spec("freichen:2").weights, im_kernel("FreiChen", "2"))
    assert parse_kernel_spec("binomial:2").weights.sum() == 16**2  # not normalised, as IM's
    # LoG and DoG sum to zero; their positive weights to 1, as ImageMagick scales them
    for spec in ("log", "dog", "im:LoG:0x2", "im:DoG:0,2,1"):
        w = parse_kernel_spec(spec).weights
        assert abs(w.sum()) < 1e-12 and w[w > 0].sum() == pytest.approx(1.0)


def test_sigma_only_gaussian():
    w = parse_kernel_spec("gaussian:0x2").weights
    assert w.shape == (13, 13)  # round(6 * 2 + 1) | 1, OpenCV's size for sigma 2
    assert np.array_equal(w, parse_kernel_spec("gaussian:0,2").weights)
    assert np.array_equal(w, parse_kernel_spec("gaussian:13,2").weights)
    assert parse_kernel_spec("gaussian:0x1.5").weights.shape == (11, 11)
    assert parse_kernel_spec("gaussian:7x1.5").weights.shape == (7, 7)
    with pytest.raises(KernelSpecError, match="needs a sigma"):
        parse_kernel_spec("gaussian:0")


@pytest.mark.parametrize(("name", "smooth"), [("sobel", [1, 2, 1]), ("prewitt", [1, 1, 1]),
                                              ("scharr", [3, 10, 3])])  # fmt: skip
def test_gradient_magnitudes_hold_their_x_and_y_kernels(name, smooth):
    k = parse_kernel_spec(name)
    x = np.outer(np.array(smooth) / sum(smooth), [-1, 0, 1])
    assert len(k.parts) == 2 and k.base == name
    np.testing.assert_allclose(k.parts[0], x)
    np.testing.assert_allclose(k.parts[1], x.T)
    # the x kernel is the bank's *_x divided by the smoothing's sum
    np.testing.assert_allclose(k.parts[0] * sum(smooth), parse_kernel_spec(f"{name}_x").weights)
    turned = parse_kernel_spec(f"{name}@90")
    np.testing.assert_allclose(turned.parts[0], np.rot90(x, -1))


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("LOG:0-1E78", "sigma 1e\\+78 is too large"),
        ("im:Blur:0x1e300", "at most 10000"),
        ("im:Gaussian:1e300x1", "1e\\+300 is too large"),
        ("im:Comet:2000x1", "at most 1024 wide"),
    ],
)
def test_extreme_arguments_are_refused_in_one_line(spec, words):
    with pytest.raises(KernelSpecError, match=words) as e:
        parse_kernel_spec(spec)
    assert len(str(e.value)) < 120


def test_vanishing_sigmas_give_a_point():
    for spec in ("im:Gaussian:0x1e-200", "im:LoG:0x1e-200", "im:Blur:0x1e-300"):
        w = parse_kernel_spec(spec).weights
        assert np.isfinite(w).all() and w.max() == 1.0 and w.sum() == 1.0
