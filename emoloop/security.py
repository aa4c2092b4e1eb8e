"""Start-up checks on secrets, called from emoloop/settings.py.

This module must stay importable while the settings load: it imports nothing from Django but
the exception class.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

# Django's own rule for a weak key (`manage.py check --deploy`, security.W009).
MIN_LENGTH = 50
MIN_DISTINCT_CHARACTERS = 5

HOW_TO_GENERATE = (
    "Generate one with: "
    'python -c "import secrets; print(secrets.token_urlsafe(50))" '
    "and set it as SECRET_KEY in the environment (docker/.env)."
)

# Compared in lower case. A random key from the command above starts with one of these with
# a probability below 1e-5, and would only be refused with this message, never accepted weak.
_PLACEHOLDER_PREFIXES = (
    "change-me",
    "change_me",
    "changeme",
    "changethis",
    "django-insecure",  # what `startproject` writes; Django's W009 refuses it too
    "secret",
    "your-secret",
    "your_secret",
    "yoursecret",
    "replace-me",
    "replace_me",
    "replaceme",
    "insecure",
    "placeholder",
    "dummy",
    "example",
    "xxx",
)
# Anywhere in the key: words nobody's random generator writes.
_PLACEHOLDER_WORDS = ("change-me", "change_me", "changeme", "insecure", "placeholder")


def check_secret_key(key: str, *, dev_mode: bool) -> None:
    """Refuse a SECRET_KEY that is empty, a known placeholder or weak, outside development.

    `dev_mode` (DEBUG or EMOLOOP_DEV) accepts any non-empty key: the settings generate one per
    checkout. The message never repeats the key, so that it cannot end up in a log.
    """
    if not key.strip():
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. "
            + HOW_TO_GENERATE
            + " For a local development run, set EMOLOOP_DEV=true instead."
        )
    if dev_mode:
        return
    lowered = key.strip().lower()
    if lowered.startswith(_PLACEHOLDER_PREFIXES) or any(
        word in lowered for word in _PLACEHOLDER_WORDS
    ):
        raise ImproperlyConfigured(
            "SECRET_KEY is a placeholder (such as 'change-me' or a documentation example), "
            "not a secret. " + HOW_TO_GENERATE
        )
    if len(key) < MIN_LENGTH or len(set(key)) < MIN_DISTINCT_CHARACTERS:
        raise ImproperlyConfigured(
            f"SECRET_KEY is too weak: it needs at least {MIN_LENGTH} characters and "
            f"{MIN_DISTINCT_CHARACTERS} different ones (it has {len(key)} characters, "
            f"{len(set(key))} different). " + HOW_TO_GENERATE
        )
