"""The annotator's flow in a real browser: submit-to-playable latency and keys per label.

Starts its own server (gunicorn, gthread) on a free port, seeds a throw-away project with
real EmoDB audio through the ingestion path (canonical WAV, peaks, loudness), then drives
headless Debian Chromium through Playwright like a keyboard-only annotator: log in, open
the labelling page, and label a scripted session that mixes core, secondary and tertiary
labels and a few skips.

Definitions
- submit_to_playable_ms: from the submit key press (the keydown event's timestamp) to the
  moment the next clip is playable: its wavesurfer instance has emitted `ready` (waveform
  drawn) AND its <audio> element has readyState >= 3 (HAVE_FUTURE_DATA). Measured in the
  page (performance.measure "emoloop:submit-to-playable", static/js/label/main.js).
- keys per label: key presses the script needed, counted per label (a core label is its
  number then Enter; a skip is S then the reason's number). Listening keys (speed) are not
  counted.
- The annotator listens to each clip to its end (at 2x speed, to keep the run short) before
  labelling, as a careful annotator would; the next clip is prefetched meanwhile.

Database: the PostgreSQL in DATABASE_URL when it names one (already migrated; a throw-away
project and user, removed afterwards), else a throw-away SQLite file.

    make bench-annotator        # or: python -m bench.annotator_flow [--labels 40] [--clips 60]

Writes bench/results/annotator_flow.json; the last printed line holds the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import django

REPO = Path(__file__).resolve().parents[1]
EMODB = REPO.parent / "shared" / "data" / "emodb"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The page is opened by URL, not by a click on a same-origin link, so Chrome would block
    # the first clip's autoplay; an annotator arriving from the project page is allowed it.
    "--autoplay-policy=no-user-gesture-required",
]
PASSWORD = "bench-annotator-pw"  # noqa: S105 - a throw-away user on a throw-away project

# Everything the server and this process write goes to one temporary folder.
SCRATCH = Path(tempfile.mkdtemp(prefix="emoloop-annotator-bench-"))
if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
    os.environ["DATABASE_URL"] = f"sqlite:///{SCRATCH / 'bench.sqlite3'}"
os.environ["EMOLOOP_DATA_DIR"] = str(SCRATCH)
os.environ["MEDIA_ROOT"] = str(SCRATCH / "media")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emoloop.settings")
os.environ.setdefault("EMOLOOP_DEV", "true")
# Run as a script, Python puts bench/ first on the import path: bench.* comes from the root.
sys.path.insert(0, str(REPO))

from bench.server import free_port, start_gunicorn  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from labelling.models import Annotation, Clip, Membership, Project, Role  # noqa: E402
from labelling.services import ingest, taxonomy  # noqa: E402


def seed(n_clips: int) -> tuple[Project, object]:
    """A project on the Willcox wheel with n EmoDB clips, and one annotator."""
    if connection.vendor == "sqlite":  # a fresh file; PostgreSQL is migrated by the caller
        call_command("migrate", verbosity=0, interactive=False)
    tag = f"bench-flow-{os.getpid()}"
    project = Project.objects.create(
        name="Annotator flow bench",
        slug=tag,
        description="Actors reading neutral German sentences in seven emotions (EmoDB).",
        guidelines="Label the feeling you hear in the voice, not the words.",
        taxonomy_version=taxonomy.install_preset("willcox"),
        annotators_per_clip=1,
    )
    user = get_user_model().objects.create_user(username=tag, password=PASSWORD)
    Membership.objects.create(user=user, project=project, role=Role.ANNOTATOR)
    folder = SCRATCH / "corpus"
    folder.mkdir()
    wavs = sorted((EMODB / "wav").glob("*.wav"))
    for wav in random.Random(7).sample(wavs, min(n_clips, len(wavs))):
        shutil.copy(wav, folder / wav.name)
    manifest = EMODB / "labels.csv"
    batch = ingest.stage_folder(project, folder, manifest_path=manifest)
    for item_id in ingest.pending_item_ids(batch):
        ingest.process_item(item_id)
    return project, user


def cleanup() -> None:
    """Remove this run's project, user and files (the database may be a shared one)."""
    if connection.vendor == "postgresql":
        tag = f"bench-flow-{os.getpid()}"
        Annotation.objects.filter(clip__project__slug=tag).delete()
        Project.objects.filter(slug=tag).delete()
        get_user_model().objects.filter(username=tag).delete()
    shutil.rmtree(SCRATCH, ignore_errors=True)


def plan(n: int, seed_value: int = 11) -> list[str]:
    """The session: about 40% core, 25% secondary, 25% tertiary labels, 10% skips."""
    weights = {"core": 0.4, "secondary": 0.25, "tertiary": 0.25, "skip": 0.1}
    kinds = [k for k, w in weights.items() for _ in range(round(w * n))]
    kinds += ["core"] * (n - len(kinds))
    random.Random(seed_value).shuffle(kinds)
    return kinds[:n]


def keys_for(kind: str, rng: random.Random) -> list[str]:
    digit = lambda top: str(rng.randint(1, top))  # noqa: E731
    if kind == "core":
        return [digit(6), "Enter"]
    if kind == "secondary":
        return [digit(6), digit(6), "Enter"]
    if kind == "tertiary":
        return [digit(6), digit(6), digit(2), "Enter"]
    return ["s", digit(5)]


def run_session(base_url: str, user, project: Project, n_labels: int, shot: Path) -> dict:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15000)
    rng = random.Random(3)
    steps = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(15000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base_url}/accounts/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{base_url}/")
        page.goto(f"{base_url}/projects/{project.slug}/label/")
        app = page.locator("#labeller")
        expect(app).to_have_attribute("data-state", "labelling")
        for _ in range(4):  # 1x -> 2x: listen faster, the way experienced annotators do
            page.keyboard.press(".")
        for i, kind in enumerate(plan(n_labels)):
            expect(app).to_have_attribute("data-state", "labelling")
            clip = app.get_attribute("data-clip-id")
            expect(page.locator("#listen")).to_have_attribute("data-heard", "true")
            if i == 3:
                page.keyboard.press("2")
                page.keyboard.press("3")
                page.screenshot(path=str(shot))
                page.keyboard.press("Backspace")
                page.keyboard.press("Backspace")
            keys = keys_for(kind, rng)
            for key in keys:
                page.keyboard.press(key)
            expect(app).not_to_have_attribute("data-clip-id", clip)
            expect(app).to_have_attribute("data-state", "labelling")
            measure = page.evaluate(
                """() => {
                    const all = performance.getEntriesByName('emoloop:submit-to-playable');
                    return all.length ? all[all.length - 1].duration : null;
                }"""
            )
            steps.append({"kind": kind, "keys": len(keys), "submit_to_playable_ms": measure})
        # Let the last submit land before reading the network timings.
        expect(page.locator("#session-count")).to_have_text(str(n_labels))
        network = page.evaluate(
            """() => performance.getEntriesByType('resource')
                .filter(e => /\\/api\\/projects\\/[^/]+\\/(next|annotations)\\/$/.test(e.name))
                .map(e => ({kind: e.name.includes('/next/') ? 'next' : 'submit',
                            ms: e.duration}))"""
        )
        browser.close()
    if errors:
        raise SystemExit(f"JavaScript errors on the page: {errors}")
    return {"steps": steps, "network": network}


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(pick(0.9), 1),
        "max": round(ordered[-1], 1),
        "n": len(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=40)
    parser.add_argument("--clips", type=int, default=60)
    args = parser.parse_args()
    if not (EMODB / "wav").is_dir():
        raise SystemExit(f"No EmoDB at {EMODB} (it lives in ../shared/data/emodb)")
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: run scripts/install-chromium.sh")
    if not (REPO / "static/vendor/wavesurfer/wavesurfer.esm.js").exists():
        raise SystemExit("static/vendor is empty: run scripts/vendor-frontend.sh")

    shot = REPO / "test-artifacts" / "annotator-flow.png"
    shot.parent.mkdir(exist_ok=True)
    server = None
    try:
        project, user = seed(args.clips)
        port = free_port()
        server = start_gunicorn(port, 2, 4)
        session = run_session(f"http://127.0.0.1:{port}", user, project, args.labels, shot)
        stored = Annotation.objects.filter(clip__project=project, is_current=True).count()
        clips = Clip.objects.filter(project=project)
        audio = [c.duration_s for c in clips]
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        cleanup()

    steps = session["steps"]
    latency = [s["submit_to_playable_ms"] for s in steps if s["submit_to_playable_ms"] is not None]
    by_kind: dict[str, list[int]] = {}
    for step in steps:
        by_kind.setdefault(step["kind"], []).append(step["keys"])
    labels = [s for s in steps if s["kind"] != "skip"]
    result = {
        "benchmark": "annotator_flow",
        "labels": len(steps),
        "mix": {kind: len(keys) for kind, keys in sorted(by_kind.items())},
        "submit_to_playable_ms": summary(latency),
        "playable_definition": "wavesurfer 'ready' for the next clip and its <audio> "
        "readyState >= 3, measured in the page from the submit keydown's timestamp",
        "keys_per_label": round(sum(s["keys"] for s in labels) / len(labels), 2),
        "keys_per_core_label": round(statistics.mean(by_kind.get("core", [0])), 2),
        "keys_per_secondary_label": round(statistics.mean(by_kind.get("secondary", [0])), 2),
        "keys_per_tertiary_label": round(statistics.mean(by_kind.get("tertiary", [0])), 2),
        "keys_per_skip": round(statistics.mean(by_kind.get("skip", [0])), 2),
        "network_ms": {
            kind: summary([n["ms"] for n in session["network"] if n["kind"] == kind])
            for kind in ("next", "submit")
            if any(n["kind"] == kind for n in session["network"])
        },
        "annotations_stored": stored,
        "clips": len(audio),
        "clip_seconds_median": round(statistics.median(audio), 2) if audio else 0,
        "listening": "each clip heard to its end at 2x before labelling",
        "server": "gunicorn gthread, 2 workers x 4 threads",
        "database": connection.vendor,
        "browser": "Debian Chromium, headless, 1280x800",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "note": "Browser, server and database share the same machine.",
    }
    out = REPO / "bench" / "results" / "annotator_flow.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(
        f"submit_to_playable_ms={result['submit_to_playable_ms']['median']}"
        f" p90={result['submit_to_playable_ms']['p90']}"
        f" keys_per_core_label={result['keys_per_core_label']}"
        f" keys_per_label={result['keys_per_label']} labels={result['labels']}"
        f" database={result['database']}"
    )


if __name__ == "__main__":
    main()
