"""The static checks of `make lint`, run by the test suite so that CI (which runs `make
test`) enforces them too: ruff (lint and format) and mypy with django-stubs and DRF stubs
(strict on the Django-free cores; configuration in pyproject.toml). The import contracts
are checked in tests/test_import_contract.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*command: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        cwd=REPO,
        env={**os.environ, "EMOLOOP_DEV": "true"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_ruff_finds_nothing():
    result = _run(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_code_is_formatted():
    result = _run(str(BIN / "ruff"), "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_passes():
    """Type-checks emoloop, labelling and learner (about 20 s without a cache)."""
    result = _run(sys.executable, "-m", "mypy", "--cache-dir", str(REPO / ".mypy_cache"))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Success: no issues found" in result.stdout
