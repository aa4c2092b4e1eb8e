"""The world the access matrix (tests/test_access_matrix.py) runs in: three projects, one user
per principal, and one object of every kind the API serves, in "our" project A and in the
"other" project B.

Built once per module inside a transaction that is rolled back at the end; every test runs
in a savepoint inside it (pytest-django's `db`), so a write by one case never reaches the next.
Names are chosen to be findable in response bodies: the clips of A carry EmoDB-like file
names and an "anger" metadata value that annotators must never see, and every object of B
carries "zeta", which a non-member of B must never see.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.utils import timezone

from audit import services as audit
from labelling.models import (
    Annotation,
    Clip,
    GoldClip,
    GoldResult,
    ImportBatch,
    ImportItem,
    Invitation,
    Lease,
    Membership,
    Project,
    QueueEntry,
    Recording,
    Role,
    TaxonomyNode,
    WeakLabel,
)
from labelling.services import annotations as annotation_service
from labelling.services import queue, taxonomy
from labelling.services.interop.corpus import annotate as interop_annotate
from labelling.services.interop.raters import rater
from labelling.taxonomy_schema import parse_document
from learner.models import ModelVersion, TrainingRun
from ops.models import TaskFailure, WorkerHeartbeat
from tests.factories import ClipFactory, tone_wav

# --- Principals -------------------------------------------------------------------------

# Every principal's username is distinctive, so that a member list leaking to an annotator
# shows up as a plain substring of the response.
USERNAMES = {
    "outsider": "otto-outsider",  # admin of project C, member of nothing else
    "annotator": "anna-annotator",
    "reviewer": "rita-reviewer",
    "ml_engineer": "emil-engineer",
    "admin": "ada-admin",  # project admin, not staff
    "staff": "stan-staff",  # is_staff, member of nothing
    "staff_admin": "sara-staffadmin",  # is_staff and admin of A
    "superuser": "root-superuser",  # is_superuser (and is_staff), member of nothing
}
SECOND_ANNOTATOR = "bert-annotator2"  # an annotator of A whose labels the first must not see
B_MEMBER = "bea-zeta"  # annotator of B
NEWCOMER = "nina-newcomer"  # member of nothing: the account an admin tries to add directly

# Roles held in each project (A: ours, B: the other one, C: the outsider's). The superuser
# is admin everywhere through is_superuser, not through a membership.
ROLES: dict[str, dict[str, Role]] = {
    "anonymous": {},
    "outsider": {"C": Role.ADMIN},
    "annotator": {"A": Role.ANNOTATOR},
    "reviewer": {"A": Role.REVIEWER},
    "ml_engineer": {"A": Role.ML_ENGINEER},
    "admin": {"A": Role.ADMIN},
    "staff": {},
    "staff_admin": {"A": Role.ADMIN},
    "superuser": {},
}
STAFF = {"staff", "staff_admin", "superuser"}
SUPERUSERS = {"superuser"}
PRINCIPALS = tuple(ROLES)

# --- Markers ----------------------------------------------------------------------------

SLUG_A, SLUG_B, SLUG_C = "acme-calls", "zeta-games", "outpost"
WHEEL_A, WHEEL_B = "acme-wheel", "zeta-wheel"
# EmoDB's file names encode the emotion (W = Wut, anger): exactly what annotators must not see.
CLIP_NAMES_A = {
    "clip": "03a01Wa.wav",
    "leased_clip": "03a02Wb.wav",
    "sibling_clip": "08b01Wa.wav",
    "gold_clip": "11a04Wc.wav",
    "labelled_clip": "13b09Wa.wav",
}
CLIP_NAME_B = "zeta-secret-07.wav"
SECRET_METADATA = {"emotion": "anger", "speaker_note": "shouting-at-agent"}
ANNOTATOR_MUST_NOT_SEE = (
    *CLIP_NAMES_A.values(),
    *(name.removesuffix(".wav") for name in CLIP_NAMES_A.values()),
    "anger",
    "shouting-at-agent",
    "acme-import.zip",
    # Imported labels (docs/datasets.md, "Interop in"): the corpus rater, the predictions'
    # file, and the model whose weak label sits on the gold clip (never suggested there).
    "corpus:acme-corpus",
    "acme-predictions.csv",
    "acme-gold-weak-model",
)
# Other members of the project: annotators never see the member list or others' labels.
OTHER_MEMBERS_OF_A = (
    SECOND_ANNOTATOR,
    USERNAMES["reviewer"],
    USERNAMES["ml_engineer"],
    USERNAMES["admin"],
    USERNAMES["staff_admin"],
)
# Keys that carry what an annotator must not learn (clip metadata, file names, gold, queue
# and agreement settings).
ANNOTATOR_FORBIDDEN_KEYS = frozenset(
    {
        "metadata",
        "original_name",
        "is_gold",
        "gold_rate",
        "agreement_routing",
        "agreement_target",
        "max_annotators_per_clip",
        "queue_policy",
    }
)
# What a non-member of a project must never find in a successful response.
PROJECT_MARKERS = {
    "A": (SLUG_A, WHEEL_A, *CLIP_NAMES_A.values()),
    "B": (SLUG_B, WHEEL_B, CLIP_NAME_B, "zeta-import.zip"),
}

# The audit log: one event per project and one of the instance (no project), each findable
# by its target label; who may read which is checked by the matrix ("audit_scope").
AUDIT_PROBES = {
    "A": "probe-event-acme",
    "B": "probe-event-zeta",
    "C": "probe-event-outpost",
    None: "probe-event-instance",
}
# A failed task that is not EmoLoop's: retrying it is refused with 400 (nothing is sent).
FOREIGN_TASK = "thirdparty.tasks.sync"
# The stored plots of model version 1 (a real 1x1 PNG).
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c49444154"
    "789c63606060000000040001f61738550000000049454e44ae426082"
)

INVITATION_TOKEN_A = "invite-acme-6f1c2b9e0d7a4e31"
INVITATION_TOKEN_B = "invite-zeta-0a9b8c7d6e5f4a3b"


def wheel_document(slug: str, name: str, *, renamed: bool = False) -> dict:
    """A small valid emoloop-taxonomy/1 document (two core feelings)."""
    suffix = " (revised)" if renamed else ""
    return {
        "format": "emoloop-taxonomy/1",
        "name": name + suffix,
        "slug": slug,
        "nodes": [
            {"key": "calm", "name": "Calm" + suffix},
            {"key": "tense", "name": "Tense" + suffix},
        ],
    }


# --- The world --------------------------------------------------------------------------


@dataclass
class World:
    users: dict[str, object]
    projects: dict[str, Project]
    objects: dict[str, object] = field(default_factory=dict)
    lease_ids: dict[str, str] = field(default_factory=dict)

    def user(self, principal: str):
        return self.users.get(principal)


class _AlwaysFirst(random.Random):
    """An rng whose every draw is 0.0: next_clip then serves a gold clip."""

    def random(self) -> float:
        return 0.0


def _user(username: str, **extra: object):
    return get_user_model().objects.create_user(
        username=username, password="pw-" + username, **extra
    )


def _node(project: Project, key: str) -> int:
    return TaxonomyNode.objects.get(version_id=project.taxonomy_version_id, key=key).pk


def build_world() -> World:
    willcox = taxonomy.install_preset("willcox")
    projects = {
        "A": Project.objects.create(
            name="Acme Calls",
            slug=SLUG_A,
            taxonomy_version=willcox,
            annotators_per_clip=2,
            assisted=True,
            gold_rate=0.1,
            queue_policy="stratified",
            agreement_routing=True,
        ),
        "B": Project.objects.create(
            name="Zeta Games", slug=SLUG_B, taxonomy_version=willcox, assisted=True
        ),
        "C": Project.objects.create(name="Outpost", slug=SLUG_C, taxonomy_version=willcox),
    }
    A, B = projects["A"], projects["B"]

    users: dict[str, object] = {"anonymous": None}
    for principal, username in USERNAMES.items():
        users[principal] = _user(
            username,
            is_staff=principal in STAFF,
            is_superuser=principal in SUPERUSERS,
        )
        for key, role in ROLES[principal].items():
            Membership.objects.create(user=users[principal], project=projects[key], role=role)
    second = _user(SECOND_ANNOTATOR)
    second_membership = Membership.objects.create(user=second, project=A, role=Role.ANNOTATOR)
    b_member = _user(B_MEMBER)
    b_membership = Membership.objects.create(user=b_member, project=B, role=Role.ANNOTATOR)
    _user(NEWCOMER)

    world = World(users=users, projects=projects)
    o = world.objects
    o["willcox"] = willcox
    o["second_membership"] = second_membership
    o["b_membership"] = b_membership

    # Wheels owned by a project (A's unused, so its version 1 is still editable) and a preset.
    for key, slug, name in (("A", WHEEL_A, "Acme wheel"), ("B", WHEEL_B, "Zeta wheel")):
        # Imported into its project, as the API does (the audit event is then the project's).
        version = taxonomy.import_document(
            parse_document(wheel_document(slug, name)), owner_project=projects[key]
        )
        o[f"wheel_{key}"] = version

    # Clips of A: one in the pool, one leased to the annotator, a segment of the same
    # recording as the leased one, a gold clip leased to the annotator, one with labels.
    recording = Recording.objects.create(
        project=A,
        original=ContentFile(tone_wav(2.0), name="acme-recording.wav"),
        original_name="acme-recording-0001.wav",
        sha256="f" * 64,
        duration_s=2.0,
        sample_rate=16000,
        channels=1,
    )
    clips: dict[str, Clip] = {}
    for name, original_name in CLIP_NAMES_A.items():
        in_recording = name in ("leased_clip", "sibling_clip")
        clips[name] = ClipFactory(
            project=A,
            original_name=original_name,
            metadata=dict(SECRET_METADATA),
            transcript="Der Lappen liegt auf dem Eisschrank.",
            recording=recording if in_recording else None,
            start_s=(0.0 if name == "leased_clip" else 0.5) if in_recording else None,
            end_s=(0.5 if name == "leased_clip" else 1.0) if in_recording else None,
        )
    clips["other_clip"] = ClipFactory(project=B, original_name=CLIP_NAME_B)
    o.update(clips)

    annotator = users["annotator"]
    queue.enqueue_clips(A, [clips["leased_clip"]], seed=0)
    leased = queue.next_clip(A, annotator)
    assert leased is not None, "the annotator got no lease"
    assert leased.clip.pk == clips["leased_clip"].pk, "the lease is not on the leased clip"
    world.lease_ids["leased_clip"] = str(leased.lease.id)

    queue.enqueue_clips(A, [clips["gold_clip"]], seed=0)
    queue.mark_gold(clips["gold_clip"], "mad", users["reviewer"])
    Project.objects.filter(pk=A.pk).update(gold_rate=0.5)
    A.refresh_from_db()
    gold_lease = queue.next_clip(A, annotator, rng=_AlwaysFirst())
    assert gold_lease is not None, "the annotator got no gold lease"
    assert gold_lease.clip.pk == clips["gold_clip"].pk, "the gold lease is on another clip"
    world.lease_ids["gold_clip"] = str(gold_lease.lease.id)
    Project.objects.filter(pk=A.pk).update(gold_rate=0.1)
    A.refresh_from_db()
    queue.enqueue_clips(A, [clips["clip"], clips["sibling_clip"], clips["labelled_clip"]], seed=0)
    queue.enqueue_clips(B, [clips["other_clip"]], seed=0)
    o["lease"] = Lease.objects.get(pk=world.lease_ids["leased_clip"])
    o["queue_entry_A"] = QueueEntry.objects.get(clip=clips["clip"])
    o["queue_entry_B"] = QueueEntry.objects.get(clip=clips["other_clip"])

    # Labels: the annotator's own, another annotator's, one in B, and a scored gold answer.
    o["own_annotation"] = annotation_service.record_annotation(
        clip=clips["labelled_clip"], annotator=annotator, node_key="mad"
    )
    o["others_annotation"] = annotation_service.record_annotation(
        clip=clips["labelled_clip"], annotator=second, node_key="sad"
    )
    o["other_annotation"] = annotation_service.record_annotation(
        clip=clips["other_clip"], annotator=b_member, node_key="mad"
    )
    gold_answer = annotation_service.record_annotation(
        clip=clips["gold_clip"], annotator=second, node_key="mad"
    )
    # Imported labels: a corpus annotation and weak labels (one on the gold clip).
    for name in ("leased_clip", "labelled_clip"):
        interop_annotate(clips[name], rater("corpus:acme-corpus"), _node(A, "sad"))
    for name, model in (("leased_clip", "acme-weak-model"), ("gold_clip", "acme-gold-weak-model")):
        WeakLabel.objects.create(
            clip=clips[name], model_name=model, model_version="1",
            taxonomy_version=A.taxonomy_version, probabilities={"mad": 0.8, "sad": 0.2},
            top_node_id=_node(A, "mad"), top_probability=0.8, source_file="acme-predictions.csv",
        )  # fmt: skip
    o["gold_result"] = GoldResult.objects.get_or_create(
        annotation=gold_answer,
        defaults={
            "gold": GoldClip.objects.get(clip=clips["gold_clip"]),
            "correct_core": True,
            "correct_exact": True,
        },
    )[0]

    # Imports, model versions, training runs, invitations in A and in B.
    for key, origin in (("A", "acme-import.zip"), ("B", "zeta-import.zip")):
        project = projects[key]
        batch = ImportBatch.objects.create(
            project=project, source="archive", origin=origin, status=ImportBatch.Status.DONE
        )
        item_name = CLIP_NAMES_A["clip"] if key == "A" else CLIP_NAME_B
        ImportItem.objects.create(batch=batch, name=item_name, status="accepted")
        o[f"import_{key}"] = batch
        run = TrainingRun.objects.create(
            project=project, status="failed", trigger="manual", feature_set="acoustic"
        )
        o[f"run_{key}"] = run
        o[f"model_{key}"] = ModelVersion.objects.create(
            project=project,
            number=1,
            run=run,
            taxonomy_version=willcox,
            extractor="acoustic",
            extractor_version="test",
            # Not a model: activating it must answer 409, never 500.
            artifact=ContentFile(b"not a model", name=f"model-{key}.bin"),
            confusion_image=ContentFile(PNG_1X1, name=f"confusion-{key}.png"),
            artifact_sha256="0" * 64,
            metrics={},
        )
        token = INVITATION_TOKEN_A if key == "A" else INVITATION_TOKEN_B
        o[f"invitation_{key}"] = Invitation.objects.create(
            project=project,
            role=Role.ANNOTATOR,
            token_sha256=hashlib.sha256(token.encode()).hexdigest(),
            note=f"for a new colleague ({key})",
            created_by=users["admin"] if key == "A" else b_member,
            expires_at=timezone.now() + timedelta(days=7),
        )

    for key, label in AUDIT_PROBES.items():
        project = projects[key] if key is not None else None
        audit.record(None, "access.probe", project=project, target=("access.probe", 0, label))
    o["failure"] = TaskFailure.objects.create(
        task_name=FOREIGN_TASK, task_id="f" * 32, args=[], kwargs={}, exception="RuntimeError: x"
    )

    _check_world(world)
    return world


def fresh_heartbeat(world: World) -> None:
    """A worker heartbeat seen just now: /readyz answers 200 only with one (ops.services.health
    wants it younger than OPS_HEARTBEAT_FRESH_SECONDS, so it is written per case, not once)."""
    WorkerHeartbeat.objects.update_or_create(
        hostname="access-matrix@world", defaults={"last_seen": timezone.now()}
    )


def _check_world(world: World) -> None:
    """The world is what the matrix assumes: real WAVs, the leases, one annotation each."""
    o = world.objects
    for name in (*CLIP_NAMES_A, "other_clip"):
        clip = o[name]
        with clip.canonical.open("rb") as fh:
            head = fh.read(12)
        assert (head[:4], head[8:12]) == (b"RIFF", b"WAVE"), f"{name}: canonical is not a WAV"
    active = set(
        Lease.objects.filter(
            annotator=world.users["annotator"], status=Lease.Status.ACTIVE
        ).values_list("clip_id", flat=True)
    )
    assert active == {o["leased_clip"].pk, o["gold_clip"].pk}, active
    assert Annotation.objects.filter(annotator=world.users["annotator"]).count() == 1
