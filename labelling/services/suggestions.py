"""The assisted mode's model suggestion, as a registered provider.

labelling never imports learner (imports run one way: learner uses labelling's public
functions). The learner registers its provider when the app is ready (learner.apps); without
one, or in a blind project, or on a gold clip, there is no suggestion.
"""

from __future__ import annotations

from collections.abc import Callable

from labelling.models import Project

SuggestionProvider = Callable[[Project, int], "dict | None"]

_PROVIDERS: list[SuggestionProvider] = []


def register_suggestion_provider(provider: SuggestionProvider) -> None:
    """Add a provider `(project, clip_id) -> suggestion dict or None` (idempotent)."""
    if provider not in _PROVIDERS:
        _PROVIDERS.append(provider)


def suggestion(project: Project, clip_id: int, *, is_gold: bool) -> dict | None:
    """The first provider's suggestion for a clip being labelled, where one may be shown:
    assisted projects only, never on a gold clip (it would give the answer away)."""
    if not project.assisted or is_gold:
        return None
    for provider in _PROVIDERS:
        found = provider(project, clip_id)
        if found is not None:
            return found
    return None
