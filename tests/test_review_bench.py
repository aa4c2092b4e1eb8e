"""bench/console.py at a tiny size: it populates its own database, computes the quality
snapshot, times the pages, prints the headline in the agreed format as its last line,
writes its JSON, and drops its database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scratch_db import server_databases

REPO = Path(__file__).resolve().parents[1]
HEADLINE = re.compile(
    r"overview_p95_ms=(\d+) annotators_p95_ms=(\d+) agreement_p95_ms=(\d+) clips=(\d+)"
)


@pytest.mark.slow
def test_the_bench_times_the_pages_of_a_tiny_project(tmp_path):
    database = f"emoloop_bench_console_smoke_{os.getpid()}"
    out = tmp_path / "console.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.console", "--clips", "300", "--annotations", "900",
         "--annotators", "12", "--speakers", "20", "--loads", "3", "--database", database,
         "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    match = HEADLINE.fullmatch(last)
    assert match, last
    overview_ms, annotators_ms, agreement_ms, clips = match.groups()
    assert clips == "300"
    assert int(overview_ms) > 0
    assert int(annotators_ms) > 0
    assert int(agreement_ms) > 0
    run = json.loads(out.read_text())
    assert (run["clips"], run["annotations"]) == (300, 900)
    assert set(run["pages"]) == {"overview", "annotators", "agreement", "annotator", "review"}
    assert all(page["loads"] == 3 for page in run["pages"].values())
    assert run["snapshot_s"] > 0
    assert run["overview_compute_s"] > 0
    assert run["overview_first_load_ms"] > 0
    assert database not in server_databases()
