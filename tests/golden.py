#!/usr/bin/env python3
"""Golden-output recorder: proves that a refactor changed no behaviour of the CLI.

Not a pytest module (pytest collects ``test_*.py`` only). Standard library only.

    python tests/golden.py record DIR            run every case, write DIR/manifest.json
    python tests/golden.py compare DIR_A DIR_B   print what differs; exit 1 if anything does
    python tests/golden.py list                  the case table

Which convtool runs is Python's choice: ``PYTHONPATH=/path/to/tree python
tests/golden.py record DIR`` records that tree (PYTHONPATH wins over the venv's
editable install). The script prints the ``convtool.__file__`` it imports, checks
that a child process started with the cases' environment imports the same file,
and runs every case as ``sys.executable -m convtool ARGS``.

Workflow (the refactor)::

    git worktree add /work/golden-src 29930fe      # the code before the refactor
    PYTHONPATH=/work/golden-src python tests/golden.py record /work/golden/base
    PYTHONPATH=/work/main python tests/golden.py record /work/golden/after
    python tests/golden.py compare /work/golden/base /work/golden/after

Recording
---------
* ``DIR/inputs/``: the pictures the cases read, copied from the tested tree's
  ``samples/`` and ``tests/data/fit/``, plus fixtures this script writes itself
  (kernel files, .npy arrays, a broken PNG). Their sha256 go into the manifest,
  so ``compare`` also says when two recordings did not start from the same inputs.
  Cases refer to them by absolute path (``{IN}``); a case's own files are relative.
* ``DIR/cases/NAME/``: each case runs in a fresh folder of its own, as its cwd,
  after its setup (``mkdir D``, ``copy SRC DST``). Afterwards every file and folder
  in it is recorded (sha256), whether the command wrote it or setup put it there
  (an input the command must not touch is then checked too). Cases named
  ``prep_*`` make inputs for later cases (TIFFs, fit targets) with convtool
  itself: they are ordinary recorded cases, and run first in table order.
* ``DIR/streams/NAME.stdout|.stderr``: the command's output, normalised (below).
* ``DIR/manifest.json``: per case its argv (with the placeholders), stdin, setup,
  exit code, sha256 and size of stdout and stderr, files, folders, and its time
  (information only: never compared).

The environment of every command is fixed (``case_env``): C.UTF-8 locale, UTC,
COLUMNS=100 / LINES=40 (rich and click lay out for that width), TERM=dumb,
NUMBA_NUM_THREADS=2, one BLAS/OpenMP thread, PYTHONHASHSEED=0, TMPDIR inside DIR,
stdin /dev/null unless the case gives a file. Passed through from the caller:
PATH, HOME, PYTHONPATH, and the cache locations (XDG_CACHE_HOME,
CONVTOOL_CACHE_DIR, NUMBA_CACHE_DIR), so the compiled core under
~/.cache/convtool is reused; nothing else (no CONVTOOL_DEBUG, CONVTOOL_SCHEDULER,
CONVTOOL_AOT, ...). No case runs on a terminal, so no progress bars.

Normalisation (what is masked, and why) -- kept to the minimum:
1. The record folder's absolute path (and its realpath) -> ``<DIR>``, in stdout,
   stderr and in the bytes of recorded files before hashing, so two recordings
   in different folders compare. Inputs are given by absolute path, and
   convtool names them in JSON records and messages.
2. JSON keys that hold wall-clock times (``TIMING_KEYS``: today only pipeline's
   per-stage ``"seconds"``): the number after ``"seconds": `` becomes
   ``"<masked>"``, textually, so the rest of each record stays byte-exact.
3. pipeline's stage table (text mode, no --json) has a ``time`` column in ms,
   last on each line: for ``pipeline`` cases only, a trailing ``N.NN ms`` and the
   header's trailing ``time`` are cut, and trailing blanks of those lines (whose
   padding follows that column's width) are stripped.
Everything else -- output files, JSON records, tables, messages, exit codes --
is compared byte for byte. fit always gets ``--seed`` (its default start is random).
"""

# ruff: noqa: E501  (the case table keeps one case per line)

from __future__ import annotations

import argparse
import difflib
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

FORMAT = 1
CASE_TIMEOUT = 600  # seconds; a first run may compile numba's cache
TIMING_KEYS = ("seconds", "elapsed", "duration")
PLACEHOLDER = b"<DIR>"

# ----------------------------------------------------------------------------- the cases
#
# (name, argv, stdin, setup). argv is split with shlex; {IN} is DIR/inputs,
# {CASES} is DIR/cases (for files a prep_* case made). stdin is a file given the
# same way (None: /dev/null). setup is a tuple of "mkdir D" / "copy SRC DST",
# relative to the case's folder. T is the chapter's fit target (see prep_fit).

T = "{CASES}/prep_fit/target.npy"
TIF = "{CASES}/prep_tif"
BATCH = "{IN}/scene.png {IN}/scene.jpg {IN}/disc.png {IN}/gray.png {IN}/gray16.png {IN}/disc_rgba.png {IN}/input.png"
NINE = "sharpness+vertical_edge+surround+sobel_y+nothing+horizontal_edge+blur+sobel_x+embossing"
BORDERS = ("zero", "reflect", "mirror", "replicate", "wrap")
MAPS = ("clip", "abs", "normalize", "offset")

# fmt: off
CASES: list[tuple] = [
    # ---- help and version (no numpy: cheap)
    ("help_top", "--help"),
    ("version", "--version"),
    ("help_apply", "apply --help"),
    ("help_pipeline", "pipeline --help"),
    ("help_fit", "fit --help"),
    ("help_shape", "shape --help"),
    ("help_kernels", "kernels --help"),
    # ---- kernels
    ("kernels_list", "kernels"),
    ("kernels_list_json", "kernels --json"),
    ("kernels_specs", "kernels sobel_x:90 kirsch@45 gaussian:5,1"),
    ("kernels_params", "kernels box:3x5 box:2 unsharp:5,1,1.5 motion:9,30 motion:7@90 gaussian:7"),
    ("kernels_inline", "kernels '3x3: 1,2,1 2,4,2 1,2,1' '0,-1,0; -1,5,-1; 0,-1,0' '1 2 / 3 4'"),
    ("kernels_aliases", "kernels 'Sobel X' sobel-y EMBOSS laplacian roberts_x@90 kirsch_w unity"),
    ("kernels_spec_json", "kernels gaussian:5,1 --json"),
    ("kernels_specs_json", "kernels sobel_x sobel_y:180 box:2 --json"),
    ("kernels_files", "kernels @{IN}/k_bias.json @{IN}/k_two.npy @{IN}/k_sharp.txt @{IN}/k_edge.csv @{IN}/k_rect.txt"),
    ("kernels_files_json", "kernels @{IN}/k_bias.json @{IN}/k_5x5.npy @{IN}/k_swap.npy --json"),
    ("kernels_err_unknown", "kernels sobelx"),
    ("kernels_err_gauss_even", "kernels gaussian:4"),
    ("kernels_err_ragged_json", "kernels '1,2;3' --json"),
    ("kernels_err_nofile", "kernels @/no/such/file.txt"),
    ("kernels_err_angle", "kernels sobel_x@30"),
    # ---- shape: one layer, the padding solver, chains, errors
    ("shape_one", "shape 28 -k 5"),
    ("shape_hw_stride_pad", "shape 28x32 -k 5 -s 2 -p 1"),
    ("shape_same_stride", "shape 28 -k 3 -p same -s 2"),
    ("shape_valid_rect", "shape 28x31 -k 3x5 -p valid -s 1x2"),
    ("shape_dilation", "shape 28 -k 3 -d 2 -p 1"),
    ("shape_remainder_note", "shape 28 -k 4 -s 3"),
    ("shape_pool", "shape 28 -k 3 --pool -p 1"),
    ("shape_ceil", "shape 5 -k 2 --ceil"),
    ("shape_json", "shape 28x30 -k 5 -s 2 --json"),
    ("shape_keep", "shape 28 -k 5 --keep"),
    ("shape_keep_even", "shape 28 -k 4 --keep"),
    ("shape_target", "shape 28 -k 3 -s 2 --target 14"),
    ("shape_keep_json", "shape 28x30 -k 4x3 --keep --json"),
    ("shape_chain_lenet", "shape 1x28x28 conv:4@5 relu maxpool:2 conv:6@5 relu maxpool:2 flatten fc:120 fc:10"),
    ("shape_chain_stem", "shape 3x224x224 conv:64@7,s=2,p=3 bn relu maxpool:3,s=2,p=1"),
    ("shape_chain_mixed", "shape 3x32x33 conv:16@3,p=same,nobias bn leakyrelu conv:8@3x5,stride=2,padding=1,dilation=1 avgpool:2,ceil sigmoid tanh gelu dropout:0.5 flatten linear:10,nobias softmax"),
    ("shape_chain_fc_json", "shape 784 fc:128 relu fc:10 --json"),
    ("shape_chain_json", "shape 1x28x28 conv:4@5 relu maxpool:2,ceil flatten fc:10 --json"),
    ("shape_err_too_big", "shape 3 -k 5"),
    ("shape_err_stride0", "shape 28 -k 5 -s 0"),
    ("shape_err_padding", "shape 28 -k 5 -p foo"),
    ("shape_err_target", "shape 28 -k 3 --target 20"),
    ("shape_err_keep_target", "shape 28 -k 3 --keep --target 5"),
    ("shape_err_layer", "shape 1x28x28 conv:4"),
    ("shape_err_fc", "shape 1x28x28 fc:10"),
    ("shape_err_input", "shape abc -k 3"),
    # ---- prep: inputs made by convtool for later cases
    ("prep_tif", "apply {IN}/scene.png {IN}/gray16.png {IN}/disc_rgba.png -k nothing -o . --format tif --json"),
    ("prep_tif_float", "apply {IN}/scene.png -k nothing --depth 32 -o scene_f.tif"),
    ("prep_tif_tiled", f"apply {TIF}/scene.nothing.tif -k nothing --tile 128 -o scene_tiled.tif --json"),
    ("prep_bmp_webp", "apply {IN}/disc.png -k nothing -k identity -o . --format bmp"),
    ("prep_webp", "apply {IN}/scene.jpg -k nothing -o scene.webp"),
    ("prep_fit", "apply {IN}/disc.png -k horizontal_edge --color gray --padding valid -o target.npy --json"),
    ("prep_fit_biased", "apply {IN}/gray.png -k sobel_x --scale 0.125 --bias 0.5 --border replicate --depth 16 -o edges16.png --json"),
    ("prep_fit_sharp", "apply {IN}/scene.png -k '0,-1,0; -1,5,-1; 0,-1,0' -o sharp.png"),
    ("prep_fit_stride", "apply {IN}/x_rand.npy -k sobel_x --padding valid --stride 2 -o y2.npy"),
    # ---- apply: the kernel bank
    ("apply_chapter_nine", "apply {IN}/scene.png -k sharpness -k vertical_edge -k surround -k sobel_y -k nothing -k horizontal_edge -k blur -k sobel_x -k embossing -o out/ --json", None, ("mkdir out",)),
    ("apply_bank_rest", "apply {IN}/scene.png -k box3 -k prewitt_x -k prewitt_y -k scharr_x -k scharr_y -k laplacian4 -k laplacian8 -k roberts_x -k roberts_y -k kirsch -k kirsch_nw -k kirsch_n -k kirsch_ne -k kirsch_e -k kirsch_se -k kirsch_s -k kirsch_sw -o out/ --json", None, ("mkdir out",)),
    ("apply_param_kernels", "apply {IN}/scene.png -k gaussian -k box -k unsharp -k motion -k gaussian:7 -k gaussian:5,1.5 -k box:5x3 -k unsharp:5,1,1.5 -k motion:9,30 -k sobel_x@90 -k kirsch@45 -k sobel_y:180 -o . --json"),
    ("apply_aliases_npy", "apply {IN}/disc.png -k sharpen -k identity -k emboss -k laplacian -k roberts_pos_diag -k 'Sobel X' -k mean -k motion_blur -o . --format npy --json"),
    ("apply_readme_edges", "apply {IN}/scene.png -k sobel_x -o edges.png"),
    ("apply_gaussian7_png", "apply {IN}/scene.png -k gaussian:7 -o g.png"),
    # ---- apply: colour, combining, inline kernels
    ("apply_magnitude", "apply {IN}/scene.png -k sobel_x -k sobel_y --combine magnitude -o mag.png --json"),
    ("apply_combine_max", "apply {IN}/disc.png -k kirsch -k kirsch@90 -k kirsch@180 -k kirsch@270 --combine max -o . --json"),
    ("apply_combine_sum_npy", "apply {IN}/gray.png -k sobel_x -k sobel_y --combine sum -o s.npy --json"),
    ("apply_emboss_gray_offset", "apply {IN}/disc.png -k embossing --color gray --map offset -o emboss.png"),
    ("apply_color_sum", "apply {IN}/disc.png -k sobel_x --color sum -o sum.npy --json"),
    ("apply_color_gray_rgba", "apply {IN}/disc_rgba.png -k blur --color gray -o g.png --json"),
    ("apply_inline_replicate_tif", "apply {IN}/scene.png -k '0,-1,0; -1,5,-1; 0,-1,0' --border replicate -o sharp.tif"),
    ("apply_inline_im_style", "apply {IN}/disc.png -k '3x3: 1,2,1 2,4,2 1,2,1' --normalize -o b.png --json"),
    ("apply_raw_npy", "apply {IN}/scene.png -k gaussian:7 -o raw.npy --json"),
    # ---- apply: every border (odd, even and non-square kernels; strides and padding)
    *[(f"apply_border_{b}", f"apply {{IN}}/disc.png -k motion:5,30 -k '1,2;3,4' -k gaussian:7 --border {b} -o . --format npy --json") for b in BORDERS],
    *[(f"apply_border_{b}_stride", f"apply {{IN}}/gray.png -k sobel_y -k @{{IN}}/k_rect.txt --border {b} --stride 3 --padding 2 --map abs -o . --json") for b in BORDERS],
    # ---- apply: value maps
    *[(f"apply_map_{m}", f"apply {{IN}}/scene.png -k sobel_x --map {m} -o m.png --json") for m in MAPS],
    ("apply_map_normalize_npy", "apply {IN}/scene.png -k laplacian8 --map normalize -o m.npy --json"),
    # ---- apply: geometry and kernel options
    ("apply_stride2", "apply {IN}/scene.png -k gaussian:5 --stride 2 -o s.png --json"),
    ("apply_stride_rect_valid", "apply {IN}/scene.jpg -k sobel_x --stride 2x3 --padding valid -o s.npy --json"),
    ("apply_padding_n", "apply {IN}/disc.png -k box:5 --padding 3 -o p.png --json"),
    ("apply_padding_hw_stride", "apply {IN}/gray16.png -k '1,2,1' --padding 1x2 --stride 3 -o p.png --json"),
    ("apply_rgba_valid", "apply {IN}/disc_rgba.png -k blur --padding valid -o v.png --json"),
    ("apply_rgba_stride", "apply {IN}/disc_rgba.png -k sobel_x --stride 2 --map abs -o v.png"),
    ("apply_even_same", "apply {IN}/disc.png -k @{IN}/k_even.txt --normalize -o e.npy"),
    ("apply_flip_mirror", "apply {IN}/gray.png -k sobel_x --flip --border mirror -o f.npy"),
    ("apply_flip_even", "apply {IN}/disc.png -k '1,2;3,4' --flip --normalize -o f.png --json"),
    ("apply_norm_scale_bias", "apply {IN}/gray.png -k '1,1;1,1' --normalize --scale 2 --bias -0.5 -o a.npy --json"),
    ("apply_scale_bias_png", "apply {IN}/scene.png -k sobel_x --scale 0.125 --bias 0.5 -o s.png"),
    # ---- apply: formats and depths
    ("apply_fmt_jpg", "apply {IN}/scene.png -k blur -o b.jpg"),
    ("apply_fmt_tif", "apply {IN}/scene.png -k blur -o b.tif"),
    ("apply_fmt_bmp", "apply {IN}/disc.png -k blur -o b.bmp"),
    ("apply_fmt_webp", "apply {IN}/disc.png -k sobel_x --map abs -o b.webp"),
    ("apply_depth16_png", "apply {IN}/scene.png -k gaussian:5 --depth 16 -o g16.png --json"),
    ("apply_gray16_keeps16", "apply {IN}/gray16.png -k blur -o a.png --json"),
    ("apply_gray16_depth8", "apply {IN}/gray16.png -k blur --depth 8 -o b.png"),
    ("apply_gray16_jpg", "apply {IN}/gray16.png -k blur -o c.jpg"),
    ("apply_gray16_tif", "apply {IN}/gray16.png -k sobel_y --map normalize -o c.tif"),
    ("apply_depth32_tif", "apply {IN}/scene.png -k sobel_x --depth 32 -o f.tif --json"),
    ("apply_rgba_png", "apply {IN}/disc_rgba.png -k sharpness -o r.png"),
    ("apply_rgba_jpg", "apply {IN}/disc_rgba.png -k sharpness -o r.jpg"),
    ("apply_format_beside", "apply a.png -k sobel_x --format tif", None, ("copy {IN}/disc.png a.png",)),
    ("apply_scene_jpg", "apply {IN}/scene.jpg -k unsharp:5,1,1.5 -o u.jpg --json"),
    ("apply_fit_input", "apply {IN}/input.png -k laplacian8 --map abs -o l.png --json"),
    ("apply_bmp_webp_in", "apply {CASES}/prep_bmp_webp/disc.nothing.bmp {CASES}/prep_webp/scene.webp -k sobel_x -o . --json"),
    # ---- apply: batches and names
    ("apply_batch_json", f"apply {BATCH} -k blur -k sobel_x -o out/ --json", None, ("mkdir out",)),
    ("apply_batch_jobs2", f"apply {BATCH} -k gaussian:5 -k emboss -o out/ --json --jobs 2", None, ("mkdir out",)),
    ("apply_batch_beside", "apply a.png b.photo.jpg -k blur -k gaussian:5,1.5@90", None, ("copy {IN}/disc.png a.png", "copy {IN}/scene.jpg b.photo.jpg")),
    ("apply_batch_combine_names", "apply a.png b.photo.jpg -k sobel_x -k sobel_y --combine magnitude -o out/", None, ("mkdir out", "copy {IN}/disc.png a.png", "copy {IN}/scene.jpg b.photo.jpg")),
    ("apply_repeat_kernel", "apply {IN}/disc.png -k blur -k blur -o . --format npy"),
    ("apply_batch_failures", "apply {IN}/disc.png {IN}/broken.png missing.png {IN}/gray.png -k blur -o out/", None, ("mkdir out",)),
    ("apply_batch_failures_json", "apply {IN}/disc.png {IN}/broken.png missing.png {IN}/gray.png -k blur -o out/ --json", None, ("mkdir out",)),
    # ---- apply: .npy pictures in, full 4-D kernels, kernel files
    ("apply_npy_in", "apply {IN}/x_rand.npy -k '0,1;2,3' -o y.npy --json"),
    ("apply_npy_to_png16", "apply {IN}/x_rand.npy -k nothing -o x.png --json"),
    ("apply_npy_rgb_in", "apply {IN}/rgb_rand.npy -k gaussian:3 -o y.png --json"),
    ("apply_npy_nonfinite", "apply {IN}/nan.npy -k blur -o n.npy --json"),
    ("apply_4d_swap", "apply {IN}/disc.png -k @{IN}/k_swap.npy -o s.png"),
    ("apply_4d_two_npy", "apply {IN}/disc.png -k @{IN}/k_two.npy -o t.npy --json"),
    ("apply_4d_two_png_err", "apply {IN}/disc.png -k @{IN}/k_two.npy -o t.png"),
    ("apply_4d_color_gray_err", "apply {IN}/disc.png -k @{IN}/k_swap.npy --color gray -o g.png"),
    ("apply_4d_channels_err", "apply {IN}/gray.png -k @{IN}/k_swap.npy -o g.png"),
    ("apply_kfile_txt_csv", "apply {IN}/scene.png -k @{IN}/k_sharp.txt -k @{IN}/k_edge.csv -o . --json"),
    ("apply_kfile_json_bias", "apply {IN}/gray.png -k @{IN}/k_bias.json -o j.npy --json"),
    ("apply_kfile_json_bias_override", "apply {IN}/gray.png -k @{IN}/k_bias.json --bias 0.25 -o j.png --json"),
    ("apply_kfile_npy_rect_tif", "apply {IN}/scene.jpg -k @{IN}/k_5x5.npy -k @{IN}/k_rect.txt -o . --format tif --json"),
    # ---- apply: standard input and output
    ("apply_stdin_stdout", "apply - -k sharpness -o -", "{IN}/disc.png"),
    ("apply_stdin_npy_stdout", "apply - -k blur --format npy", "{IN}/disc.png"),
    ("apply_stdin_to_dir", "apply - -k blur -o . --json", "{IN}/scene.jpg"),
    ("apply_stdin_jpg_stdout", "apply - -k sobel_x --map abs -o - --format jpg", "{IN}/gray.png"),
    ("apply_stdin_junk", "apply - -k blur -o -", "{IN}/broken.png"),
    # ---- apply: existing outputs
    ("apply_exists_kept", "apply {IN}/disc.png -k sobel_x -o e.png", None, ("copy {IN}/gray.png e.png",)),
    ("apply_exists_overwrite", "apply {IN}/disc.png -k sobel_x -o e.png --overwrite", None, ("copy {IN}/gray.png e.png",)),
    # ---- apply: tiled TIFF filtering (TIFF inputs made by prep_tif*)
    ("apply_tile_gauss", f"apply {TIF}/scene.nothing.tif -k gaussian:7 --tile 128 -o t.tif --json"),
    ("apply_tile0_gauss", f"apply {TIF}/scene.nothing.tif -k gaussian:7 --tile 0 -o w.tif --json"),
    ("apply_tile_even_reflect", f"apply {TIF}/scene.nothing.tif -k '1,2;3,4' --normalize --border reflect --tile 64 -o t.tif --json"),
    ("apply_tile_stride_wrap", f"apply {TIF}/scene.nothing.tif -k sobel_x --stride 2 --border wrap --tile 64 --map abs -o t.tif --json"),
    ("apply_tile_gray16", f"apply {TIF}/gray16.nothing.tif -k sobel_y --tile 32 --map normalize -o t.tif --json"),
    ("apply_tile_rgba", f"apply {TIF}/disc_rgba.nothing.tif -k blur --tile 32 --border replicate -o t.tif --json"),
    ("apply_tile_tiled_in_float_out", "apply {CASES}/prep_tif_tiled/scene_tiled.tif -k sobel_x --tile 256 --border mirror --depth 32 -o t.tif --json"),
    ("apply_tile_float_in", "apply {CASES}/prep_tif_float/scene_f.tif -k motion:9,30 --tile 128 -o t.tif --json"),
    ("apply_tile_err_small", f"apply {TIF}/scene.nothing.tif -k blur --tile 8 -o t.tif"),
    ("apply_tile_err_png", f"apply {TIF}/scene.nothing.tif -k blur --tile 128 -o t.png"),
    # ---- apply: errors (exit code and message)
    ("apply_err_missing_dir", "apply {IN}/disc.png -k blur -o missing/"),
    ("apply_err_two_to_file", "apply {IN}/disc.png -k blur -k sobel_x -o one.png"),
    ("apply_err_same_name", "apply a.png x/a.png -k blur -o .", None, ("mkdir x", "copy {IN}/disc.png a.png", "copy {IN}/disc.png x/a.png")),
    ("apply_err_input_as_output", "apply a.png -k blur -o a.png --overwrite", None, ("copy {IN}/disc.png a.png",)),
    ("apply_err_ext", "apply {IN}/disc.png -k blur -o out.xyz"),
    ("apply_err_stdout_two", "apply {IN}/disc.png -k blur -k sobel_x -o -"),
    ("apply_err_format_disagrees", "apply {IN}/disc.png -k blur -o o.png --format jpg"),
    ("apply_err_unknown_kernel", "apply {IN}/disc.png -k sobel_q"),
    ("apply_err_ragged", "apply {IN}/disc.png -k '1,2;3'"),
    ("apply_err_padding", "apply {IN}/disc.png -k blur --padding big"),
    ("apply_err_stride", "apply {IN}/disc.png -k blur --stride 0"),
    ("apply_err_combine_one", "apply {IN}/disc.png -k blur --combine max"),
    ("apply_err_border", "apply {IN}/disc.png -k blur --border torus"),
    ("apply_err_format_gif", "apply {IN}/disc.png -k blur --format gif"),
    ("apply_err_json_stdout", "apply {IN}/disc.png -k blur --json -o -"),
    ("apply_err_no_kernel", "apply {IN}/disc.png"),
    ("apply_err_jpg16", "apply {IN}/scene.png -k blur -o d.jpg --depth 16"),
    ("apply_err_missing_input", "apply missing.png -k blur -o m.png"),
    ("apply_err_kfile_missing", "apply {IN}/disc.png -k @nofile.txt -o m.png"),
    ("apply_err_max_pixels", "apply {IN}/scene.png -k blur -o m.png --max-pixels 1000"),
    ("apply_max_pixels_none", "apply {IN}/scene.png -k blur -o m.png --max-pixels none --json"),
    ("apply_err_scheduler", "apply {IN}/disc.png -k blur -o s.png --scheduler tcp://127.0.0.1:9"),
    # ---- pipeline
    ("pipe_default_table", "pipeline {IN}/disc.png -k sobel_x"),
    ("pipe_readme_panel", "pipeline {IN}/disc.png -k sobel_x -o pooled.png --panel fig.png"),
    ("pipe_save_stages", "pipeline {IN}/disc.png --stage 'conv:sobel_x -> relu -> maxpool:2' --save-stages st/ --json"),
    ("pipe_multi_stage_panel", "pipeline {IN}/disc.png --stage conv:sobel_x+sobel_y --stage relu --stage avgpool:3,s=1 --panel fig.png --json"),
    ("pipe_scene_npy", "pipeline {IN}/scene.png --stage conv:blur,s=2 --stage conv:@{IN}/k_5x5.npy,p=same -o out.npy --json"),
    ("pipe_grid_nine", f"pipeline {{IN}}/disc.png --color gray --grid fig.png --stage conv:{NINE},p=1 --json"),
    ("pipe_grid_stage_columns", "pipeline {IN}/disc.png -k sobel_x -k sobel_y --grid g.png --grid-stage 1 --columns 1 --save-stages st --json"),
    ("pipe_panel_layout", "pipeline {IN}/scene.jpg -k laplacian8 --panel p.png --columns 2 --cmap diverging --tile 64 --title 'figure x'"),
    ("pipe_panel_gray_notitle", "pipeline {IN}/gray.png -k blur --panel p.png --cmap gray --title '' --tile 100 --json"),
    ("pipe_4d_chain", "pipeline {IN}/disc.png --stage 'conv:@{IN}/k_two.npy -> relu -> conv:@{IN}/k_mix.npy,p=same -> maxpool:2' --save-stages st --json"),
    ("pipe_pools", "pipeline {IN}/gray.png --stage 'conv:box3,p=same -> maxpool:3,s=2,p=1,ceil -> avgpool:2x3,s=1x2 -> pool:2,ceil' --json"),
    ("pipe_shape_names", "pipeline {IN}/disc.png --stage 'conv2d:sobel_y -> relu -> max_pool:2 -> avg_pool:2,s=1'"),
    ("pipe_stage_conv_opts", "pipeline {IN}/disc.png --stage conv:emboss,border=reflect,flip,bias=0.1,normalize,scale=2,p=same,s=2 --stage relu -o o.npy --json"),
    ("pipe_global_opts", "pipeline {IN}/scene.png -k sobel_x -k gaussian:5 --padding same --stride 2 --border wrap --flip --bias 0.25 --scale 0.5 --save-stages st --json"),
    ("pipe_normalize_gray_png", "pipeline {IN}/scene.png -k box:3 --normalize --color gray -o o.png --json"),
    ("pipe_out_png_map_depth", "pipeline {IN}/disc.png -k sobel_x --stage conv:p=same -o o.png --map abs --depth 16 --json"),
    ("pipe_out_tif_3maps", "pipeline {IN}/disc.png --stage conv:sobel_x+sobel_y+blur,p=same -o o.tif --json"),
    ("pipe_stdin_stdout_npy", "pipeline - -k sobel_x -o - --format npy", "{IN}/disc.png"),
    ("pipe_stdin_json", "pipeline - -k blur --json", "{IN}/gray.png"),
    ("pipe_batch_jobs2", "pipeline {IN}/disc.png {IN}/gray.png {IN}/scene.jpg -k sobel_x -o out/ --panel figs/ --grid grids/ --save-stages st --json --jobs 2", None, ("mkdir out", "mkdir figs", "mkdir grids")),
    ("pipe_batch_table", "pipeline {IN}/disc.png {IN}/disc_rgba.png {IN}/gray16.png -k blur"),
    ("pipe_npy_in", "pipeline {IN}/x_rand.npy -k '1,0;0,-1' -o o.npy --panel p.png --json"),
    ("pipe_nonfinite", "pipeline {IN}/nan.npy -k blur --json"),
    ("pipe_exists_kept", "pipeline {IN}/disc.png -k sobel_x -o o.png --panel f.png", None, ("copy {IN}/gray.png o.png",)),
    ("pipe_exists_overwrite", "pipeline {IN}/disc.png -k sobel_x -o o.png --panel f.png --overwrite", None, ("copy {IN}/gray.png o.png",)),
    ("pipe_err_nothing", "pipeline {IN}/disc.png"),
    ("pipe_err_unknown_kernel", "pipeline {IN}/disc.png --stage conv:sobel_q"),
    ("pipe_err_stage_opt", "pipeline {IN}/disc.png --stage conv:sobel_x,q=2"),
    ("pipe_err_unknown_stage", "pipeline {IN}/disc.png --stage softmax"),
    ("pipe_err_unused", "pipeline {IN}/disc.png -k sobel_x --stage conv:blur"),
    ("pipe_err_grid_stage", "pipeline {IN}/disc.png -k sobel_x --grid g.png --grid-stage 4"),
    ("pipe_err_map_no_o", "pipeline {IN}/disc.png -k sobel_x --map abs"),
    ("pipe_err_two_maps_png", "pipeline {IN}/disc.png -k sobel_x -k sobel_y -o o.png"),
    ("pipe_err_tile", "pipeline {IN}/disc.png -k sobel_x --panel f.png --tile 8"),
    ("pipe_err_missing", "pipeline missing.png -k sobel_x -o o.npy"),
    ("pipe_err_kernel_too_big", "pipeline {IN}/disc.png --stage conv:box:99 -o o.npy"),
    # ---- fit (always --seed: the default start is random)
    ("fit_readme", "fit {IN}/scene.png {CASES}/prep_fit_sharp/sharp.png --seed 1"),
    ("fit_chapter_gd", f"fit {{IN}}/disc.png {T} --lr 0.5 --seed 1"),
    ("fit_chapter_gd_auto_log", f"fit {{IN}}/disc.png {T} -m gd --seed 1 --max-iter 2000 --json --log loss.csv"),
    ("fit_chapter_cg_json_out", f"fit {{IN}}/disc.png {T} --seed 3 -o k.json --json"),
    ("fit_chapter_lstsq_npy", f"fit {{IN}}/disc.png {T} -m lstsq --seed 3 -o k.npy"),
    ("fit_chapter_txt_log", f"fit {{IN}}/disc.png {T} --seed 5 -o k.txt --log loss.csv"),
    ("fit_compare", f"fit {{IN}}/disc.png {T} --seed 1 --compare horizontal_edge --atol 0.001"),
    ("fit_compare_miss_json", f"fit {{IN}}/disc.png {T} --seed 1 --compare sobel_x --json"),
    ("fit_cut_short", f"fit {{IN}}/disc.png {T} --seed 1 -m gd --max-iter 5"),
    ("fit_tol", f"fit {{IN}}/disc.png {T} --tol 1e-3 --seed 4 --json"),
    ("fit_bias_16bit_json", "fit {IN}/gray.png {CASES}/prep_fit_biased/edges16.png --bias --seed 2 --json"),
    ("fit_bias_border_out", "fit {IN}/gray.png {CASES}/prep_fit_biased/edges16.png --bias --seed 2 --border replicate -o kb.json"),
    ("fit_im_sobel", "fit {IN}/input.png {IN}/sobel_imagemagick.png --seed 1"),
    ("fit_im_custom3_replicate", "fit {IN}/input.png {IN}/custom3_imagemagick.png --border replicate --seed 1 --json"),
    ("fit_cv_custom5_mirror", "fit {IN}/input.png {IN}/custom5_opencv.png --border mirror --size 5 -m lstsq --seed 1"),
    ("fit_keep_clipped", "fit {IN}/input.png {IN}/sobel_imagemagick.png --keep-clipped --seed 1 --json"),
    ("fit_per_channel", "fit {IN}/input.png {IN}/custom3_imagemagick.png --per-channel --seed 1 -o pc.npy --json"),
    ("fit_grey", "fit {IN}/input.png {IN}/custom3_imagemagick.png --grey --seed 1"),
    ("fit_stride_lstsq", "fit {IN}/x_rand.npy {CASES}/prep_fit_stride/y2.npy --stride 2 --size 3 -m lstsq --seed 1 --json"),
    ("fit_size_rect", "fit {IN}/scene.png {CASES}/prep_fit_sharp/sharp.png --size 3x5 --seed 1"),
    ("apply_from_fit_json", "apply {IN}/disc.png -k @{CASES}/fit_chapter_cg_json_out/k.json --color gray --padding valid -o r.npy --json"),
    ("fit_err_swapped", f"fit {T} {{IN}}/disc.png -o k.json"),
    ("fit_err_size", f"fit {{IN}}/disc.png {T} --size 5"),
    ("fit_err_lr_cg", f"fit {{IN}}/disc.png {T} --lr 0.5 --method cg"),
    ("fit_err_lr_neg", f"fit {{IN}}/disc.png {T} --lr -1"),
    ("fit_err_lr_word", f"fit {{IN}}/disc.png {T} --lr fast"),
    ("fit_err_tol0", f"fit {{IN}}/disc.png {T} --tol 0"),
    ("fit_err_perchannel_grey", f"fit {{IN}}/disc.png {T} --per-channel --grey"),
    ("fit_err_border_valid", f"fit {{IN}}/disc.png {T} --border replicate"),
    ("fit_err_out_ext", f"fit {{IN}}/disc.png {T} -o k.png"),
    ("fit_err_diverge", f"fit {{IN}}/disc.png {T} --method gd --lr 0.7 --seed 1 -o k.json"),
    ("fit_err_missing", f"fit missing.png {T} --seed 1"),
    ("fit_err_unreadable", "fit {IN}/disc.png {IN}/kernels.json --seed 1"),
    ("fit_err_exists", f"fit {{IN}}/disc.png {T} --seed 1 -o k.json", None, ("copy {IN}/k_bias.json k.json",)),
    ("fit_stride_undetermined", "fit {IN}/x_rand.npy {CASES}/prep_fit_stride/y2.npy --seed 1"),
]
# fmt: on

# pictures copied from the tested tree into DIR/inputs
SAMPLE_FILES = {
    "samples": ["scene.png", "scene.jpg", "disc.png", "disc_rgba.png", "gray.png", "gray16.png"],
    "tests/data/fit": [
        "input.png",
        "sobel_imagemagick.png",
        "custom3_imagemagick.png",
        "custom5_opencv.png",
        "kernels.json",
    ],
}


# ----------------------------------------------------------------------------- fixtures


def npy_bytes(shape: tuple[int, ...], values: list[float], dtype: str = "<f8") -> bytes:
    """A C-order .npy file (format 1.0) of float values, written without numpy."""
    count = 1
    for n in shape:
        count *= n
    assert len(values) == count, (shape, len(values))
    shape_text = f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")"
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape_text}, }}"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"  # 64-byte aligned, as numpy
    code = {"<f8": "d", "<f4": "f"}[dtype]
    return (
        b"\x93NUMPY\x01\x00"
        + struct.pack("<H", len(header))
        + header.encode("latin1")
        + struct.pack(f"<{count}{code}", *values)
    )


def lcg(seed: int, n: int) -> list[float]:
    """n deterministic numbers in [0, 1), platform independent."""
    out, x = [], seed
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append((x >> 11) / float(1 << 53))
    return out


def fixtures() -> dict[str, bytes]:
    """Kernel files and arrays the cases read, written by this script (no numpy)."""
    f: dict[str, bytes] = {}
    f["k_sharp.txt"] = b"# sharpen, as rows\n0 -1 0\n-1 5 -1\n0 -1 0\n"
    f["k_edge.csv"] = b"-1,0,1\n-2,0,2\n-1,0,1\n"
    f["k_rect.txt"] = b"1 0 -1 0 1\n2 0 -2 0 2\n1 0 -1 0 1\n"  # 3x5, not square
    f["k_even.txt"] = b"1 2 2 1\n2 4 4 2\n2 4 4 2\n1 2 2 1\n"  # 4x4, even
    f["k_bias.json"] = json.dumps(
        {"kernel": [[0, 1, 0], [1, -4, 1], [0, 1, 0]], "bias": 0.5}
    ).encode()
    f["k_5x5.npy"] = npy_bytes((5, 5), [round(v - 0.45, 3) for v in lcg(11, 25)])
    swap = [0.0] * 9
    swap[0 * 3 + 2] = swap[1 * 3 + 1] = swap[2 * 3 + 0] = 1.0  # RGB -> BGR, (3, 3, 1, 1)
    f["k_swap.npy"] = npy_bytes((3, 3, 1, 1), swap)
    f["k_two.npy"] = npy_bytes((2, 3, 3, 3), [round(v - 0.5, 3) for v in lcg(12, 54)])
    f["k_mix.npy"] = npy_bytes((3, 2, 3, 3), [round(v - 0.5, 3) for v in lcg(13, 54)])
    f["x_rand.npy"] = npy_bytes((20, 30), [6 * v - 3 for v in lcg(14, 600)], "<f4")
    f["rgb_rand.npy"] = npy_bytes((24, 32, 3), lcg(15, 24 * 32 * 3), "<f4")
    nan = lcg(16, 256)
    nan[5 * 16 + 7] = float("nan")
    nan[10 * 16 + 2] = float("inf")
    f["nan.npy"] = npy_bytes((16, 16), nan, "<f4")
    f["broken.png"] = b"\x89PNG\r\n\x1a\nnot really"
    return f


# ----------------------------------------------------------------------------- helpers


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def normalized_cases() -> list[dict]:
    out, seen = [], set()
    for row in CASES:
        name, argv = row[0], row[1]
        stdin = row[2] if len(row) > 2 else None
        setup = tuple(row[3]) if len(row) > 3 else ()
        assert re.fullmatch(r"[a-z0-9_]+", name), name
        assert name not in seen, f"duplicate case {name}"
        seen.add(name)
        out.append({"name": name, "argv": argv, "stdin": stdin, "setup": list(setup)})
    return out


def expand(text: str, root: Path) -> str:
    return text.replace("{IN}", str(root / "inputs")).replace("{CASES}", str(root / "cases"))


def case_env(root: Path) -> dict[str, str]:
    """The fixed environment of every command (see the module docstring)."""
    env = {
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
        "COLUMNS": "100",
        "LINES": "40",
        "TERM": "dumb",
        "NUMBA_NUM_THREADS": "2",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        "TMPDIR": str(root / "tmp"),
    }
    for name in (
        "PATH",
        "HOME",
        "PYTHONPATH",
        "XDG_CACHE_HOME",
        "CONVTOOL_CACHE_DIR",
        "NUMBA_CACHE_DIR",
    ):
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def root_variants(root: Path) -> list[bytes]:
    forms = {str(root.absolute()), os.path.realpath(root)}
    return sorted((f.encode() for f in forms), key=len, reverse=True)


_TIMING = re.compile(
    rb'"(' + b"|".join(k.encode() for k in TIMING_KEYS) + rb')": -?[0-9][0-9.eE+-]*'
)
_TABLE_TIME = re.compile(rb"[ \t]+[0-9]+\.[0-9]{2} ms[ \t]*$", re.M)
_TABLE_HEAD = re.compile(rb"^(#[ \t]+stage[ \t].*?)[ \t]+time[ \t]*$", re.M)


def normalise(data: bytes, roots: list[bytes], *, pipeline_table: bool = False) -> bytes:
    """Masks 1-3 of the module docstring."""
    for r in roots:
        data = data.replace(r, PLACEHOLDER)
    data = _TIMING.sub(lambda m: b'"' + m.group(1) + b'": "<masked>"', data)
    if pipeline_table and _TABLE_HEAD.search(data):
        data = _TABLE_HEAD.sub(rb"\1", data)
        data = _TABLE_TIME.sub(b"", data)
        data = b"\n".join(line.rstrip(b" \t") for line in data.split(b"\n"))
    return data


def is_pipeline_table(case: dict) -> bool:
    argv = shlex.split(case["argv"])
    return bool(argv) and argv[0] == "pipeline" and "--json" not in argv


def walk(folder: Path) -> tuple[list[Path], list[Path]]:
    files, dirs = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for d in dirnames:
            dirs.append(Path(dirpath, d))
        for f in sorted(filenames):
            files.append(Path(dirpath, f))
    return files, dirs


def do_setup(step: str, cwd: Path, root: Path) -> None:
    words = shlex.split(expand(step, root))
    if words[0] == "mkdir" and len(words) == 2:
        (cwd / words[1]).mkdir(parents=True, exist_ok=True)
    elif words[0] == "copy" and len(words) == 3:
        dst = cwd / words[2]
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(words[1], dst)
    else:
        raise SystemExit(f"golden: bad setup step {step!r}")


def convtool_location() -> tuple[Path, str]:
    import convtool  # PYTHONPATH decides which one

    return Path(convtool.__file__).resolve(), getattr(convtool, "__version__", "?")


# ----------------------------------------------------------------------------- record


def record(root: Path, only: str | None) -> int:
    root = root.absolute()
    if root.exists() and any(root.iterdir()):
        print(f"golden: {root} exists and is not empty; give a new folder", file=sys.stderr)
        return 2
    module, version = convtool_location()
    tree = module.parent.parent  # the repository holding the convtool package
    print(f"golden: convtool {version} from {module}")
    print(f"golden: python {sys.executable}")
    env = case_env(root)

    for sub in ("inputs", "cases", "streams", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    # the child processes must import the very same convtool
    probe = subprocess.run(
        [sys.executable, "-c", "import convtool; print(convtool.__file__)"],
        env=env,
        cwd=root / "tmp",
        capture_output=True,
        text=True,
        check=False,
    )
    child = Path(probe.stdout.strip()).resolve() if probe.returncode == 0 else None
    if child != module:
        print(
            f"golden: a child imports {child or probe.stderr.strip()}, not {module}",
            file=sys.stderr,
        )
        return 2
    print("golden: child processes import the same file (checked)")

    inputs: dict[str, str] = {}
    for folder, names in SAMPLE_FILES.items():
        for name in names:
            src = tree / folder / name
            if not src.is_file():
                print(f"golden: missing input {src}", file=sys.stderr)
                return 2
            shutil.copyfile(src, root / "inputs" / name)
    for name, data in fixtures().items():
        (root / "inputs" / name).write_bytes(data)
    for path in sorted((root / "inputs").iterdir()):
        inputs[path.name] = sha256(path.read_bytes())

    # warm-up (not recorded): loads or builds the compiled core and numba's cache once,
    # so that no case pays for it
    warm = root / "tmp" / "warmup"
    warm.mkdir()
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "convtool",
            "apply",
            str(root / "inputs" / "disc.png"),
            "-k",
            "blur",
            "-o",
            "w.png",
        ],
        env=env,
        cwd=warm,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    print(f"golden: warm-up {time.perf_counter() - t0:.1f} s")
    engine = subprocess.run(
        [
            sys.executable,
            "-c",
            "try:\n    from convtool.core import aot\nexcept ImportError:\n    from convtool import _aot as aot\n"
            "aot.load(build_missing=False)\nprint(aot.error() or 'compiled core loaded')",
        ],
        env=env,
        cwd=warm,
        capture_output=True,
        text=True,
        check=False,
    )
    # information only (the module may move in a refactor): which engine apply uses
    engine_text = (
        engine.stdout.strip() or "unknown: " + (engine.stderr.strip().splitlines() or ["?"])[-1]
    )

    roots = root_variants(root)
    cases = normalized_cases()
    if only:
        cases = [c for c in cases if fnmatch.fnmatch(c["name"], only)]
    results = []
    started = time.perf_counter()
    for i, case in enumerate(cases, 1):
        name = case["name"]
        cwd = root / "cases" / name
        cwd.mkdir()
        for step in case["setup"]:
            do_setup(step, cwd, root)
        argv = [sys.executable, "-m", "convtool", *shlex.split(expand(case["argv"], root))]
        stdin_data = Path(expand(case["stdin"], root)).read_bytes() if case["stdin"] else None
        t0 = time.perf_counter()
        try:
            done = subprocess.run(
                argv,
                env=env,
                cwd=cwd,
                input=stdin_data,
                capture_output=True,
                stdin=None if stdin_data is not None else subprocess.DEVNULL,
                timeout=CASE_TIMEOUT,
                check=False,
            )
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as e:
            code, out, err = "timeout", e.stdout or b"", e.stderr or b""
        seconds = time.perf_counter() - t0
        table = is_pipeline_table(case)
        out_n = normalise(out, roots, pipeline_table=table)
        err_n = normalise(err, roots, pipeline_table=table)
        (root / "streams" / f"{name}.stdout").write_bytes(out_n)
        (root / "streams" / f"{name}.stderr").write_bytes(err_n)
        files, dirs = walk(cwd)
        entry = {
            **case,
            "exit_code": code,
            "stdout": {"sha256": sha256(out_n), "size": len(out_n)},
            "stderr": {"sha256": sha256(err_n), "size": len(err_n)},
            "files": {
                p.relative_to(cwd).as_posix(): sha256(normalise(p.read_bytes(), roots))
                for p in files
            },
            "dirs": [d.relative_to(cwd).as_posix() for d in dirs],
            "seconds": round(seconds, 3),
        }
        results.append(entry)
        print(
            f"[{i:3}/{len(cases)}] {name:<36} exit {code!s:<3} {len(files):3} file(s) {seconds:6.2f} s"
        )

    total = time.perf_counter() - started
    # no case may have written into the inputs
    after = {p.name: sha256(p.read_bytes()) for p in sorted((root / "inputs").iterdir())}
    if after != inputs:
        print("golden: WARNING: the inputs changed during the run", file=sys.stderr)
    shutil.rmtree(root / "tmp", ignore_errors=True)
    manifest = {
        "format": FORMAT,
        "info": {  # never compared
            "convtool": str(module),
            "version": version,
            "python": sys.version,
            "executable": sys.executable,
            "engine": engine_text,
            "env": env,
            "seconds": round(total, 1),
            "only": only,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "inputs": inputs,
        "inputs_after": after,
        "cases": results,
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(
        f"golden: {len(results)} cases in {total:.1f} s -> {root / 'manifest.json'} (engine: {engine_text})"
    )
    return 0


# ----------------------------------------------------------------------------- compare


def _text(data: bytes) -> list[str] | None:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def short_diff(a: bytes, b: bytes, label: str, limit: int) -> list[str]:
    ta, tb = _text(a), _text(b)
    if ta is None or tb is None:
        return [f"    (binary: {len(a)} vs {len(b)} bytes)"]
    lines = list(difflib.unified_diff(ta, tb, f"A/{label}", f"B/{label}", n=1, lineterm=""))
    if len(lines) > limit:
        lines = [*lines[:limit], f"... ({len(lines) - limit} more diff lines)"]
    return ["    " + line[:300] for line in lines]


def compare(dir_a: Path, dir_b: Path, limit: int) -> int:
    ma = json.loads((dir_a / "manifest.json").read_text())
    mb = json.loads((dir_b / "manifest.json").read_text())
    ra, rb = root_variants(dir_a.absolute()), root_variants(dir_b.absolute())
    print(f"A: {dir_a}  (convtool {ma['info']['convtool']}, engine: {ma['info'].get('engine')})")
    print(f"B: {dir_b}  (convtool {mb['info']['convtool']}, engine: {mb['info'].get('engine')})")
    problems = 0
    if ma["inputs"] != mb["inputs"]:
        problems += 1
        print("== inputs differ:")
        for name in sorted(set(ma["inputs"]) | set(mb["inputs"])):
            if ma["inputs"].get(name) != mb["inputs"].get(name):
                print(f"    {name}")
    for m, label in ((ma, "A"), (mb, "B")):
        if m.get("inputs_after", m["inputs"]) != m["inputs"]:
            problems += 1
            print(f"== {label}: a case wrote into the inputs")
    ca = {c["name"]: c for c in ma["cases"]}
    cb = {c["name"]: c for c in mb["cases"]}
    differing = 0
    for name in list(ca) + [n for n in cb if n not in ca]:
        if name not in ca or name not in cb:
            differing += 1
            print(f"== {name}: only in {'A' if name in ca else 'B'}")
            continue
        a, b = ca[name], cb[name]
        notes: list[str] = []
        for key in ("argv", "stdin", "setup"):
            if a[key] != b[key]:
                notes.append(f"  case definition differs ({key}): {a[key]!r} vs {b[key]!r}")
        if a["exit_code"] != b["exit_code"]:
            notes.append(f"  exit code: {a['exit_code']} vs {b['exit_code']}")
        for stream in ("stdout", "stderr"):
            if a[stream]["sha256"] != b[stream]["sha256"]:
                notes.append(f"  {stream} differs:")
                da = (dir_a / "streams" / f"{name}.{stream}").read_bytes()
                db = (dir_b / "streams" / f"{name}.{stream}").read_bytes()
                notes += short_diff(da, db, stream, limit)
        fa, fb = a["files"], b["files"]
        for path in sorted(set(fa) | set(fb)):
            if path not in fb:
                notes.append(f"  file only in A: {path}")
            elif path not in fa:
                notes.append(f"  file only in B: {path}")
            elif fa[path] != fb[path]:
                notes.append(f"  file differs: {path}")
                pa, pb = dir_a / "cases" / name / path, dir_b / "cases" / name / path
                if pa.is_file() and pb.is_file():
                    notes += short_diff(
                        normalise(pa.read_bytes(), ra), normalise(pb.read_bytes(), rb), path, limit
                    )
        if a["dirs"] != b["dirs"]:
            notes.append(f"  folders: {a['dirs']} vs {b['dirs']}")
        if notes:
            differing += 1
            print(f"== {name}: {' '.join(shlex.split(a['argv'])[:1])} ... differs")
            print("\n".join(notes))
    total = len(set(ca) | set(cb))
    if differing or problems:
        print(
            f"golden: {differing} of {total} cases differ"
            + (" (and the inputs)" if problems else "")
        )
        return 1
    print(f"golden: all {total} cases identical")
    return 0


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("record", help="run every case and record its outputs into DIR")
    p.add_argument("dir", type=Path)
    p.add_argument("--only", metavar="GLOB", help="only the cases whose name matches (debugging)")
    p = sub.add_parser("compare", help="compare two recordings; exit 1 if any case differs")
    p.add_argument("dir_a", type=Path)
    p.add_argument("dir_b", type=Path)
    p.add_argument("--lines", type=int, default=30, help="diff lines shown per stream or file")
    sub.add_parser("list", help="print the case table")
    args = parser.parse_args(argv)
    if args.command == "record":
        return record(args.dir, args.only)
    if args.command == "compare":
        return compare(args.dir_a, args.dir_b, args.lines)
    for case in normalized_cases():
        extra = (f"  < {case['stdin']}" if case["stdin"] else "") + (
            f"  [setup: {'; '.join(case['setup'])}]" if case["setup"] else ""
        )
        print(f"{case['name']:<36} convtool {case['argv']}{extra}")
    print(f"{len(CASES)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
