"""The ML engineer's workspace pages (console/): who may open them, and what each shows from
constructed model versions, rankings and imports (the browser test drives the real loop)."""

from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from labelling.models import ImportBatch, ImportItem, QueueEntry
from learner.models import ClipScore, ModelVersion, Ranking, TrainingRun
from learner.services import reports
from tests.factories import ClipFactory

pytestmark = [pytest.mark.django_db]

PAGES = ["overview", "imports", "models", "ranking", "settings"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(
    ("who", "status"),
    [
        ("annotator", 403),
        ("reviewer", 403),
        ("engineer", 200),
        ("project_admin", 200),
        ("superuser", 200),
        ("outsider", 404),
        ("staff", 404),
    ],
)
def test_each_page_is_for_ml_engineers_and_admins_of_the_project(
    request, project, page, who, status
):
    response = client_of(request.getfixturevalue(who)).get(f"/projects/{project.slug}/{page}/")
    assert response.status_code == status


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_visitors_are_sent_to_the_login_page(project, page):
    response = Client().get(f"/projects/{project.slug}/{page}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("page", PAGES)
def test_an_unknown_project_is_not_found(engineer, page):
    assert client_of(engineer).get(f"/projects/nope/{page}/").status_code == 404


@pytest.mark.parametrize("page", PAGES)
def test_every_page_carries_the_project_navigation_and_no_inline_script(engineer, project, page):
    response = client_of(engineer).get(f"/projects/{project.slug}/{page}/")
    html = response.content.decode()
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", html)
    nav = html[html.index('class="project-nav"') :]
    nav = nav[: nav.index("</nav>")]
    for target in [
        "overview",
        "imports",
        "models",
        "ranking",
        "settings",
        "datasets",
        "quality",
        "label",
    ]:
        assert f"/projects/{project.slug}/{target}/" in nav
    assert f'href="/projects/{project.slug}/{page}/" aria-current="page"' in nav


def _version(project, number: int, *, labels: int, uar: float, test_n: int, speakers: list[str],
             active: bool = False, plots: bool = True) -> ModelVersion:  # fmt: skip
    run = TrainingRun.objects.create(
        project=project, status="succeeded", trigger="manual", feature_set="acoustic"
    )
    version = ModelVersion.objects.create(
        project=project,
        number=number,
        run=run,
        extractor="acoustic",
        extractor_version="1",
        artifact_sha256="0" * 64,
        label_count=labels,
        is_active=active,
        metrics={
            "uar": uar,
            "macro_f1": uar - 0.05,
            "accuracy": uar + 0.02,
            "ece_before": 0.2,
            "ece_after": 0.07,
            "split": {
                "by": "speaker",
                "speaker_independent": True,
                "sizes": {"train": 100, "val": 10, "test": test_n},
                "speakers": {"test": speakers},
            },
            "heads": {
                "core": {"n": test_n, "per_class_recall": {"mad": uar, "sad": None}},
            },
        },
    )
    if plots:
        version.confusion_image.save(f"cm-{number}.png", ContentFile(PNG), save=False)
        version.calibration_image.save(f"rel-{number}.png", ContentFile(PNG), save=False)
        version.save()
    return version


def test_the_models_page_shows_the_curve_the_versions_and_a_warning_for_small_test_splits(
    project, engineer
):
    _version(project, 1, labels=40, uar=0.41, test_n=12, speakers=["a", "b"])
    _version(
        project, 2, labels=120, uar=0.55, test_n=45, speakers=["a", "b", "c", "d"], active=True
    )
    client = client_of(engineer)

    html = client.get(f"/projects/{project.slug}/models/").content.decode()

    # The learning curve: one point per version, at its number of labels.
    assert html.count('class="dot line-a"') == 2
    assert "UAR: 0.410 at 40" in html
    assert "UAR: 0.550 at 120" in html
    rows = re.findall(r'<tr data-version="(\d)"( class="untrusted")?', html)
    assert rows == [("2", ""), ("1", ' class="untrusted"')]
    # The active version is shown by default, with its plots and no warning.
    assert 'id="version-detail" data-version="2"' in html
    assert f"/projects/{project.slug}/models/2/confusion.png" in html
    assert "Roll back to v1" in html

    html = client.get(f"/projects/{project.slug}/models/?version=1").content.decode()
    assert "only 12 clips (fewer than 30)" in html
    assert "only 2 speaker(s) (fewer than 3)" in html
    assert "stores no confidence intervals" in html


def test_two_versions_are_compared_side_by_side(project, engineer):
    _version(project, 1, labels=40, uar=0.41, test_n=12, speakers=["a", "b"])
    _version(project, 2, labels=120, uar=0.55, test_n=45, speakers=["a", "b", "c"])
    html = client_of(engineer).get(f"/projects/{project.slug}/models/?a=1&b=2").content.decode()
    table = html[html.index('id="comparison"') :]
    assert re.search(r"UAR \(core ring\)</th><td>0\.410</td><td>0\.550</td>", table)
    assert re.search(r"Labels</th><td>40\.000</td><td>120\.000</td>", table)
    assert re.search(r"Recall: sad</th><td>\u2013</td><td>\u2013</td>", table)


@pytest.mark.parametrize(
    ("who", "status"), [("engineer", 200), ("reviewer", 403), ("outsider", 404)]
)
def test_a_versions_plots_are_served_to_engineers_only(request, project, who, status):
    _version(project, 1, labels=40, uar=0.4, test_n=40, speakers=["a", "b", "c"])
    client = client_of(request.getfixturevalue(who))
    for kind in ("confusion", "reliability"):
        response = client.get(f"/projects/{project.slug}/models/1/{kind}.png")
        assert response.status_code == status
        if status == 200:
            assert response["Content-Type"] == "image/png"
            assert b"".join(response.streaming_content) == PNG


def test_a_missing_plot_or_kind_is_not_found(project, engineer):
    _version(project, 1, labels=40, uar=0.4, test_n=40, speakers=["a", "b", "c"], plots=False)
    client = client_of(engineer)
    assert client.get(f"/projects/{project.slug}/models/1/confusion.png").status_code == 404
    assert client.get(f"/projects/{project.slug}/models/1/weights.png").status_code == 404
    assert client.get(f"/projects/{project.slug}/models/9/confusion.png").status_code == 404


def test_unavailable_feature_sets_are_not_offered_and_say_why(project, engineer):
    html = client_of(engineer).get(f"/projects/{project.slug}/models/").content.decode()
    select = html[html.index('id="feature-set"') : html.index("</select>")]
    offered = re.findall(r'<option value="(\w+)"', select)
    assert "acoustic" in offered
    assert "ssl" not in offered
    assert 'data-feature-set="ssl"' in html
    assert "EMOLOOP_SSL_CHECKPOINT" in html


def _ranking(project, version):
    clips = ClipFactory.create_batch(6, project=project)
    for i, clip in enumerate(clips):
        clip.speaker_id, clip.gender = f"s{i % 2}", "female" if i % 3 else "male"
        clip.save()
    ranking = Ranking.objects.create(
        project=project, model_version=version, strategy="uncertain_kcenter",
        params={"measure": "entropy", "alpha": 0.5, "candidate_factor": 10},
        batch_size=2, pool_size=6, status=Ranking.Status.COMPLETE, selected=2,
    )  # fmt: skip
    probabilities = [0.95, 0.85, 0.55, 0.45, 0.3, 0.12]
    for i, (clip, p) in enumerate(zip(clips, probabilities, strict=True)):
        ClipScore.objects.create(
            ranking=ranking, clip=clip, score=1 - p, top_core="sad" if i % 2 else "mad",
            top_probability=p, selected=i in (4, 5),
        )  # fmt: skip
    # Rescoring's reasons in the queue: clip 5 was picked first, clip 4 second.
    for i, rank in ((5, 0), (4, 1)):
        QueueEntry.objects.create(project=project, clip=clips[i], reason={
            "strategy": ranking.strategy, "ranking": ranking.pk, "batch": True, "rank": rank,
            "score": 1 - probabilities[i], "model_version": version.number,
        })  # fmt: skip
    return ranking, clips


def test_the_ranking_page_shows_the_batch_with_reasons_its_composition_and_the_uncertainty(
    project, engineer
):
    version = _version(project, 1, labels=40, uar=0.4, test_n=40, speakers=["a", "b", "c"])
    _ranking_row, clips = _ranking(project, version)

    html = client_of(engineer).get(f"/projects/{project.slug}/ranking/").content.decode()

    batch = html[html.index('id="batch"') : html.index("</table>", html.index('id="batch"'))]
    assert re.findall(r'<tr data-clip="(\d+)"><td>(\d)</td>', batch) == [
        (str(clips[5].pk), "1"),
        (str(clips[4].pk), "2"),
    ]
    assert "sad (0.12)" in batch
    assert "mad (0.30)" in batch
    assert "uncertain_kcenter: score 0.880; uncertainty by entropy" in batch
    assert "picked #1 for diversity among the top 20 candidates; model v1" in batch
    # Composition: the batch's predicted feelings against the pool's (3 mad, 3 sad).
    report = reports.ranking_report(project)
    assert report is not None
    assert report.composition["Predicted feeling"] == [("mad", 1, 0.5, 0.5), ("sad", 1, 0.5, 0.5)]
    speakers = {v: (n, share) for v, n, share, _pool in report.composition["Speaker"]}
    assert speakers == {"s0": (1, 0.5), "s1": (1, 0.5)}
    # Uncertainty 1 - p: 0.05, 0.15, 0.45, 0.55, 0.7, 0.88 -> one clip in each of six bins.
    assert [n for _lo, _hi, n in report.histogram] == [1, 1, 0, 0, 1, 1, 0, 1, 1, 0]
    table = html[html.index('id="histogram"') :]
    assert "<td>0.0\u20130.1</td><td>1</td>" in table
    assert "<td>0.9\u20131.0</td><td>0</td>" in table


def test_the_ranking_page_says_when_there_is_no_ranking(project, engineer):
    html = client_of(engineer).get(f"/projects/{project.slug}/ranking/").content.decode()
    assert 'id="no-ranking"' in html


def test_the_imports_page_lists_batches_and_every_files_outcome(project, engineer):
    batch = ImportBatch.objects.create(project=project, created_by=engineer, source="upload",
                                       status=ImportBatch.Status.DONE)  # fmt: skip
    ImportItem.objects.create(batch=batch, name="ok.wav", status="accepted", clips_created=1)
    ImportItem.objects.create(
        batch=batch, name="bad.aac", status="rejected", reason_code="unsupported",
        reason="AAC is not supported: convert to WAV or FLAC",
    )  # fmt: skip
    html = client_of(engineer).get(f"/projects/{project.slug}/imports/").content.decode()
    row = re.search(rf'<tr data-batch="{batch.pk}".*?</tr>', html, re.S)
    assert row is not None
    cells = re.findall(r"<td>(\d+)</td>", row.group(0))
    assert cells == [
        "2",
        "1",
        "0",
        "1",
        "0",
        "0",
    ]  # files, accepted, duplicate, rejected, pending, clips
    items = html[html.index('id="items"') :]
    assert "<code>unsupported</code> AAC is not supported" in items
    assert '"upload": "/api/projects/callcentre/imports/"' in html


def test_another_projects_batch_is_not_shown(project, other_project, engineer):
    theirs = ImportBatch.objects.create(project=other_project, source="upload")
    response = client_of(engineer).get(f"/projects/{project.slug}/imports/?batch={theirs.pk}")
    assert response.status_code == 404
