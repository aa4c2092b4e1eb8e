"""Projects, feelings-wheel taxonomies, clips, annotations and import batches.

Why this module is long: it is the labelling app's schema, and its invariants live in the
database (check constraints, partial unique indexes, the queue's covering indexes) that refer
across tables; one file keeps every constraint readable beside the fields it binds, as
Django's migrations see them. The logic on these tables lives in labelling/services/.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q


class Role(models.TextChoices):
    """A member's role in one project; each role includes the rights of those above it."""

    ANNOTATOR = "annotator", "Annotator"
    REVIEWER = "reviewer", "Reviewer"
    ML_ENGINEER = "ml_engineer", "ML engineer"
    ADMIN = "admin", "Admin"


ROLE_RANK = {Role.ANNOTATOR: 0, Role.REVIEWER: 1, Role.ML_ENGINEER: 2, Role.ADMIN: 3}


# --- Taxonomy ---------------------------------------------------------------------------


class Taxonomy(models.Model):
    """A named feelings wheel; its content lives in numbered, immutable-once-used versions."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=300, blank=True)
    # Who may change it: the ML engineers of its owner project, or staff for an
    # instance-wide preset (no owner). Only its owner (or any project, for a preset) uses it.
    owner_project = models.ForeignKey(
        "Project",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="own_taxonomies",
        help_text="The project that owns this wheel; empty for an instance-wide preset.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "taxonomies"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TaxonomyVersion(models.Model):
    taxonomy = models.ForeignKey(Taxonomy, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    previous = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="successors"
    )
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["taxonomy", "number"]
        constraints = [
            models.UniqueConstraint(fields=["taxonomy", "number"], name="uniq_taxonomy_version")
        ]

    def __str__(self) -> str:
        return f"{self.taxonomy.name} v{self.number}"


class TaxonomyNode(models.Model):
    """One feeling on the wheel: level 0 core, 1 secondary, 2 tertiary."""

    version = models.ForeignKey(TaxonomyVersion, on_delete=models.CASCADE, related_name="nodes")
    key = models.CharField(max_length=80)
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=300, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    level = models.PositiveSmallIntegerField(validators=[MaxValueValidator(2)])
    order = models.PositiveSmallIntegerField(default=0)
    colour = models.CharField(max_length=7)
    hotkey = models.CharField(max_length=1, blank=True)
    valence = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-1), MaxValueValidator(1)]
    )
    arousal = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-1), MaxValueValidator(1)]
    )

    class Meta:
        ordering = ["version", "level", "order"]
        constraints = [
            models.UniqueConstraint(fields=["version", "key"], name="uniq_node_key_per_version")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.key})"


class NodeMapping(models.Model):
    """How a node of an older version maps onto the version that replaced it.

    A null `target` means the feeling was dropped: annotations on it do not carry over.
    """

    source = models.ForeignKey(TaxonomyNode, on_delete=models.CASCADE, related_name="mapped_to")
    target_version = models.ForeignKey(
        TaxonomyVersion, on_delete=models.CASCADE, related_name="incoming_mappings"
    )
    target = models.ForeignKey(
        TaxonomyNode, null=True, blank=True, on_delete=models.CASCADE, related_name="mapped_from"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "target_version"], name="uniq_mapping_per_source"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source.key} → {self.target.key if self.target else '(dropped)'}"


# --- Projects ---------------------------------------------------------------------------


class Project(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(
        blank=True,
        help_text="The domain context: who speaks, to whom, on what channel. Anger in a game's "
        "voice chat is not anger at a support agent.",
    )
    guidelines = models.TextField(blank=True)
    taxonomy_version = models.ForeignKey(
        TaxonomyVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="projects"
    )
    annotators_per_clip = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )
    is_active = models.BooleanField(default=True, help_text="Paused projects hand out no work.")

    # --- Queue ---
    queue_policy = models.CharField(
        max_length=16,
        default="active",
        choices=[
            ("active", "Active learning (model ranking; stratified before the first model)"),
            ("stratified", "Stratified by speaker and gender"),
            ("random", "Random"),
        ],
        help_text="How the next clip is chosen: the active model's ranking (the learning "
        "loop), stratified by speaker and gender so early labels cover the population, or "
        "random.",
    )
    lease_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(30), MaxValueValidator(24 * 3600)]
    )
    gold_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0), MaxValueValidator(0.5)],
        help_text="Share of served clips that are gold clips (known answer, scored silently).",
    )
    agreement_routing = models.BooleanField(
        default=False,
        help_text="Route a clip whose first annotations disagree at the core ring to further "
        "annotators until the agreement target or the maximum is reached.",
    )
    agreement_target = models.FloatField(
        default=0.66, validators=[MinValueValidator(0.5), MaxValueValidator(1.0)]
    )
    max_annotators_per_clip = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(20)]
    )

    # --- Labelling page ---
    assisted = models.BooleanField(
        default=False, help_text="Show the model's suggestion (assisted) or not (blind)."
    )
    autoplay = models.BooleanField(default=True)
    require_full_listen = models.BooleanField(
        default=False, help_text="Refuse a submit until the clip was heard to the end."
    )
    dimensional_labels = models.BooleanField(
        default=False, help_text="Ask for a valence/arousal point besides the wheel."
    )
    # through_fields: Membership has a second user key (deactivated_by).
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", through_fields=("project", "user"),
        related_name="projects",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    created_at = models.DateTimeField(auto_now_add=True)
    # A deactivated member is no member at any door (labelling.services.access reads only
    # active rows); their labels, history and audit events stay. Changed only through
    # labelling.services.membership, which releases their leases in the same transaction.
    is_active = models.BooleanField(default=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )  # fmt: skip

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "project"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class Invitation(models.Model):
    """An offer to join a project with a role, redeemed once by whoever holds the token.

    Project admins add people by invitation (only staff add an existing account directly):
    an admin cannot pull an arbitrary account of the instance into their project. Only the
    token's SHA-256 is stored; the token itself is shown once, to the admin who created it.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    token_sha256 = models.CharField(max_length=64, unique=True)
    note = models.CharField(max_length=200, blank=True, help_text="Whom it is for.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="accepted_invitations",
    )  # fmt: skip
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invitation to {self.project} as {self.role}"


# --- Imports and clips ------------------------------------------------------------------


class ClipSource(models.TextChoices):
    UPLOAD = "upload", "Upload"
    FOLDER = "folder", "Folder import"
    ARCHIVE = "archive", "Archive import"
    URL = "url", "URL import"
    PRODUCTION = "production", "Production segment"
    CORPUS = "corpus", "Public corpus"


class ImportBatch(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    source = models.CharField(max_length=16, choices=ClipSource.choices)
    origin = models.CharField(max_length=500, blank=True, help_text="Path, archive or URL.")
    segment = models.BooleanField(default=False, help_text="Cut long files into utterances.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its pending items were last sent to the workers; empty: not "
        "sent (the broker was down), the beat task sends them.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "import batches"

    def __str__(self) -> str:
        return f"Import #{self.pk} into {self.project.slug}"


class ImportItem(models.Model):
    """One file of a batch, with its outcome. The staged bytes are deleted once processed."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DUPLICATE = "duplicate", "Duplicate"
        REJECTED = "rejected", "Rejected"
        # An archive whose members became items of their own (not a file outcome).
        EXPANDED = "expanded", "Archive expanded"

    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="items")
    name = models.CharField(max_length=500, help_text="The file's name as given by the user.")
    staged_path = models.CharField(max_length=500, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reason_code = models.CharField(max_length=32, blank=True)
    reason = models.TextField(blank=True)
    clips_created = models.PositiveIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "pk"]
        indexes = [models.Index(fields=["batch", "status"], name="importitem_batch_status")]

    def __str__(self) -> str:
        return self.name


class Recording(models.Model):
    """A long production file that was segmented into utterance clips."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="recordings")
    batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="recordings"
    )
    original = models.FileField(upload_to="recordings/", max_length=300)
    original_name = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    duration_s = models.FloatField()
    sample_rate = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "sha256"], name="uniq_recording_sha")
        ]

    def __str__(self) -> str:
        return self.original_name


class Gender(models.TextChoices):
    FEMALE = "female", "Female"
    MALE = "male", "Male"
    OTHER = "other", "Other"
    UNKNOWN = "", "Unknown"


class Clip(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="clips")
    batch = models.ForeignKey(
        ImportBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="clips"
    )
    recording = models.ForeignKey(
        Recording, null=True, blank=True, on_delete=models.CASCADE, related_name="clips"
    )
    start_s = models.FloatField(null=True, blank=True, help_text="Offset in the recording.")
    end_s = models.FloatField(null=True, blank=True)

    original = models.FileField(upload_to="clips/original/", max_length=300)
    original_name = models.CharField(max_length=500)
    original_format = models.CharField(max_length=16)
    canonical = models.FileField(
        upload_to="clips/canonical/", max_length=300, help_text="16 kHz mono PCM WAV."
    )
    sha256 = models.CharField(max_length=64)
    duration_s = models.FloatField()
    sample_rate = models.PositiveIntegerField()
    channels = models.PositiveSmallIntegerField()
    peaks = models.JSONField(default=list, blank=True, help_text="Waveform outline, 100/s.")
    rms_dbfs = models.FloatField(
        null=True, blank=True, help_text="Loudness of the canonical audio, for normalised playback."
    )

    source = models.CharField(max_length=16, choices=ClipSource.choices)
    speaker_id = models.CharField(max_length=120, blank=True)
    gender = models.CharField(max_length=8, choices=Gender.choices, blank=True)
    age_band = models.CharField(max_length=16, blank=True)
    language = models.CharField(max_length=35, blank=True, help_text="BCP 47 tag, e.g. de-DE.")
    dialect = models.CharField(max_length=80, blank=True)
    channel = models.CharField(max_length=40, blank=True, help_text="phone, studio, …")
    transcript = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            # Duplicates within a project are refused; ingestion relies on this to be
            # idempotent when two workers see the same file.
            models.UniqueConstraint(fields=["project", "sha256"], name="uniq_clip_sha_per_project")
        ]
        indexes = [
            models.Index(fields=["project", "speaker_id"], name="clip_project_speaker"),
        ]

    def __str__(self) -> str:
        return self.original_name


# --- Annotations ------------------------------------------------------------------------


class SkipReason(models.TextChoices):
    NO_SPEECH = "no_speech", "No speech"
    SEVERAL_SPEAKERS = "several_speakers", "Several speakers"
    NOISE = "noise", "Noise"
    OTHER_LANGUAGE = "other_language", "Other language"
    OTHER = "other", "Other"


class Intensity(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class LabelSource(models.TextChoices):
    """Where an annotation came from: the project's own annotators, or an imported corpus
    (a named, inactive rater such as `corpus:emodb`). Corpus labels are kept apart: they
    take no queue slot and count in no annotator's work, stats or agreement figures."""

    HUMAN = "human", "Project annotator"
    CORPUS = "corpus", "Imported corpus"


class Annotation(models.Model):
    """One annotator's judgement of one clip.

    Only one annotation per annotator and clip is current; a new judgement marks the old one
    superseded rather than deleting it, so the history stays.
    """

    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="annotations")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="annotations"
    )
    node = models.ForeignKey(
        TaxonomyNode, null=True, blank=True, on_delete=models.PROTECT, related_name="annotations"
    )
    intensity = models.CharField(max_length=8, choices=Intensity.choices, blank=True)
    unsure = models.BooleanField(default=False)
    skip_reason = models.CharField(max_length=20, choices=SkipReason.choices, blank=True)
    time_spent_ms = models.PositiveIntegerField(default=0)
    suggestion_shown = models.BooleanField(default=False)
    play_count = models.PositiveSmallIntegerField(default=0)
    heard_to_end = models.BooleanField(default=False)
    valence = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-1), MaxValueValidator(1)]
    )
    arousal = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-1), MaxValueValidator(1)]
    )
    # A retried submit carries the same client-generated id and records nothing new.
    client_id = models.UUIDField(null=True, blank=True, unique=True)
    lease = models.ForeignKey(
        "Lease", null=True, blank=True, on_delete=models.SET_NULL, related_name="annotations"
    )
    is_current = models.BooleanField(default=True)
    label_source = models.CharField(
        max_length=8, choices=LabelSource.choices, default=LabelSource.HUMAN
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["clip", "annotator"],
                condition=Q(is_current=True),
                name="one_current_annotation_per_annotator",
            ),
            # Exactly one of a feeling or a skip reason.
            models.CheckConstraint(
                condition=(Q(node__isnull=False) & Q(skip_reason=""))
                | (Q(node__isnull=True) & ~Q(skip_reason="")),
                name="annotation_node_xor_skip",
            ),
        ]
        indexes = [
            models.Index(fields=["clip", "is_current"], name="annotation_clip_current"),
        ]

    def __str__(self) -> str:
        what = self.node.key if self.node is not None else f"skip:{self.skip_reason}"
        return f"{self.annotator} → {what} on clip {self.clip_id}"


# --- Queue ------------------------------------------------------------------------------


class QueueEntry(models.Model):
    """A clip's place in its project's labelling queue.

    `open_slots` is how many more annotators may take the clip: the overlap target less the
    current labels and the active leases. The check constraint is what keeps a clip from
    being handed out beyond its overlap, whatever the application does; the queue takes a
    slot with a compare-and-set update guarded by it.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="queue")
    clip = models.OneToOneField(Clip, on_delete=models.CASCADE, related_name="queue_entry")
    priority = models.FloatField(default=0.0, help_text="Lower is served first.")
    stratum = models.CharField(max_length=200, blank=True)
    target = models.PositiveSmallIntegerField(default=1)
    open_slots = models.SmallIntegerField(default=1)
    is_gold = models.BooleanField(default=False)
    # Why the clip is where it is (strategy, score, model version, batch) - filled by rankers.
    reason = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(open_slots__gte=0), name="queue_open_slots_gte_0"),
        ]
        indexes = [
            # The next-clip query's two candidate windows (services/queue/lease.py): open clips
            # that some annotators have started, and untouched ones, each in priority order.
            models.Index(
                fields=["project", "priority"],
                condition=Q(open_slots__gt=0, open_slots__lt=F("target"), is_gold=False),
                name="queue_started_by_priority",
            ),
            models.Index(
                fields=["project", "priority"],
                condition=Q(open_slots__gt=0, open_slots=F("target"), is_gold=False),
                name="queue_fresh_by_priority",
            ),
        ]
        verbose_name_plural = "queue entries"

    def __str__(self) -> str:
        return f"clip {self.clip_id} ({self.open_slots}/{self.target} open)"


class Lease(models.Model):
    """A clip handed to one annotator for a limited time."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        DONE = "done", "Submitted"
        EXPIRED = "expired", "Expired"

    id = models.UUIDField(primary_key=True)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="leases")
    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="leases")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    is_gold = models.BooleanField(default=False)
    # An undo re-leases the annotator's own clip to revise this annotation; takes no slot.
    revises = models.ForeignKey(
        Annotation, null=True, blank=True, on_delete=models.SET_NULL, related_name="revisions"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        indexes = [
            # Exclusion of clips this annotator already has (NOT EXISTS in the next query).
            models.Index(fields=["clip", "annotator", "status"], name="lease_clip_annotator"),
            # Reclaiming expired leases, and counting an annotator's open leases.
            models.Index(
                fields=["project", "expires_at"],
                condition=Q(status="active"),
                name="lease_active_expiry",
            ),
            models.Index(fields=["annotator", "project", "status"], name="lease_annotator_status"),
        ]

    def __str__(self) -> str:
        return f"lease {self.id} of clip {self.clip_id} to {self.annotator_id} ({self.status})"


class GoldClip(models.Model):
    """A clip with a known answer, interleaved in annotators' work and scored silently."""

    clip = models.OneToOneField(Clip, on_delete=models.CASCADE, related_name="gold")
    node = models.ForeignKey(TaxonomyNode, on_delete=models.PROTECT, related_name="gold_clips")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"gold clip {self.clip_id} = {self.node.key}"


class GoldResult(models.Model):
    """How one annotator's answer on a gold clip scored."""

    annotation = models.OneToOneField(
        Annotation, on_delete=models.CASCADE, related_name="gold_result"
    )
    gold = models.ForeignKey(GoldClip, on_delete=models.CASCADE, related_name="results")
    correct_core = models.BooleanField()
    correct_exact = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"gold {self.gold_id}: core={self.correct_core} exact={self.correct_exact}"


# Weak labels (external models' predictions) live beside, in their own module.
from labelling.models_interop import WeakLabel  # noqa: E402, F401
