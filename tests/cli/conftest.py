"""Fixtures for the command-line tests: the hostile and odd input files of the hardening
battery (``hardening.py``), built once per test module."""

from __future__ import annotations

from pathlib import Path

import pytest

# hardening.py holds the battery's checks: pytest's rewriting keeps their failures readable
pytest.register_assert_rewrite("tests.cli.hardening")

from tests.cli.hardening import make_inputs, snapshot  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The inputs by name; read-only: a test that changed one fails at the module's end."""
    folder = tmp_path_factory.mktemp("inputs")
    inputs = make_inputs(folder)
    before = snapshot(folder)
    yield inputs
    assert snapshot(folder) == before, "a test wrote into the shared inputs"
