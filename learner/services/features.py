"""The feature cache: one vector per (clip, extractor, extractor version, variant).

Vectors are computed once, by Celery tasks over chunks of clips (learner.tasks), by the
`compute_features` command, or at the start of a training run for whatever is still missing;
a new extractor version is the only thing that invalidates them (older rows stay for the
models that used them). Variant 0 is the clip itself; variant k > 0 is augmented training
copy k (learner.augment), computed for labelled clips only when a project trains with
augmentation.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import soundfile
from django.db.models import Exists, OuterRef, QuerySet

from labelling.models import Clip, Project
from learner import augment, conf
from learner.features import DEFAULT, Extractor, ExtractorUnavailable, get_extractor
from learner.models import ClipFeatures, LearnerSettings
from learner.threads import torch_threads

log = logging.getLogger(__name__)

AUGMENT = augment.AugmentConfig()


def extractor(name: str) -> Extractor:
    """The named extractor with this server's options (raises ExtractorUnavailable)."""
    return get_extractor(name, conf.extractor_options())


def version_for(ex: Extractor, variant: int) -> str:
    return ex.version if variant == 0 else f"{ex.version}+aug{augment.VERSION}"


def read_audio(clip: Clip) -> np.ndarray:
    """The clip's canonical 16 kHz mono audio as float32, read through the storage API."""
    with clip.canonical.open("rb") as fh:
        samples, rate = soundfile.read(fh, dtype="float32", always_2d=False)
    if rate != 16000 or samples.ndim != 1:
        raise ValueError(f"clip {clip.pk}'s canonical audio is not 16 kHz mono")
    return samples


def _augment_seed(clip: Clip) -> int:
    """Content-derived, so a clip's augmented copies are the same in every run and process."""
    return int(hashlib.sha256(f"{clip.sha256}".encode()).hexdigest()[:8], 16)


def vector_for(ex: Extractor, clip: Clip, variant: int, wave: np.ndarray | None = None):
    wave = read_audio(clip) if wave is None else wave
    if variant:
        wave = augment.augment(wave, variant, AUGMENT, _augment_seed(clip))
    vector = np.asarray(ex.extract(wave), dtype="<f4")
    if vector.shape != (ex.dim,):
        raise ValueError(f"{ex.name} returned shape {vector.shape}, expected ({ex.dim},)")
    return vector


def missing(clips: QuerySet[Clip], ex: Extractor, variant: int = 0) -> QuerySet[Clip]:
    cached = ClipFeatures.objects.filter(
        clip=OuterRef("pk"), extractor=ex.name, version=version_for(ex, variant), variant=variant
    )
    return clips.filter(~Exists(cached))


def compute(
    clip_ids: Iterable[int],
    name: str,
    variants: Sequence[int] = (0,),
    on_clip: Callable[[], None] | None = None,
) -> int:
    """Compute and store the missing vectors of these clips; returns how many were stored.

    Idempotent: vectors already cached are skipped, and a concurrent worker storing the same
    vector first is harmless (the unique constraint drops the second copy). `on_clip` is
    called after each clip (training beats its heartbeat there).
    """
    ex = extractor(name)
    stored = 0
    ids = list(clip_ids)
    with torch_threads(conf.torch_threads()):
        for variant in variants:
            stored += _compute_variant(ex, ids, variant, on_clip)
    return stored


def _compute_variant(
    ex: Extractor, ids: list[int], variant: int, on_clip: Callable[[], None] | None
) -> int:
    stored = 0
    todo = missing(Clip.objects.filter(pk__in=ids), ex, variant).only("pk", "canonical", "sha256")
    for clip in todo.iterator(chunk_size=200):
        row = ClipFeatures(
            clip=clip,
            extractor=ex.name,
            version=version_for(ex, variant),
            variant=variant,
            dim=ex.dim,
            vector=vector_for(ex, clip, variant).tobytes(),
        )
        # One row per insert: a long chunk commits as it goes, so a killed worker loses
        # one clip's work, not the chunk's.
        stored += len(ClipFeatures.objects.bulk_create([row], ignore_conflicts=True))
        if on_clip is not None:
            on_clip()
    return stored


def matrix(clip_ids: Sequence[int], ex: Extractor, variant: int = 0) -> np.ndarray:
    """(len(clip_ids), dim) float32 in the order given; KeyError names a clip not cached."""
    rows = ClipFeatures.objects.filter(
        clip_id__in=clip_ids, extractor=ex.name, version=version_for(ex, variant), variant=variant
    ).values_list("clip_id", "vector")
    by_clip = {clip_id: np.frombuffer(bytes(vec), dtype="<f4") for clip_id, vec in rows}
    out = np.empty((len(clip_ids), ex.dim), dtype=np.float32)
    for i, clip_id in enumerate(clip_ids):
        out[i] = by_clip[clip_id]
    return out


def feature_sets_by_project() -> dict[int, str]:
    """Every project's feature set (the default where it has no learner settings yet)."""
    chosen = dict(LearnerSettings.objects.values_list("project_id", "feature_set"))
    return {pk: chosen.get(pk, DEFAULT) for pk in Project.objects.values_list("pk", flat=True)}


def backfill_plan(chunk: int, max_chunks: int) -> list[tuple[str, list[int]]]:
    """Up to `max_chunks` chunks of clip ids without cached features for their project's
    feature set, oldest clips first.

    The cap bounds what one beat tick queues: a chunk still waiting in the queue at the next
    tick would be queued again (harmless, since computing skips cached vectors, but wasted).

    Feature sets that cannot run here (no checkpoint, opensmile missing) are skipped with a
    log line: they are reported where they are chosen (the settings API) and fail the
    training that asks for them, loudly.
    """
    plan: list[tuple[str, list[int]]] = []
    by_set: dict[str, list[int]] = {}
    for project_id, name in feature_sets_by_project().items():
        by_set.setdefault(name, []).append(project_id)
    for name, project_ids in sorted(by_set.items()):
        try:
            ex = extractor(name)
        except ExtractorUnavailable as exc:
            log.warning("feature backfill skips %s: %s", name, exc)
            continue
        room = max_chunks * chunk - sum(len(ids) for _, ids in plan)
        if room <= 0:
            break
        ids = list(
            missing(Clip.objects.filter(project_id__in=project_ids), ex)
            .order_by("pk")
            .values_list("pk", flat=True)[:room]
        )
        plan += [(name, ids[i : i + chunk]) for i in range(0, len(ids), chunk)]
    return plan
