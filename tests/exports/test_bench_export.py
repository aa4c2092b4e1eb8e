"""bench/export.py at a tiny size: it populates its own database, builds and rebuilds a
version in child processes, prints the headline in the agreed format as its last line, writes
its JSON, and drops its database."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scratch_db import server_databases

REPO = Path(__file__).resolve().parents[2]
HEADLINE = re.compile(
    r"export_s=(\d+\.\d) peak_rss_mb=(\d+) clips=(\d+) annotations=(\d+) "
    r"identical_rebuild=(true|false)"
)


@pytest.mark.slow
def test_the_bench_builds_a_tiny_project_and_rebuilds_it_identically(tmp_path):
    database = f"emoloop_bench_export_smoke_{os.getpid()}"
    out = tmp_path / "export.json"
    done = subprocess.run(
        [sys.executable, "bench/export.py", "--clips", "200", "--annotations", "600",
         "--annotators", "12", "--speakers", "20", "--database", database, "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    last = done.stdout.strip().splitlines()[-1]
    match = HEADLINE.fullmatch(last)
    assert match, last
    export_s, peak_rss_mb, clips, annotations, identical = match.groups()
    assert (clips, annotations, identical) == ("200", "600", "true")
    assert float(export_s) > 0
    assert int(peak_rss_mb) > 0
    results = json.loads(out.read_text())
    run = results["runs"][-1]
    assert (results["clips"], run["clips"], run["annotations"]) == (200, 200, 600)
    assert run["identical_rebuild"] is True
    assert [s["stage"] for s in run["stages"]][:4] == [
        "annotations", "aggregation", "splits", "clips",
    ]  # fmt: skip
    assert database not in server_databases()
