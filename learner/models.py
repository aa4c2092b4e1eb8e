"""Learner data: per-project settings, cached features, training runs and model versions."""

from __future__ import annotations

import numpy as np
from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from labelling.models import Clip, Project
from learner.ranking import DEFAULT_STRATEGY


class SpeakerNormalisation(models.TextChoices):
    AUTO = "auto", "Per speaker when most clips have a speaker id"
    ON = "on", "Per speaker"
    OFF = "off", "Global (strict: no statistics of other speakers' clips)"


class LearnerSettings(models.Model):
    """How a project's model is trained. One row per project, created on first use."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, primary_key=True, related_name="learner_settings"
    )
    feature_set = models.CharField(max_length=40, default="acoustic")
    speaker_normalisation = models.CharField(
        max_length=4, choices=SpeakerNormalisation.choices, default=SpeakerNormalisation.AUTO
    )
    augmentation = models.BooleanField(
        default=True,
        help_text="Train on speed-perturbed, noisy and reverberant copies too (two per clip). "
        "Measured on EmoDB, it helps most when per-speaker normalisation is off.",
    )
    retrain_after_labels = models.PositiveIntegerField(
        default=50,
        help_text="Retrain when this many new labels arrived since the last run (0: never).",
    )
    retrain_interval_hours = models.PositiveIntegerField(
        default=0, help_text="Also retrain this often if any label arrived (0: never)."
    )
    min_labelled_clips = models.PositiveIntegerField(default=20, validators=[MinValueValidator(2)])
    unsure_weight = models.FloatField(
        default=0.5, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    epochs = models.PositiveIntegerField(
        null=True, blank=True, help_text="Fixed epochs per ensemble member (empty: automatic)."
    )
    seed = models.IntegerField(default=0)
    # --- Active learning (learner.services.rescoring) ---
    query_strategy = models.CharField(
        max_length=40,
        default=DEFAULT_STRATEGY,
        help_text="How the next batch is chosen once a model exists (learner.ranking).",
    )
    query_params = models.JSONField(default=dict, blank=True)
    query_batch_size = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1)],
        help_text="Clips put at the head of the queue after each rescoring.",
    )
    coverage_min_share = models.JSONField(
        default=dict,
        blank=True,
        help_text='Minimum share per metadata group in a batch, e.g. {"gender": {"female": 0.4}}.',
    )
    coverage_max_share = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name = "learner settings"
        verbose_name_plural = "learner settings"

    def __str__(self) -> str:
        return f"Learner settings of {self.project}"


class ClipFeatures(models.Model):
    """One clip's feature vector for one extractor version (variant 0), or for augmented
    training copy k (variant k)."""

    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="features")
    extractor = models.CharField(max_length=40)
    version = models.CharField(max_length=120)
    variant = models.PositiveSmallIntegerField(default=0)
    dim = models.PositiveIntegerField()
    vector = models.BinaryField(help_text="float32, little-endian")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["clip", "extractor", "version", "variant"], name="uniq_clip_features"
            )
        ]
        verbose_name_plural = "clip features"

    def __str__(self) -> str:
        return f"{self.extractor}@{self.version}[{self.variant}] of clip {self.clip_id}"

    def array(self) -> np.ndarray:
        return np.frombuffer(bytes(self.vector), dtype="<f4")


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        INSUFFICIENT = "insufficient", "Not enough labels"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "By hand (API or admin)"
        COMMAND = "command", "Management command"
        LABELS = "labels", "New labels"
        SCHEDULE = "schedule", "Schedule"

    OPEN = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    feature_set = models.CharField(max_length=40)
    params = models.JSONField(default=dict, blank=True, help_text="Settings used, for the record.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid that runs it.")
    progress = models.JSONField(default=dict, blank=True)
    reason_code = models.CharField(max_length=32, blank=True)
    reason = models.TextField(blank=True)
    # Labels made up to this instant are in the run (what "new labels" counts from).
    labels_until = models.DateTimeField(null=True, blank=True)
    label_count = models.PositiveIntegerField(default=0)
    labels_snapshot = models.FileField(upload_to="learner/snapshots/", max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Two triggers at once (a beat tick and a click) start one training: the second
            # insert fails and the caller gets the open run. request_training relies on it.
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "running"]),
                name="one_open_training_per_project",
            )
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="trainingrun_status_hb")]

    def __str__(self) -> str:
        return f"Training #{self.pk} of {self.project.slug} ({self.status})"


class ModelVersion(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    number = models.PositiveIntegerField()
    run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="model_version"
    )
    taxonomy_version = models.ForeignKey(
        "labelling.TaxonomyVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The wheel the model predicts (its node keys).",
    )
    extractor = models.CharField(max_length=40)
    extractor_version = models.CharField(max_length=120)
    artifact = models.FileField(upload_to="learner/models/", max_length=300)
    artifact_sha256 = models.CharField(max_length=64)
    metrics = models.JSONField(default=dict)
    label_count = models.PositiveIntegerField(default=0)
    train_seconds = models.FloatField(default=0.0)
    confusion_image = models.FileField(upload_to="learner/plots/", max_length=300, blank=True)
    calibration_image = models.FileField(upload_to="learner/plots/", max_length=300, blank=True)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="uniq_model_number"),
            # Prediction reads "the" active version; activation swaps under this guarantee.
            models.UniqueConstraint(
                fields=["project"], condition=Q(is_active=True), name="one_active_model_per_project"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} model v{self.number}"


class Ranking(models.Model):
    """One scoring of a project's unlabelled pool (by a model version, or at cold start)."""

    class Status(models.TextChoices):
        RUNNING = "running", "Scoring"
        SELECTING = "selecting", "Selecting"
        COMPLETE = "complete", "Complete (serving)"
        SUPERSEDED = "superseded", "Superseded"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="rankings")
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="rankings"
    )
    strategy = models.CharField(max_length=40)
    params = models.JSONField(default=dict, blank=True)
    batch_size = models.PositiveIntegerField(default=20)
    pool_size = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    selected = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-pk"]

    def __str__(self) -> str:
        return f"ranking {self.pk} of {self.project.slug} ({self.strategy}, {self.status})"


class ClipScore(models.Model):
    """A clip's score in one ranking; `selected` marks the clips of the batch it chose."""

    ranking = models.ForeignKey(Ranking, on_delete=models.CASCADE, related_name="scores")
    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="scores")
    score = models.FloatField()
    top_core = models.CharField(max_length=80, blank=True)
    top_probability = models.FloatField(null=True, blank=True)
    selected = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ranking", "clip"], name="uniq_score_per_ranking")
        ]

    def __str__(self) -> str:
        return f"clip {self.clip_id}: {self.score:.3f} in ranking {self.ranking_id}"
