"""bench/loop_latency.py at a tiny size: its own database and Celery worker, a real retrain
triggered by a label submitted through the API, the new version's ranking serving the queue;
the headline in the agreed format as the last line, its JSON, and nothing left behind."""

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
HEADLINE = re.compile(r"label_to_queue_s=(\d+\.\d) labels=(\d+)")


@pytest.mark.slow
def test_the_bench_times_a_tiny_loop_from_label_to_refilled_queue(tmp_path):
    database = f"emoloop_bench_loop_smoke_{os.getpid()}"
    out = tmp_path / "loop_latency.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench.loop_latency", "--labels", "200", "--pool", "120",
         "--speakers", "6", "--timeout", "600", "--database", database, "--out", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        stdout, stderr = bench.communicate(timeout=1500)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 0, stderr[-4000:]

    last = stdout.strip().splitlines()[-1]
    match = HEADLINE.fullmatch(last)
    assert match, last
    assert match.group(2) == "200"
    run = json.loads(out.read_text())
    assert run["labels"] == 200
    assert run["label_to_queue_s"] == pytest.approx(float(match.group(1)), abs=0.06)
    parts = run["breakdown_s"]
    for key in ("training_and_activation", "rescoring", "activation_to_ranking_opened"):
        assert 0 <= parts[key] < run["label_to_queue_s"], (key, parts)
    assert run["version"]["number"] == 2
    # CPU seconds beside the wall times: the worker trained, gated and rescored.
    assert run["cpu_s"]["worker"] > 0
    assert set(run["training_timings"]) >= {"fit_cpu_s", "refit_cpu_s", "dataset_cpu_s"}
    assert run["training_fit"]["batch_size"] == 64  # a small set trains as it always did
    assert run["ranking"]["pool_size"] == 120  # the trigger's clip left the pool
    assert database not in server_databases()
    # The bench's worker (hostname loopbench-<bench pid>@...) was stopped with it.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert f"loopbench-{bench.pid}" not in ps.stdout
