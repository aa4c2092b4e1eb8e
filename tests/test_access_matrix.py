"""docs/security.md, endpoint by endpoint and principal by principal.

`ACCESS_TABLE` below is the contract as data: one row per (URL pattern, HTTP method), with the
minimum each target of the row needs. From it every (row, target, principal) case is
generated and requested against one shared world (tests/access_fixtures.py), each case in
its own savepoint. Two inventory tests keep the table honest: an endpoint of the URL conf or
of the OpenAPI schema without a row fails, and so does a row whose endpoint is gone.

Outcomes, derived from the row's minimum (`expected()`):
- allowed: neither 401/403/404/405 nor a redirect to a login page;
- a member whose role is too low: 403 with `{"detail": ..., "code": ...}`;
- not a member (outsider, staff, everyone but the superuser in project B): 404; a list
  filtered by `?project=` may instead answer an empty 200 (it confirms nothing);
- anonymous: 401/403 on the API, a redirect to /accounts/login/ on pages;
- 5xx: never.
Besides the status, every body an annotator receives is scanned for what they must never
read (file names, clip metadata, other members, gold and queue settings), and every
successful body a non-member of a project receives for that project's markers.

The Django admin, whose URLs are not in the table one by one, has its own tests at the end.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import pytest
from django.contrib.admin.sites import site as admin_site
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.forms import MultiWidget
from django.test import Client, RequestFactory, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from exports.models import DatasetVersion
from labelling.models import Annotation, Clip, Project, Role, TaxonomyVersion
from labelling.services import taxonomy
from tests import access_fixtures as fx
from tests.factories import tone_wav

pytestmark = pytest.mark.django_db

# --- Minimums ----------------------------------------------------------------------------

PUBLIC = "public"  # anyone, signed in or not
SIGNED_IN = "signed in"
ANNOTATOR, REVIEWER = Role.ANNOTATOR.value, Role.REVIEWER.value
ML_ENGINEER, ADMIN = Role.ML_ENGINEER.value, Role.ADMIN.value
STAFF = "staff"  # is_staff (or superuser), whatever the memberships
STAFF_ADMIN = "admin who is staff"  # project admin who is also staff, or the superuser
# The audit log's readers: staff (or the superuser), or an admin of any project at all (the
# outsider, admin of C, included); each reads only what audit.services.events_for allows,
# which the "audit_scope" check verifies.
AUDIT_READER = "staff or an admin of some project"
NOBODY = "nobody"  # the method must not exist: 405 for everyone signed in
ADMIN_SITE = "admin site"  # staff; others are sent to the admin's login page
# /metrics: only a bearer of EMOLOOP_METRICS_TOKEN, never a session or an API token; off
# (404 for everyone) with the token unset, as here (tests/test_ops_observability.py: 401).
METRICS_BEARER = "the metrics bearer token"

RANK = {ANNOTATOR: 0, REVIEWER: 1, ML_ENGINEER: 2, ADMIN: 3}

# --- Targets: what a row's URL points at -------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One object a URL can name. `project`: "A" (the principals' project), "B" (another
    project) or None (the URL names no project). `listing`: a list filtered by ?project=."""

    project: str | None
    params: Callable[[fx.World], dict] = lambda w: {}
    query: str = ""
    setup: Callable[[fx.World], None] | None = None
    listing: bool = False


def _obj(name: str, attr: str = "pk") -> Callable[[fx.World], object]:
    return lambda w: getattr(w.objects[name], attr)


def _blind(world: fx.World) -> None:
    Project.objects.filter(slug=fx.SLUG_A).update(assisted=False)


def _datasets(world: fx.World) -> None:
    """Version 1 of a dataset in A and in B, queued (a ready one is served in
    tests/exports/test_export_api.py): allowed callers get 200 or 409 not_ready."""
    for slug in (fx.SLUG_A, fx.SLUG_B):
        DatasetVersion.objects.create(
            project=Project.objects.get(slug=slug), number=1, created_at=timezone.now()
        )


def _dataset(slug: str, **more: object) -> Target:
    return Target(
        "A" if slug == fx.SLUG_A else "B",
        lambda w: {"slug": slug, "number": 1, **more},
        setup=_datasets,
    )


TARGETS: dict[str, Target] = {
    "-": Target(None),
    "project": Target("A", lambda w: {"slug": fx.SLUG_A}),
    "other_project": Target("B", lambda w: {"slug": fx.SLUG_B}),
    "member": Target(
        "A",
        lambda w: {
            "slug": fx.SLUG_A,
            "id": w.objects["second_membership"].pk,
            "username": fx.SECOND_ANNOTATOR,
        },
    ),
    "other_member": Target(
        "B",
        lambda w: {"slug": fx.SLUG_B, "id": w.objects["b_membership"].pk, "username": fx.B_MEMBER},
    ),
    "invitation": Target("A", lambda w: {"slug": fx.SLUG_A, "id": w.objects["invitation_A"].pk}),
    "other_invitation": Target(
        "B", lambda w: {"slug": fx.SLUG_B, "id": w.objects["invitation_B"].pk}
    ),
    "invitation_token": Target(None, lambda w: {"token": fx.INVITATION_TOKEN_A}),
    "model": Target("A", lambda w: {"slug": fx.SLUG_A, "number": 1}),
    "other_model": Target("B", lambda w: {"slug": fx.SLUG_B, "number": 1}),
    "run": Target("A", lambda w: {"slug": fx.SLUG_A, "run_id": w.objects["run_A"].pk}),
    "other_run": Target("B", lambda w: {"slug": fx.SLUG_B, "run_id": w.objects["run_B"].pk}),
    # Clips of A: in the pool; leased to the annotator; a segment of the leased clip's
    # recording; a gold clip leased to the annotator; and B's clip.
    # `slug` and `clip_id` name the same clip in the review room's URLs.
    "clip": Target(
        "A",
        lambda w: {"id": w.objects["clip"].pk, "slug": fx.SLUG_A, "clip_id": w.objects["clip"].pk},
    ),
    "leased_clip": Target("A", lambda w: {"id": w.objects["leased_clip"].pk}),
    "sibling_clip": Target("A", lambda w: {"id": w.objects["sibling_clip"].pk}),
    "leased_clip?variant=original": Target(
        "A", lambda w: {"id": w.objects["leased_clip"].pk}, query="?variant=original"
    ),
    "leased_gold_clip": Target("A", lambda w: {"id": w.objects["gold_clip"].pk}),
    "leased_clip_in_blind_project": Target(
        "A", lambda w: {"id": w.objects["leased_clip"].pk}, setup=_blind
    ),
    "other_clip": Target(
        "B",
        lambda w: {
            "id": w.objects["other_clip"].pk,
            "slug": fx.SLUG_B,
            "clip_id": w.objects["other_clip"].pk,
        },
    ),
    "import": Target("A", lambda w: {"id": w.objects["import_A"].pk}),
    "other_import": Target("B", lambda w: {"id": w.objects["import_B"].pk}),
    "own_annotation": Target("A", lambda w: {"id": w.objects["own_annotation"].pk}),
    "others_annotation": Target("A", lambda w: {"id": w.objects["others_annotation"].pk}),
    "other_annotation": Target("B", lambda w: {"id": w.objects["other_annotation"].pk}),
    # Lists narrowed to one project with ?project=slug.
    "?project=project": Target("A", query=f"?project={fx.SLUG_A}", listing=True),
    "?project=other_project": Target("B", query=f"?project={fx.SLUG_B}", listing=True),
    # Wheels: an instance preset (used by A), A's own wheel (unused), B's own wheel.
    "preset": Target(None, lambda w: {"slug": "willcox", "number": 1}),
    "wheel": Target("A", lambda w: {"slug": fx.WHEEL_A, "number": 1}),
    "other_wheel": Target("B", lambda w: {"slug": fx.WHEEL_B, "number": 1}),
    "into_project": Target("A", query=f"?project={fx.SLUG_A}"),
    "into_other_project": Target("B", query=f"?project={fx.SLUG_B}"),
    # The quality page of one annotator who has a human label in the project (anyone else:
    # 404 even for reviewers): the annotator in A, B's annotator in B.
    "annotator_quality": Target(
        "A", lambda w: {"slug": fx.SLUG_A, "user_id": w.user("annotator").pk}
    ),
    "other_annotator_quality": Target(
        "B", lambda w: {"slug": fx.SLUG_B, "user_id": w.objects["b_membership"].user_id}
    ),
    # Model version 1's stored confusion matrix (tests/access_fixtures.py writes one).
    "model_plot": Target("A", lambda w: {"slug": fx.SLUG_A, "number": 1, "kind": "confusion"}),
    "other_model_plot": Target(
        "B", lambda w: {"slug": fx.SLUG_B, "number": 1, "kind": "confusion"}
    ),
    # Operations: a recorded task failure (not EmoLoop's, so a retry is refused with 400 and
    # nothing is sent), and /readyz with a fresh worker heartbeat (else it is rightly 503).
    "failure": Target(None, lambda w: {"id": w.objects["failure"].pk}),
    "with_a_worker_heartbeat": Target(None, setup=fx.fresh_heartbeat),
    "dataset": _dataset(fx.SLUG_A),
    "other_dataset": _dataset(fx.SLUG_B),
    "dataset_file": _dataset(fx.SLUG_A, path="version.json"),
    "other_dataset_file": _dataset(fx.SLUG_B, path="version.json"),
    "dataset_diff": _dataset(fx.SLUG_A, other=1),
    "other_dataset_diff": _dataset(fx.SLUG_B, other=1),
    "dataset_hf": _dataset(fx.SLUG_A, fmt="hf"),
    "other_dataset_hf": _dataset(fx.SLUG_B, fmt="hf"),
}

PROJECTS = ("project", "other_project")

# --- The table ---------------------------------------------------------------------------

FILE = object()  # in a multipart body: a fresh small WAV upload


@dataclass(frozen=True)
class Row:
    """One (URL pattern, method). `needs` is the minimum on every target in `on`, or a
    mapping target -> minimum where targets differ (the special rules of the contract)."""

    path: str
    method: str
    needs: str | Mapping[str, str]
    on: tuple[str, ...] = ("-",)
    body: Mapping[str, object] | str | None = None  # "{name}": a value from the context
    multipart: bool = False
    check: str | None = None  # an extra check on the body, see CHECKS
    # False where the body legitimately names the project and its people: an invitation
    # says who sent it, and redeeming one makes the caller a member.
    scan: bool = True
    # Tells apart two rows of one (path, method) that differ by their body.
    variant: str = ""

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.needs) if isinstance(self.needs, Mapping) else self.on

    def need_on(self, target: str) -> str:
        return self.needs[target] if isinstance(self.needs, Mapping) else self.needs

    @property
    def is_page(self) -> bool:
        return not self.path.startswith("/api/")

    def __str__(self) -> str:
        return f"{self.method} {self.path}" + (f" [{self.variant}]" if self.variant else "")


WAV_UPLOAD = {"files": [FILE]}
# A wheel's next version: its own content exported and renamed, every node mapped to itself.
NEXT_VERSION = {"based_on": 1, "document": "{revised}", "mapping": "{identity}", "note": "typo"}
NO_SUCH_LOGIN = {"username": "{unknown_user}", "password": "not-the-password"}

ACCESS_TABLE: tuple[Row, ...] = (
    # Projects
    Row("/api/projects/", "GET", SIGNED_IN),
    Row("/api/projects/", "POST", STAFF, body={"name": "New project", "slug": "new-project"}),
    Row("/api/projects/{slug}/", "GET", ANNOTATOR, on=PROJECTS, check="labelling_subset"),
    Row("/api/projects/{slug}/", "PUT", ADMIN, on=PROJECTS,
        body={"name": "Renamed", "slug": "{slug}", "description": "", "guidelines": ""}),
    Row("/api/projects/{slug}/", "PATCH", ADMIN, on=PROJECTS, body={"name": "Renamed"}),
    Row("/api/projects/{slug}/", "DELETE", ADMIN, on=PROJECTS),
    Row("/api/projects/{slug}/taxonomy/", "POST", ADMIN, on=PROJECTS,
        body={"taxonomy": "willcox", "version": 1}),
    Row("/api/projects/{slug}/imports/", "POST", ML_ENGINEER, on=PROJECTS, body=WAV_UPLOAD,
        multipart=True),
    # Interop in: a labelled corpus, predictions as weak labels, a Label Studio export.
    Row("/api/projects/{slug}/corpus-imports/", "POST", ML_ENGINEER, on=PROJECTS,
        body={"preset": "emodb", "audio": FILE, "labels": FILE}, multipart=True),
    Row("/api/projects/{slug}/predictions/", "POST", ML_ENGINEER, on=PROJECTS,
        body={"file": FILE, "model": "m", "model_version": "1"}, multipart=True),
    Row("/api/projects/{slug}/predictions/", "GET", ML_ENGINEER, on=PROJECTS),
    # A weak-label source's settings (the source named like the project, any name will do).
    Row("/api/projects/{slug}/predictions/{slug}/", "PATCH", ML_ENGINEER, on=PROJECTS,
        body={"weight": 0.5}),
    Row("/api/projects/{slug}/labelstudio-imports/", "POST", ML_ENGINEER, on=PROJECTS,
        body={"file": FILE}, multipart=True),
    # The labelling queue
    Row("/api/projects/{slug}/next/", "POST", ANNOTATOR, on=PROJECTS),
    Row("/api/projects/{slug}/annotations/", "POST", ANNOTATOR, on=PROJECTS,
        body={"lease": "{lease}", "client_id": "{client_id}", "node": "mad"}),
    Row("/api/projects/{slug}/undo/", "POST", ANNOTATOR, on=PROJECTS),
    # Members and invitations: a project admin who is not staff invites, staff add directly.
    Row("/api/projects/{slug}/members/", "GET", REVIEWER, on=PROJECTS),
    Row("/api/projects/{slug}/members/", "POST", STAFF_ADMIN, on=PROJECTS,
        body={"username": fx.NEWCOMER, "role": "annotator"}),
    Row("/api/projects/{slug}/members/{id}/", "PUT", ADMIN, on=("member", "other_member"),
        body={"role": "reviewer"}),
    Row("/api/projects/{slug}/members/{id}/", "PATCH", ADMIN, on=("member", "other_member"),
        body={"role": "reviewer"}),
    # Deactivating a member (their leases released): the same admins as a role change.
    Row("/api/projects/{slug}/members/{id}/", "PATCH", ADMIN, on=("member", "other_member"),
        body={"is_active": False}, variant="deactivate"),
    Row("/api/projects/{slug}/members/{id}/", "DELETE", ADMIN, on=("member", "other_member")),
    Row("/api/projects/{slug}/invitations/", "GET", ADMIN, on=PROJECTS),
    Row("/api/projects/{slug}/invitations/", "POST", ADMIN, on=PROJECTS,
        body={"role": "annotator", "note": "for Nina"}),
    Row("/api/projects/{slug}/invitations/{id}/", "DELETE", ADMIN,
        on=("invitation", "other_invitation")),
    # Redeeming a token makes the caller a member: the response names the project.
    Row("/api/invitations/accept/", "POST", SIGNED_IN, on=("invitation_token",),
        body={"token": "{token}"}, scan=False),
    # The learner
    Row("/api/projects/{slug}/predict", "POST", REVIEWER, on=PROJECTS, body={"file": FILE},
        multipart=True),
    Row("/api/projects/{slug}/models", "GET", REVIEWER, on=PROJECTS),
    Row("/api/projects/{slug}/models/{number}", "GET", REVIEWER, on=("model", "other_model")),
    Row("/api/projects/{slug}/models/{number}/activate", "POST", ML_ENGINEER,
        on=("model", "other_model")),
    Row("/api/projects/{slug}/training-runs", "GET", REVIEWER, on=PROJECTS),
    Row("/api/projects/{slug}/training-runs", "POST", ML_ENGINEER, on=PROJECTS, body={}),
    Row("/api/projects/{slug}/training-runs/{run_id}", "GET", REVIEWER, on=("run", "other_run")),
    Row("/api/projects/{slug}/rankings", "GET", ML_ENGINEER, on=PROJECTS),
    Row("/api/projects/{slug}/learner-settings", "GET", REVIEWER, on=PROJECTS),
    Row("/api/projects/{slug}/learner-settings", "PATCH", ML_ENGINEER, on=PROJECTS,
        body={"epochs": 30}),
    Row("/api/learner/feature-sets", "GET", SIGNED_IN),
    # Dataset versions: ML engineers and admins only (issue 10: an annotator cannot create
    # or download a dataset; reviewers neither).
    Row("/api/projects/{slug}/datasets/", "GET", ML_ENGINEER, on=PROJECTS),
    Row("/api/projects/{slug}/datasets/", "POST", ML_ENGINEER, on=PROJECTS, body={"seed": 3}),
    Row("/api/projects/{slug}/datasets/{number}/", "GET", ML_ENGINEER,
        on=("dataset", "other_dataset")),
    Row("/api/projects/{slug}/datasets/{number}/files/", "GET", ML_ENGINEER,
        on=("dataset", "other_dataset")),
    Row("/api/projects/{slug}/datasets/{number}/files/{path}", "GET", ML_ENGINEER,
        on=("dataset_file", "other_dataset_file")),
    Row("/api/projects/{slug}/datasets/{number}/download.zip", "GET", ML_ENGINEER,
        on=("dataset", "other_dataset")),
    Row("/api/projects/{slug}/datasets/{number}/download/{fmt}.zip", "GET", ML_ENGINEER,
        on=("dataset_hf", "other_dataset_hf")),
    Row("/api/projects/{slug}/datasets/{number}/diff/{other}/", "GET", ML_ENGINEER,
        on=("dataset_diff", "other_dataset_diff")),
    # Clips: annotators reach only the audio of what they were leased, never the pool.
    # A list with no ?project= needs the role in some project (an annotator: 403).
    Row("/api/clips/", "GET", REVIEWER, on=("-", "?project=project", "?project=other_project")),
    Row("/api/clips/{id}/", "GET", REVIEWER, on=("clip", "leased_clip", "other_clip")),
    Row("/api/clips/{id}/", "PUT", ML_ENGINEER, on=("clip", "other_clip"),
        body={"speaker_id": "s9", "gender": "female", "age_band": "", "language": "de-DE",
              "dialect": "", "channel": "studio", "transcript": "", "metadata": {}}),
    Row("/api/clips/{id}/", "PATCH", ML_ENGINEER, on=("clip", "other_clip"),
        body={"speaker_id": "s9"}),
    Row("/api/clips/{id}/", "DELETE", ADMIN, on=("clip", "other_clip")),
    Row("/api/clips/{id}/audio/", "GET", {
        "clip": REVIEWER,
        "leased_clip": ANNOTATOR,
        "sibling_clip": ANNOTATOR,  # a segment of the same recording: context playback
        "leased_clip?variant=original": REVIEWER,  # the upload's tags may name the emotion
        "other_clip": REVIEWER,
    }, check="wav"),
    Row("/api/clips/{id}/peaks/", "GET", {
        "clip": REVIEWER,
        "leased_clip": ANNOTATOR,
        "sibling_clip": ANNOTATOR,
        "other_clip": REVIEWER,
    }),
    Row("/api/clips/{id}/gold/", "POST", REVIEWER, on=("clip", "other_clip"),
        body={"node": "mad"}),
    Row("/api/clips/{id}/prediction", "GET", {
        "clip": REVIEWER,
        "leased_clip": ANNOTATOR,  # assisted project, non-gold, leased
        "leased_gold_clip": REVIEWER,  # a prediction would give the gold answer away
        "leased_clip_in_blind_project": REVIEWER,
        "other_clip": REVIEWER,
    }),
    # Imports
    Row("/api/imports/", "GET", ML_ENGINEER,
        on=("-", "?project=project", "?project=other_project")),
    Row("/api/imports/{id}/", "GET", ML_ENGINEER, on=("import", "other_import")),
    Row("/api/imports/{id}/items/", "GET", ML_ENGINEER, on=("import", "other_import")),
    # Annotations: read-only; annotators read their own only.
    Row("/api/annotations/", "GET", ANNOTATOR,
        on=("-", "?project=project", "?project=other_project"), check="own_annotations_only"),
    Row("/api/annotations/", "POST", NOBODY, body={"clip": 1, "node": "mad"}),
    Row("/api/annotations/{id}/", "GET", {
        "own_annotation": ANNOTATOR,
        "others_annotation": REVIEWER,
        "other_annotation": REVIEWER,
    }),
    # Taxonomies: presets for everyone signed in, a project's own wheels for its members.
    Row("/api/taxonomies/", "GET", SIGNED_IN),
    Row("/api/taxonomies/{slug}/", "GET",
        {"preset": SIGNED_IN, "wheel": ANNOTATOR, "other_wheel": ANNOTATOR}),
    Row("/api/taxonomies/{slug}/versions/", "GET",
        {"preset": SIGNED_IN, "wheel": ANNOTATOR, "other_wheel": ANNOTATOR}),
    Row("/api/taxonomies/{slug}/versions/{number}/", "GET",
        {"preset": SIGNED_IN, "wheel": ANNOTATOR, "other_wheel": ANNOTATOR}),
    Row("/api/taxonomies/import/", "POST",
        {"-": STAFF, "into_project": ML_ENGINEER, "into_other_project": ML_ENGINEER},
        body=fx.wheel_document("imported-wheel", "Imported wheel")),
    Row("/api/taxonomies/{slug}/versions/", "POST",
        {"preset": STAFF, "wheel": ML_ENGINEER, "other_wheel": ML_ENGINEER},
        body=NEXT_VERSION),
    # The preset's version 1 is used by projects: staff get 409, which is "allowed".
    Row("/api/taxonomies/{slug}/versions/{number}/", "PUT",
        {"preset": STAFF, "wheel": ML_ENGINEER, "other_wheel": ML_ENGINEER}, body="{revised}"),
    # Pages
    Row("/", "GET", SIGNED_IN),
    Row("/projects/{slug}/", "GET", ANNOTATOR, on=PROJECTS),
    Row("/projects/{slug}/label/", "GET", ANNOTATOR, on=PROJECTS),
    Row("/projects/{slug}/datasets/", "GET", ML_ENGINEER, on=PROJECTS),
    Row("/invitations/{token}/", "GET", SIGNED_IN, on=("invitation_token",), scan=False),
    Row("/invitations/{token}/", "POST", SIGNED_IN, on=("invitation_token",), scan=False),
    Row("/healthz", "GET", PUBLIC),
    Row("/accounts/login/", "GET", PUBLIC),
    Row("/accounts/login/", "POST", PUBLIC, body=NO_SUCH_LOGIN),
    # Django's LoginView (a FormView) answers PUT like POST, behind the same login guard.
    Row("/accounts/login/", "PUT", PUBLIC),
    # Logging out is open to anyone (it only ends the caller's own session).
    Row("/accounts/logout/", "POST", PUBLIC),
    Row("/api/auth/token/", "POST", PUBLIC, body=NO_SUCH_LOGIN),
    Row("/api/schema/", "GET", PUBLIC),
    Row("/api/docs/", "GET", PUBLIC),
    # The Django admin: one row here, its scoping in the admin tests at the end.
    Row("/admin/", "*", ADMIN_SITE),
    # The admin's own login page (emoloop.auth.admin_login, mounted ahead of the admin),
    # behind the same login guard as the other two doors.
    Row("/admin/login/", "GET", PUBLIC),
    Row("/admin/login/", "POST", PUBLIC, body=NO_SUCH_LOGIN),
    # Quality and review (issue 11): reviewers and above, pages and API alike.
    Row("/projects/{slug}/quality/", "GET", REVIEWER, on=PROJECTS),
    Row("/projects/{slug}/quality/agreement/", "GET", REVIEWER, on=PROJECTS),
    Row("/projects/{slug}/quality/annotators/{user_id}/", "GET", REVIEWER,
        on=("annotator_quality", "other_annotator_quality")),
    Row("/projects/{slug}/review/", "GET", REVIEWER, on=PROJECTS),
    Row("/projects/{slug}/review/clips/{clip_id}/", "GET", REVIEWER, on=("clip", "other_clip")),
    Row("/projects/{slug}/review/clips/{clip_id}/", "POST", REVIEWER, on=("clip", "other_clip"),
        body={"node": "mad", "note": "checked"}),
    Row("/api/projects/{slug}/quality/", "GET", REVIEWER, on=PROJECTS),
    Row("/api/projects/{slug}/quality/agreement/", "GET", REVIEWER, on=PROJECTS),
    Row("/api/projects/{slug}/quality/annotators/{user_id}/", "GET", REVIEWER,
        on=("annotator_quality", "other_annotator_quality")),
    Row("/api/projects/{slug}/review/", "GET", REVIEWER, on=PROJECTS),
    Row("/api/projects/{slug}/review/adjudications/", "GET", REVIEWER, on=PROJECTS),
    Row("/api/projects/{slug}/review/clips/{clip_id}/", "GET", REVIEWER,
        on=("clip", "other_clip")),
    Row("/api/projects/{slug}/review/clips/{clip_id}/", "POST", REVIEWER,
        on=("clip", "other_clip"), body={"node": "mad", "note": "checked"}),
    # The ML engineer's console (issue 11): ML engineers and admins of the project; the
    # labelling settings form is the project admins' (as PATCH /api/projects/<slug>/ is).
    Row("/projects/{slug}/overview/", "GET", ML_ENGINEER, on=PROJECTS),
    Row("/projects/{slug}/imports/", "GET", ML_ENGINEER, on=PROJECTS),
    Row("/projects/{slug}/models/", "GET", ML_ENGINEER, on=PROJECTS),
    Row("/projects/{slug}/models/{number}/{kind}.png", "GET", ML_ENGINEER,
        on=("model_plot", "other_model_plot"), check="png"),
    Row("/projects/{slug}/ranking/", "GET", ML_ENGINEER, on=PROJECTS),
    Row("/projects/{slug}/settings/", "GET", ML_ENGINEER, on=PROJECTS),
    Row("/projects/{slug}/settings/", "POST", ML_ENGINEER, on=PROJECTS,
        body={"form": "learner", "epochs": "30"}, variant="learner settings"),
    Row("/projects/{slug}/settings/", "POST", ADMIN, on=PROJECTS,
        body={"form": "project", "gold_rate": "0.2"}, variant="labelling settings"),
    # Users and roles (issue 11): the project's admins, as the members API's writes are.
    Row("/projects/{slug}/members/", "GET", ADMIN, on=PROJECTS),
    # Operations (issue 11): instance admins (staff) only; /readyz is for load balancers.
    Row("/ops/", "GET", STAFF),
    Row("/api/ops/overview/", "GET", STAFF),
    Row("/api/ops/failures/", "GET", STAFF),
    Row("/api/ops/failures/{id}/retry/", "POST", STAFF, on=("failure",)),
    Row("/api/ops/storage/measure/", "POST", STAFF),
    Row("/readyz", "GET", PUBLIC, on=("with_a_worker_heartbeat",)),
    Row("/metrics", "GET", METRICS_BEARER),
    # The audit log: staff and project admins, each reading only their share.
    Row("/audit/", "GET", AUDIT_READER, check="audit_scope"),
    Row("/api/audit/", "GET", AUDIT_READER, check="audit_scope"),
)  # fmt: skip

# --- Expected outcomes -------------------------------------------------------------------

ALLOW = "allowed"
DENY = "403"
HIDDEN = "404"
HIDDEN_OR_EMPTY = "404 or an empty list"
# A list filtered on a project the caller is not in, by a caller who may not list these
# anywhere: the unfiltered list's 403, or the filter's 404 or empty list. The contract does
# not say which check comes first; neither confirms that the project exists.
DENY_OR_HIDDEN = "403, 404 or an empty list"
ANON = "401/403"
LOGIN = "302 to /accounts/login/"
ADMIN_LOGIN = "302 to /admin/login/"
NOT_ALLOWED = "405"


def role_of(principal: str, project: str | None) -> str | None:
    """The principal's role in one project, or (project None) their highest anywhere."""
    if principal in fx.SUPERUSERS:
        return ADMIN
    roles = fx.ROLES[principal]
    if project is not None:
        role = roles.get(project)
        return role.value if role else None
    return max((r.value for r in roles.values()), key=RANK.__getitem__, default=None)


def expected(row: Row, target_name: str, principal: str) -> str:
    need = row.need_on(target_name)
    target = TARGETS[target_name]
    if need == PUBLIC:
        return ALLOW
    if need == METRICS_BEARER:
        return HIDDEN
    if need == ADMIN_SITE:
        return ALLOW if principal in fx.STAFF else ADMIN_LOGIN
    if principal == "anonymous":
        return LOGIN if row.is_page else ANON
    if need == NOBODY:
        return NOT_ALLOWED
    role = role_of(principal, target.project)
    if target.project is not None and role is None:
        if not target.listing:
            return HIDDEN
        anywhere = role_of(principal, None)
        if need in RANK and (anywhere is None or RANK[anywhere] < RANK[need]):
            return DENY_OR_HIDDEN
        return HIDDEN_OR_EMPTY
    if need == SIGNED_IN:
        return ALLOW
    if need == STAFF:
        return ALLOW if principal in fx.STAFF else DENY
    if need == STAFF_ADMIN:
        return ALLOW if role == ADMIN and principal in fx.STAFF else DENY
    if need == AUDIT_READER:
        admin_somewhere = Role.ADMIN in fx.ROLES[principal].values()
        return ALLOW if principal in fx.STAFF or admin_somewhere else DENY
    # A role in the project the URL names, or (a URL naming none) in some project.
    return ALLOW if role is not None and RANK[role] >= RANK[need] else DENY


@dataclass(frozen=True)
class Case:
    row: Row
    target: str
    principal: str
    outcome: str = field(compare=False)

    def __str__(self) -> str:
        where = "" if self.target == "-" else f" @{self.target}"
        return f"{self.row}{where} as {self.principal}"


def all_cases() -> Iterator[Case]:
    for row in ACCESS_TABLE:
        for target in row.targets:
            for principal in fx.PRINCIPALS:
                yield Case(row, target, principal, expected(row, target, principal))


CASES = tuple(all_cases())

# --- The world, once per module -----------------------------------------------------------


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[fx.World]:
    """Built once, rolled back at the end; each test runs in a savepoint inside."""
    media = tmp_path_factory.mktemp("access-media")
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=str(media)):
        outer = transaction.atomic()
        outer.__enter__()
        try:
            built = fx.build_world()
            built.objects["media_root"] = media
            yield built
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def media_root(world, settings):
    """Overrides the suite's per-test media folder: the world's files live in one place."""
    settings.MEDIA_ROOT = str(world.objects["media_root"])
    return world.objects["media_root"]


# --- Requests ----------------------------------------------------------------------------


def _fill(value: object, context: Mapping[str, object]) -> object:
    """Replace "{name}" placeholders (whole values) and FILE in a body template."""
    if value is FILE:
        return SimpleUploadedFile("tone.wav", tone_wav(), content_type="audio/wav")
    if isinstance(value, str) and re.fullmatch(r"\{\w+\}", value):
        return context[value[1:-1]]
    if isinstance(value, Mapping):
        return {k: _fill(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, context) for v in value]
    return value


def client_for(principal: str, world: fx.World, *, page: bool):
    user = world.user(principal)
    if page:
        client = Client(raise_request_exception=False)
        if user is not None:
            client.force_login(user)
        return client
    client = APIClient(raise_request_exception=False)
    if user is not None:
        client.force_authenticate(user=user)
    return client


def _wheel_context(params: Mapping[str, object]) -> dict[str, object]:
    """For a wheel's version: its content renamed (a valid document) and the identity map."""
    version = TaxonomyVersion.objects.filter(
        taxonomy__slug=params.get("slug"), number=params.get("number", 0)
    ).first()
    if version is None:
        return {}
    document = taxonomy.export_version(version)
    document["name"] = f"{document['name']} (revised)"
    keys = version.nodes.values_list("key", flat=True)
    return {"revised": document, "identity": {key: key for key in keys}}


def request(case: Case, world: fx.World):
    row, target = case.row, TARGETS[case.target]
    params = target.params(world)
    method = "GET" if row.method == "*" else row.method
    url = row.path.format(**params) + target.query
    context = {
        **params,
        "lease": world.lease_ids["leased_clip"],
        "client_id": str(uuid.uuid4()),
        # Failed logins are counted per username: a fresh one keeps cases independent.
        "unknown_user": f"nobody-{uuid.uuid4().hex[:12]}",
        **_wheel_context(params),
    }
    body = _fill(row.body, context) if row.body is not None else None
    if target.setup is not None:
        target.setup(world)
    client = client_for(case.principal, world, page=row.is_page)
    call = getattr(client, method.lower())
    if method == "GET":
        return call(url)
    if row.is_page:
        return call(url, body or {})
    return call(url, body, format="multipart" if row.multipart else "json")


def body_bytes(response) -> bytes:
    if getattr(response, "streaming", False):
        # Consuming the content closes the response the way the test client wants; closing
        # it again here would fire request_finished and close the database connection.
        return b"".join(response.streaming_content)
    return response.content


def json_of(response, content: bytes) -> object | None:
    if "json" not in response.get("Content-Type", ""):
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def keys_in(data: object) -> Iterator[str]:
    if isinstance(data, Mapping):
        for key, value in data.items():
            yield str(key)
            yield from keys_in(value)
    elif isinstance(data, list):
        for item in data:
            yield from keys_in(item)


def _word(marker: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w-])" + re.escape(marker) + r"(?![\w-])")


# --- Checks ------------------------------------------------------------------------------


def check_error_shape(case: Case, status: int, data: object) -> None:
    assert isinstance(data, Mapping), f"{case}: {status} without a JSON object body"
    shape = (type(data.get("detail")), type(data.get("code")))
    assert shape == (str, str), f"{case}: error body is not {{detail, code}}: {str(data)[:300]}"


def check_outcome(case: Case, response, data: object, text: str) -> None:
    status = response.status_code
    got = f"got {status} {text[:300]!r}"
    assert status < 500, f"{case}: a server error, {got}"
    location = response.get("Location", "")
    outcome, api = case.outcome, not case.row.is_page
    if outcome == ALLOW:
        assert status not in (401, 403, 404, 405), f"{case}: expected {outcome}, {got}"
        if case.row.need_on(case.target) != PUBLIC:  # logging out lands on the login page
            assert not (status == 302 and "/login/" in location), f"{case}: sent to {location}"
    elif outcome == DENY:
        assert status == 403, f"{case}: expected {outcome}, {got}"
        if api:
            check_error_shape(case, status, data)
    elif outcome == DENY_OR_HIDDEN and status == 403:
        check_error_shape(case, status, data)
    elif outcome in (HIDDEN, HIDDEN_OR_EMPTY, DENY_OR_HIDDEN):
        if outcome != HIDDEN and status == 200:
            count = data.get("count") if isinstance(data, Mapping) else None
            assert count == 0, f"{case}: expected 404 or an empty list, {got}"
            return
        assert status == 404, f"{case}: expected {outcome}, {got}"
        if api:
            check_error_shape(case, status, data)
    elif outcome == ANON:
        assert status in (401, 403), f"{case}: expected {outcome}, {got}"
        check_error_shape(case, status, data)
    elif outcome == LOGIN:
        assert (status, location.split("?")[0]) == (302, "/accounts/login/"), (
            f"{case}: expected {outcome}, {got} to {location!r}"
        )
    elif outcome == ADMIN_LOGIN:
        assert (status, location.split("?")[0]) == (302, "/admin/login/"), (
            f"{case}: expected {outcome}, {got} to {location!r}"
        )
    elif outcome == NOT_ALLOWED:
        assert status == 405, f"{case}: expected {outcome}, {got}"
        check_error_shape(case, status, data)
    else:  # pragma: no cover - a typo in the table
        raise AssertionError(f"unknown outcome {outcome}")


def check_annotator_reads(case: Case, response, data: object, text: str) -> None:
    """Nothing an annotator can reach names a file, a metadata value, another member, gold."""
    disposition = response.get("Content-Disposition", "")
    secrets = fx.ANNOTATOR_MUST_NOT_SEE + (fx.OTHER_MEMBERS_OF_A if case.row.scan else ())
    leaked = [m for m in secrets if _word(m).search(text + disposition)]
    assert not leaked, f"{case}: an annotator reads {leaked} in {text[:300]!r}"
    forbidden = sorted(set(keys_in(data)) & fx.ANNOTATOR_FORBIDDEN_KEYS)
    assert not forbidden, f"{case}: an annotator gets the keys {forbidden}"


def check_non_member_reads(case: Case, text: str) -> None:
    for project, markers in fx.PROJECT_MARKERS.items():
        if role_of(case.principal, project) is not None:
            continue
        leaked = [m for m in markers if _word(m).search(text)]
        assert not leaked, f"{case}: a non-member of {project} reads {leaked}"


PROJECT_SETTINGS = {"gold_rate", "agreement_target", "agreement_routing", "queue_policy"}


def check_labelling_subset(
    case: Case, response, data: object, world: fx.World, content: bytes
) -> None:
    """An annotator gets the labelling subset of a project; its admins get the settings."""
    if response.status_code != 200 or case.target != "project":
        return
    keys = set(data) if isinstance(data, Mapping) else set()
    if case.principal == "annotator":
        assert not keys & PROJECT_SETTINGS, f"{case}: {sorted(keys & PROJECT_SETTINGS)}"
    if role_of(case.principal, "A") == ADMIN:
        assert keys >= PROJECT_SETTINGS, f"{case}: an admin misses {PROJECT_SETTINGS - keys}"


def check_own_annotations_only(
    case: Case, response, data: object, world: fx.World, content: bytes
) -> None:
    if response.status_code != 200 or case.target == "?project=other_project":
        return
    rows = data.get("results", []) if isinstance(data, Mapping) else []
    ids = {row.get("id") for row in rows}
    o = world.objects
    if case.principal == "annotator":
        assert o["own_annotation"].pk in ids, f"{case}: the annotator's own label is missing"
        others = {row.get("annotator") for row in rows} - {fx.USERNAMES["annotator"]}
        assert ids == {o["own_annotation"].pk}, f"{case}: reads {rows}"
        assert not others, f"{case}: reads the labels of {others}"
    elif role_of(case.principal, "A") in (REVIEWER, ML_ENGINEER, ADMIN):
        wanted = {o["own_annotation"].pk, o["others_annotation"].pk}
        assert wanted <= ids, f"{case}: a reviewer misses the project's labels {wanted - ids}"


def check_wav(case: Case, response, data: object, world: fx.World, content: bytes) -> None:
    if response.status_code in (200, 206):
        assert (content[:4], content[8:12]) == (b"RIFF", b"WAVE"), f"{case}: not a WAV"


def check_png(case: Case, response, data: object, world: fx.World, content: bytes) -> None:
    if response.status_code == 200:
        assert content[:8] == b"\x89PNG\r\n\x1a\n", f"{case}: not a PNG"


def check_audit_scope(case: Case, response, data: object, world: fx.World, content: bytes) -> None:
    """Each reader finds exactly the probe events they may read (audit.services.events_for):
    the superuser every one; staff the instance's (no project) and those of the projects
    they administer; a project admin their projects' only, never another project's."""
    if response.status_code != 200:
        return
    text = content.decode("utf-8", "replace")
    principal = case.principal
    readable = {key for key in ("A", "B", "C") if role_of(principal, key) == ADMIN}
    if principal in fx.STAFF:
        readable.add(None)
    found = {key for key, marker in fx.AUDIT_PROBES.items() if marker in text}
    name = {None: "the instance"} | {k: f"project {k}" for k in ("A", "B", "C")}
    leaked = sorted(name[k] for k in found - readable)
    missing = sorted(name[k] for k in readable - found)
    assert not leaked, f"{case}: reads the audit events of {leaked}"
    assert not missing, f"{case}: misses the audit events of {missing}"


CHECKS: dict[str, Callable[..., None]] = {
    "audit_scope": check_audit_scope,
    "png": check_png,
    "labelling_subset": check_labelling_subset,
    "own_annotations_only": check_own_annotations_only,
    "wav": check_wav,
}

# --- The matrix --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_access(case: Case, world: fx.World) -> None:
    response = request(case, world)
    content = body_bytes(response)
    is_text = any(t in response.get("Content-Type", "") for t in ("json", "html", "text"))
    text = content.decode("utf-8", "replace") if is_text else ""
    data = json_of(response, content)
    check_outcome(case, response, data, text)
    if case.principal == "annotator":
        check_annotator_reads(case, response, data, text)
    if case.row.scan and 200 <= response.status_code < 300:
        check_non_member_reads(case, text)
    if case.row.check:
        CHECKS[case.row.check](case, response, data, world, content)


# --- The inventory: every endpoint has a row, every row an endpoint -----------------------

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _normalise(route: str) -> str:
    """A URL conf route or regex as the OpenAPI schema writes it: /api/clips/{id}/."""
    route = route.replace("^", "").replace("$", "")
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
    route = route.replace("\\", "")
    return "/" + route.replace("{pk}", "{id}")


def shape(path: str) -> str:
    """A path with its parameters unnamed: rows match endpoints whatever a view calls them."""
    return re.sub(r"\{\w+\}", "{}", path)


def _walk(resolver: URLResolver, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if route == "admin/":
                continue  # the admin has one row and its own tests
            yield from _walk(pattern, route)
        else:
            yield route, pattern


def url_conf_endpoints() -> tuple[set[tuple[str, str]], set[str]]:
    """(path, method) of every view that declares its methods, and the paths of function
    views (whose methods cannot be read from the URL conf: they need at least one row)."""
    endpoints: set[tuple[str, str]] = set()
    function_views: set[str] = set()
    for route, pattern in _walk(get_resolver()):
        path = _normalise(route)
        callback = pattern.callback
        if pattern.name == "api-root" or "{format}" in path:
            continue  # DRF's API root and format-suffix variants
        if callback.__module__.startswith(("django.views.static", "django.contrib.staticfiles")):
            continue
        actions = getattr(callback, "actions", None)
        view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if actions:
            endpoints |= {(path, m.upper()) for m in actions if m.upper() in METHODS}
        elif view_class is not None:
            endpoints |= {
                (path, m.upper())
                for m in view_class.http_method_names
                if m.upper() in METHODS and hasattr(view_class, m)
            }
        else:
            function_views.add(path)
    return endpoints, function_views


def schema_endpoints() -> set[tuple[str, str]]:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (path, method.upper())
        for path, operations in schema["paths"].items()
        for method in operations
        if method.upper() in METHODS
    }


def test_every_endpoint_has_an_entry_in_the_access_table() -> None:
    endpoints, function_views = url_conf_endpoints()
    endpoints |= schema_endpoints()
    rows = {(shape(row.path), row.method) for row in ACCESS_TABLE}
    paths = {shape(row.path) for row in ACCESS_TABLE}
    missing = sorted(f"{m} {p}" for p, m in endpoints if (shape(p), m) not in rows)
    missing += sorted(f"{p} (a function view)" for p in function_views if shape(p) not in paths)
    assert not missing, "\n".join(
        f"new endpoint {what} without an entry in the access table" for what in missing
    )


def test_every_entry_names_an_endpoint_that_exists() -> None:
    found, function_paths = url_conf_endpoints()
    endpoints = {(shape(p), m) for p, m in found | schema_endpoints()}
    function_views = {shape(p) for p in function_paths}
    paths = {p for p, _ in endpoints} | function_views
    problems = []
    for row in ACCESS_TABLE:
        path, need = shape(row.path), row.need_on(row.targets[0])
        if need == ADMIN_SITE:
            continue
        if path not in paths:
            problems.append(f"{row}: the entry names an endpoint that no longer exists")
        elif need == NOBODY:
            if (path, row.method) in endpoints:
                problems.append(f"{row}: exists, but the contract says nobody (405)")
        elif path not in function_views and (path, row.method) not in endpoints:
            problems.append(f"{row}: the entry names an endpoint that no longer exists")
    assert not problems, "\n".join(problems)


def test_the_admin_is_mounted_where_its_row_says() -> None:
    assert any(
        isinstance(p, URLResolver) and str(p.pattern) == "admin/"
        for p in get_resolver().url_patterns
    )


# --- The Django admin: scoped to the projects a staff member administers -----------------

ADMIN_MODELS = {
    # model: (object of A, object of B) as world keys
    "project": (None, None),
    "clip": ("clip", "other_clip"),
    "annotation": ("own_annotation", "other_annotation"),
    "queueentry": ("queue_entry_A", "queue_entry_B"),
}


def _admin_objects(world: fx.World, model: str) -> tuple[object, object]:
    if model == "project":
        return world.projects["A"], world.projects["B"]
    a, b = ADMIN_MODELS[model]
    return world.objects[a], world.objects[b]


def _change_url(obj) -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])


def _markers(obj, project: Project) -> list[str]:
    markers = [_change_url(obj), project.name]
    if isinstance(obj, Clip):
        markers.append(obj.original_name)
    return markers


def _signed_in(world: fx.World, principal: str) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(world.user(principal))
    return client


@pytest.mark.parametrize("model", list(ADMIN_MODELS))
def test_staff_who_is_not_a_member_sees_no_object_of_the_project_in_the_admin(
    world: fx.World, model: str
) -> None:
    client = _signed_in(world, "staff")
    obj_a, obj_b = _admin_objects(world, model)
    listing = client.get(f"/admin/labelling/{model}/")
    assert listing.status_code in (200, 302, 403), listing.status_code
    if listing.status_code == 200:
        page = listing.content.decode()
        for obj, project in ((obj_a, world.projects["A"]), (obj_b, world.projects["B"])):
            leaked = [m for m in _markers(obj, project) if m in page]
            assert not leaked, f"staff (not a member) sees {leaked} in the {model} changelist"
    for obj in (obj_a, obj_b):
        change = client.get(_change_url(obj))
        assert change.status_code in (302, 403, 404), (model, change.status_code)


@pytest.mark.parametrize("model", list(ADMIN_MODELS))
def test_a_staff_admin_of_the_project_sees_its_objects_in_the_admin_and_no_others(
    world: fx.World, model: str
) -> None:
    client = _signed_in(world, "staff_admin")
    obj_a, obj_b = _admin_objects(world, model)
    listing = client.get(f"/admin/labelling/{model}/")
    assert listing.status_code == 200, f"{model} changelist: {listing.status_code}"
    page = listing.content.decode()
    assert _change_url(obj_a) in page, f"a staff admin of A misses {obj_a} in the {model} list"
    leaked = [m for m in _markers(obj_b, world.projects["B"]) if m in page]
    assert not leaked, f"a staff admin of A sees {leaked} of B in the {model} changelist"
    assert client.get(_change_url(obj_a)).status_code == 200
    assert client.get(_change_url(obj_b)).status_code in (302, 403, 404)


def test_the_superuser_sees_every_project_in_the_admin(world: fx.World) -> None:
    client = _signed_in(world, "superuser")
    page = client.get("/admin/labelling/clip/").content.decode()
    assert _change_url(world.objects["clip"]) in page
    assert _change_url(world.objects["other_clip"]) in page


def _post_data_for(obj, model_admin, user, changes: Mapping[str, str]) -> dict[str, object]:
    """A complete, valid change-form submission of `obj` with `changes` applied."""
    request = RequestFactory().get("/")
    request.user = user
    form = model_admin.get_form(request, obj, change=True)(instance=obj)
    data: dict[str, object] = {}
    for name in form.fields:
        bound = form[name]
        value = bound.value()
        widget = bound.field.widget
        if isinstance(widget, MultiWidget):
            for i, part in enumerate(widget.decompress(value)):
                data[f"{name}_{i}"] = "" if part is None else str(part)
        elif isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is None:
            data[name] = ""
        elif isinstance(value, list):
            data[name] = [str(v) for v in value]
        else:
            data[name] = str(value)
    for key, value in changes.items():
        if value == "":
            data.pop(key, None)  # an unticked checkbox
        else:
            data[key] = value
    data["_save"] = "Save"
    return data


READ_ONLY = {
    # world key: (changes to submit, fields that must not change)
    "own_annotation": ({"unsure": "on", "intensity": "high", "time_spent_ms": "999"},
                       ("unsure", "intensity", "time_spent_ms", "node_id")),
    "queue_entry_A": ({"open_slots": "7", "priority": "-99", "is_gold": "on"},
                      ("open_slots", "priority", "is_gold")),
    "gold_result": ({"correct_core": "", "correct_exact": ""}, ("correct_core", "correct_exact")),
    "lease": ({"status": "expired"}, ("status", "expires_at")),
}  # fmt: skip


@pytest.mark.parametrize("key", list(READ_ONLY))
def test_derived_state_is_read_only_in_the_admin_even_for_the_superuser(
    world: fx.World, key: str
) -> None:
    obj = world.objects[key]
    changes, fields = READ_ONLY[key]
    model = type(obj)
    before = model.objects.values(*fields).get(pk=obj.pk)
    model_admin = admin_site._registry[model]
    data = _post_data_for(obj, model_admin, world.user("superuser"), changes)
    response = _signed_in(world, "superuser").post(_change_url(obj), data)
    assert response.status_code < 500, response.status_code
    after = model.objects.values(*fields).get(pk=obj.pk)
    assert after == before, f"the admin changed {model.__name__}: {before} -> {after}"


def test_adding_an_annotation_in_the_admin_is_refused(world: fx.World) -> None:
    client = _signed_in(world, "superuser")
    url = reverse("admin:labelling_annotation_add")
    assert client.get(url).status_code == 403
    clip = world.objects["clip"]
    response = client.post(url, {"clip": clip.pk, "annotator": world.user("superuser").pk,
                                 "node": "", "skip_reason": "noise", "_save": "Save"})  # fmt: skip
    assert response.status_code == 403
    assert not Annotation.objects.filter(clip=clip).exists()


def test_the_table_covers_every_principal_on_both_projects() -> None:
    """Every row naming a project is tried on ours and on another one."""
    for row in ACCESS_TABLE:
        projects = {TARGETS[t].project for t in row.targets}
        if "A" in projects:
            assert "B" in projects, f"{row}: no case on another project"
    assert len(CASES) == sum(len(r.targets) for r in ACCESS_TABLE) * len(fx.PRINCIPALS)
