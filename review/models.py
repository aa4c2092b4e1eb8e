"""Adjudications (a reviewer's decision on a clip) and the per-project quality snapshot.

An adjudication never touches the annotators' labels: it is a record of its own. A later one
on the same clip supersedes the earlier (history kept, one current per clip, held by a
partial unique index like Annotation's).

The quality figures of a big project take seconds to compute (300,000 labels), so the pages
read them from a snapshot computed by a Celery task (`review.tasks.refresh_quality`) and say
how fresh it is: `last_annotation_id` is the newest annotation of the project when it was
computed; a newer one means labels changed since.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from labelling.models import Clip, Project, TaxonomyNode


class Adjudication(models.Model):
    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="adjudications")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="adjudications")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="adjudications"
    )
    node = models.ForeignKey(TaxonomyNode, on_delete=models.PROTECT, related_name="adjudications")
    note = models.TextField(blank=True)
    is_current = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["clip"], condition=Q(is_current=True), name="one_current_adjudication"
            )
        ]
        indexes = [
            models.Index(
                fields=["project", "clip"],
                condition=Q(is_current=True),
                name="adjudication_current",
            )
        ]

    def __str__(self) -> str:
        return f"clip {self.clip_id} → {self.node.key} by {self.reviewer}"


class QualitySnapshot(models.Model):
    """The quality figures of one project as of `computed_at` (JSON, see
    review.services.quality): per annotator and agreement, each in its own column so a page
    decodes only what it shows. The review queue is in ReviewItem rows."""

    project = models.OneToOneField(
        Project, on_delete=models.CASCADE, related_name="quality_snapshot"
    )
    computed_at = models.DateTimeField()
    last_annotation_id = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0.0, help_text="How long the computation took.")
    figures = models.JSONField(default=dict)
    agreement = models.JSONField(default=dict)

    def __str__(self) -> str:
        return f"quality of {self.project_id} at {self.computed_at:%Y-%m-%d %H:%M}"


class ReviewItem(models.Model):
    """A clip of the review queue, as of the project's last snapshot (rows, not JSON: a big
    project has tens of thousands, and the queue page pages through them in SQL, leaving
    out the clips adjudicated since)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="review_items")
    clip = models.ForeignKey(Clip, on_delete=models.CASCADE, related_name="review_items")
    gold_failed = models.BooleanField(default=False)
    disagreement = models.BooleanField(default=False)
    unsure = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "clip"], name="one_review_item_per_clip")
        ]

    def __str__(self) -> str:
        return f"review clip {self.clip_id}: {', '.join(self.reasons())}"

    def reasons(self) -> list[str]:
        return [r for r in ("gold_failed", "disagreement", "unsure") if getattr(self, r)]
