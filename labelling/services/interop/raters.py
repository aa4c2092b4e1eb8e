"""The raters of imported labels: named users who can never sign in.

A corpus rater (`corpus:emodb`, `labelstudio:<id>`) is an inactive user with an unusable
password and no membership: it exists so that imported labels are annotations like any
other (one per rater and clip), told apart by `Annotation.label_source`.
"""

from __future__ import annotations

from django.contrib.auth.models import User

from labelling.services.interop.mapping import InteropError

RATER_PREFIXES = ("corpus:", "labelstudio:")


def rater(username: str) -> User:
    """The named rater, created inactive and without a usable password on first use."""
    if not username.startswith(RATER_PREFIXES):
        raise ValueError(f"A rater's name starts with one of {RATER_PREFIXES}: {username!r}")
    user, created = User.objects.get_or_create(
        username=username[:150], defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    elif user.is_active or user.has_usable_password() or user.memberships.exists():
        # An account someone can use is never made the author of imported labels.
        raise InteropError(f"{username!r} is an account people use, not an import's rater.")
    return user
