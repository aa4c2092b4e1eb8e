"""The active-learning simulator: end to end through the command on a synthetic corpus, the
emotion-name mapping, and the statistics on numbers worked out by hand.

No test here touches the database (none requests `db`): the simulator must run without one.
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
from learner.ranking import DEFAULT_STRATEGY

RATE = 16000
# Three "emotions", each spelt two ways in the CSV, as corpora do.
SPELLINGS = {
    "anger": ("angry", "Anger"),
    "sadness": ("sad", "SADNESS"),
    "neutral": ("neutral", "neu"),
}
SPEAKERS = ["s1", "s2", "s3", "s4", "s5", "s6"]


def _clip(emotion: str, speaker: int, take: int, rng: np.random.Generator) -> np.ndarray:
    """0.5 s: anger loud, high and noisy; sadness quiet, low and falling; neutral between.
    Each speaker's voice is shifted in pitch so that speaker normalisation has work to do."""
    t = np.arange(int(0.5 * RATE)) / RATE
    base = {"anger": 260.0, "sadness": 140.0, "neutral": 190.0}[emotion] * (1 + 0.06 * speaker)
    glide = {"anger": 40.0, "sadness": -50.0, "neutral": 0.0}[emotion]
    f0 = base + glide * t + rng.normal(0, 3)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 6))
    gain = {"anger": 0.5, "sadness": 0.1, "neutral": 0.25}[emotion]
    noise = {"anger": 0.08, "sadness": 0.01, "neutral": 0.03}[emotion]
    wave = gain * voice / 2 + noise * rng.standard_normal(t.size)
    return (wave * np.hanning(t.size) ** 0.2).astype(np.float32)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """42 WAVs: 6 speakers x 3 emotions x 2-3 takes, labels.csv with mixed spellings."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for s, speaker in enumerate(SPEAKERS):
        for e, (emotion, spellings) in enumerate(SPELLINGS.items()):
            for take in range(2 + (s + e) % 2):
                name = f"{speaker}_{emotion}_{take}.wav"
                soundfile.write(root / "audio" / name, _clip(emotion, s, take, rng), RATE)
                rows.append(
                    {
                        "file": f"audio/{name}",
                        "speaker": speaker,
                        "gender": "f" if s % 2 else "m",
                        "emotion": spellings[take % 2],
                    }
                )
    with (root / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "speaker", "gender", "emotion"])
        writer.writeheader()
        writer.writerows(rows)
    return root


# --- The command, end to end -------------------------------------------------------------


@pytest.fixture(scope="module")
def simulated(corpus_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("simulation")
    call_command(
        "simulate",
        str(corpus_dir),
        "--labels",
        "labels.csv",
        "--strategies",
        "random,default",
        "least_confidence",
        "--seeds",
        "2",
        "--rotations",
        "2",
        "--test-speakers",
        "2",
        "--seed-size",
        "6",
        "--batch-size",
        "4",
        "--budget",
        "14",
        "--workers",
        "1",
        "--out",
        str(out),
    )
    return out


def test_summary_has_every_documented_key(simulated: Path) -> None:
    summary = json.loads((simulated / "summary.json").read_text())
    assert summary["target_fraction"] == 0.95
    assert 0.0 <= summary["full_pool_uar"] <= 1.0
    assert len(summary["test_speakers"]) == 2
    assert all(len(t) == 2 for t in summary["test_speakers"])
    args = summary["arguments"]
    for key in ("seeds", "rotations", "seed_size", "batch_size", "budget", "features"):
        assert key in args
    assert args["resolved_strategies"]["default"] == DEFAULT_STRATEGY
    assert set(summary["strategies"]) == {"random", "default", "least_confidence"}
    for s in summary["strategies"].values():
        ltt = s["labels_to_target"]
        assert {"mean", "std", "per_run"} <= set(ltt)
        assert len(ltt["per_run"]) == 2
        assert all(len(r) == 2 for r in ltt["per_run"])
        assert all(v is None or 6 <= v <= 14 for row in ltt["per_run"] for v in row)
        ratio = s["ratio_to_random"]
        assert {"mean", "low", "high"} <= set(ratio)
        assert 0.0 <= s["auc"] <= 1.0
        assert 0.0 <= s["final_uar"]["mean"] <= 1.0
    assert summary["strategies"]["random"]["ratio_to_random"]["mean"] == pytest.approx(1.0)


def test_curves_rise_in_labels_from_the_seed_set_to_the_budget(simulated: Path) -> None:
    summary = json.loads((simulated / "summary.json").read_text())
    for s in summary["strategies"].values():
        labels = [point[0] for point in s["curve"]]
        assert labels == [6, 10, 14]
        assert all(len(point) == 3 and point[2] >= 0 for point in s["curve"])


def test_command_writes_csv_and_png_and_caches_features(simulated: Path) -> None:
    with (simulated / "curves.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["strategy"] for r in rows} == {"random", "default", "least_confidence", "full_pool"}
    assert len([r for r in rows if r["strategy"] == "random"]) == 2 * 2 * 3
    with (simulated / "strategies.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["strategy"] for r in table] == ["random", "default", "least_confidence"]
    assert (simulated / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((simulated / "cache").glob("acoustic-v*.npz"))) == 1


def test_unknown_emotions_stop_the_command_unless_dropped(corpus_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    text = (corpus_dir / "labels.csv").read_text().replace(",neu\n", ",frustrated\n")
    labels.write_text(text)
    with pytest.raises(CommandError, match="frustrated"):
        call_command("simulate", str(corpus_dir), "--labels", str(labels), "--out", str(tmp_path))
    corpus = simulation.load_corpus(corpus_dir, labels, drop_unknown=True)
    assert corpus.dropped["frustrated"] > 0
    assert corpus.classes == ["anger", "sadness", "neutral"]


# --- Emotion names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "node"),
    [
        ("angry", "anger"),
        ("ANG", "anger"),
        (" Anger ", "anger"),
        ("happy", "happiness"),
        ("Happiness", "happiness"),
        ("sad", "sadness"),
        ("fearful", "fear"),
        ("disgusted", "disgust"),
        ("pleasant surprise", "surprise"),
        ("surprised", "surprise"),
        ("bored", "boredom"),
        ("neu", "neutral"),
        ("calm", "calm"),
    ],
)
def test_corpus_emotion_names_map_onto_one_flat_node(spelling: str, node: str) -> None:
    assert simulation.canonical_emotion(spelling) == node


def test_names_without_a_node_map_to_none() -> None:
    assert simulation.canonical_emotion("frustrated") is None
    # Single letters are ambiguous between corpora (SAVEE "a" = anger, EmoDB "A" = fear).
    assert simulation.canonical_emotion("a") is None


def test_the_corpus_keeps_taxonomy_order_and_resolves_relative_paths(corpus_dir: Path) -> None:
    corpus = simulation.load_corpus(corpus_dir, "labels.csv")
    assert corpus.classes == ["anger", "sadness", "neutral"]  # the basic preset's order
    assert corpus.spellings["angry"] == corpus.spellings["Anger"] == "anger"
    assert all(p.is_file() for p in corpus.files)
    assert set(corpus.metadata) == {"gender"}


def test_the_labels_file_is_read_by_labellings_manifest_reader(
    corpus_dir: Path, tmp_path: Path
) -> None:
    """One reader of tabular metadata (labelling.manifest): the same rows as JSON lines give
    the same corpus, and a file it refuses is a CorpusError the command can print."""
    with (corpus_dir / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    as_jsonl = tmp_path / "labels.jsonl"
    as_jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    from_csv = simulation.load_corpus(corpus_dir, "labels.csv")
    from_jsonl = simulation.load_corpus(corpus_dir, as_jsonl)
    assert from_jsonl.names == from_csv.names
    assert from_jsonl.labels.tolist() == from_csv.labels.tolist()
    assert from_jsonl.metadata == from_csv.metadata
    as_txt = tmp_path / "labels.txt"
    as_txt.write_text((corpus_dir / "labels.csv").read_text())
    with pytest.raises(simulation.CorpusError, match=r"\.csv or \.jsonl"):
        simulation.load_corpus(corpus_dir, as_txt)


def test_a_labels_csv_with_a_header_only_is_refused(corpus_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("file,speaker,emotion\n")
    with pytest.raises(simulation.CorpusError, match="no rows"):
        simulation.load_corpus(corpus_dir, labels)


# --- Splits and statistics ---------------------------------------------------------------


def test_rotations_take_disjoint_speaker_groups_while_speakers_last() -> None:
    speakers = [f"{i:02d}" for i in range(10)]
    rotations = simulation.speaker_rotations(speakers, 5, 2, seed=3)
    flat = [s for group in rotations for s in group]
    assert sorted(flat) == speakers
    more = simulation.speaker_rotations(speakers, 7, 2, seed=3)
    assert more[:5] == rotations
    assert all(len(set(group)) == 2 for group in more)


def test_labels_to_target_is_the_first_crossing() -> None:
    curve = [[20, 0.5], [30, 0.81], [40, 0.79], [50, 0.9]]
    assert simulation.labels_to_target(curve, 0.8) == 30
    assert simulation.labels_to_target(curve, 0.95) is None


def test_label_steps_end_at_the_budget() -> None:
    assert simulation.label_steps(20, 10, 50) == [20, 30, 40, 50]
    assert simulation.label_steps(20, 20, 50) == [20, 40, 50]


def test_runs_that_never_reach_the_target_count_as_budget_plus_a_batch() -> None:
    values = np.array([[100.0, np.nan], [np.nan, 60.0]])
    assert simulation.censored(values, 310).tolist() == [[100, 310], [310, 60]]
    # Per rotation, where a rotation's pool is smaller than the budget.
    per_rotation = np.array([[310.0], [250.0]])
    assert simulation.censored(values, per_rotation).tolist() == [[100, 310], [250, 60]]


def test_ratio_of_identical_strategies_is_one_with_a_degenerate_interval() -> None:
    a = np.array([[100.0, 120.0], [80.0, 90.0], [150.0, 110.0]])
    assert simulation.bootstrap_ratio(a, a, n_boot=200) == pytest.approx((1.0, 1.0, 1.0))


def test_ratio_is_the_ratio_of_means_and_its_interval_brackets_it() -> None:
    b = np.array([[200.0, 220.0, 180.0], [100.0, 120.0, 140.0]])
    a = b / 2
    a[1, 2] = 140.0  # one seed that gained nothing
    point, low, high = simulation.bootstrap_ratio(a, b, n_boot=2000, seed=1)
    assert point == pytest.approx(a.mean() / b.mean())
    assert low <= point <= high
    assert low >= 0.5
    assert high <= 1.0


def test_bootstrap_resamples_rotations_then_seeds() -> None:
    """With one rotation far better than the other, the interval spans the rotations'
    own ratios: resampling rotations is what makes it wide."""
    b = np.full((2, 3), 100.0)
    a = np.array([[40.0, 40.0, 40.0], [100.0, 100.0, 100.0]])
    point, low, high = simulation.bootstrap_ratio(a, b, n_boot=2000, seed=0)
    assert point == pytest.approx(0.7)
    assert low == pytest.approx(0.4)
    assert high == pytest.approx(1.0)


def test_bootstrap_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="rotations, seeds"):
        simulation.bootstrap_ratio(np.ones((2, 3)), np.ones((3, 2)))


# --- Runs on arrays ----------------------------------------------------------------------


def _problem(n_per_cell: int = 4) -> simulation.Problem:
    """Gaussian blobs: 3 classes x 5 speakers, a speaker offset on every dimension."""
    rng = np.random.default_rng(0)
    x, speakers, labels = [], [], []
    for s in range(5):
        offset = rng.normal(0, 1, 8)
        for c in range(3):
            for _ in range(n_per_cell):
                x.append(offset + 2.0 * np.eye(8)[c] + rng.normal(0, 0.5, 8))
                speakers.append(f"s{s}")
                labels.append(c)
    return simulation.Problem(
        x=np.asarray(x, dtype=np.float32),
        augmented=[],
        speakers=speakers,
        labels=np.asarray(labels),
        classes=["anger", "sadness", "neutral"],
        extractor={"name": "test", "version": "0", "dim": 8},
    )


def test_a_random_seed_set_is_the_same_clips_for_every_strategy() -> None:
    problem = _problem()
    config = simulation.SimulationConfig(
        seed_size=6, batch_size=3, budget=9, seed_set="random", seeds=1, rotations=1
    )
    first = {
        name: simulation.run_strategy(problem, ["s0"], name, 0, config)["curve"][0]
        for name in ("random", "default", "margin")
    }
    # Same labelled clips and the same training seed: the same model and the same UAR.
    assert first["random"] == first["default"] == first["margin"]


def test_the_budget_is_capped_at_the_pool_size() -> None:
    problem = _problem(n_per_cell=2)  # 30 clips, 24 in the pool with one test speaker
    config = simulation.SimulationConfig(seed_size=10, batch_size=10, budget=100)
    run = simulation.run_strategy(problem, ["s0"], "least_confidence", 0, config)
    assert [labels for labels, _ in run["curve"]] == [10, 20, 24]


@pytest.mark.slow  # trains 12 small models, twice
def test_forked_workers_give_the_same_summary_as_one_process() -> None:
    """The pool pickles `_job` by its module path and hands the arrays over by fork: the
    same runs, the same curves and every round's progress tick, whatever the worker count."""
    problem = _problem(n_per_cell=3)
    config = simulation.SimulationConfig(
        strategies=("random", "default"),
        seeds=1,
        rotations=2,
        test_speakers=1,
        seed_size=6,
        batch_size=6,
        budget=12,
        bootstrap=100,
    )

    def run(workers: int) -> tuple[dict, int]:
        ticks: list[int] = []
        summary = simulation.simulate(
            problem, config, workers=workers, progress=lambda total, desc: ticks.append
        )
        return summary, sum(ticks)

    (one, ticks_one), (two, ticks_two) = run(1), run(2)
    assert two["workers"] == 2
    assert two["full_pool_uar_per_rotation"] == one["full_pool_uar_per_rotation"]
    for name in ("random", "default"):
        assert two["strategies"][name]["curve"] == one["strategies"][name]["curve"]
    # Per rotation: the full-pool model, then 2 strategies x 2 rounds.
    assert ticks_two == ticks_one == 2 * (1 + 2 * 2)
