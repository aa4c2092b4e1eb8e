"""Hooks run after commit when a model version becomes active.

The registry lives here, apart from `learner.services.training`, so that the app can
register its hooks at start-up (learner.apps) without importing training and, through it,
torch: a web process or the dataset export never trains. training runs the hooks
(`_activate`); `on_activation` there and here register into the same list.
"""

from __future__ import annotations

from collections.abc import Callable

# Called after commit with (project id, version id) whenever a version becomes active. The
# task layer registers the rescoring dispatch (learner.apps): services never import tasks.
HOOKS: list[Callable[[int, int], object]] = []


def on_activation(hook: Callable[[int, int], object]) -> None:
    """Register a hook run after commit when a model version becomes active (idempotent)."""
    if hook not in HOOKS:
        HOOKS.append(hook)
