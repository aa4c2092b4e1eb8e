"""SECRET_KEY checks at start-up (emoloop/security.py, called from emoloop/settings.py)."""

from __future__ import annotations

import os
import secrets

import pytest
from django.core.exceptions import ImproperlyConfigured

from emoloop.security import check_secret_key
from tests.conftest import start_django

GENERATE = 'python -c "import secrets; print(secrets.token_urlsafe(50))"'
# Fixed, so that no parameter can start with a placeholder word by chance.
RANDOMISH = "Zr9-Lm4Xw8Tn6Yb3Hc5Vd1Fg0JsK7Qp2Ue_Ai8Oy4Pt6Nb2Mc7Rk"


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("", "SECRET_KEY is not set"),
        ("   ", "SECRET_KEY is not set"),
        ("change-me-to-a-long-random-string", "placeholder"),
        ("change-me-" + RANDOMISH, "placeholder"),
        ("CHANGEME" + RANDOMISH, "placeholder"),
        ("django-insecure-" + RANDOMISH, "placeholder"),
        ("secret" + RANDOMISH, "placeholder"),
        ("your-secret-key-" + RANDOMISH, "placeholder"),
        ("x" * 64, "placeholder"),
        ("my-app-insecure-" + RANDOMISH, "placeholder"),
        (RANDOMISH[:40], "too weak"),
        ("ab" * 40, "too weak"),  # long, 2 different characters
        ("abcd" * 20, "too weak"),
    ],
)
def test_a_bad_key_is_refused_outside_development(key, says):
    with pytest.raises(ImproperlyConfigured, match=says) as refused:
        check_secret_key(key, dev_mode=False)
    message = str(refused.value)
    assert GENERATE in message
    if key.strip():
        assert key not in message  # a refused key never reaches a log


def test_a_generated_key_is_accepted():
    check_secret_key(secrets.token_urlsafe(50), dev_mode=False)


def test_a_key_of_exactly_fifty_varied_characters_is_accepted():
    check_secret_key("k7Qp2" * 10, dev_mode=False)


def test_development_accepts_the_generated_dev_key_and_any_other():
    check_secret_key(secrets.token_urlsafe(50), dev_mode=True)
    check_secret_key("change-me-to-a-long-random-string", dev_mode=True)


def test_development_still_needs_a_key():
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY is not set"):
        check_secret_key("", dev_mode=True)


def test_settings_refuse_the_example_placeholder_outside_development():
    env = {k: v for k, v in os.environ.items() if k not in ("EMOLOOP_DEV", "DEBUG")}
    env["DJANGO_SETTINGS_MODULE"] = "emoloop.settings"
    # docker/.env.example held this value before its SECRET_KEY was left empty.
    env["SECRET_KEY"] = "change-me-to-a-long-random-string"
    result = start_django(env)
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is a placeholder" in result.stderr
    assert GENERATE in result.stderr
