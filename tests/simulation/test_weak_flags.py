"""Weak labels in the simulator: the file reader, which rows a round trains on (weak rows of
unlabelled pool clips only, never a test clip's, never counted as labels), the weight, and
the flags of `manage.py simulate` and `manage.py make_weak_labeller` on a tiny corpus.

No test here touches the database: the simulator runs without one.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.core.management import call_command
from django.core.management.base import CommandError

from learner import simulation
from learner.simulation import loop
from learner.simulation.weak import load_weak_labels

RATE = 16000
EMOTIONS = {"anger": 260.0, "sadness": 140.0, "neutral": 190.0}
CLASSES = ["anger", "sadness", "neutral"]


def _problem(weak: np.ndarray | None) -> simulation.Problem:
    """3 classes x 4 speakers x 3 clips: Gaussian blobs with a speaker offset."""
    rng = np.random.default_rng(0)
    x, speakers, labels = [], [], []
    for s in range(4):
        offset = rng.normal(0, 1, 6)
        for c in range(3):
            for _ in range(3):
                x.append(offset + 2.0 * np.eye(6)[c] + rng.normal(0, 0.4, 6))
                speakers.append(f"s{s}")
                labels.append(c)
    return simulation.Problem(
        x=np.asarray(x, dtype=np.float32),
        augmented=[],
        speakers=speakers,
        labels=np.asarray(labels),
        classes=CLASSES,
        extractor={"name": "test", "version": "0", "dim": 6},
        weak=weak,
    )


def _weak_everywhere(n: int = 36) -> np.ndarray:
    weak = np.full((n, 3), 0.1)
    weak[:, 0] = 0.8  # a labeller that always says anger
    return weak


def _recorded_rows(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    seen: list[np.ndarray] = []
    real = loop.fit_predictor

    def spy(dataset, rows, config, on_epoch=None):
        seen.append(np.array(rows))
        return real(dataset, rows, config, on_epoch)

    monkeypatch.setattr(loop, "fit_predictor", spy)
    return seen


def test_a_round_trains_on_its_labels_plus_the_weak_rows_of_unlabelled_pool_clips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    problem = _problem(_weak_everywhere())
    problem.set_weak_weight(0.5)
    seen = _recorded_rows(monkeypatch)
    config = simulation.SimulationConfig(
        seed_size=6, batch_size=6, budget=18, seeds=1, rotations=1, weak_weight=0.5
    )
    run = simulation.run_strategy(problem, ["s0"], "random", 0, config)
    n = len(problem.labels)
    test = {i for i, s in enumerate(problem.speakers) if s == "s0"}
    assert [labels for labels, _ in run["curve"]] == [6, 12, 18]  # weak rows are not labels
    for rows, (labels, _) in zip(seen, run["curve"], strict=True):
        human = {int(r) for r in rows if r < n}
        weak_clips = {int(r) - n for r in rows if r >= n}  # row n + j is clip j here
        assert len(human) == labels
        assert not weak_clips & test  # never a test clip's weak label
        assert not weak_clips & human  # a labelled clip uses its label only
        assert human | weak_clips == set(range(n)) - test  # every other pool clip is weak
    weights = problem.dataset.targets.core_weight
    assert set(weights[n:]) == {0.5}
    assert set(weights[:n]) == {1.0}


def test_weight_zero_adds_no_weak_row(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _problem(_weak_everywhere())
    seen = _recorded_rows(monkeypatch)
    config = simulation.SimulationConfig(seed_size=6, batch_size=6, budget=12, weak_weight=0.0)
    simulation.run_strategy(problem, ["s0"], "random", 0, config)
    assert all((rows < len(problem.labels)).all() for rows in seen)


def test_a_clip_without_a_weak_label_gets_no_weak_row() -> None:
    weak = _weak_everywhere()
    weak[5] = np.nan
    problem = _problem(weak)
    assert problem.weak_row[5] == -1
    assert len(problem.weak_rows_for(np.arange(36))) == 35


def test_weak_weight_needs_weak_labels_and_lies_in_0_1() -> None:
    with pytest.raises(ValueError, match="no weak labels"):
        simulation.simulate(_problem(None), simulation.SimulationConfig(weak_weight=0.3))
    with pytest.raises(ValueError, match=r"weak_weight must lie in \[0, 1\]"):
        simulation.SimulationConfig(weak_weight=1.5).validate()


# --- The file reader and the commands on a tiny corpus -------------------------------------


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 WAVs: 4 speakers x 3 emotions x 2 takes (pitch, loudness and noise per emotion)."""
    root = tmp_path_factory.mktemp("weakcorpus")
    rng = np.random.default_rng(1)
    t = np.arange(int(0.4 * RATE)) / RATE
    rows = []
    for s in range(4):
        for emotion, f0 in EMOTIONS.items():
            for take in range(2):
                phase = 2 * np.pi * f0 * (1 + 0.05 * s) * t
                gain = {"anger": 0.5, "sadness": 0.1, "neutral": 0.25}[emotion]
                wave = gain * np.sin(phase) + 0.02 * rng.standard_normal(t.size)
                name = f"s{s}_{emotion}_{take}.wav"
                soundfile.write(root / name, wave.astype(np.float32), RATE)
                rows.append({"file": name, "speaker": f"s{s}", "emotion": emotion})
    with (root / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "speaker", "emotion"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_the_reader_maps_labels_matches_files_and_renormalises(
    corpus_dir: Path, tmp_path: Path
) -> None:
    corpus = simulation.load_corpus(corpus_dir, "labels.csv")
    path = tmp_path / "weak.csv"
    path.write_text(
        "file,angry,sad,neu,surprise\ns0_anger_0.wav,0.6,0.1,0.1,0.2\nnowhere.wav,1,0,0,0\n"
    )
    weak = load_weak_labels(path, corpus)
    row = corpus.names.index("s0_anger_0.wav")
    assert weak.probabilities[row] == pytest.approx([0.75, 0.125, 0.125])
    assert weak.covered == 1
    assert weak.unknown_files == 1
    assert weak.unknown_labels == {"surprise": 1}
    assert weak.accuracy(corpus.labels) == 1.0
    jsonl = tmp_path / "weak.jsonl"
    jsonl.write_text(json.dumps({"file": "s1_sadness_1.wav", "probabilities": {"anger": 1.5}}))
    with pytest.raises(simulation.CorpusError, match=r"weak\.jsonl line 1"):
        load_weak_labels(jsonl, corpus)


def test_make_weak_labeller_then_simulate_with_weak_labels(
    corpus_dir: Path, tmp_path: Path
) -> None:
    made = tmp_path / "labeller"
    call_command(
        "make_weak_labeller",
        str(corpus_dir),
        "--labels",
        "labels.csv",
        "--speakers",
        "s3",
        "--out",
        str(made),
    )
    report = json.loads((made / "weak_labeller.json").read_text())
    assert report["train_speakers"] == ["s3"]
    assert report["predicted_clips"] == 18
    rest = list(csv.DictReader((made / "labels_rest.csv").open()))
    assert {r["speaker"] for r in rest} == {"s0", "s1", "s2"}  # never the labeller's own
    predicted = [json.loads(line)["file"] for line in (made / "weak_labels.jsonl").open()]
    assert sorted(predicted) == sorted(r["file"] for r in rest)

    out = tmp_path / "sim"
    call_command(
        "simulate",
        str(corpus_dir),
        "--labels",
        str(made / "labels_rest.csv"),
        "--strategies",
        "random",
        "--seeds",
        "1",
        "--rotations",
        "1",
        "--test-speakers",
        "1",
        "--seed-size",
        "4",
        "--batch-size",
        "4",
        "--budget",
        "8",
        "--workers",
        "1",
        "--weak-labels",
        str(made / "weak_labels.jsonl"),
        "--weak-weight",
        "0.4",
        "--out",
        str(out),
        "--cache-dir",
        str(made / "cache"),
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["arguments"]["weak_weight"] == 0.4
    assert summary["weak_labels"]["clips"] == 18
    assert summary["weak_labels"]["accuracy"] == pytest.approx(report["accuracy"])
    assert [row[0] for row in summary["strategies"]["random"]["curve"]] == [4, 8]


def test_weak_weight_without_weak_labels_is_refused(corpus_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="--weak-weight needs --weak-labels"):
        call_command(
            "simulate",
            str(corpus_dir),
            "--labels",
            "labels.csv",
            "--weak-weight",
            "0.3",
            "--out",
            str(tmp_path),
        )
