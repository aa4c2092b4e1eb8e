"""Issue 12's figures for docs/learner.md: interval widths at n labels, the refit's cost, and
the quality gate on EmoDB (acoustic features, per-speaker normalisation, no augmentation).

    .venv/bin/python -m bench.learner_gate intervals   # n = 30..535, seeds 0-2
    .venv/bin/python -m bench.learner_gate gate        # v1 on 250 labels vs all / shuffled

One JSON line per measurement. The figures in docs/learner.md were measured with the same
code run from /tmp/h/gate/ (measure.py, gate_emodb.py) on 2026-12-01 while other test runs
shared the two cores.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
os.environ.setdefault("EMOLOOP_DEV", "true")

from learner import pipeline  # noqa: E402
from learner.features import acoustic  # noqa: E402
from learner.model import TrainConfig  # noqa: E402
from learner.pipeline import Dataset, PipelineConfig, train_and_evaluate  # noqa: E402
from learner.targets import Judgement, Node, label_space, soft_targets  # noqa: E402

EMODB = REPO.parent / "shared" / "data" / "emodb"
CACHE = REPO / "var" / "bench-gate-acoustic.npy"
rows = list(csv.DictReader((EMODB / "labels.csv").open()))
EMOTIONS = sorted({r["emotion"] for r in rows})


def features() -> np.ndarray:
    if CACHE.exists():
        return np.load(CACHE)
    started = time.time()
    x = np.stack(
        [
            acoustic.extract(*soundfile.read(str(EMODB / "wav" / r["file"]), dtype="float32"))
            for r in rows
        ]
    )
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.save(CACHE, x)
    print(f"features {time.time() - started:.1f}s", flush=True)
    return x


X = features()


def data_of(idx: np.ndarray) -> Dataset:
    nodes = [Node(e, e.title(), 0, None) for e in EMOTIONS]
    judgements = [Judgement(int(i), rows[i]["emotion"]) for i in idx]
    space = label_space(nodes, judgements)
    return Dataset(
        features=X[idx],
        speakers=[rows[i]["speaker"] for i in idx],
        targets=soft_targets(space, judgements),
        space=space,
        extractor={"name": "acoustic", "version": "x", "dim": X.shape[1]},
        stats_features=X,
        stats_speakers=[r["speaker"] for r in rows],
    )


def intervals() -> None:
    for n in (30, 60, 120, 250, 535):
        for seed in (0, 1, 2):
            idx = np.sort(np.random.default_rng(seed).permutation(len(rows))[:n])
            d = data_of(idx)
            cfg = PipelineConfig(train=TrainConfig(seed=seed), seed=seed, min_examples=10)
            t = time.perf_counter()
            train_and_evaluate(d, cfg)
            t0 = time.perf_counter() - t
            t = time.perf_counter()
            r1 = train_and_evaluate(d, dataclasses.replace(cfg, refit_all=True))
            t1 = time.perf_counter() - t
            m = r1.metrics
            lo, hi = m["intervals"]["uar"]
            record = {
                "n": n,
                "seed": seed,
                "test": m["heads"]["core"]["n"],
                "test_speakers": len(m["split"]["speakers"].get("test", [])),
                "uar": round(m["uar"], 3),
                "lo": round(lo, 3),
                "hi": round(hi, 3),
                "width": round(hi - lo, 3),
                "by": m["interval_method"].get("by"),
                "s_eval": round(t0, 1),
                "s_eval_refit": round(t1, 1),
            }
            print(json.dumps(record), flush=True)


class _Active:
    """What gate.judge reads of the active ModelVersion."""

    def __init__(self, held_out: dict) -> None:
        self.held_out, self.number = held_out, 1


def gate_check() -> None:
    import django

    django.setup()
    from learner.models import LearnerSettings
    from learner.services import gate

    row = LearnerSettings(quality_gate=True, quality_gate_margin=0.0)
    real = pipeline.fit_predictor

    def shuffled(data, r, c, on_epoch=None):
        o = np.random.default_rng(7).permutation(len(data.targets.clip_ids))
        t = dataclasses.replace(
            data.targets, core=data.targets.core[o], core_weight=data.targets.core_weight[o]
        )
        return real(dataclasses.replace(data, targets=t), r, c, on_epoch)

    for seed in (0, 1):
        idx = np.sort(np.random.default_rng(seed).permutation(len(rows))[:250])
        cfg = PipelineConfig(train=TrainConfig(seed=seed), seed=seed, min_examples=10)
        v1 = train_and_evaluate(data_of(idx), cfg)
        pinned = tuple(sorted(set(v1.held_out["groups"])))
        full = data_of(np.arange(len(rows)))
        v2 = train_and_evaluate(full, dataclasses.replace(cfg, test_groups=pinned))
        pipeline.fit_predictor = shuffled
        v3 = train_and_evaluate(full, dataclasses.replace(cfg, test_groups=pinned))
        pipeline.fit_predictor = real
        for name, res in (("all labels", v2), ("shuffled", v3)):
            v = gate.judge(res.held_out, _Active(v1.held_out), row, seed=seed)  # type: ignore[arg-type]
            keys = ("uar_new", "uar_old", "difference", "low", "high", "rows", "units", "by")
            d = {
                k: round(v.details[k], 3) if isinstance(v.details.get(k), float) else v.details[k]
                for k in keys
            }
            print(
                json.dumps({"seed": seed, "new": name, "decision": str(v.decision), **d}),
                flush=True,
            )


if __name__ == "__main__":
    torch.set_num_threads(1)
    {"intervals": intervals, "gate": gate_check}[
        sys.argv[1] if len(sys.argv) > 1 else "intervals"
    ]()
