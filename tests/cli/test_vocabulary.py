"""One vocabulary across the commands: an idea has one option name, one set of values and
at most one short option, and a short option means one idea (convtool.vocab.OPTIONS).
Old spellings keep working, hidden, with a line on stderr (convtool.vocab.ALIASES)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from convtool import vocab
from convtool.cli import cli

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _visible_options():
    for name, command in cli.all_commands().items():
        for p in command.params:
            if isinstance(p, click.Option) and not p.hidden:
                yield name, p


def test_every_idea_has_one_name_and_short_option_in_every_command():
    by_long = {o.long: o for o in vocab.OPTIONS.values()}
    for command, p in _visible_options():
        longs = [o for o in p.opts if o.startswith("--")]
        shorts = [o for o in p.opts if not o.startswith("--")]
        for long in longs:
            if long in by_long:
                want = by_long[long].short
                # a short option still held by an old spelling comes when that goes
                held = any(want in old.split("/") for c, old in vocab.ALIASES if c == command)
                assert shorts == ([want] if want and not held else []), (command, p.opts)
        for short in shorts:
            owners = [o for o in vocab.OPTIONS.values() if o.short == short]
            assert owners, f"{command}: short option {short} is not in vocab.OPTIONS"
            assert owners[0].long in longs, (command, p.opts)


def test_a_short_option_means_one_thing_across_commands():
    meaning: dict[str, set[str]] = {}
    for _, p in _visible_options():
        for short in (o for o in p.opts if not o.startswith("--")):
            meaning.setdefault(short, set()).add(p.opts[-1])
    assert {s: m for s, m in meaning.items() if len(m) > 1} == {}


def test_colour_takes_the_same_values_everywhere():
    colours = {
        command: tuple(p.type.choices) for command, p in _visible_options() if p.name == "color"
    }
    assert colours == {c: vocab.COLORS for c in ("apply", "pipeline", "fit")}


@pytest.mark.parametrize(
    ("old", "new", "command"),
    [
        (["shape", "28", "-k", "5"], ["shape", "28", "--size", "5"], ("shape", "-k/--kernel")),
        (["shape", "28", "--kernel", "5"], ["shape", "28", "--size", "5"], None),
    ],
)
def test_old_spellings_work_and_say_so(old, new, command):
    before, after = CliRunner().invoke(cli, old), CliRunner().invoke(cli, new)
    assert before.exit_code == after.exit_code == 0
    assert before.stdout == after.stdout
    assert "is now --size" in before.stderr and after.stderr == ""
    if command is not None:
        assert vocab.deprecation(*command) in before.stderr


def test_fit_and_pipeline_aliases(tmp_path):
    disc = str(SAMPLES / "disc.png")
    target = str(tmp_path / "t.npy")
    made = CliRunner().invoke(
        cli, ["apply", disc, "-k", "sobel_x", "--color", "gray", "-o", target]
    )
    assert made.exit_code == 0, made.output
    new = CliRunner().invoke(cli, ["fit", disc, target, "--size", "3", "--color", "gray"])
    old = CliRunner().invoke(cli, ["fit", disc, target, "-s", "3", "--grey"])
    assert new.exit_code == old.exit_code == 0, old.output
    assert new.stdout == old.stdout
    assert vocab.deprecation("fit", "-s") in old.stderr
    assert vocab.deprecation("fit", "--grey/--gray") in old.stderr
    both = CliRunner().invoke(cli, ["fit", disc, target, "-s", "3", "--size", "3"])
    assert both.exit_code == 2 and "give --size once" in both.stderr
    panel = [disc, "-k", "sobel_x", "--panel"]
    a = CliRunner().invoke(cli, ["pipeline", *panel, str(tmp_path / "a.png"), "--cell", "64"])
    b = CliRunner().invoke(cli, ["pipeline", *panel, str(tmp_path / "b.png"), "--tile", "64"])
    assert a.exit_code == b.exit_code == 0, b.output
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert vocab.deprecation("pipeline", "--tile") in b.stderr


def test_hidden_aliases_are_left_out_of_help():
    for command, hidden in (("shape", "--kernel"), ("fit", "--grey"), ("pipeline", "--tile")):
        shown = CliRunner().invoke(cli, [command, "--help"]).stdout
        assert hidden not in shown.replace("--tile is", "")
