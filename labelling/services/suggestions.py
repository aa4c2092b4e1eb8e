"""The assisted mode's model suggestion, as a registered provider.

labelling never imports learner (imports run one way: learner uses labelling's public
functions). The learner registers its provider when the app is ready (learner.apps); without
one, or in a blind project, or on a gold clip, there is no suggestion.

When no provider has a suggestion (no active model yet), an imported weak label of the clip
(an external model's prediction, labelling.models_interop) is shown instead, under the same
rules: assisted projects only, never on a gold clip.
"""

from __future__ import annotations

from collections.abc import Callable

from labelling.models import Project, TaxonomyNode, WeakLabel

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
    return weak_label_suggestion(project, clip_id)


def weak_label_suggestion(project: Project, clip_id: int) -> dict | None:
    """The latest weak label of the clip on the project's active wheel, in the learner's
    suggestion shape: {"model_version", "top", "probabilities": {"core", "fine"}, "source"}.
    Callers check the assisted/gold rules (`suggestion`)."""
    weak = (
        WeakLabel.objects.filter(
            clip_id=clip_id,
            clip__project=project,
            taxonomy_version_id=project.taxonomy_version_id,
        )
        .select_related("top_node")
        .order_by("-imported_at", "-pk")
        .first()
    )
    if weak is None:
        return None
    nodes = {n.pk: n for n in TaxonomyNode.objects.filter(version_id=project.taxonomy_version_id)}
    by_key = {n.key: n for n in nodes.values()}
    core: dict[str, float] = {}
    fine: dict[str, float] = {}
    for key, p in weak.probabilities.items():
        node = by_key.get(key)
        if node is None:
            continue
        step = node
        while step.parent_id is not None and step.parent_id in nodes:
            step = nodes[step.parent_id]
        core[step.key] = round(core.get(step.key, 0.0) + p, 4)
        if node.level > 0:
            fine[key] = round(p, 4)
    return {
        "model_version": f"{weak.model_name} {weak.model_version}",
        "source": "weak_label",
        "top": weak.top_node.key,
        "probabilities": {"core": core, "fine": fine},
    }
