"""The kernel bank and the kernel-spec parser, against the chapter's table 17-1,
ImageMagick's documented kernels, OpenCV and independent formulas."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convtool.kernels import (
    MAX_SIDE,
    MAX_WEIGHTS,
    KernelInfo,
    KernelSpec,
    KernelSpecError,
    box_kernel,
    format_kernel,
    format_number,
    gaussian_kernel,
    kernel_file_bytes,
    kernel_info,
    list_kernels,
    motion_kernel,
    normalize_kernel,
    parse_kernel,
    parse_kernel_spec,
    read_kernel_file,
    resolve_name,
    rotate_kernel,
    unsharp_kernel,
    write_kernel_file,
)


def k(rows: str) -> np.ndarray:
    """'a,b,c / d,e,f' -> array, for writing expected kernels as the chapter does."""
    return np.array([[float(v) for v in row.split(",")] for row in rows.split("/")])


# ---------------------------------------------------------------- the chapter's table 17-1

# copied from /work/shared/seed/README.md, table 17-1, in its order
CHAPTER = [
    ("sharpness", "0,-1,0 / -1,5,-1 / 0,-1,0"),
    ("vertical edge", "0,0,0 / -1,2,-1 / 0,0,0"),
    ("surround", "1,1,1 / 1,-9,1 / 1,1,1"),
    ("sobel y", "-1,-2,-1 / 0,0,0 / 1,2,1"),
    ("nothing", "0,0,0 / 0,1,0 / 0,0,0"),
    ("horizontal edge", "0,-1,0 / 0,2,0 / 0,-1,0"),
    ("blur", "0.11,0.11,0.11 / 0.11,0.11,0.11 / 0.11,0.11,0.11"),
    ("sobel x", "-1,0,1 / -2,0,2 / -1,0,1"),
    ("embossing", "2,0,0 / 0,-1,0 / 0,0,-1"),
]


@pytest.mark.parametrize(("name", "rows"), CHAPTER)
def test_chapter_kernels_exact(name, rows):
    w = parse_kernel(name)  # the chapter's own spelling, with a space
    assert w.dtype == np.float64
    assert w.shape == (3, 3)
    np.testing.assert_array_equal(w, k(rows))


def test_chapter_nine_come_first_in_order():
    names = [i.name for i in list_kernels()][:9]
    assert names == [n.replace(" ", "_") for n, _ in CHAPTER]


def test_blur_is_the_chapters_011_and_box3_is_exact():
    assert np.all(parse_kernel("blur") == 0.11)
    assert parse_kernel("blur").sum() == pytest.approx(0.99)
    np.testing.assert_array_equal(parse_kernel("box3"), np.full((3, 3), 1 / 9))
    np.testing.assert_array_equal(parse_kernel("box:3"), parse_kernel("box3"))


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("sharpen", "sharpness"),
        ("identity", "nothing"),
        ("unity", "nothing"),
        ("emboss", "embossing"),
        ("laplacian", "laplacian4"),
        ("laplacian_4", "laplacian4"),
        ("laplacian-8", "laplacian8"),
        ("kirsch_w", "kirsch"),
        ("roberts_pos_diag", "roberts_x"),
        ("roberts_neg_diag", "roberts_y"),
        ("mean", "box"),
        ("motion_blur", "motion"),
        ("unsharp_mask", "unsharp"),
    ],
)
def test_aliases(alias, name):
    assert resolve_name(alias) == name
    spec = parse_kernel_spec(alias)
    assert spec.name == name
    assert spec.base == name
    np.testing.assert_array_equal(spec.weights, parse_kernel(name))


@pytest.mark.parametrize(
    "spelling", ["sobel_x", "sobel-x", "Sobel X", "SOBEL_X", "  sobel  x ", "sobel - x", "Sobel__X"]
)
def test_name_normalisation(spelling):
    np.testing.assert_array_equal(parse_kernel(spelling), k("-1,0,1 / -2,0,2 / -1,0,1"))
    assert parse_kernel_spec(spelling).name == "sobel_x"


def test_name_normalisation_with_parameters_and_rotation():
    np.testing.assert_array_equal(parse_kernel("Gaussian:5,1"), parse_kernel("gaussian:5,1"))
    np.testing.assert_array_equal(parse_kernel("Sobel X:90"), parse_kernel("sobel_x@90"))
    np.testing.assert_array_equal(parse_kernel("Kirsch @ 45"), parse_kernel("kirsch_nw"))


@pytest.mark.parametrize(
    ("name", "rows"),
    [
        ("prewitt_x", "-1,0,1 / -1,0,1 / -1,0,1"),
        ("prewitt_y", "-1,-1,-1 / 0,0,0 / 1,1,1"),
        ("scharr_x", "-3,0,3 / -10,0,10 / -3,0,3"),
        ("scharr_y", "-3,-10,-3 / 0,0,0 / 3,10,3"),
        ("laplacian4", "0,1,0 / 1,-4,1 / 0,1,0"),
        ("laplacian8", "1,1,1 / 1,-8,1 / 1,1,1"),
        ("roberts_x", "1,0 / 0,-1"),
        ("roberts_y", "0,1 / -1,0"),
        ("kirsch", "5,-3,-3 / 5,0,-3 / 5,-3,-3"),
    ],
)
def test_other_fixed_kernels(name, rows):
    np.testing.assert_array_equal(parse_kernel(name), k(rows))


def test_imagemagick_relations_documented_in_peers():
    # ImageMagick's Sobel and Prewitt are the negatives of ours (peers.md)
    np.testing.assert_array_equal(-parse_kernel("sobel_x"), k("1,0,-1 / 2,0,-2 / 1,0,-1"))
    np.testing.assert_array_equal(-parse_kernel("prewitt_x"), k("1,0,-1 / 1,0,-1 / 1,0,-1"))
    # ImageMagick's Laplacian:0 and :1 are the negatives of laplacian8 and laplacian4
    np.testing.assert_array_equal(-parse_kernel("laplacian8"), k("-1,-1,-1 / -1,8,-1 / -1,-1,-1"))
    np.testing.assert_array_equal(-parse_kernel("laplacian4"), k("0,-1,0 / -1,4,-1 / 0,-1,0"))


def test_laplacian_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(0).standard_normal((9, 11))
    ours = ndimage.correlate(x, parse_kernel("laplacian"), mode="mirror")
    np.testing.assert_allclose(ours, ndimage.laplace(x, mode="mirror"), atol=1e-12)


def test_list_kernels_entries_are_consistent():
    infos = list_kernels()
    assert all(isinstance(i, KernelInfo) for i in infos)
    names = [i.name for i in infos]
    assert len(names) == len(set(names))
    every = names + [a for i in infos for a in i.aliases]
    assert len(every) == len(set(every)), "an alias is shared"
    for i in infos:
        assert i.kernel.dtype == np.float64 and i.kernel.ndim == 2
        assert i.description and "\n" not in i.description
        np.testing.assert_array_equal(parse_kernel(i.name), i.kernel)  # the default parameters
        for alias in i.aliases:
            assert resolve_name(alias) == i.name
        assert i.syntax.startswith(i.name)
    for needed in ["prewitt_x", "scharr_y", "laplacian4", "laplacian8", "roberts_x", "kirsch_n"]:
        assert needed in names
    assert {"gaussian", "box", "unsharp", "motion"} <= set(names)


def test_bank_kernels_are_fresh_copies():
    w = parse_kernel("sobel_x")
    w[:] = 99
    assert parse_kernel("sobel_x")[0, 0] == -1
    kernel_info("kirsch").kernel[:] = 0
    assert parse_kernel("kirsch")[0, 0] == 5


# ---------------------------------------------------------------- rotation


def test_sobel_x_90_relates_as_imagemagick_sobel_90():
    im_sobel = k("1,0,-1 / 2,0,-2 / 1,0,-1")
    im_sobel_90 = k("1,2,1 / 0,0,0 / -1,-2,-1")  # peers.md: ImageMagick's Sobel:90
    np.testing.assert_array_equal(rotate_kernel(im_sobel, 90), im_sobel_90)
    # sobel_x is -Sobel, so sobel_x:90 must be -Sobel:90, which is the chapter's sobel_y
    np.testing.assert_array_equal(parse_kernel("sobel_x:90"), -im_sobel_90)
    np.testing.assert_array_equal(parse_kernel("sobel_x@90"), parse_kernel("sobel_y"))


def test_kirsch_45_matches_imagemagick():
    np.testing.assert_array_equal(parse_kernel("kirsch:45"), k("5,5,-3 / 5,0,-3 / -3,-3,-3"))
    np.testing.assert_array_equal(parse_kernel("kirsch@45"), k("5,5,-3 / 5,0,-3 / -3,-3,-3"))


COMPASS = ["kirsch", "kirsch_nw", "kirsch_n", "kirsch_ne", "kirsch_e", "kirsch_se", "kirsch_s"]
COMPASS.append("kirsch_sw")


def test_kirsch_45_degree_steps_give_the_eight_compass_kernels():
    seen = []
    for step, name in enumerate(COMPASS):
        w = parse_kernel(f"kirsch@{45 * step}")
        np.testing.assert_array_equal(w, parse_kernel(name))
        assert w[1, 1] == 0 and w.sum() == 0 and sorted(w.ravel()) == [-3] * 5 + [0] + [5] * 3
        seen.append(w.tobytes())
    assert len(set(seen)) == 8
    np.testing.assert_array_equal(parse_kernel("kirsch@360"), parse_kernel("kirsch"))
    # the 5s sit on the side the name says
    assert np.all(parse_kernel("kirsch_n")[0] == 5)
    assert np.all(parse_kernel("kirsch_e")[:, 2] == 5)
    assert np.all(parse_kernel("kirsch_s")[2] == 5)


@settings(deadline=None, max_examples=50)
@given(st.lists(st.integers(-9, 9), min_size=9, max_size=9), st.integers(-8, 8))
def test_rotation_steps_compose(values, steps):
    w = np.array(values, dtype=np.float64).reshape(3, 3)
    once = w
    for _ in range(abs(steps)):
        once = rotate_kernel(once, 45 if steps > 0 else -45)
    np.testing.assert_array_equal(once, rotate_kernel(w, 45 * steps))
    # two 45-degree steps are one exact 90-degree turn, clockwise as np.rot90(w, -1)
    np.testing.assert_array_equal(rotate_kernel(rotate_kernel(w, 45), 45), np.rot90(w, -1))
    assert rotate_kernel(w, 45 * steps)[1, 1] == w[1, 1]


def test_rotation_by_90_of_any_shape_is_exact():
    w = np.arange(15.0).reshape(3, 5)
    np.testing.assert_array_equal(rotate_kernel(w, 90), np.rot90(w, -1))
    np.testing.assert_array_equal(rotate_kernel(w, -90), np.rot90(w, 1))
    np.testing.assert_array_equal(rotate_kernel(w, 270), np.rot90(w, 1))
    np.testing.assert_array_equal(rotate_kernel(w, 180), w[::-1, ::-1])
    assert parse_kernel("box:3x5@90").shape == (5, 3)
    np.testing.assert_array_equal(parse_kernel("roberts_x:90"), k("0,1 / -1,0"))


def test_rotation_display_names():
    assert parse_kernel_spec("sobel_x:90").name == "sobel_x@90"
    assert parse_kernel_spec("motion:9@90").name == "motion:9@90"
    assert parse_kernel_spec("kirsch@360").name == "kirsch"
    assert parse_kernel_spec("gaussian:7,1.5@90").slug == "gaussian_7_1.5_r90"
    assert parse_kernel_spec("1 2 1").slug == "custom"


# ---------------------------------------------------------------- parameterised kernels


def opencv_sigma(size: int) -> float:
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


@pytest.mark.parametrize(("size", "sigma"), [(1, None), (3, None), (5, 1.0), (7, 1.5), (9, None)])
def test_gaussian_against_the_2d_formula(size, sigma):
    s = opencv_sigma(size) if sigma is None else sigma
    spec = f"gaussian:{size}" if sigma is None else f"gaussian:{size},{sigma}"
    w = parse_kernel(spec)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    expected = np.exp(-(xx**2 + yy**2) / (2 * s * s))
    expected /= expected.sum()
    np.testing.assert_allclose(w, expected, rtol=1e-12, atol=1e-15)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(w, w.T)
    assert w.argmax() == w.size // 2


def test_gaussian_default_size_and_sigma():
    w = parse_kernel("gaussian")
    assert w.shape == (3, 3)
    np.testing.assert_allclose(w, gaussian_kernel(3, 0.8))
    np.testing.assert_allclose(parse_kernel("gaussian:7"), gaussian_kernel(7, 1.4))


def test_box():
    np.testing.assert_array_equal(parse_kernel("box:5"), np.full((5, 5), 1 / 25))
    assert parse_kernel("box:3x5").shape == (3, 5)  # H x W, as every size is written
    np.testing.assert_array_equal(parse_kernel("box:3x5"), parse_kernel("box:3,5"))
    np.testing.assert_array_equal(parse_kernel("box:3 X 5"), np.full((3, 5), 1 / 15))
    np.testing.assert_array_equal(parse_kernel("box:2"), np.full((2, 2), 0.25))  # even is fine
    np.testing.assert_array_equal(box_kernel(4, 1), np.full((1, 4), 0.25))
    assert parse_kernel_spec("box:3x5").name == "box:3x5"


@pytest.mark.parametrize(("size", "sigma", "amount"), [(3, None, 1.0), (5, 1.0, 2.0), (7, 2, 0.5)])
def test_unsharp_is_identity_plus_amount_times_detail(size, sigma, amount):
    args = [str(size)] + ([] if sigma is None else [str(sigma), str(amount)])
    w = parse_kernel("unsharp:" + ",".join(args))
    g = gaussian_kernel(size, sigma)
    identity = np.zeros((size, size))
    identity[size // 2, size // 2] = 1
    np.testing.assert_allclose(w, identity + amount * (identity - g), atol=1e-15)
    assert w.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(parse_kernel("unsharp"), unsharp_kernel(3, 0.8, 1.0))


def test_motion_axis_aligned_is_exact():
    np.testing.assert_allclose(parse_kernel("motion:9"), np.full((1, 9), 1 / 9), rtol=1e-14)
    np.testing.assert_allclose(parse_kernel("motion:9,90"), np.full((9, 1), 1 / 9), rtol=1e-14)
    np.testing.assert_array_equal(parse_kernel("motion:9,90"), parse_kernel("motion:9@90"))
    np.testing.assert_array_equal(parse_kernel("motion:9,180"), parse_kernel("motion:9"))
    # an even length: the ends fall half-way into the outer cells, still centred
    np.testing.assert_allclose(parse_kernel("motion:4"), [[1 / 8, 1 / 4, 1 / 4, 1 / 4, 1 / 8]])
    np.testing.assert_array_equal(parse_kernel("motion:1"), [[1.0]])
    assert parse_kernel("motion").shape == (1, 5)


def test_motion_45_runs_down_the_diagonal():
    w = parse_kernel("motion:9,45")
    assert w.shape == (7, 7)
    assert np.count_nonzero(w - np.diag(np.diag(w))) == 0  # top-left to bottom-right
    np.testing.assert_allclose(np.diag(w)[1:-1], np.diag(w)[3])
    np.testing.assert_allclose(parse_kernel("motion:9,135"), w[:, ::-1], atol=1e-15)


@settings(deadline=None, max_examples=100)
@given(st.floats(1, 60), st.floats(-720, 720))
def test_motion_sums_to_one_and_is_point_symmetric(length, angle):
    w = motion_kernel(length, angle)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(w >= 0)
    assert w.shape[0] % 2 == 1 and w.shape[1] % 2 == 1
    np.testing.assert_allclose(w, w[::-1, ::-1], atol=1e-12)  # centred on the middle cell
    # the weights lie along the line: their second moment along it is the segment's, L^2/12
    yy, xx = np.mgrid[: w.shape[0], : w.shape[1]]
    xx = xx - w.shape[1] // 2
    yy = yy - w.shape[0] // 2
    t = xx * math.cos(math.radians(angle)) + yy * math.sin(math.radians(angle))
    assert (w * t).sum() == pytest.approx(0.0, abs=1e-9)


# ---------------------------------------------------------------- inline and ImageMagick forms


@pytest.mark.parametrize(
    "spec",
    [
        "0,-1,0; -1,5,-1; 0,-1,0",
        "0 -1 0 / -1 5 -1 / 0 -1 0",
        "0,-1,0\n-1,5,-1\n0,-1,0\n",
        "0, -1, 0;-1 ,5 ,-1;  0\t-1\t0",
        "0,-1,0,; -1,5,-1,; 0,-1,0,;",
        "3x3: 0,-1,0 -1,5,-1 0,-1,0",
        "3: 0 -1 0 -1 5 -1 0 -1 0",
        "3 x 3 : 0,-1,0; -1,5,-1; 0,-1,0",
    ],
)
def test_inline_and_imagemagick_forms(spec):
    s = parse_kernel_spec(spec)
    np.testing.assert_array_equal(s.weights, k("0,-1,0 / -1,5,-1 / 0,-1,0"))
    assert s.name == "custom" and s.bias is None and s.base is None


def test_non_square_and_even_inline():
    np.testing.assert_array_equal(parse_kernel("2x3: 1 2 3 4 5 6"), [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(parse_kernel("3x1: 1,2,1"), [[1, 2, 1]])
    np.testing.assert_array_equal(parse_kernel("1 2 1"), [[1, 2, 1]])
    np.testing.assert_array_equal(parse_kernel("1;2;1"), [[1], [2], [1]])
    np.testing.assert_array_equal(parse_kernel("1 2; 3 4"), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(parse_kernel("-.5 1e-1 +2"), [[-0.5, 0.1, 2]])
    w = parse_kernel("1 2; 3 4")
    assert w.dtype == np.float64 and w.flags.c_contiguous


# ---------------------------------------------------------------- files


def test_text_file_with_comments(tmp_path):
    path = tmp_path / "edge.txt"
    path.write_text("# my edge kernel\n-1 0 1   # top\n-2 0 2\n\n-1 0 1\n")
    s = parse_kernel_spec(f"@{path}")
    np.testing.assert_array_equal(s.weights, parse_kernel("sobel_x"))
    assert s.name == "edge" and s.bias is None


def test_csv_and_imagemagick_text_files(tmp_path):
    (tmp_path / "k.csv").write_text("1,2,1\r\n2,4,2\r\n1,2,1\r\n")
    np.testing.assert_array_equal(parse_kernel(f"@{tmp_path / 'k.csv'}"), k("1,2,1/2,4,2/1,2,1"))
    (tmp_path / "im").write_text("3x3: 1,2,1 2,4,2 1,2,1\n")  # no suffix: text
    np.testing.assert_array_equal(parse_kernel(f"@{tmp_path / 'im'}"), k("1,2,1/2,4,2/1,2,1"))


def test_json_files(tmp_path):
    (tmp_path / "a.json").write_text("[[0, 1], [2.5, -3]]")
    s = parse_kernel_spec(f"@{tmp_path / 'a.json'}")
    np.testing.assert_array_equal(s.weights, [[0, 1], [2.5, -3]])
    assert s.bias is None and s.name == "a"
    (tmp_path / "b.json").write_text(json.dumps({"kernel": [[1, 2, 1]], "bias": 0.5}))
    s = parse_kernel_spec(f"@{tmp_path / 'b.json'}")
    np.testing.assert_array_equal(s.weights, [[1, 2, 1]])
    assert s.bias == 0.5 and s.name == "b"
    four = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    (tmp_path / "c.json").write_text(json.dumps({"kernel": four.tolist(), "bias": [1, -1]}))
    s = parse_kernel_spec(f"@{tmp_path / 'c.json'}")
    np.testing.assert_array_equal(s.weights, four)
    assert s.bias == (1.0, -1.0)


def test_npy_files(tmp_path):
    two = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16)
    np.save(tmp_path / "two.npy", two)
    s = parse_kernel_spec(f"@{tmp_path / 'two.npy'}")
    assert s.weights.dtype == np.float64 and s.name == "two"
    np.testing.assert_array_equal(s.weights, two)
    four = np.random.default_rng(1).standard_normal((4, 3, 5, 5)).astype(np.float32)
    np.save(tmp_path / "four.npy", four)
    w = parse_kernel(f"@{tmp_path / 'four.npy'}")
    assert w.shape == (4, 3, 5, 5) and w.dtype == np.float64
    np.testing.assert_array_equal(w, four.astype(np.float64))


def test_file_path_with_spaces_and_home(tmp_path, monkeypatch):
    (tmp_path / "my kernel.txt").write_text("1 2 1")
    np.testing.assert_array_equal(parse_kernel(f"@{tmp_path / 'my kernel.txt'}"), [[1, 2, 1]])
    monkeypatch.setenv("HOME", str(tmp_path))
    np.testing.assert_array_equal(parse_kernel("@~/my kernel.txt"), [[1, 2, 1]])


@pytest.mark.parametrize("suffix", [".npy", ".json", ".txt"])
def test_written_kernel_files_read_back(tmp_path, suffix):
    w = np.random.default_rng(2).standard_normal((3, 5))
    path = tmp_path / f"k{suffix}"
    write_kernel_file(path, w, 0.25, comment="made by a test")
    s = read_kernel_file(path)
    np.testing.assert_array_equal(s.weights, w)  # exact: repr and float64 keep every bit
    assert s.name == "k" and s.bias == (0.25 if suffix == ".json" else None)
    assert parse_kernel_spec(f"@{path}").weights.tolist() == w.tolist()


def test_kernel_file_bytes():
    w = np.array([[0.5, -1.0], [2.0, 1 / 3]])
    assert kernel_file_bytes(w, ".txt", 0.5, comment="fitted: 2x2") == (
        b"# fitted: 2x2; bias 0.5 (not part of the kernel)\n0.5 -1.0\n2.0 0.3333333333333333\n"
    )
    assert kernel_file_bytes(w, ".txt") == b"0.5 -1.0\n2.0 0.3333333333333333\n"
    assert kernel_file_bytes(w, ".JSON", np.array([1.0])) == (
        b'{"kernel": [[0.5, -1.0], [2.0, 0.3333333333333333]], "bias": [1.0]}\n'
    )
    four = np.arange(8.0).reshape(2, 1, 2, 2)
    assert json.loads(kernel_file_bytes(four, ".json"))["kernel"] == four.tolist()
    with pytest.raises(ValueError, match="2-D kernel"):
        kernel_file_bytes(four, ".txt")
    with pytest.raises(ValueError, match=r"written as \.npy, \.txt, \.json"):
        kernel_file_bytes(w, ".csv")


def test_writing_a_kernel_file_keeps_an_existing_one_unless_told(tmp_path):
    path = tmp_path / "k.txt"
    path.write_text("1")
    with pytest.raises(FileExistsError):
        write_kernel_file(path, np.ones((1, 1)) * 2)
    assert path.read_text() == "1"
    write_kernel_file(path, np.ones((1, 1)) * 2, overwrite=True)
    assert path.read_text() == "2.0\n"
    seen = []
    write_kernel_file(path, [[3.0]], write_bytes=lambda *a, **kw: seen.append((a, kw)))
    assert seen == [((path, b"3.0\n"), {"overwrite": False})]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("sobelx", ["unknown kernel 'sobelx'", "did you mean sobel_x"]),
        ("gausian:5", ["unknown kernel 'gausian'", "gaussian"]),
        ("zzqqxx", ["unknown kernel 'zzqqxx'"]),
        ("", ["empty"]),
        ("   ", ["empty"]),
        ("1,2,3; 4,5", ["row 2 has 2 values, row 1 has 3"]),
        ("1 2; 3 4 5", ["row 2 has 3 values, row 1 has 2"]),
        ("1, 2, abc", ["'abc'", "not a number"]),
        ("x, 1", ["'x'", "not a number"]),
        ("1,,2", ["empty value"]),
        ("1, nan, 2", ["'nan'", "not finite"]),
        ("1 inf", ["'inf'"]),
        ("1e999 1", ["'1e999'"]),
        ("3x3: 1 2 3", ["needs 9 values, got 3"]),
        ("2x2: 1 2 3 4 5", ["needs 4 values, got 5"]),
        ("3x3: 1 2 3 4 5 6 7 8 oops", ["'oops'"]),
        ("3x3+1+1: 1 2 3 4 5 6 7 8 9", ["'+1+1'", "not supported"]),
        ("0x3: 1", ["zero size"]),
        ("2000x2: 1", ["2x2000", f"{MAX_SIDE}"]),
        ("gaussian:4", ["gaussian size", "positive odd integer", "4"]),
        ("gaussian:5.5", ["gaussian size", "5.5"]),
        ("gaussian:-3", ["gaussian size", "-3"]),
        ("gaussian:5,0", ["sigma", "> 0", "got 0"]),
        ("gaussian:5,-1.5", ["sigma", "-1.5"]),
        ("gaussian:5,abc", ["gaussian sigma", "'abc'"]),
        ("gaussian:5,nan", ["gaussian sigma", "'nan'"]),
        ("gaussian:1,2,3", ["at most 2 parameters", "1,2,3"]),
        ("gaussian:2049", ["2049", f"{MAX_SIDE}"]),
        ("gaussian:", ["nothing after"]),
        ("box:0", ["box width", "0"]),
        ("box:2.5", ["box width", "2.5"]),
        ("box:3x0", ["box width", "0"]),
        ("box:0x3", ["box height", "0"]),
        ("box:5000", ["5000", f"{MAX_SIDE}"]),
        ("motion:0.5", ["motion length", "0.5"]),
        ("motion:5000", ["5000"]),
        ("unsharp:3,1,inf", ["unsharp amount", "'inf'"]),
        ("sobel_x:30", ["multiple of 45", "30"]),
        ("sobel_x@1e999", ["'1e999'"]),
        ("sobel_x:90,1", ["takes no parameters", "90,1"]),
        ("sobel_x:90@90", ["takes no parameters"]),
        ("sobel_x@", ["missing rotation angle"]),
        ("gaussian:5@45", ["45", "3x3", "5x5"]),
        ("roberts_x@45", ["45", "3x3", "2x2"]),
        ("@", ["missing file name"]),
    ],
)
def test_errors_name_the_problem(spec, words):
    with pytest.raises(KernelSpecError) as info:
        parse_kernel(spec)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (spec, message)


def test_kernel_spec_error_is_a_value_error():
    assert issubclass(KernelSpecError, ValueError)
    with pytest.raises(ValueError, match="unknown kernel"):
        parse_kernel("nope")
    with pytest.raises(KernelSpecError, match="text"):
        parse_kernel(3)  # type: ignore[arg-type]


def test_file_errors(tmp_path):
    def error(spec):
        with pytest.raises(KernelSpecError) as info:
            parse_kernel(spec)
        return str(info.value)

    assert "does not exist" in error(f"@{tmp_path / 'missing.txt'}")
    assert "missing.txt" in error(f"@{tmp_path / 'missing.txt'}")
    assert "is a directory" in error(f"@{tmp_path}")
    np.save(tmp_path / "three.npy", np.zeros((2, 3, 3)))
    message = error(f"@{tmp_path / 'three.npy'}")
    assert "3-D" in message and "(2, 3, 3)" in message and "(C_out, C_in, kH, kW)" in message
    np.save(tmp_path / "one.npy", np.zeros(3))
    assert "1-D" in error(f"@{tmp_path / 'one.npy'}")
    np.save(tmp_path / "complex.npy", np.zeros((3, 3), dtype=complex))
    assert "complex" in error(f"@{tmp_path / 'complex.npy'}")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [0, 0]]))
    assert "nan" in error(f"@{tmp_path / 'nan.npy'}")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    assert "empty" in error(f"@{tmp_path / 'empty.npy'}")
    np.save(tmp_path / "wide.npy", np.zeros((2, MAX_SIDE + 1)))
    assert str(MAX_SIDE) in error(f"@{tmp_path / 'wide.npy'}")
    np.save(tmp_path / "many.npy", np.zeros((MAX_WEIGHTS // 64 + 1, 1, 8, 8), dtype=np.float32))
    assert str(MAX_WEIGHTS) in error(f"@{tmp_path / 'many.npy'}")
    np.save(tmp_path / "objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    assert "objects.npy" in error(f"@{tmp_path / 'objects.npy'}")
    (tmp_path / "garbage.npy").write_bytes(b"not a numpy file")
    assert "garbage.npy" in error(f"@{tmp_path / 'garbage.npy'}")
    (tmp_path / "k.png").write_bytes(b"\x89PNG")
    assert "'.png'" in error(f"@{tmp_path / 'k.png'}")
    (tmp_path / "ragged.txt").write_text("1 2 3\n4 5\n")
    message = error(f"@{tmp_path / 'ragged.txt'}")
    assert "ragged.txt" in message and "row 2 has 2 values, row 1 has 3" in message
    (tmp_path / "word.csv").write_text("1,2\n3,four\n")
    assert "'four'" in error(f"@{tmp_path / 'word.csv'}")
    (tmp_path / "blank.txt").write_text("# nothing here\n\n")
    assert "empty" in error(f"@{tmp_path / 'blank.txt'}")
    (tmp_path / "latin1.txt").write_bytes(b"1 2 \xe9")
    assert "UTF-8" in error(f"@{tmp_path / 'latin1.txt'}")
    (tmp_path / "named.txt").write_text("sobel_x")  # names are for specs, not files
    assert "'sobel_x'" in error(f"@{tmp_path / 'named.txt'}")


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("[[1, 2], [3]", ["not valid JSON"]),
        ('{"weights": [[1]]}', ["'kernel' key"]),
        ("5", ["list of rows"]),
        ("[1, 2, 3]", ["1-D"]),
        ("[[[1]]]", ["3-D"]),
        ("[[1, 2, 3], [4, 5]]", ["row 2 has 2 values, row 1 has 3"]),
        ('[[1, "2"]]', ['"2"', "not a number"]),
        ("[[1, true]]", ["true", "not a number"]),
        ("[[1, null]]", ["null"]),
        ("[[1, NaN]]", ["nan"]),
        ("[[1, 1e400]]", ["inf"]),
        ("[[1, [2]]]", ["[2]"]),
        ("[[]]", ["empty"]),
        ("[]", ["1-D"]),
        ('{"kernel": [[1]], "bias": "x"}', ["bias", '"x"']),
        ('{"kernel": [[1]], "bias": [1, 2]}', ["bias has 2 values", "1 output channel"]),
        ('{"kernel": [[[[1]], [[2]]]], "bias": [1, 2]}', ["bias has 2 values"]),
        ('{"kernel": [[[[1], [2]], [[3]]]]}', ["has 1 entries, expected 2"]),
    ],
)
def test_json_errors(tmp_path, content, words):
    path = tmp_path / "k.json"
    path.write_text(content)
    with pytest.raises(KernelSpecError) as info:
        parse_kernel(f"@{path}")
    message = str(info.value)
    for word in words:
        assert word in message, (content, message)


def test_size_limits_are_enforced_before_allocating():
    with pytest.raises(KernelSpecError, match=str(MAX_SIDE)):
        parse_kernel("99999999999999999999x2: 1")
    with pytest.raises(KernelSpecError, match=str(MAX_SIDE)):
        gaussian_kernel(10**9 + 1)
    rows = "; ".join(["1"] * (MAX_SIDE + 1))
    with pytest.raises(KernelSpecError, match="rows"):
        parse_kernel(rows)
    np.testing.assert_array_equal(parse_kernel("1 " * MAX_SIDE), np.ones((1, MAX_SIDE)))


# ---------------------------------------------------------------- helpers


def test_normalize_kernel():
    w = normalize_kernel(k("1,2,1/2,4,2/1,2,1"))
    np.testing.assert_array_equal(w, k("1,2,1/2,4,2/1,2,1") / 16)
    edge = parse_kernel("sobel_x")
    out = normalize_kernel(edge)
    np.testing.assert_array_equal(out, edge)  # zero sum: unchanged
    assert out is not edge
    np.testing.assert_array_equal(normalize_kernel(np.zeros((2, 2))), np.zeros((2, 2)))
    assert normalize_kernel(parse_kernel("blur")).sum() == pytest.approx(1.0)
    four = np.stack([np.stack([np.ones((3, 3)), 2 * np.ones((3, 3))]), np.zeros((2, 3, 3))])
    n4 = normalize_kernel(four)
    assert n4[0].sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(n4[1], 0)
    np.testing.assert_allclose(normalize_kernel([[1, 3]]), [[0.25, 0.75]])


def test_format_number_and_kernel():
    assert [format_number(v) for v in [0, -0.0, 5, -10, 0.11, 1 / 9, 0.0625, 1e-5, 2.5e7]] == [
        "0",
        "0",
        "5",
        "-10",
        "0.11",
        "0.111",
        "0.0625",
        "1e-05",
        "2.5e+07",
    ]
    assert format_kernel(parse_kernel("sobel_x")) == "-1  0  1\n-2  0  2\n-1  0  1"
    big = format_kernel(np.zeros((40, 40)), max_rows=7, max_cols=7)
    lines = big.splitlines()
    assert len(lines) == 7 and "…" in lines[0] and "⋮" in lines[3]


def test_kernel_spec_type():
    s = parse_kernel_spec("gaussian:5,1")
    assert isinstance(s, KernelSpec)
    assert s.name == "gaussian:5,1" and s.base == "gaussian" and s.bias is None
    assert s.slug == "gaussian_5_1"
    with pytest.raises(AttributeError):
        s.name = "x"  # frozen


# ---------------------------------------------------------------- robustness

NAMES = [i.name for i in list_kernels()] + ["sobelx", "Sobel X", "kirsch-n", "gauss"]
ARGS = st.one_of(
    st.integers(-3, 40).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "x", "5x3", "1e999", "-0", "9" * 30, "0x3", "45", "90"]),
)


@st.composite
def named_specs(draw):
    spec = draw(st.sampled_from(NAMES))
    args = draw(st.lists(ARGS, max_size=4))
    if args or draw(st.booleans()):
        spec += ":" + ",".join(args)
    if draw(st.booleans()):
        spec += "@" + draw(ARGS)
    return spec


@st.composite
def inline_specs(draw):
    token = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-99, 99).map(str),
        st.sampled_from(["", "a", "-", ".", "1e", "nan", "1_0", "#"]),
    )
    rows = draw(st.lists(st.lists(token, max_size=5), max_size=5))
    sep = draw(st.sampled_from([",", " ", ", ", "\t"]))
    text = draw(st.sampled_from([";", "/", "\n", "; "])).join(sep.join(r) for r in rows)
    prefix = draw(st.sampled_from(["", "", "3x3:", "3:", "2x2:", "1x3 :", "3x3+1+1:", "0x0:"]))
    return prefix + text


@settings(deadline=None, max_examples=300)
@given(
    st.one_of(
        st.text(), st.text(alphabet="0123456789,;/ x:@.-+eE\n"), named_specs(), inline_specs()
    )
)
def test_fuzz_parse_kernel_gives_finite_floats_or_kernel_spec_error(spec):
    try:
        w = parse_kernel(spec)
    except KernelSpecError as e:
        assert str(e)
        return
    assert isinstance(w, np.ndarray)
    assert w.dtype == np.float64
    assert w.ndim in (2, 4) and w.size >= 1
    assert np.all(np.isfinite(w))


# ---------------------------------------------------------------- the architecture
# What convtool.kernels may import is an import-linter contract in pyproject.toml
# (tests/test_architecture.py runs it); this checks the start-up it protects.


def test_importing_kernels_does_not_import_numba():
    code = "import sys, convtool.kernels; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
