"""A small project whose quality figures are known by hand (tests/test_review_*.py).

Three annotators (alma, bodo, cleo) on eight clips of the Willcox wheel; the expected
figures are written out in tests/test_review_quality.py, derived from the table below by
hand, not by the code under test. Noise that must not count: a corpus label, a superseded
label, and another project's labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth.models import User

from labelling.models import (
    Annotation,
    Clip,
    GoldClip,
    LabelSource,
    Membership,
    Project,
    Role,
    TaxonomyNode,
)
from tests.conftest import make_user
from tests.factories import ClipFactory

WEEK_1 = datetime(2026, 11, 3, 10, 0, tzinfo=UTC)  # ISO week 2026-W45
WEEK_2 = datetime(2026, 11, 10, 10, 0, tzinfo=UTC)  # ISO week 2026-W46

# clip -> {rater: (label or "skip", unsure, time ms, week)}
TABLE: dict[int, dict[str, tuple[str, bool, int, datetime]]] = {
    1: {
        "alma": ("mad.angry", False, 1000, WEEK_1),
        "bodo": ("mad.hurt.jealous", False, 1500, WEEK_1),
        "cleo": ("mad", False, 800, WEEK_1),
    },
    2: {
        "alma": ("mad.angry.frustrated", False, 2000, WEEK_1),
        "bodo": ("scared.rejected", False, 2500, WEEK_1),
    },
    3: {
        "alma": ("joyful.excited", False, 3000, WEEK_2),
        "bodo": ("joyful.excited.daring", False, 3500, WEEK_2),
    },
    4: {
        "alma": ("sad.guilty.remorseful", False, 4000, WEEK_2),
        "bodo": ("sad.guilty", False, 4500, WEEK_2),
        "cleo": ("sad.guilty.regretful", False, 1600, WEEK_2),
    },
    5: {
        "alma": ("scared", True, 10000, WEEK_2),
        "cleo": ("joyful.excited", False, 2400, WEEK_2),
    },
    6: {
        "alma": ("skip", False, 700, WEEK_2),
        "bodo": ("peaceful.nurturing", False, 5500, WEEK_2),
        "cleo": ("peaceful.nurturing.caring", False, 3200, WEEK_2),
    },
    7: {
        "bodo": ("joyful", False, 6500, WEEK_2),
        "cleo": ("scared.confused", False, 4000, WEEK_2),
    },
    8: {
        "alma": ("sad", False, 5000, WEEK_2),
        "cleo": ("sad.guilty", False, 4800, WEEK_2),
    },
}
GOLD = {4: "sad.guilty.remorseful", 7: "joyful.excited.thrilled"}


@dataclass
class World:
    project: Project
    raters: dict[str, User]
    clips: dict[int, Clip]


def node(project: Project, key: str) -> TaxonomyNode:
    return TaxonomyNode.objects.get(version=project.taxonomy_version, key=key)


def label(
    project: Project,
    clip: Clip,
    user: User,
    key: str,
    *,
    unsure: bool = False,
    time_ms: int = 1000,
    when: datetime | None = None,
    **extra: object,
) -> Annotation:
    made = Annotation.objects.create(
        clip=clip,
        annotator=user,
        node=None if key == "skip" else node(project, key),
        skip_reason="noise" if key == "skip" else "",
        unsure=unsure,
        time_spent_ms=time_ms,
        **extra,
    )
    if when is not None:  # created_at is auto_now_add: set it afterwards
        Annotation.objects.filter(pk=made.pk).update(created_at=when)
    return made


def build(project: Project, other_project: Project | None = None) -> World:
    raters = {}
    for name in ("alma", "bodo", "cleo"):
        user = make_user(name)
        Membership.objects.create(user=user, project=project, role=Role.ANNOTATOR)
        raters[name] = user
    clips = {number: ClipFactory(project=project) for number in TABLE}
    for number, row in TABLE.items():
        for name, (key, unsure, time_ms, when) in row.items():
            label(project, clips[number], raters[name], key, unsure=unsure, time_ms=time_ms,
                  when=when)  # fmt: skip
    for number, key in GOLD.items():
        GoldClip.objects.create(clip=clips[number], node=node(project, key))
    # Noise: a superseded label of alma's, a corpus label, another project's labels.
    Annotation.objects.create(
        clip=clips[3], annotator=raters["alma"], node=node(project, "sad"), is_current=False
    )
    corpus = make_user("corpus:emodb", is_active=False)
    label(project, clips[2], corpus, "scared", label_source=LabelSource.CORPUS)
    if other_project is not None:
        elsewhere = ClipFactory(project=other_project)
        label(other_project, elsewhere, raters["alma"], "joyful")
        label(other_project, elsewhere, raters["bodo"], "sad")
    return World(project, raters, clips)
