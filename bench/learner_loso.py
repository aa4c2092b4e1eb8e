"""Leave-one-speaker-out (LOSO) emotion recognition on EmoDB, with the learner's own code.

For each feature set that can run here (`acoustic` always; `egemaps` and `compare` when the
optional opensmile package is installed; `ssl` when EMOLOOP_SSL_CHECKPOINT names a
checkpoint), and for each of

- normalisation `speaker` (each speaker's features standardised on that speaker's own clips,
  the project default when speaker ids are known) and `global` (strict: no statistics of the
  test speaker at all),
- augmentation off and on (two speed-perturbed / noisy / reverberant copies per training
  clip, learner.augment),

it trains on nine speakers and tests on the tenth, for all ten speakers, exactly as a
project's training does (learner.pipeline.fit_predictor: normaliser, ensemble MLP with label
smoothing and class weights), and reports the unweighted average recall (UAR) per fold, mean
and standard deviation, and the training time per fold. The seven EmoDB emotions are the
classes (a flat wheel).

Also measured: feature extraction speed as a multiple of real time on one core (one
process, one torch thread), and a retrain on 10,000 labelled clips of cached features
(EmoDB vectors resampled with jitter over 100 synthetic speakers), through the whole
pipeline (split, normalisation, training, temperature scaling, metrics), with the project
defaults (augmented copies included) and without augmentation.

Writes bench/results/learner.json (or `--out`) and bench/results/learner_loso.png (per-fold
UAR of the default configuration, seed 0). The last line printed is

    loso_uar_default=... loso_uar_strict=... loso_uar_best=... best=NAME extraction_x_realtime=...

where default = acoustic features with the project defaults (per-speaker normalisation,
augmentation on), strict = the same without statistics of test speakers, best = the best
configuration measured, and UAR is a fraction.

    python -m bench.learner_loso [--sets acoustic,egemaps,compare,ssl] [--workers 2] [--quick]
                                 [--seeds N]

`--seeds N` trains every fold with seeds 0..N-1 (initialisation and batch order; the
features and augmented copies are the same): the UAR reported is the mean over folds and
seeds, with the spread of the per-seed means beside it. Every fold's CPU seconds are
recorded, and the machine's load average before and after (on a shared machine wall time
says little).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import platform
import sys
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import soundfile
import torch
from tqdm import tqdm

from learner import augment, metrics
from learner.features import ExtractorOptions, ExtractorUnavailable, get_extractor
from learner.model import TrainConfig
from learner.normalise import GLOBAL, SPEAKER
from learner.pipeline import (
    Dataset,
    PipelineConfig,
    fit_predictor,
    train_and_evaluate,
)
from learner.targets import Judgement, Node, label_space, soft_targets

REPO = Path(__file__).resolve().parents[1]
EMODB = REPO.parent / "shared" / "data" / "emodb"
RESULTS = REPO / "bench" / "results"
EMOTIONS = ["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness"]
COPIES = augment.AugmentConfig().copies

# Filled before the worker processes fork; read-only in them.
DATA: dict[str, dict] = {}


def load_corpus() -> tuple[list[dict], list[np.ndarray]]:
    rows = list(csv.DictReader((EMODB / "labels.csv").open()))
    waves = [soundfile.read(str(EMODB / "wav" / r["file"]), dtype="float32")[0] for r in rows]
    return rows, waves


def extract_all(name: str, waves: list[np.ndarray], rows: list[dict], options) -> dict:
    """Features of every clip (and of its augmented copies), timed on one thread."""
    ex = get_extractor(name, options)
    torch.set_num_threads(1)
    audio_s = sum(len(w) for w in waves) / 16000
    started = time.perf_counter()
    plain = np.stack([ex.extract(w) for w in tqdm(waves, desc=f"{name} features", leave=False)])
    elapsed = time.perf_counter() - started
    copies = []
    config = augment.AugmentConfig()
    for k in range(1, COPIES + 1):
        copies.append(
            np.stack(
                [
                    ex.extract(augment.augment(w, k, config, zlib.crc32(r["file"].encode())))
                    for w, r in tqdm(
                        list(zip(waves, rows, strict=True)),
                        desc=f"{name} copy {k}",
                        leave=False,
                    )
                ]
            )
        )
    return {
        "features": plain,
        "augmented": copies,
        "version": ex.version,
        "dim": ex.dim,
        "x_realtime": audio_s / elapsed,
        "extract_s": elapsed,
    }


def dataset(name: str, rows: list[dict], with_augmentation: bool) -> Dataset:
    nodes = [Node(e, e.title(), 0, None) for e in EMOTIONS]
    judgements = [Judgement(i, r["emotion"]) for i, r in enumerate(rows)]
    space = label_space(nodes, judgements)
    data = DATA[name]
    return Dataset(
        features=data["features"],
        speakers=[r["speaker"] for r in rows],
        targets=soft_targets(space, judgements),
        space=space,
        extractor={"name": name, "version": data["version"], "dim": data["dim"]},
        augmented=list(enumerate(data["augmented"], start=1)) if with_augmentation else [],
    )


def run_fold(job: tuple[str, str, bool, str, int]) -> dict:
    """Train on every speaker but `speaker`, test on `speaker`."""
    name, mode, with_aug, speaker, seed = job
    torch.set_num_threads(1)
    rows = DATA["rows"]
    data = dataset(name, rows, with_aug)
    speakers = np.array(data.speakers)
    train = np.flatnonzero(speakers != speaker)
    test = np.flatnonzero(speakers == speaker)
    config = PipelineConfig(normalisation=mode, train=TrainConfig(seed=seed), seed=seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    predictor = fit_predictor(data, train, config)
    train_s = time.perf_counter() - started
    train_cpu_s = time.process_time() - cpu_started
    probs, _ = predictor.probabilities(data.features[test], [speaker] * len(test))
    y = data.targets.core[test].argmax(axis=1)
    return {
        "set": name,
        "normalisation": mode,
        "augmentation": with_aug,
        "speaker": speaker,
        "seed": seed,
        "uar": metrics.uar(y, probs.argmax(axis=1), len(EMOTIONS)),
        "train_s": train_s,
        "train_cpu_s": train_cpu_s,
    }


def retrain_10k(name: str, with_aug: bool, refit: bool = False) -> dict:
    """The whole pipeline on 10,000 clips resampled from EmoDB's cached vectors (`refit`:
    and the refit on all of them, as a project's training does)."""
    rng = np.random.default_rng(0)
    rows = DATA["rows"]
    base = DATA[name]["features"]
    n = 10_000
    pick = rng.integers(0, len(rows), n)
    scale = base.std(axis=0) * 0.05
    jitter = rng.normal(size=(n, base.shape[1])) * scale
    nodes = [Node(e, e.title(), 0, None) for e in EMOTIONS]
    judgements = [Judgement(i, rows[j]["emotion"]) for i, j in enumerate(pick)]
    space = label_space(nodes, judgements)
    copies = (
        [(k, DATA[name]["augmented"][k - 1][pick] + jitter) for k in range(1, COPIES + 1)]
        if with_aug
        else []
    )
    data = Dataset(
        features=base[pick] + jitter,
        speakers=[f"spk{i % 100}" for i in range(n)],
        targets=soft_targets(space, judgements),
        space=space,
        extractor={"name": name, "version": DATA[name]["version"], "dim": DATA[name]["dim"]},
        augmented=copies,
    )
    torch.set_num_threads(1)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = train_and_evaluate(data, PipelineConfig(train=TrainConfig(), refit_all=refit))
    return {
        "clips": n,
        "augmented_copies": len(copies),
        "refit_all": refit,
        "rows_trained": result.metrics["split"]["sizes"]["train"] * (1 + len(copies)),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "timings": result.metrics["timings"],
    }


def plot(folds: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    speakers = [f["speaker"] for f in folds]
    values = [f["uar"] for f in folds]
    ax.bar(speakers, values, color="tab:blue")
    ax.axhline(float(np.mean(values)), color="black", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("held-out speaker")
    ax.set_ylabel("UAR")
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="acoustic,egemaps,compare,ssl")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument(
        "--quick", action="store_true", help="Only the default configuration of each set."
    )
    parser.add_argument("--seeds", type=int, default=1, help="Seeds 0..N-1 per fold.")
    parser.add_argument("--out", type=Path, default=RESULTS / "learner.json")
    parser.add_argument(
        "--no-retrain", action="store_true", help="Skip the 10,000-clip retrain timings."
    )
    parser.add_argument(
        "--folds-log", type=Path, help="Append each fold's result to this file as it ends."
    )
    args = parser.parse_args()
    if not (EMODB / "labels.csv").exists():
        sys.exit(f"EmoDB is not at {EMODB}")

    options = ExtractorOptions(
        ssl_checkpoint=os.environ.get("EMOLOOP_SSL_CHECKPOINT", ""),
        ssl_arch=os.environ.get("EMOLOOP_SSL_ARCH", "wav2vec2_base"),
    )
    rows, waves = load_corpus()
    DATA["rows"] = rows
    unavailable: dict[str, str] = {}
    sets = []
    for name in args.sets.split(","):
        try:
            DATA[name] = extract_all(name, waves, rows, options)
            sets.append(name)
        except ExtractorUnavailable as exc:
            unavailable[name] = str(exc)
            print(f"skipping {name}: {exc}")

    configs = [
        (name, mode, aug)
        for name in sets
        for mode in (SPEAKER, GLOBAL)
        for aug in ((True,) if args.quick else (False, True))
    ]
    speakers = sorted({r["speaker"] for r in rows})
    # Speaker by speaker, every configuration of a speaker together: a run cut short still
    # holds whole speakers of each configuration (see --folds-log).
    jobs = [
        (name, mode, aug, s, seed)
        for seed in range(max(1, args.seeds))
        for s in speakers
        for name, mode, aug in configs
    ]
    load_before = os.getloadavg()
    wall_started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    with context.Pool(args.workers) as pool:
        folds = []
        for fold in tqdm(pool.imap(run_fold, jobs), total=len(jobs), desc="LOSO folds"):
            folds.append(fold)
            if args.folds_log:
                with args.folds_log.open("a") as fh:
                    fh.write(json.dumps(fold) + "\n")
    folds_wall_s = time.perf_counter() - wall_started
    load_after_folds = os.getloadavg()
    retrain = (
        {}
        if args.no_retrain
        else {
            "with_augmentation": retrain_10k("acoustic", True),
            "without_augmentation": retrain_10k("acoustic", False),
            "with_augmentation_and_refit": retrain_10k("acoustic", True, refit=True),
        }
    )

    summary = []
    for name, mode, aug in configs:
        mine = [
            f
            for f in folds
            if (f["set"], f["normalisation"], f["augmentation"]) == (name, mode, aug)
        ]
        # Per speaker: the mean over seeds; the spread is over speakers, as with one seed.
        uars = np.array(
            [np.mean([f["uar"] for f in mine if f["speaker"] == sp]) for sp in speakers]
        )
        seeds = sorted({f["seed"] for f in mine})
        seed_means = [float(np.mean([f["uar"] for f in mine if f["seed"] == k])) for k in seeds]
        summary.append(
            {
                "set": name,
                "normalisation": mode,
                "augmentation": aug,
                "uar_mean": float(uars.mean()),
                "uar_std": float(uars.std()),
                "uar_per_seed": {
                    str(k): round(m, 4) for k, m in zip(seeds, seed_means, strict=True)
                },
                "uar_seed_std": float(np.std(seed_means)),
                "uar_per_speaker": {
                    sp: round(float(u), 4) for sp, u in zip(speakers, uars, strict=True)
                },
                "train_s_per_fold": float(np.mean([f["train_s"] for f in mine])),
                "train_cpu_s_per_fold": float(np.mean([f["train_cpu_s"] for f in mine])),
            }
        )

    def find(name: str, mode: str, aug: bool) -> dict:
        return next(
            s
            for s in summary
            if (s["set"], s["normalisation"], s["augmentation"]) == (name, mode, aug)
        )

    default = find("acoustic", SPEAKER, True)
    strict = find("acoustic", GLOBAL, True)
    best = max(summary, key=lambda s: s["uar_mean"])
    best_name = (
        f"{best['set']}/{best['normalisation']}/{'aug' if best['augmentation'] else 'noaug'}"
    )

    print()
    print(
        "| features | normalisation | augmentation | LOSO UAR (mean ± std over speakers) "
        "| per-seed means | train s/fold (CPU s) |"
    )
    print("|---|---|---|---|---|---|")
    for s in summary:
        print(
            f"| {s['set']} | {s['normalisation']} | {'on' if s['augmentation'] else 'off'} "
            f"| {100 * s['uar_mean']:.1f} ± {100 * s['uar_std']:.1f} % "
            f"| {', '.join(f'{100 * v:.1f}' for v in s['uar_per_seed'].values())} "
            f"| {s['train_s_per_fold']:.1f} ({s['train_cpu_s_per_fold']:.1f}) |"
        )
    print(
        f"folds: {len(folds)} in {folds_wall_s:.0f} s wall, "
        f"{sum(f['train_cpu_s'] for f in folds):.0f} CPU s of training; load average "
        f"{load_before[0]:.1f} before, {load_after_folds[0]:.1f} after"
    )
    print()
    for name in sets:
        print(
            f"{name}: {DATA[name]['dim']} values, extraction {DATA[name]['x_realtime']:.0f}x "
            "real time on one core"
        )
    for key, r in retrain.items():
        print(
            f"retrain on {r['clips']} clips {key.replace('_', ' ')}: {r['seconds']:.1f} s "
            f"({r['cpu_seconds']:.1f} CPU s)"
        )

    RESULTS.mkdir(parents=True, exist_ok=True)
    plot(
        [
            f
            for f in folds
            if (f["set"], f["normalisation"], f["augmentation"], f["seed"])
            == ("acoustic", SPEAKER, True, 0)
        ],
        RESULTS / "learner_loso.png",
        f"EmoDB LOSO, acoustic, per-speaker normalisation, augmentation "
        f"(UAR {100 * default['uar_mean']:.1f} %)",
    )
    report = {
        "benchmark": "learner LOSO on EmoDB",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "corpus": {"clips": len(rows), "speakers": len(speakers), "classes": EMOTIONS},
        "train_config": TrainConfig().as_dict(),
        "augment_config": augment.AugmentConfig().as_dict(),
        "feature_sets": {
            name: {
                "version": DATA[name]["version"],
                "dim": DATA[name]["dim"],
                "extraction_x_realtime_one_core": DATA[name]["x_realtime"],
            }
            for name in sets
        },
        "unavailable": unavailable,
        "results": summary,
        "retrain_10k": retrain,
        "headline": {
            "loso_uar_default": default["uar_mean"],
            "loso_uar_strict": strict["uar_mean"],
            "loso_uar_best": best["uar_mean"],
            "best": best_name,
            "extraction_x_realtime": DATA["acoustic"]["x_realtime"],
        },
        "seeds": max(1, args.seeds),
        "folds_wall_s": folds_wall_s,
        "folds_cpu_s": sum(f["train_cpu_s"] for f in folds),
        "load_average": {"before": load_before, "after_folds": load_after_folds},
        "machine": {
            "cpu_count": os.cpu_count(),
            "workers": args.workers,
            "torch_threads_per_worker": 1,
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"loso_uar_default={default['uar_mean']:.4f} loso_uar_strict={strict['uar_mean']:.4f} "
        f"loso_uar_best={best['uar_mean']:.4f} best={best_name} "
        f"extraction_x_realtime={DATA['acoustic']['x_realtime']:.0f}"
    )


if __name__ == "__main__":
    main()
