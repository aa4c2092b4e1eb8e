"""The wheel's key rules (static/js/label/taxonomy.js), checked with Node's test runner.

Node is already needed to vendor the front-end files (scripts/vendor-frontend.sh).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def test_feeling_keys_follow_the_documented_rules():
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: it is needed for the front-end (apt-get install nodejs npm)")
    result = subprocess.run(
        [node, "--test", str(HERE / "taxonomy_keys.test.mjs")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
