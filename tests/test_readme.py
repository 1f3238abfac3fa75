"""README.md runs as written: every command example of its ``sh`` blocks (the Dask ones on
a loopback cluster) and of its ``$ convtool ...`` transcripts, on pictures made from
samples/ in a fresh folder, with
the exit code and output the README gives; and every option table names options the
command has, with the values it takes (the vocabulary, the exit codes, the borders,
the outputs, the old spellings)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from PIL import Image

from convtool import vocab
from convtool.cli import cli
from tests.batch.test_cluster import dask_cluster  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SAMPLES = ROOT / "samples"
# examples that run on a Dask cluster: tests/batch's (a scheduler and two workers on
# loopback) stands in for the README's tcp://HOST:8786
CLUSTER = re.compile(r"tcp://HOST:8786")
OUTPUT_FLAGS = ("-o", "--output", "--panel", "--grid", "--save-stages", "--log", "--report")


# ----------------------------------------------------------------- the README's parts


def sections() -> list[tuple[str, str]]:
    """(heading, text) of each section, by ## and ### headings."""
    parts = re.split(r"^(#{2,3} .*)$", README, flags=re.MULTILINE)
    return [(parts[i].lstrip("# ").strip(), parts[i + 1]) for i in range(1, len(parts) - 1, 2)]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def lines_of(block: str) -> list[str]:
    """A block's lines, continuations joined."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def commands(line: str) -> list[str]:
    """The convtool commands of a shell line (``a && b`` gives two; ``cat x | convtool``
    is one, run whole)."""
    found = []
    for part in re.split(r"\s&&\s", line):
        words = shlex.split(part, comments=True)
        words = [w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)]  # env assignments
        if "convtool" in words[:1] or (words[:1] == ["cat"] and "convtool" in words):
            found.append(part.strip())
    return found


def examples() -> list[tuple[str, int, str]]:
    """(command, block number, section) of every convtool example in an sh block."""
    found = []
    for title, text in sections():
        for n, block in enumerate(blocks(text, "sh")):
            for line in lines_of(block):
                if "_CONVTOOL_COMPLETE" in line:
                    continue  # the completion lines: test_completion_lines_run
                found += [(c, n, title) for c in commands(line)]
    return found


def tables(text: str) -> list[list[list[str]]]:
    """Every markdown table of ``text``: rows of cells, the header first."""
    found, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
            if not re.fullmatch(r"[-|\s]+", line):
                rows.append([c.strip() for c in cells])
        elif rows:
            found.append(rows)
            rows = []
    return found


def table(section: str, first_header: str) -> list[list[str]]:
    text = dict(sections())[section]
    for found in tables(text):
        if found[0][0] == first_header:
            return found
    raise AssertionError(f"no table starting {first_header!r} in {section}")


def code(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


# ----------------------------------------------------------------- a folder to run in


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The pictures the examples name, made from samples/."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(SAMPLES, folder / "samples")
    for name, sample in [("photo.png", "scene.png"), ("disc.png", "disc.png"),
                         ("scene.png", "scene.png"), ("in.png", "disc.png"),
                         ("a.png", "gray.png"), ("b.png", "disc.png")]:  # fmt: skip
        shutil.copy(SAMPLES / sample, folder / name)
    (folder / "photos").mkdir()
    for i, sample in enumerate(("scene.png", "disc.png")):
        picture = Image.open(SAMPLES / sample).convert("RGB")
        picture.save(folder / "photos" / f"p{i}.jpg", quality=92)
        picture.save(folder / "photos" / f"p{i}.png")
    Image.open(SAMPLES / "gray.png").save(folder / "scan.tif")
    (folder / "scans").mkdir()
    for name in ("gray.png", "disc.png"):
        Image.open(SAMPLES / name).save(folder / "scans" / name.replace(".png", ".tif"))
    for name in ("map.tif", "huge.tif"):
        Image.open(SAMPLES / "scene.png").convert("RGB").save(folder / name)
    (folder / "kernel.json").write_text(json.dumps({"kernel": [[0, 1, 0], [1, -4, 1], [0, 1, 0]]}))
    np.save(folder / "w.npy", np.random.default_rng(0).normal(size=(2, 1, 3, 3)))
    # fit's pair: in.png and the picture a sharpening made of it
    for target in ("out.png", "out.npy"):  # .npy: exact, so that gd reaches its --tol
        made = run(f"convtool apply in.png -k sharpen -o {target}", folder)
        assert made.returncode == 0, made.stderr
    return folder


def run(command: str, folder: Path) -> subprocess.CompletedProcess:
    """``command`` in bash, in ``folder``, ``convtool`` being this tree's."""
    script = f'convtool() {{ "{sys.executable}" -m convtool "$@"; }}\n{command}\n'
    env = {**os.environ, "HOME": str(folder), "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def outputs(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    return [b for a, b in itertools.pairwise(words) if a in OUTPUT_FLAGS]


# ------------------------------------------------------------------------ the tests

EXAMPLES = examples()


def test_the_examples_are_found():
    assert len(EXAMPLES) >= 40
    assert len([c for c, _, _ in EXAMPLES if CLUSTER.search(c)]) == 3


@pytest.fixture(scope="module")
def folders(base, tmp_path_factory) -> dict:
    """Per sh block, the folder its examples share, so that an example finds the files
    the ones before it made (fit's target, a kernel file); an output an example names is
    removed before it runs, so that two examples may write the same file."""
    return {"root": tmp_path_factory.mktemp("blocks"), "base": base, "made": {}}


@pytest.mark.parametrize(
    ("command", "block", "section"), EXAMPLES, ids=[f"{s[:12]}: {c[:60]}" for c, _, s in EXAMPLES]
)
def test_example_runs_as_written(command, block, section, folders, request):
    if CLUSTER.search(command):
        address, _ = request.getfixturevalue("dask_cluster")
        command = CLUSTER.sub(address, command)
    folder = folders["made"].get((section, block))
    if folder is None:
        folder = folders["root"] / f"{len(folders['made'])}"
        shutil.copytree(folders["base"], folder)
        folders["made"][(section, block)] = folder
    for path in outputs(command):
        target = folder / path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    done = run(command, folder)
    assert done.returncode == 0, f"{command}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    said = re.search(r"#\s*([0-9x]+)\s*$", command)
    if said and command.startswith("convtool shape"):  # the size the README gives
        assert done.stdout.splitlines()[0] == said[1]


def test_transcripts_exit_and_say_as_written(base):
    transcripts = re.findall(r"^\$ (convtool .*)\n((?:(?!\$ |```).*\n)*)", README, re.MULTILINE)
    assert transcripts
    for command, shown in transcripts:
        done = run(command, base)
        expected = 2 if shown.startswith("Usage:") else 0
        assert done.returncode == expected, (command, done.stderr)
        for line in shown.strip().splitlines():
            assert line in (done.stdout + done.stderr), (command, line)


def test_completion_lines_run(base):
    lines = [line for _, text in sections() for b in blocks(text, "sh") for line in lines_of(b)
             if "_CONVTOOL_COMPLETE" in line]  # fmt: skip
    assert len(lines) == 3
    for line in lines:
        shell = re.search(r"_CONVTOOL_COMPLETE=(\w+)_source", line)[1]
        command = line if shell == "bash" else f"_CONVTOOL_COMPLETE={shell}_source convtool"
        done = run(command + ("\ncomplete -p convtool" if shell == "bash" else ""), base)
        assert done.returncode == 0 and "convtool" in done.stdout, (line, done.stderr)


# ---------------------------------------------------------------------- the tables


def _options(command: str) -> dict[str, click.Option]:
    """A command's options by name (not the hidden old spellings)."""
    return {o: p for p in cli.all_commands()[command].params
            if isinstance(p, click.Option) and not p.hidden for o in p.opts}  # fmt: skip


def test_the_vocabulary_table_is_the_commands():
    rows = table("One vocabulary", "idea")
    header = rows[0]
    for row in rows[1:]:
        spellings, values = code(row[1]), code(row[2])
        for command, cell in zip(header[3:], row[3:], strict=True):
            offered = _options(command)
            if cell != "yes":
                assert not set(spellings) & set(offered), (row[0], command)
                continue
            long = next(s for s in spellings if s.startswith("--"))
            option = offered.get(long)
            assert option is not None, (row[0], command, long)
            short = [s for s in spellings if not s.startswith("--")]
            assert [o for o in option.opts if not o.startswith("--")] in (short, []), row
            if isinstance(option.type, click.Choice):
                assert set(values) <= set(option.type.choices), (row[0], command)
        ideas = [o for o in vocab.OPTIONS.values() if o.long in spellings]
        assert ideas, f"{row[1]} is not in vocab.OPTIONS"


def test_the_exit_code_table_runs(base):
    for row in table("Exit codes", "code")[1:]:
        for command in code(row[2]):
            done = run(command, base)
            assert done.returncode == int(row[0]), (command, done.stderr)


def test_the_border_table_takes_each_value(base):
    rows = table("convtool apply", "`--border`")[1:]
    assert [code(r[0])[0] for r in rows] == list(vocab.BORDERS)
    for border in vocab.BORDERS:
        done = run(f"convtool apply disc.png -k blur --border {border} -o b-{border}.png", base)
        assert done.returncode == 0, done.stderr


def test_the_output_tables_name_the_commands_options():
    for section, first, command in (("convtool apply", "run", "apply"),
                                    ("convtool pipeline", "option", "pipeline")):  # fmt: skip
        offered = _options(command)
        for row in table(section, first)[1:]:
            for text in code(row[0]):
                flags = [w for w in text.split() if w.startswith("-") and w != "-"]
                assert all(f in offered for f in flags), (section, text)


def test_the_old_spellings_table_is_the_aliases():
    rows = table("One vocabulary", "command")[1:]
    assert len(rows) == len(vocab.ALIASES)
    for row in rows:
        (command,), olds, news = code(row[0]), code(row[1]), code(row[2])
        key = next(k for k in vocab.ALIASES if k[0] == command and olds[0].split()[0] in k[1])
        assert news[0].split()[0] == vocab.ALIASES[key][0].split()[0], row
