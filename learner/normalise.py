"""Feature standardisation, globally or per speaker. Arrays in, arrays out; no Django.

Per-speaker normalisation standardises each speaker's features with that speaker's own
statistics, computed on all of the speaker's clips (labelled or not: no label is used, so it
is fair wherever the speaker is known at prediction time too). It removes much of what makes
voices differ (pitch range, vocal tract, microphone and room) and leaves more of what makes
emotions differ. Speakers with few clips are pulled towards the global statistics
(shrinkage with a prior worth `prior_clips` clips), and clips without a speaker id use the
global statistics, so the two kinds of input stay on comparable scales.

After that first step a second, global standardisation fitted on the training rows gives the
network inputs of mean 0 and unit variance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

GLOBAL = "global"
SPEAKER = "speaker"
MODES = (GLOBAL, SPEAKER)
EPS = 1e-6


@dataclass
class SpeakerStats:
    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    n: int


@dataclass
class Normaliser:
    """Everything needed to normalise a feature vector at prediction time."""

    mode: str
    mean: np.ndarray  # (D,) global statistics, fitted on training rows
    std: np.ndarray  # (D,)
    post_mean: np.ndarray  # (D,) second standardisation, fitted on first-step training rows
    post_std: np.ndarray  # (D,)
    speakers: dict[str, SpeakerStats] = field(default_factory=dict)

    def transform(
        self,
        x: np.ndarray,
        speakers: Sequence[str] | None = None,
        extra: dict[str, SpeakerStats] | None = None,
    ) -> np.ndarray:
        """(N, D) features and N speaker ids ("" for unknown) -> (N, D) float32.

        `extra` adds statistics of speakers the normaliser was not fitted with (a speaker
        whose clips arrived after training), computed with `speaker_statistics`.
        """
        x = np.asarray(x, dtype=np.float64)
        first = (x - self.mean) / self.std
        if self.mode == SPEAKER and speakers is not None:
            for i, speaker in enumerate(speakers):
                stats = None
                if speaker:
                    stats = self.speakers.get(speaker) or (extra or {}).get(speaker)
                if stats is not None:
                    first[i] = (x[i] - stats.mean) / stats.std
        out: np.ndarray = ((first - self.post_mean) / self.post_std).astype(np.float32)
        return out

    def to_state(self) -> dict[str, Any]:
        """Arrays, strings and ints only (the artifact stores the arrays as tensors)."""
        return {
            "mode": self.mode,
            "mean": self.mean,
            "std": self.std,
            "post_mean": self.post_mean,
            "post_std": self.post_std,
            "speakers": {
                name: {"mean": s.mean, "std": s.std, "n": s.n} for name, s in self.speakers.items()
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Normaliser:
        arr = np.asarray
        return cls(
            mode=state["mode"],
            mean=arr(state["mean"], dtype=np.float64),
            std=arr(state["std"], dtype=np.float64),
            post_mean=arr(state["post_mean"], dtype=np.float64),
            post_std=arr(state["post_std"], dtype=np.float64),
            speakers={
                name: SpeakerStats(
                    arr(s["mean"], dtype=np.float64), arr(s["std"], dtype=np.float64), s["n"]
                )
                for name, s in state["speakers"].items()
            },
        )


def _mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    return mean, np.where(std < EPS, 1.0, std)


def speaker_statistics(
    x: np.ndarray,
    speakers: Sequence[str],
    global_mean: np.ndarray,
    global_std: np.ndarray,
    *,
    prior_clips: float = 3.0,
    min_clips: int = 2,
) -> dict[str, SpeakerStats]:
    """Shrunk mean and standard deviation of every speaker with at least `min_clips` rows.

    x: (N, D) features of all clips available for statistics; speakers: N ids ("" unknown).
    The speaker's mean and variance are blended with the global ones as if the global
    statistics were `prior_clips` extra clips.
    """
    x = np.asarray(x, dtype=np.float64)
    ids = np.asarray(list(speakers), dtype=object)
    out: dict[str, SpeakerStats] = {}
    g_var = global_std**2
    for speaker in sorted({s for s in speakers if s}):
        rows = x[ids == speaker]
        n = rows.shape[0]
        if n < min_clips:
            continue
        mean = (n * rows.mean(axis=0) + prior_clips * global_mean) / (n + prior_clips)
        var = (n * rows.var(axis=0) + prior_clips * g_var) / (n + prior_clips)
        std = np.sqrt(var)
        out[speaker] = SpeakerStats(mean, np.where(std < EPS, 1.0, std), n)
    return out


def fit_normaliser(
    train_x: np.ndarray,
    train_speakers: Sequence[str],
    *,
    mode: str,
    stats_x: np.ndarray | None = None,
    stats_speakers: Sequence[str] | None = None,
    prior_clips: float = 3.0,
    min_clips: int = 2,
) -> Normaliser:
    """Fit on training rows; per-speaker statistics on `stats_x` (defaults to the training
    rows), which may hold unlabelled clips and clips of speakers held out for testing.

    In `global` (strict) mode nothing but the training rows is looked at.
    """
    if mode not in MODES:
        raise ValueError(f"normalisation mode must be one of {MODES}, got {mode!r}")
    train_x = np.asarray(train_x, dtype=np.float64)
    mean, std = _mean_std(train_x)
    speakers: dict[str, SpeakerStats] = {}
    if mode == SPEAKER:
        sx = train_x if stats_x is None else np.asarray(stats_x, dtype=np.float64)
        ss = list(train_speakers) if stats_speakers is None else list(stats_speakers)
        speakers = speaker_statistics(
            sx, ss, mean, std, prior_clips=prior_clips, min_clips=min_clips
        )
    partial = Normaliser(mode, mean, std, np.zeros_like(mean), np.ones_like(std), speakers)
    first = partial.transform(train_x, train_speakers).astype(np.float64)
    partial.post_mean, partial.post_std = _mean_std(first)
    return partial
