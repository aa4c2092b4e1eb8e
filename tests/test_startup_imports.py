"""Django start-up does not import torch (nor the learner's other heavy libraries).

A web process, the Celery worker of a dataset export and `manage.py` commands that never
train pay nothing for the model code: start-up (django.setup(), which runs every app's
ready() and the admin discovery) registers the learner's suggestion provider and activation
hook as thin wrappers that import on first call (learner.apps), and learner.features imports
the acoustic set (torch) only when it is used. Measured: RSS after django.setup() went from
about 800 MB to under 100 MB.

Each check runs in a fresh interpreter: this test process has imported torch long ago.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchaudio", "matplotlib", "pandas", "crowdkit", "sklearn")

PROBE = """
import json, sys
import django
django.setup()
from django.apps import apps
from labelling.services import suggestions
from learner.services import activation
print(json.dumps({
    "apps": sorted(config.label for config in apps.get_app_configs()),
    "loaded": sorted(name for name in %r if name in sys.modules),
    "providers": [f"{p.__module__}.{p.__qualname__}" for p in suggestions._PROVIDERS],
    "hooks": [f"{h.__module__}.{h.__qualname__}" for h in activation.HOOKS],
}))
"""


def _start_up(after: str = "") -> tuple[dict, list[str]]:
    """Run the probe (then `after`) in a fresh interpreter: its report and the lines after."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "emoloop.settings", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,) + after],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, *rest = done.stdout.strip().splitlines()
    return json.loads(first), rest


def test_django_starts_every_app_without_torch_or_the_heavy_libraries():
    state, _ = _start_up()

    assert {"labelling", "learner", "exports", "review", "admin"} <= set(state["apps"])
    assert state["loaded"] == []
    # The learner still plugs in at start-up: its provider and its activation hook.
    assert state["providers"] == ["learner.apps.suggest"]
    assert state["hooks"] == ["learner.apps.queue_rescoring"]


def test_the_probe_sees_torch_once_something_imports_it():
    # The check above is only worth something if the probe notices torch once it is loaded:
    # asking for the acoustic extractor after start-up imports it.
    state, after = _start_up(
        "from learner.features import get_extractor\n"
        "get_extractor('acoustic')\n"
        "print('torch' in sys.modules)\n"
    )
    assert state["loaded"] == []
    assert after == ["True"]


def test_the_lazy_acoustic_set_is_the_same_extractor():
    from learner import features
    from learner.features import acoustic

    extractor = features.get_extractor(features.DEFAULT)
    assert features.DEFAULT == acoustic.NAME == extractor.name
    assert isinstance(extractor, features.AcousticExtractor)
    assert (extractor.version, extractor.dim) == (acoustic.VERSION, acoustic.DIM)
    with pytest.raises(AttributeError):
        _ = features.NoSuchExtractor
