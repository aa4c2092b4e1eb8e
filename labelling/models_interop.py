"""Weak labels: an external model's predictions on a project's clips, imported with their
provenance (issue 10, "Interop in").

They are not annotations: no annotator gave them, they count in no figure of the
project's own labelling, and an annotator never sees them except as a suggestion in an
assisted project (never on gold clips, never in blind projects). The exporter writes them
to a table of their own; the learner reads them through `labelling.services.loop`.

Imported by `labelling.models` so that Django discovers the model under the labelling app.
"""

from __future__ import annotations

from django.conf import settings
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
