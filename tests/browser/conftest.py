"""Browser tests: headless Debian Chromium driven by Playwright against the live server.

One browser for the whole session (pytest-playwright's `browser`), a fresh context per test.
The live server runs on the test database (PostgreSQL under `make test`) with the real API.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labelling.services import queue
from tests.factories import ClipFactory

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# between page actions are safe (nothing else uses the connection meanwhile).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
VENDOR = REPO / "static" / "vendor" / "wavesurfer" / "wavesurfer.esm.js"
ARTIFACTS = REPO / "test-artifacts"

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # required as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Tests open the page by URL; Chrome then blocks autoplay until the first key press,
    # whereas an annotator who follows a link from the project page is allowed it. The
    # tests exercise autoplay itself, so they take the link-follower's policy.
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Debian's Chromium, never a Playwright download (scripts/install-chromium.sh)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-chromium.sh (make install)")
    if not VENDOR.exists():
        pytest.fail(f"{VENDOR} is missing: run scripts/vendor-frontend.sh (make install)")
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": CHROMIUM_ARGS,
        "headless": True,
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 800}}


@pytest.fixture
def page(page):
    """Fail fast: 5 s for any action or expectation, so a stuck test ends well under 10 s."""
    page.set_default_timeout(5000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.js_errors = errors
    yield page
    # Route handlers may still be busy with a prefetch when the test ends.
    page.unroute_all(behavior="ignoreErrors")
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def clips(project):
    """Six queued clips of real (tiny) WAV audio."""
    made = ClipFactory.create_batch(6, project=project)
    queue.enqueue_clips(project, made, seed=1)
    return made


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
