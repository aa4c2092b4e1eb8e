"""Prediction with a project's active model: for an uploaded waveform (the predict API) or
for a clip of the project (the annotator page's assisted mode and, next, clip ranking).

Per-speaker normalisation at prediction time uses, in order: the speaker's statistics
stored in the artifact (speakers known at training time); else statistics of the speaker's
clips cached in the project now (a speaker whose clips arrived later: their unlabelled clips
are fair to use); else the global statistics.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.core.files.storage import default_storage

from labelling.models import Clip, Project
from learner.features import Extractor
from learner.models import ClipFeatures, ModelVersion
from learner.normalise import SpeakerStats, speaker_statistics
from learner.pipeline import Predictor
from learner.services import features as feature_cache
from learner.targets import LabelSpace

_CACHE_SIZE = 8
_cache: OrderedDict[tuple[int, str], Predictor] = OrderedDict()
_cache_lock = threading.Lock()


class NoActiveModel(Exception):
    """The project has no active model yet."""


class FeatureMismatch(RuntimeError):
    """This server computes other features than the model was trained on."""


@dataclass
class Prediction:
    model_version: int
    feature_set: str
    normalisation: str  # "speaker" (with whose statistics) or "global"
    levels: list[dict[str, float]]  # per level: node key -> probability
    space: LabelSpace

    def as_json(self) -> dict:
        levels = []
        for level, probs in enumerate(self.levels):
            nodes = [
                {"key": k, "name": self.space.node(k).name, "probability": round(p, 6)}
                for k, p in sorted(probs.items(), key=lambda kv: -kv[1])
            ]
            levels.append({"level": level, "nodes": nodes})
        return {
            "model_version": self.model_version,
            "feature_set": self.feature_set,
            "normalisation": self.normalisation,
            "levels": levels,
        }


def active_version(project: Project) -> ModelVersion:
    version = ModelVersion.objects.filter(project=project, is_active=True).first()
    if version is None:
        raise NoActiveModel(f"{project.slug} has no trained model yet; train one first.")
    return version


def artifact_name(version: ModelVersion) -> str:
    """The stored name of the version's model file (every version row has one: it is
    created only after its artifact is saved)."""
    name = version.artifact.name
    if not name:
        raise FileNotFoundError(f"model version {version.pk} has no artifact")
    return name


def load_predictor(version: ModelVersion) -> Predictor:
    """The version's model, loaded once per process (keyed by version and artifact hash)."""
    key = (version.pk, version.artifact_sha256)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    with default_storage.open(artifact_name(version), "rb") as fh:
        predictor = Predictor.from_bytes(fh.read())
    with _cache_lock:
        _cache[key] = predictor
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return predictor


def extractor_for(predictor: Predictor) -> Extractor:
    """The extractor that computes the model's features here; FeatureMismatch when this
    server's version of it differs from the one the model was trained on."""
    ex = feature_cache.extractor(predictor.extractor["name"])
    if ex.version != predictor.extractor["version"]:
        raise FeatureMismatch(
            f"the active model was trained on {ex.name} features version "
            f"{predictor.extractor['version']}, and this server computes version {ex.version}; "
            "retrain the model."
        )
    return ex


def _unknown_speaker_statistics(
    project: Project, predictor: Predictor, ex: Extractor, speakers: Sequence[str]
) -> dict[str, SpeakerStats]:
    """Statistics, from the feature cache, of speakers the artifact does not know."""
    norm = predictor.normaliser
    if norm.mode != "speaker":
        return {}
    unknown = sorted({s for s in speakers if s and s not in norm.speakers})
    if not unknown:
        return {}
    rows = ClipFeatures.objects.filter(
        clip__project=project,
        clip__speaker_id__in=unknown,
        extractor=ex.name,
        version=ex.version,
        variant=0,
    ).values_list("clip__speaker_id", "vector")
    ids, vectors = [], []
    for speaker, vector in rows:
        ids.append(speaker)
        vectors.append(np.frombuffer(bytes(vector), dtype="<f4"))
    if not vectors:
        return {}
    return speaker_statistics(np.stack(vectors), ids, norm.mean, norm.std)


def _mode(predictor: Predictor, speaker: str, extra: dict[str, SpeakerStats]) -> str:
    known = speaker in predictor.normaliser.speakers or speaker in extra
    return "speaker" if predictor.normaliser.mode == "speaker" and speaker and known else "global"


def predict_vectors(
    project: Project, vectors: np.ndarray, speakers: Sequence[str]
) -> list[Prediction]:
    """(N, D) feature vectors of the active model's feature set -> N predictions."""
    version = active_version(project)
    predictor = load_predictor(version)
    ex = extractor_for(predictor)
    extra = _unknown_speaker_statistics(project, predictor, ex, speakers)
    levels = predictor.node_probabilities(vectors, speakers, extra)
    return [
        Prediction(version.number, ex.name, _mode(predictor, s, extra), lv, predictor.space)
        for s, lv in zip(speakers, levels, strict=True)
    ]


def ring_probabilities(
    version: ModelVersion, vectors: np.ndarray, speakers: Sequence[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Core-ring (N, C) and fine-ring (N, F) probabilities (None when the model knows only
    the core ring) of `version` for (N, D) feature vectors of its feature set, normalised per
    speaker as in every other prediction (module docstring). For ranking the pool."""
    predictor = load_predictor(version)
    extra = _unknown_speaker_statistics(
        version.project, predictor, extractor_for(predictor), speakers
    )
    return predictor.probabilities(vectors, speakers, extra)


def core_keys(version: ModelVersion) -> list[str]:
    """The version's core-ring node keys, in the column order of `ring_probabilities`."""
    return list(load_predictor(version).space.core)


def predict_waveform(project: Project, wave: np.ndarray, *, speaker_id: str = "") -> Prediction:
    """16 kHz mono float32 audio -> probabilities of every node at every level."""
    version = active_version(project)
    predictor = load_predictor(version)
    vector = extractor_for(predictor).extract(wave)
    return predict_vectors(project, vector[None, :], [speaker_id])[0]


def predict_clips(project: Project, clips: Sequence[Clip]) -> list[Prediction]:
    """Predictions for clips of the project, from cached features where they exist."""
    version = active_version(project)
    predictor = load_predictor(version)
    ex = extractor_for(predictor)
    ids = [c.pk for c in clips]
    feature_cache.compute(ids, ex.name)
    vectors = feature_cache.matrix(ids, ex)
    return predict_vectors(project, vectors, [c.speaker_id for c in clips])
