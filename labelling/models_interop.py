"""Weak labels: an external model's predictions on a project's clips, imported with their
provenance (issue 10, "Interop in").

They are not annotations: no annotator gave them, they count in no figure of the
project's own labelling, and an annotator never sees them except as a suggestion in an
assisted project (never on gold clips, never in blind projects). The exporter writes them
to a table of their own; the learner reads them through `labelling.services.loop`.

Imported by `labelling.models` so that Django discovers the model under the labelling app.
"""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import models


class WeakLabel(models.Model):
    """One external model's probability distribution over the wheel for one clip."""

    clip = models.ForeignKey("labelling.Clip", on_delete=models.CASCADE, related_name="weak_labels")
    model_name = models.CharField(max_length=120)
    model_version = models.CharField(max_length=80)
    taxonomy_version = models.ForeignKey(
        "labelling.TaxonomyVersion", on_delete=models.PROTECT, related_name="weak_labels"
    )
    probabilities = models.JSONField(
        help_text="{node key: probability} over nodes of `taxonomy_version`; sums to 1."
    )
    top_node = models.ForeignKey(
        "labelling.TaxonomyNode", on_delete=models.PROTECT, related_name="weak_labels"
    )
    top_probability = models.FloatField()
    source_probabilities = models.JSONField(
        default=dict, blank=True, help_text="The row as given, in the model's own label names."
    )
    # Provenance: who imported it, when, from which file.
    source_file = models.CharField(max_length=500, blank=True)
    imported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    imported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["clip_id", "model_name", "model_version"]
        constraints = [
            models.UniqueConstraint(
                fields=["clip", "model_name", "model_version"], name="uniq_weak_label_per_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_name} {self.model_version} on clip {self.clip_id}"


class WeakLabelSource(models.Model):
    """How much a project's training trusts one external model (its weak labels, all versions):
    the weight of its soft targets against a human label's 1, whether it is used at all, and
    whether to use it although it disagrees with the humans (labelling.services.interop.
    sources flags it; learner.services.weak_labels leaves a flagged source out unless forced).

    A source without a row has the defaults. DEFAULT_WEIGHT 0.3: an external model's
    prediction is a guess made on other data, usually in another recording domain, so it
    counts for under a third of a label (three agreeing weak labels about one human one);
    what it did in the simulator on EmoDB is in docs/active-learning.md, "Weak labels".
    """

    DEFAULT_WEIGHT = 0.3

    project = models.ForeignKey(
        "labelling.Project", on_delete=models.CASCADE, related_name="weak_label_sources"
    )
    model_name = models.CharField(max_length=120)
    weight = models.FloatField(
        default=DEFAULT_WEIGHT, help_text="0..1; a human label weighs 1. 0: not used."
    )
    enabled = models.BooleanField(default=True)
    force = models.BooleanField(
        default=False, help_text="Train on it even while it is flagged for disagreeing."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project_id", "model_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "model_name"], name="uniq_weak_label_source_per_project"
            ),
            models.CheckConstraint(
                condition=models.Q(weight__gte=0) & models.Q(weight__lte=1),
                name="weak_label_source_weight_0_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_name} in project {self.project_id} (weight {self.weight})"


# --- A new corpus clip's annotation ---------------------------------------------------------

# The manifest columns a corpus import (labelling/services/interop/corpus.py) gives each new
# file: its rater and the node its corpus label maps to. They reach the clip's metadata.
CORPUS_RATER_KEY, CORPUS_NODE_KEY = "corpus_rater", "corpus_node"


def _annotate_new_corpus_clip(
    sender: type, instance: models.Model, created: bool, **_: object
) -> None:
    """Write a new corpus clip's corpus annotation in the transaction that creates the clip,
    in whichever process ingests it (a Celery worker or the CLI). A receiver because the
    ingestion does not know about corpora, and it must run wherever clips are created."""
    # By name, not by import: labelling.models imports this module (no import cycle).
    annotation_model = apps.get_model("labelling", "Annotation")
    clip_model = apps.get_model("labelling", "Clip")
    node_model = apps.get_model("labelling", "TaxonomyNode")

    if not created or not isinstance(instance, clip_model) or instance.source != "corpus":
        return
    meta = instance.metadata or {}
    rater_name, node_key = meta.get(CORPUS_RATER_KEY), meta.get(CORPUS_NODE_KEY)
    if not rater_name or not node_key:
        return
    who = get_user_model().objects.filter(username=rater_name, is_active=False).first()
    version_id = instance.project.taxonomy_version_id
    node = node_model.objects.filter(version_id=version_id, key=node_key).first()
    if who is None or node is None:
        return  # the rater or the wheel changed since the import was planned
    annotation_model.objects.create(clip=instance, annotator=who, node=node, label_source="corpus")


models.signals.post_save.connect(
    _annotate_new_corpus_clip, sender="labelling.Clip", dispatch_uid="interop-corpus-clip"
)
