"""Every number on the overview page against a value worked out independently from the
constructed clips and labels (labelling/services/progress.py states the definitions)."""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache
from django.test import Client
from django.utils import timezone

from console import overview, tasks
from emoloop.dispatch import BrokerUnavailable
from labelling.models import Annotation, Clip, QueueEntry, SkipReason, TaxonomyNode
from learner.models import LearnerSettings
from tests.conftest import make_user, wait_until
from tests.factories import ClipFactory

pytestmark = [pytest.mark.django_db]

NOW = timezone.now()


def ago(days: int) -> dt.datetime:
    return NOW - dt.timedelta(days=days, minutes=1)


@pytest.fixture
def scene(project, engineer):
    """Six clips, target 2 (the project's overlap) except c1 (3, agreement routing).

    c1: 3 labels (labelled); c2: 2 labels (labelled); c3: 1 label + 1 skip (in progress);
    c4: a corpus label only; c5: a superseded label only; c6: nothing (these three: unlabelled).
    """
    version = project.taxonomy_version
    node = {n.key: n for n in TaxonomyNode.objects.filter(version=version)}
    fine = next(k for k, n in node.items() if n.level == 2)
    mid = next(k for k, n in node.items() if n.level == 1 and not fine.startswith(k + "."))
    core = next(k for k, n in node.items() if n.level == 0 and not mid.startswith(k))
    meta = [
        ("s1", "female", "18-29", "de", "phone", 40),
        ("s1", "female", "18-29", "de", "phone", 40),
        ("s2", "male", "30-44", "de", "studio", 5),
        ("s2", "male", "30-44", "en", "studio", 5),
        ("s3", "female", "", "en", "phone", 5),
        ("s3", "", "", "en", "phone", 1),
    ]
    clips = []
    for speaker, gender, age, language, channel, days in meta:
        clip = ClipFactory(project=project, speaker_id=speaker, gender=gender, age_band=age,
                           language=language, channel=channel)  # fmt: skip
        Clip.objects.filter(pk=clip.pk).update(created_at=ago(days))
        clips.append(clip)
    QueueEntry.objects.create(project=project, clip=clips[0], target=3, open_slots=0)
    people = [make_user(f"a{i}") for i in range(3)]
    # (clip, annotator, node key or None for a skip, days ago, source, current)
    plan = [
        (0, 0, fine, 0, "human", True),
        (0, 1, fine, 1, "human", True),
        (0, 2, mid, 3, "human", True),
        (1, 0, core, 10, "human", True),
        (1, 1, mid, 35, "human", True),
        (2, 0, fine, 0, "human", True),
        (2, 1, None, 0, "human", True),
        (3, 2, core, 2, "corpus", True),
        (4, 0, core, 2, "human", False),
    ]
    for c, a, key, days, source, current in plan:
        made = Annotation.objects.create(
            clip=clips[c], annotator=people[a], node=node[key] if key else None,
            skip_reason="" if key else SkipReason.NOISE, label_source=source, is_current=current,
        )  # fmt: skip
        Annotation.objects.filter(pk=made.pk).update(created_at=ago(days))
    return {"clips": clips, "plan": plan, "meta": meta, "targets": [3, 2, 2, 2, 2, 2]}


def _labels(plan):
    """The plan's labels as the overview counts them: current, human, a feeling."""
    return [p for p in plan if p[2] is not None and p[4] == "human" and p[5]]


def _page(client: Client, project) -> str:
    return client.get(f"/projects/{project.slug}/overview/").content.decode()


def _figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}">([^<]*)<', html)
    assert found is not None, name
    return found.group(1)


def _table(html: str, table_id: str) -> dict[str, list[str]]:
    start = html.index(f'id="{table_id}"')
    body = html[start : html.index("</table>", start)]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    out = {}
    for row in rows[1:]:
        cells = [
            re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)
        ]
        out[cells[0]] = cells[1:]
    return out


def test_clip_status_and_labels_still_wanted(client, project, engineer, scene):
    client.force_login(engineer)
    html = _page(client, project)
    labels = _labels(scene["plan"])
    per_clip = [sum(1 for p in labels if p[0] == i) for i in range(6)]
    pairs = list(zip(per_clip, scene["targets"], strict=True))
    assert per_clip == [3, 2, 1, 0, 0, 0]
    assert _figure(html, "clips") == "6"
    assert _figure(html, "labelled") == str(sum(n >= t for n, t in pairs))
    assert _figure(html, "in_progress") == str(sum(0 < n < t for n, t in pairs))
    assert _figure(html, "unlabelled") == str(sum(n == 0 for n in per_clip))
    assert _figure(html, "labels") == str(len(labels))
    wanted = sum(max(t - n, 0) for n, t in pairs)
    assert _figure(html, "wanted") == str(wanted) == "7"


def test_labels_per_day_burn_down_and_forecast(client, project, engineer, scene):
    client.force_login(engineer)
    html = _page(client, project)
    labels = _labels(scene["plan"])
    today = NOW.astimezone(dt.UTC).date()
    days = [today - dt.timedelta(days=29 - i) for i in range(30)]
    made_on = [ago(p[3]).astimezone(dt.UTC).date() for p in labels]
    per_day = _table(html, "per-day")
    assert len(per_day) == 30
    for day in days:
        assert per_day[day.isoformat()] == [str(made_on.count(day))]
    # Burn-down: targets of clips imported by the end of the day less labels made by then.
    clip_days = [
        (ago(m[5]).astimezone(dt.UTC).date(), t)
        for m, t in zip(scene["meta"], scene["targets"], strict=True)
    ]
    burn = _table(html, "burn-down")
    for day in days:
        need = sum(t for made, t in clip_days if made <= day)
        done = sum(1 for made in made_on if made <= day)
        assert burn[day.isoformat()] == [str(need - done)], day
    assert burn[today.isoformat()] == ["7"]  # 13 targets - 6 labels
    # Forecast: 7 wanted / (labels in the last 7 days / 7).
    recent = sum(1 for made in made_on if made > today - dt.timedelta(days=7))
    assert recent == 4
    rate = recent / 7
    assert _figure(html, "rate") == f"{rate:.1f}"
    assert 7 / rate == 12.25
    assert _figure(html, "days_left") == "12.3"  # one decimal, half up
    finish = today + dt.timedelta(days=math.ceil(7 / rate))
    assert _figure(html, "finish") == finish.isoformat()


def test_no_label_in_the_last_week_means_no_forecast(client, project, engineer, scene):
    Annotation.objects.filter(clip__project=project).update(created_at=ago(20))
    client.force_login(engineer)
    assert "No label in the last 7 days: no forecast." in _page(client, project)


def test_class_balance_per_ring_counts_finer_labels_for_their_parents(
    client, project, engineer, scene
):
    client.force_login(engineer)
    html = _page(client, project)
    labels = _labels(scene["plan"])
    # Independently: a node key names its ancestors ("mad.angry.x" is under "mad.angry").
    for ring in range(3):
        table = _table(html, f"ring-{ring}")
        expected: dict[str, int] = {}
        for p in labels:
            parts = p[2].split(".")
            if len(parts) > ring:
                key = ".".join(parts[: ring + 1])
                expected[key] = expected.get(key, 0) + 1
        shown = {cells[0]: int(cells[1]) for cells in table.values()}
        assert {k: v for k, v in shown.items() if v} == expected, ring
        assert sum(shown.values()) == sum(expected.values())
    assert (
        len(_table(html, "ring-0"))
        == TaxonomyNode.objects.filter(version=project.taxonomy_version, level=0).count()
    )


def test_keys_are_dotted_paths_of_their_ancestors(project):
    """The independent roll-up above relies on it."""
    for node in TaxonomyNode.objects.filter(version=project.taxonomy_version, level__gt=0):
        assert node.key.startswith(node.parent.key + ".")


def test_coverage_against_the_quotas(client, project, engineer, scene):
    LearnerSettings.objects.update_or_create(
        project=project,
        defaults={"coverage_min_share": {"gender": {"female": 0.5, "other": 0.1}},
                  "coverage_max_share": {"gender": {"male": 0.2}}},
    )  # fmt: skip
    client.force_login(engineer)
    html = _page(client, project)
    # Clips with at least one label: c1 (s1 female), c2 (s1 female), c3 (s2 male).
    gender = _table(html, "coverage-gender")
    assert gender["female"][:3] == ["3", "2", "0.667"]
    assert gender["female"][3] == "≥ 0.5"
    assert gender["male"][:3] == ["2", "1", "0.333"]
    assert "≤ 0.2" in gender["male"][3]
    assert "(above)" in gender["male"][3]
    assert gender["(none)"][:3] == ["1", "0", "0.000"]
    assert gender["other"] == ["0", "0", "0", "quota, no clips"]
    speakers = _table(html, "coverage-speaker_id")
    assert {k: v[:2] for k, v in speakers.items()} == {
        "s1": ["2", "2"], "s2": ["2", "1"], "s3": ["2", "0"]
    }  # fmt: skip
    language = _table(html, "coverage-language")
    assert {k: v[:2] for k, v in language.items()} == {"de": ["3", "3"], "en": ["3", "0"]}
    channel = _table(html, "coverage-channel")
    assert {k: v[:2] for k, v in channel.items()} == {"phone": ["4", "2"], "studio": ["2", "1"]}


def test_the_figures_are_cached_for_a_minute_and_say_when_they_were_computed(
    client, project, engineer, scene
):
    client.force_login(engineer)
    assert _figure(_page(client, project), "clips") == "6"
    ClipFactory(project=project)
    html = _page(client, project)
    assert _figure(html, "clips") == "6"
    assert "figures older than 60 seconds are refreshed in the background" in html


def test_the_overview_runs_a_fixed_number_of_queries(
    client, project, engineer, scene, django_assert_max_num_queries
):
    """Aggregates only: more clips and labels add no query."""
    client.force_login(engineer)
    with django_assert_max_num_queries(16):
        _page(client, project)


def test_changing_the_quotas_in_the_settings_page_refreshes_the_overview(
    client, project, engineer, scene
):
    client.force_login(engineer)
    assert "(above)" not in _page(client, project)
    row = LearnerSettings.objects.get_or_create(project=project)[0]
    form = {f: str(getattr(row, f)) for f in ("feature_set", "speaker_normalisation",
            "retrain_after_labels", "retrain_interval_hours", "min_labelled_clips",
            "unsure_weight", "seed", "query_strategy", "query_batch_size")}  # fmt: skip
    form.update({"form": "learner", "augmentation": "on", "epochs": "", "query_params": "{}",
                 "coverage_min_share": "{}",
                 "coverage_max_share": '{"gender": {"male": 0.2}}'})  # fmt: skip
    assert client.post(f"/projects/{project.slug}/settings/", form).status_code == 302
    assert "(above)" in _table(_page(client, project), "coverage-gender")["male"][3]


# --- Freshness: figures older than a minute are refreshed in the background ----------------


def _stale(project, seconds: int = 120) -> None:
    cache.set(
        # Aged from the real clock (the module's NOW is fixed at import, minutes earlier in a
        # long run, which would make every entry stale).
        overview.key(project.pk),
        ("<p id='old'>old</p>", timezone.now() - dt.timedelta(seconds=seconds)),
    )


def test_stale_figures_are_served_while_one_refresh_is_asked_for(project, scene):
    _stale(project)
    asked: list[int] = []
    for _ in range(3):
        html, _when = overview.html(project, request_refresh=asked.append)
        assert "id='old'" in html
    assert asked == [project.pk]  # one request per project while it runs


def test_fresh_figures_ask_for_nothing(project, scene):
    _stale(project, seconds=10)
    asked: list[int] = []
    overview.html(project, request_refresh=asked.append)
    assert asked == []


def test_a_refresh_the_task_queue_refuses_is_asked_for_again_next_time(project, scene):
    _stale(project)

    def down(project_id: int) -> None:
        raise BrokerUnavailable("The task queue is unavailable (test).")

    html, _when = overview.html(project, request_refresh=down)
    assert "id='old'" in html
    asked: list[int] = []
    overview.html(project, request_refresh=asked.append)
    assert asked == [project.pk]


def test_the_refresh_task_recomputes_the_figures_and_frees_the_lock(project, scene):
    _stale(project)
    cache.set(overview.lock_key(project.pk), 1)
    tasks.refresh_overview(project.pk)
    html, when = cache.get(overview.key(project.pk))
    assert 'data-figure="clips">6<' in html
    assert (timezone.now() - when).total_seconds() < 60
    assert cache.get(overview.lock_key(project.pk)) is None


@pytest.mark.celery
@pytest.mark.slow
def test_a_page_load_on_stale_figures_has_the_worker_refresh_them(
    worker, client, project, engineer, scene, settings
):
    """The worker keys its cache by the test database's name (its DATABASE_URL) while this
    process's settings were read before pytest renamed the database: read the worker's keys
    with its prefix (in production web and worker share one DATABASE_URL, hence one prefix)."""
    seen_by_worker = RedisCache(
        settings.CACHES["default"]["LOCATION"],
        {"KEY_PREFIX": Path(str(settings.DATABASES["default"]["NAME"])).name},
    )
    _stale(project)
    client.force_login(engineer)
    assert "id='old'" in _page(client, project)
    wait_until(
        lambda: (
            'data-figure="clips">6<' in (seen_by_worker.get(overview.key(project.pk)) or ("",))[0]
        ),
        timeout=60,
        what="the worker to refresh the overview",
    )
    seen_by_worker.delete(overview.key(project.pk))
