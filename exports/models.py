"""Dataset versions (docs/datasets.md, "The native layout of a version").

A version is defined when it is created (query, taxonomy version, aggregation, split seed and
targets, `created_at`) and its files are written once by `exports.services.build`. Once
ready it is immutable: its folder's SHA256SUMS digest is recorded, and a rebuild (for
verification) goes to another folder and must give the same bytes.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from labelling.models import Project, TaxonomyVersion

DEFAULT_SPLIT_TARGETS = {"train": 0.8, "dev": 0.1, "test": 0.1}


def default_split_targets() -> dict[str, float]:
    return dict(DEFAULT_SPLIT_TARGETS)


def default_query() -> dict[str, object]:
    return {"clips": "labelled"}


# How a version carries its audio (DatasetVersion.options["audio"]): "copy" writes
# audio/<clip_id>.wav; "reference" writes no audio and names each clip's canonical file in
# storage (clips.audio_uri), for large exports and benchmarks (docs/datasets.md).
AUDIO_MODES = ("copy", "reference")


def default_options() -> dict[str, object]:
    return {"audio": "copy"}


def default_aggregation() -> dict[str, object]:
    return {"policies": ["majority", "soft", "dawid_skene"], "dawid_skene": {"n_iter": 100,
            "tol": 1e-5}, "majority_tie": "dataset frequency, then smallest key"}  # fmt: skip


class DatasetVersion(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        BUILDING = "building", "Building"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    # {"stage": ..., "done": n, "total": n}; written by the build's progress beats.
    progress = models.JSONField(default=dict, blank=True)
    query = models.JSONField(default=default_query)
    taxonomy_version = models.ForeignKey(
        TaxonomyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    aggregation = models.JSONField(default=default_aggregation)
    split_seed = models.PositiveIntegerField(default=0)
    split_targets = models.JSONField(default=default_split_targets)
    # exports.core.splits' history (group -> split) after this version: the next one starts
    # from it so old speakers keep their split.
    split_history = models.JSONField(default=dict, blank=True)
    lineage = models.JSONField(default=dict, blank=True)
    # Build options that do not change which clips or labels a version holds (AUDIO_MODES).
    options = models.JSONField(default=default_options)
    code_version = models.CharField(max_length=80, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # Fixed at creation and written into version.json: a rebuild is byte-identical.
    created_at = models.DateTimeField()
    # When a worker claimed the build (building): one older than the build's time limit
    # lost its worker and is failed by the beat (exports.services.build.reap_stale_builds).
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    folder = models.CharField(max_length=300, blank=True, help_text="Relative to MEDIA_ROOT.")
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="uniq_dataset_number")
        ]
        ordering = ["project", "number"]

    def __str__(self) -> str:
        return f"{self.project.slug}-v{self.number}"


class DatasetConversion(models.Model):
    """A ready version converted to another format (exports.formats), once, by a Celery task
    (exports.services.conversions): the converted folder is stored as one deterministic zip
    in storage (`archive`, next to the version's folder), which downloads stream from."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        CONVERTING = "converting", "Converting"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    version = models.ForeignKey(
        DatasetVersion, on_delete=models.CASCADE, related_name="conversions"
    )
    fmt = models.CharField(max_length=20)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # {"stage": ..., "done": n, "total": n}, like DatasetVersion.progress.
    progress = models.JSONField(default=dict, blank=True)
    archive = models.CharField(max_length=300, blank=True, help_text="Storage name of the zip.")
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When its task was sent (queued) and then when a worker claimed it (converting): a row
    # older than the task's time limit lost its worker (exports.services.conversions).
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "fmt"], name="uniq_dataset_conversion")
        ]

    def __str__(self) -> str:
        return f"{self.version}-{self.fmt}"
