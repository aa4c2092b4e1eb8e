"""Learner data: per-project settings, cached features, training runs and model versions."""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Any, TypeGuard

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from labelling.models import Clip, Project
from learner.features import NAMES as FEATURE_SETS
from learner.ranking import DEFAULT_STRATEGY, STRATEGIES, Quotas, resolve_params

# --- Bounds of the per-project learner settings -------------------------------------------
# Every setting is bounded where it is stored: as model validators (the API serializer and
# the admin form both run them) and as check constraints (migration 0003), so that no row,
# however written, can stall the beat for every project (a retrain interval of 10^8 hours
# overflowed timedelta in `due_trigger`) or hold a training worker for days (2 * 10^9
# epochs). The limits are what a real deployment needs, not tuned to any corpus.
RETRAIN_AFTER_LABELS_MAX = 100_000  # 0 = never; more labels than this between runs is no loop
RETRAIN_INTERVAL_HOURS_MAX = 24 * 365  # a year; 0 = never
MIN_LABELLED_CLIPS_MIN = 2  # two feelings need at least two clips
MIN_LABELLED_CLIPS_MAX = 100_000
EPOCHS_MAX = 500  # automatic mode picks 10-200; 500 is already hours on a large project
SEED_MAX = 2**31 - 1  # numpy and torch seeds
QUERY_BATCH_SIZE_MAX = 10_000  # clips put at the head of the queue after one rescoring
# Diversity strategies look at candidate_factor x batch clips' embeddings (k-center greedy is
# O(candidates x dim x batch)): both are capped, and so is their product.
CANDIDATE_FACTOR_MAX = 100
CANDIDATES_MAX = 100_000
QUERY_PARAMS_MAX_KEYS = 8
QUERY_PARAM_TEXT_MAX = 40
# Clip metadata a coverage quota may name: the groups rescoring hands to the strategies
# (learner.services.rescoring._groups); any other key would fail the ranking.
QUOTA_KEYS = ("speaker_id", "gender", "age_band", "language", "channel")
QUOTA_GROUPS_MAX = 1_000  # groups per metadata key (one per speaker at most, in practice)
QUOTA_GROUP_LABEL_MAX = 120  # Clip.speaker_id's length
SHARES_JSON_MAX = 64 * 1024
# The quality gate's tolerance, in UAR points: a new version is refused only when the upper
# end of its paired bootstrap interval of UAR(new) - UAR(active) is below -margin. Half
# the UAR scale would let anything through; beyond it the gate means nothing.
QUALITY_GATE_MARGIN_MAX = 0.5
_SHARE_SLACK = 1e-9

# Every parameter some registered strategy takes, with one strategy that takes it (to check
# a value with the registry's own rules, learner.ranking.resolve_params).
_PARAM_OWNER: dict[str, str] = {
    key: name for name, spec in sorted(STRATEGIES.items()) for key in spec.defaults
}


def _is_number(value: object) -> TypeGuard[numbers.Real]:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def validate_query_params(value: Any) -> None:
    """A small JSON object of known strategy parameters with valid values.

    Which parameters the chosen strategy takes is checked against the strategy too
    (`settings_errors`, run by `LearnerSettings.clean` and the API serializer).
    """
    if not isinstance(value, dict):
        raise ValidationError("Must be a JSON object of strategy parameters.", code="invalid")
    if len(value) > QUERY_PARAMS_MAX_KEYS:
        raise ValidationError(f"At most {QUERY_PARAMS_MAX_KEYS} parameters.", code="max_length")
    unknown = sorted(str(key) for key in value if key not in _PARAM_OWNER)
    if unknown:
        raise ValidationError(
            f"Unknown strategy parameter(s) {unknown}; known: {sorted(_PARAM_OWNER)}.",
            code="invalid",
        )
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise ValidationError(f"Parameter {key!r} must be a number or a name.", code="invalid")
        if isinstance(item, str) and len(item) > QUERY_PARAM_TEXT_MAX:
            raise ValidationError(f"Parameter {key!r} is too long.", code="max_length")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValidationError(f"Parameter {key!r} must be finite.", code="invalid")
        try:
            resolve_params(_PARAM_OWNER[key], {key: item})
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid") from exc
        # resolve_params passed: a candidate_factor is an int here.
        if key == "candidate_factor" and isinstance(item, int) and item > CANDIDATE_FACTOR_MAX:
            raise ValidationError(
                f"candidate_factor must be at most {CANDIDATE_FACTOR_MAX}.", code="max_value"
            )


def _validate_shares(value: Any, *, minimum: bool) -> None:
    if not isinstance(value, dict):
        raise ValidationError(
            'Must be a JSON object such as {"gender": {"female": 0.4}}.', code="invalid"
        )
    if _json_size(value) > SHARES_JSON_MAX:
        raise ValidationError(f"At most {SHARES_JSON_MAX:,} bytes of JSON.", code="max_length")
    unknown = sorted(str(key) for key in value if key not in QUOTA_KEYS)
    if unknown:
        raise ValidationError(
            f"Unknown clip metadata {unknown}; quotas can use {list(QUOTA_KEYS)}.",
            code="invalid",
        )
    for key, by_group in value.items():
        if not isinstance(by_group, dict):
            raise ValidationError(
                f'{key}: must map each group to a share, e.g. {{"female": 0.4}}.',
                code="invalid",
            )
        if len(by_group) > QUOTA_GROUPS_MAX:
            raise ValidationError(f"{key}: at most {QUOTA_GROUPS_MAX} groups.", code="max_length")
        for group, share in by_group.items():
            if len(group) > QUOTA_GROUP_LABEL_MAX:
                raise ValidationError(f"{key}: a group name is too long.", code="max_length")
            if not _is_number(share) or not 0.0 <= float(share) <= 1.0:
                raise ValidationError(
                    f"{key}[{group!r}]: a share must be a number from 0 to 1.", code="invalid"
                )
        total = sum(float(share) for share in by_group.values())
        if minimum and total > 1.0 + _SHARE_SLACK:
            raise ValidationError(
                f"{key}: minimum shares add up to {total:g}, more than the whole batch.",
                code="invalid",
            )


def validate_min_shares(value: Any) -> None:
    """metadata key -> {group: minimum share in [0, 1]}; one key's shares sum to at most 1."""
    _validate_shares(value, minimum=True)


def validate_max_shares(value: Any) -> None:
    """metadata key -> {group: maximum share in [0, 1]} (caps may sum to more than 1)."""
    _validate_shares(value, minimum=False)


def settings_errors(values: Mapping[str, Any]) -> dict[str, str]:
    """Rules between learner settings (field name -> message); {} when they hold.

    `values` holds the settings as they will be saved. Fields whose own validation fails are
    skipped here (their own error is reported).
    """
    errors: dict[str, str] = {}
    strategy = values.get("query_strategy")
    params = values.get("query_params") or {}
    if isinstance(strategy, str) and strategy in STRATEGIES and isinstance(params, dict):
        try:
            resolved = resolve_params(strategy, params)
        except ValueError as exc:
            errors["query_params"] = str(exc)
        else:
            batch = values.get("query_batch_size")
            factor = resolved.get("candidate_factor")
            if (
                _is_number(batch)
                and _is_number(factor)
                and float(batch) * float(factor) > CANDIDATES_MAX
            ):
                errors["query_batch_size"] = (
                    f"query_batch_size x candidate_factor ({batch} x {factor}) must be at most "
                    f"{CANDIDATES_MAX:,} candidate clips."
                )
    low, high = values.get("coverage_min_share"), values.get("coverage_max_share")
    if isinstance(low, dict) and isinstance(high, dict) and "coverage_min_share" not in errors:
        try:
            Quotas(min_share=low, max_share=high)
        except (ValueError, TypeError, AttributeError) as exc:
            errors["coverage_min_share"] = str(exc)
    return errors


def _json_size(value: Any) -> int:
    return len(json.dumps(value, default=str))


class SpeakerNormalisation(models.TextChoices):
    AUTO = "auto", "Per speaker when most clips have a speaker id"
    ON = "on", "Per speaker"
    OFF = "off", "Global (strict: no statistics of other speakers' clips)"


class LearnerSettings(models.Model):
    """How a project's model is trained. One row per project, created on first use.

    Bounds: see the constants above; `clean` adds the rules between fields.
    """

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, primary_key=True, related_name="learner_settings"
    )
    feature_set = models.CharField(
        max_length=40,
        default="acoustic",
        choices=[(name, name) for name in FEATURE_SETS],
        help_text="Feature extractor (GET /api/learner/feature-sets says which can run here).",
    )
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
        validators=[MaxValueValidator(RETRAIN_AFTER_LABELS_MAX)],
        help_text="Retrain when this many new labels arrived since the last run "
        f"(0: never; at most {RETRAIN_AFTER_LABELS_MAX:,}).",
    )
    retrain_interval_hours = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(RETRAIN_INTERVAL_HOURS_MAX)],
        help_text="Also retrain this often if any label arrived "
        f"(0: never; at most {RETRAIN_INTERVAL_HOURS_MAX:,} hours, a year).",
    )
    min_labelled_clips = models.PositiveIntegerField(
        default=20,
        validators=[
            MinValueValidator(MIN_LABELLED_CLIPS_MIN),
            MaxValueValidator(MIN_LABELLED_CLIPS_MAX),
        ],
        help_text="A run with fewer labelled clips ends as 'insufficient' "
        f"({MIN_LABELLED_CLIPS_MIN} to {MIN_LABELLED_CLIPS_MAX:,}).",
    )
    unsure_weight = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Weight of a label marked unsure (0 to 1).",
    )
    epochs = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(EPOCHS_MAX)],
        help_text=f"Fixed epochs per ensemble member (1 to {EPOCHS_MAX}; empty: automatic).",
    )
    seed = models.IntegerField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(SEED_MAX)],
        help_text=f"Seed of splits, initialisation and augmentation (0 to {SEED_MAX}).",
    )
    # --- Active learning (learner.services.rescoring) ---
    query_strategy = models.CharField(
        max_length=40,
        default=DEFAULT_STRATEGY,
        choices=[(name, name) for name in sorted(STRATEGIES)],
        help_text="How the next batch is chosen once a model exists (learner.ranking).",
    )
    query_params = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_query_params],
        help_text='Overrides of the strategy\'s parameters, e.g. {"alpha": 0.3} '
        f"(known: {', '.join(sorted(_PARAM_OWNER))}; candidate_factor at most "
        f"{CANDIDATE_FACTOR_MAX}).",
    )
    query_batch_size = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(QUERY_BATCH_SIZE_MAX)],
        help_text="Clips put at the head of the queue after each rescoring "
        f"(1 to {QUERY_BATCH_SIZE_MAX:,}; times candidate_factor at most {CANDIDATES_MAX:,}).",
    )
    coverage_min_share = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_min_shares],
        help_text='Minimum share per metadata group in a batch, e.g. {"gender": {"female": '
        f"0.4}}}}; keys: {', '.join(QUOTA_KEYS)}; shares 0 to 1, one key's adding up to at "
        "most 1.",
    )
    coverage_max_share = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_max_shares],
        help_text='Maximum share per metadata group in a batch, e.g. {"speaker_id": '
        '{"s01": 0.05}}; shares 0 to 1, each at least its minimum.',
    )
    # --- Quality gate (learner.services.gate) ---
    quality_gate = models.BooleanField(
        default=True,
        help_text="Activate a new version only if, on the active version's held-out speakers, "
        "it is not worse beyond the noise (paired bootstrap of the UAR difference); "
        "otherwise it stays a candidate that an ML engineer can activate by hand.",
    )
    quality_gate_margin = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(QUALITY_GATE_MARGIN_MAX)],
        help_text="Tolerance in UAR (0 to 0.5): refuse only when the upper end of the 95% "
        "interval of UAR(new) - UAR(active) is below minus this.",
    )

    class Meta:
        verbose_name = "learner settings"
        verbose_name_plural = "learner settings"
        # The same bounds as the validators, for rows written past them (.update(), SQL).
        constraints = [
            models.CheckConstraint(
                condition=Q(retrain_after_labels__lte=RETRAIN_AFTER_LABELS_MAX),
                name="learner_retrain_after_labels_range",
            ),
            models.CheckConstraint(
                condition=Q(retrain_interval_hours__lte=RETRAIN_INTERVAL_HOURS_MAX),
                name="learner_retrain_interval_hours_range",
            ),
            models.CheckConstraint(
                condition=Q(
                    min_labelled_clips__gte=MIN_LABELLED_CLIPS_MIN,
                    min_labelled_clips__lte=MIN_LABELLED_CLIPS_MAX,
                ),
                name="learner_min_labelled_clips_range",
            ),
            models.CheckConstraint(
                condition=Q(unsure_weight__gte=0.0, unsure_weight__lte=1.0),
                name="learner_unsure_weight_range",
            ),
            models.CheckConstraint(
                condition=Q(epochs__isnull=True) | Q(epochs__gte=1, epochs__lte=EPOCHS_MAX),
                name="learner_epochs_range",
            ),
            models.CheckConstraint(
                condition=Q(seed__gte=0, seed__lte=SEED_MAX), name="learner_seed_range"
            ),
            models.CheckConstraint(
                condition=Q(query_batch_size__gte=1, query_batch_size__lte=QUERY_BATCH_SIZE_MAX),
                name="learner_query_batch_size_range",
            ),
            models.CheckConstraint(
                condition=Q(feature_set__in=list(FEATURE_SETS)), name="learner_feature_set_known"
            ),
            models.CheckConstraint(
                condition=Q(query_strategy__in=sorted(STRATEGIES)),
                name="learner_query_strategy_known",
            ),
            models.CheckConstraint(
                condition=Q(speaker_normalisation__in=SpeakerNormalisation.values),
                name="learner_speaker_normalisation_known",
            ),
            models.CheckConstraint(
                condition=Q(
                    quality_gate_margin__gte=0.0, quality_gate_margin__lte=QUALITY_GATE_MARGIN_MAX
                ),
                name="learner_quality_gate_margin_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Learner settings of {self.project}"

    def clean(self) -> None:
        errors = settings_errors(
            {field: getattr(self, field) for field in SETTINGS_FIELDS if hasattr(self, field)}
        )
        if errors:
            raise ValidationError(errors)


# Every editable learner setting (the API serializer exposes these).
SETTINGS_FIELDS = (
    "feature_set",
    "speaker_normalisation",
    "augmentation",
    "retrain_after_labels",
    "retrain_interval_hours",
    "min_labelled_clips",
    "unsure_weight",
    "epochs",
    "seed",
    "query_strategy",
    "query_params",
    "query_batch_size",
    "coverage_min_share",
    "coverage_max_share",
    "quality_gate",
    "quality_gate_margin",
)


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
    # When its task was last published to the broker. Null: never sent (the broker was down
    # when the run was opened); learner.tasks.dispatch_pending sends such runs at once and
    # sends again runs still queued long after this instant (a lost message).
    dispatched_at = models.DateTimeField(
        null=True, blank=True, help_text="When its task was last sent to the task queue."
    )
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


class GateDecision(models.TextChoices):
    """What the quality gate (learner.services.gate) said about a new version."""

    ACCEPTED = "accepted", "Not worse than the active version beyond the noise"
    REFUSED = "refused", "Worse than the active version beyond the noise (a candidate)"
    FIRST = "first", "No active version to compare with"
    NOT_COMPARABLE = "not_comparable", "No common held-out evaluation with the active version"
    OFF = "off", "Gate switched off for the project"


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
    # The quality gate's verdict when the version was registered ("" before the gate).
    gate_decision = models.CharField(max_length=16, choices=GateDecision.choices, blank=True)
    gate_reason = models.TextField(blank=True)
    gate_details = models.JSONField(default=dict, blank=True)
    # Per held-out test clip: id, split group, true and predicted core label (what the gate
    # compares the next version with). Not served by the API.
    held_out = models.JSONField(default=dict, blank=True)

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
