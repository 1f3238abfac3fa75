"""Shell completion is click's own, as README.md's "Shell completion" sets it up:
``_CONVTOOL_COMPLETE=bash_source convtool`` prints the script, and the script's
requests complete commands, options and the vocabulary's values."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from convtool import vocab


def _run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convtool"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("shell", "words"),
    [
        ("bash", ["_convtool_completion()", "complete -o nosort -F _convtool_completion convtool"]),
        ("zsh", ["#compdef convtool", "_convtool_completion"]),
        ("fish", ["function _convtool_completion", "complete --no-files --command convtool"]),
    ],
)
def test_the_completion_script_is_produced(shell, words):
    done = _run({"_CONVTOOL_COMPLETE": f"{shell}_source"})
    assert done.returncode == 0, done.stderr
    for word in words:
        assert word in done.stdout
    assert "_CONVTOOL_COMPLETE" in done.stdout and done.stderr == ""


def _complete(line: str) -> list[str]:
    words = line.split(" ")
    done = _run(
        {
            "_CONVTOOL_COMPLETE": "bash_complete",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
        }
    )
    assert done.returncode == 0, done.stderr
    return [row.split(",", 1)[1] for row in done.stdout.splitlines()]


def test_completion_offers_commands_options_and_the_vocabulary():
    assert set(_complete("convtool ")) >= {"apply", "pipeline", "fit", "shape", "kernels"}
    assert _complete("convtool apply disc.png --border ") == list(vocab.BORDERS)
    assert _complete("convtool pipeline disc.png --color ") == list(vocab.COLORS)
    offered = _complete("convtool shape 28 --")
    assert "--size" in offered and "--kernel" not in offered  # hidden old spellings are not
    assert "--tile" not in _complete("convtool pipeline disc.png --ti")
