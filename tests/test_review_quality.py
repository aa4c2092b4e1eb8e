"""Every figure of the quality pages and API against a value worked out independently from
tests/review_world.py: counts and rates by hand, Cohen's kappa with scikit-learn,
Krippendorff's alpha with the coincidence-matrix formula written out below, medians and
percentiles with the standard library."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import UTC, datetime

import pytest
from sklearn.metrics import cohen_kappa_score

from review.services import snapshots
from tests.review_world import TABLE, World, build, label

pytestmark = pytest.mark.django_db

CORE = {n: {r: v[0].split(".")[0] for r, v in row.items() if v[0] != "skip"} for n, row in
        TABLE.items()}  # fmt: skip


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    """Six users per test: PBKDF2's deliberate slowness is not what is tested here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def world(project, other_project) -> World:
    return build(project, other_project)


def kappa(first: list[str], second: list[str]) -> float:
    return float(cohen_kappa_score(first, second))


def alpha(units: list[list[str]]) -> float | None:
    """Krippendorff's alpha, nominal, from its coincidence matrix (Krippendorff 2011)."""
    units = [u for u in units if len(u) >= 2]
    coincidences: Counter[tuple[str, str]] = Counter()
    for unit in units:
        for i, a in enumerate(unit):
            for j, b in enumerate(unit):
                if i != j:
                    coincidences[(a, b)] += 1 / (len(unit) - 1)
    totals: Counter[str] = Counter()
    for (a, _b), weight in coincidences.items():
        totals[a] += weight
    n = sum(totals.values())
    if n == 0:
        return None
    observed = sum(w for (a, b), w in coincidences.items() if a != b) / n
    expected = sum(totals[a] * totals[b] for a in totals for b in totals if a != b) / (n * (n - 1))
    return None if expected == 0 else 1 - observed / expected


def at(key: str, ring: int) -> str | None:
    parts = key.split(".")
    return ".".join(parts[: ring + 1]) if len(parts) > ring else None


def units_at(ring: int) -> list[list[str]]:
    out = []
    for row in TABLE.values():
        values = [at(v[0], ring) for v in row.values() if v[0] != "skip"]
        out.append([v for v in values if v is not None])
    return out


def by_name(body: dict) -> dict[str, dict]:
    return {a["username"]: a for a in body["annotators"]}


def test_counts_rates_and_times_are_the_hand_counted_ones(world, reviewer, client_for):
    body = client_for(reviewer).get("/api/projects/callcentre/quality/").json()
    found = by_name(body)
    assert set(found) == {"alma", "bodo", "cleo"}  # the corpus rater never appears
    assert body["labels"] == 18
    assert body["clips"] == 8
    alma, bodo, cleo = found["alma"], found["bodo"], found["cleo"]
    assert (alma["labels"], alma["skips"], alma["unsure"]) == (6, 1, 1)
    assert alma["skip_rate"] == pytest.approx(1 / 7)
    assert alma["unsure_rate"] == pytest.approx(1 / 6)
    assert (bodo["labels"], bodo["skip_rate"], bodo["unsure_rate"]) == (6, 0.0, 0.0)
    anna_times = [1000, 2000, 3000, 4000, 10000, 5000]  # the skip's 700 ms is not a label
    assert alma["median_ms"] == statistics.median(anna_times) == 3500
    assert alma["p90_ms"] == pytest.approx(
        statistics.quantiles(anna_times, n=10, method="inclusive")[8]
    )
    cara_times = [800, 1600, 2400, 3200, 4000, 4800]
    assert cleo["median_ms"] == statistics.median(cara_times)
    assert cleo["p90_ms"] == pytest.approx(
        statistics.quantiles(cara_times, n=10, method="inclusive")[8]
    )


def test_gold_accuracy_at_the_core_and_exactly(world, reviewer, client_for):
    found = by_name(client_for(reviewer).get("/api/projects/callcentre/quality/").json())
    # Gold: clip 4 sad.guilty.remorseful, clip 7 joyful.excited.thrilled.
    # alma: 4 remorseful (core ok, exact ok). bodo: 4 sad.guilty (core ok), 7 joyful (core
    # ok), exact 0. cleo: 4 regretful (core ok), 7 scared.confused (wrong).
    assert found["alma"]["gold_core"] == {"items": 1, "correct": 1, "accuracy": 1.0}
    assert found["alma"]["gold_exact"] == {"items": 1, "correct": 1, "accuracy": 1.0}
    assert found["bodo"]["gold_core"] == {"items": 2, "correct": 2, "accuracy": 1.0}
    assert found["bodo"]["gold_exact"] == {"items": 2, "correct": 0, "accuracy": 0.0}
    assert found["cleo"]["gold_core"] == {"items": 2, "correct": 1, "accuracy": 0.5}
    assert found["cleo"]["gold_exact"] == {"items": 2, "correct": 0, "accuracy": 0.0}


def test_agreement_with_the_other_raters_majority_and_pairwise_kappa(world, reviewer, client_for):
    found = by_name(client_for(reviewer).get("/api/projects/callcentre/quality/").json())
    # Leave-one-out consensus at the core ring, clip by clip (3-rater clips are unanimous).
    expected = {
        "alma": (["mad", "mad", "joyful", "sad", "scared", "sad"],
                 ["mad", "scared", "joyful", "sad", "joyful", "sad"]),
        "bodo": (["mad", "scared", "joyful", "sad", "peaceful", "joyful"],
                 ["mad", "mad", "joyful", "sad", "peaceful", "scared"]),
        "cleo": (["mad", "sad", "joyful", "peaceful", "scared", "sad"],
                 ["mad", "sad", "scared", "peaceful", "joyful", "sad"]),
    }  # fmt: skip
    for name, (mine, consensus) in expected.items():
        got = found[name]["consensus"]
        assert (got["items"], got["agreeing"]) == (6, 4), name
        assert got["share"] == pytest.approx(4 / 6)
        assert got["kappa"] == pytest.approx(kappa(mine, consensus)), name
    pairs = {
        ("alma", "bodo"): (["mad", "mad", "joyful", "sad"], ["mad", "scared", "joyful", "sad"]),
        ("alma", "cleo"): (["mad", "sad", "scared", "sad"], ["mad", "sad", "joyful", "sad"]),
        ("bodo", "cleo"): (["mad", "sad", "peaceful", "joyful"],
                           ["mad", "sad", "peaceful", "scared"]),
    }  # fmt: skip
    k = {pair: kappa(*labels) for pair, labels in pairs.items()}
    # Every pair shares 4 clips: the weighted mean is the plain mean here.
    assert found["alma"]["pairwise_kappa"] == pytest.approx(
        (k["alma", "bodo"] + k["alma", "cleo"]) / 2
    )
    assert found["cleo"]["pairwise_kappa"] == pytest.approx(
        (k["alma", "cleo"] + k["bodo", "cleo"]) / 2
    )
    assert found["alma"]["co_raters"] == 2

    agreement = client_for(reviewer).get("/api/projects/callcentre/quality/agreement/").json()
    names = [r["username"] for r in agreement["matrix"]["raters"]]
    assert names == ["alma", "bodo", "cleo"]
    cells = agreement["matrix"]["cells"]
    assert cells[0][0] is None
    for (a, b), labels in pairs.items():
        i, j = names.index(a), names.index(b)
        for cell in (cells[i][j], cells[j][i]):
            assert cell["shared"] == 4
            assert cell["agree"] == 3
            assert cell["kappa"] == pytest.approx(kappa(*labels))


def test_krippendorff_alpha_per_ring_and_class(world, reviewer, client_for):
    body = client_for(reviewer).get("/api/projects/callcentre/quality/agreement/").json()
    rings = {r["ring"]: r for r in body["rings"]}
    for ring in (0, 1, 2):
        units = units_at(ring)
        want = alpha(units)
        got = rings[ring]["alpha"]
        assert (got is None and want is None) or got == pytest.approx(want), ring
        assert rings[ring]["pairable_clips"] == sum(1 for u in units if len(u) >= 2)
        classes = {c["label"]: c["alpha"] for c in rings[ring]["per_class"]}
        for value in {v for u in units for v in u}:
            expected = alpha([[str(v == value) for v in u] for u in units])
            assert (classes[value] is None and expected is None) or classes[value] == (
                pytest.approx(expected)
            ), (ring, value)
    assert rings[2]["pairable_clips"] == 1
    assert rings[2]["alpha"] == pytest.approx(0.0)


def test_most_confused_pairs_are_counted_per_pair_of_raters(world, reviewer, client_for):
    body = client_for(reviewer).get("/api/projects/callcentre/quality/agreement/").json()
    assert body["confused_core"] == [
        {"a": "joyful", "b": "scared", "count": 2},  # clips 5 and 7
        {"a": "mad", "b": "scared", "count": 1},  # clip 2
    ]
    finest = {(p["a"], p["b"]): p["count"] for p in body["confused"]}
    assert len(finest) == 12
    assert set(finest.values()) == {1}
    assert finest[("sad.guilty.regretful", "sad.guilty.remorseful")] == 1


def test_drift_per_week(world, reviewer, client_for):
    found = by_name(client_for(reviewer).get("/api/projects/callcentre/quality/").json())
    # alma, week 45: clips 1 (agrees) and 2 (does not); week 46: 3, 4, 8 agree, 5 does not;
    # the skip on 6 is not a label; gold clip 4 in week 46, correct at the core.
    assert found["alma"]["weeks"] == [
        {"week": "2026-W45", "labels": 2, "gold_core_accuracy": None, "consensus_share": 0.5},
        {"week": "2026-W46", "labels": 4, "gold_core_accuracy": 1.0, "consensus_share": 0.75},
    ]


def test_review_queue_holds_disagreements_unsure_and_failed_gold(world, reviewer, client_for):
    body = client_for(reviewer).get("/api/projects/callcentre/review/").json()
    clips = world.clips
    assert body["count"] == 3
    assert body["results"] == [
        {"clip": clips[2].pk, "reasons": ["disagreement"]},
        {"clip": clips[5].pk, "reasons": ["disagreement", "unsure"]},
        {"clip": clips[7].pk, "reasons": ["gold_failed", "disagreement"]},
    ]
    only = client_for(reviewer).get("/api/projects/callcentre/review/?reason=unsure").json()
    assert [r["clip"] for r in only["results"]] == [clips[5].pk]
    bad = client_for(reviewer).get("/api/projects/callcentre/review/?reason=nope")
    assert bad.status_code == 400


def test_pages_show_the_figures(world, reviewer, client):
    client.force_login(reviewer)
    page = client.get("/projects/callcentre/quality/").content.decode()
    assert "66.7 %" in page
    assert "3.5 s" in page
    assert "14.3 %" in page
    alma = world.raters["alma"]
    detail = client.get(f"/projects/callcentre/quality/annotators/{alma.pk}/").content.decode()
    assert "2026-W45" in detail
    assert "75.0 %" in detail
    assert "<polyline" in detail
    agreement = client.get("/projects/callcentre/quality/agreement/").content.decode()
    assert 'id="matrix"' in agreement
    assert "joyful" in agreement
    queue = client.get("/projects/callcentre/review/").content.decode()
    assert "3 clips to review" in queue


def test_a_new_label_makes_the_snapshot_stale_and_a_small_project_recomputes(
    world, reviewer, client_for
):
    api = client_for(reviewer)
    first = api.get("/api/projects/callcentre/quality/").json()
    assert first["stale"] is False
    label(world.project, world.clips[7], world.raters["alma"], "joyful",
          when=datetime(2026, 11, 11, tzinfo=UTC))  # fmt: skip
    snapshot, stale = snapshots.current(world.project)
    assert stale
    assert snapshot is not None
    second = api.get("/api/projects/callcentre/quality/").json()
    assert second["stale"] is False
    assert second["computed_at"] >= first["computed_at"]
    assert by_name(second)["alma"]["labels"] == 7


def test_a_big_project_shows_the_stored_figures_and_asks_a_task(
    world, reviewer, client_for, monkeypatch
):
    api = client_for(reviewer)
    api.get("/api/projects/callcentre/quality/")  # computed in the request (small)
    monkeypatch.setattr(snapshots, "SYNC_LIMIT", 0)
    sent: list[tuple] = []
    monkeypatch.setattr("review.tasks.publish", lambda task, *args: sent.append(args))
    label(world.project, world.clips[7], world.raters["alma"], "joyful")
    body = api.get("/api/projects/callcentre/quality/").json()
    assert body["stale"] is True
    assert body["refreshing"] is True
    assert by_name(body)["alma"]["labels"] == 6  # the stored figures
    api.get("/api/projects/callcentre/quality/")
    assert sent == [(world.project.pk,)]  # asked once while the first request runs
