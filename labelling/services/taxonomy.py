"""Feelings-wheel taxonomies in the database: presets, import/export, versioning.

Rules:
- A version that has annotations is immutable: its nodes can no longer change.
- Editing a used version creates the next version, with an explicit mapping from every node
  of the old version to a node of the new one (or to nothing, when a feeling is dropped).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max, Q, QuerySet

from audit import services as audit
from labelling.models import (
    Annotation,
    GoldClip,
    NodeMapping,
    Project,
    Role,
    Taxonomy,
    TaxonomyNode,
    TaxonomyVersion,
)
from labelling.services import access
from labelling.services.annotations import forget_node_index
from labelling.taxonomy_schema import (
    FlatNode,
    TaxonomyDocument,
    load_preset,
    parse_document,
    to_document,
)


class TaxonomyLocked(Exception):
    """The version has annotations and cannot be edited in place."""


class MappingError(ValueError):
    """The old-to-new node mapping is incomplete or names unknown nodes."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def lock_reason(version: TaxonomyVersion) -> str | None:
    """Why a version can no longer be edited in place, or None while it is a free draft.

    A version is immutable once a project uses it (annotators see its names), once it has
    labels or gold clips, or once a later version maps from it (rewriting it would delete
    those mappings): changes then make the next version, with a mapping.
    """
    if Project.objects.filter(taxonomy_version=version).exists():
        return "a project uses it"
    if Annotation.objects.filter(node__version=version).exists():
        return "it has labels"
    if GoldClip.objects.filter(node__version=version).exists():
        return "gold clips refer to it"
    if TaxonomyVersion.objects.filter(previous=version).exists():
        return "a later version maps from it"
    return None


def version_is_locked(version: TaxonomyVersion) -> bool:
    return lock_reason(version) is not None


def visible_to(user: access.AnyUser) -> QuerySet[Taxonomy]:
    """Presets, and the wheels owned or used by the user's projects."""
    if not user.is_authenticated:
        return Taxonomy.objects.none()
    if user.is_superuser:
        return Taxonomy.objects.all()
    mine = access.projects_for(user)
    return Taxonomy.objects.filter(
        Q(owner_project__isnull=True) | Q(owner_project__in=mine) | Q(versions__projects__in=mine)
    ).distinct()


def may_edit(user: access.AnyUser, taxonomy: Taxonomy) -> bool:
    """ML engineers of the owner project; staff for an instance-wide preset."""
    if not user.is_authenticated:
        return False
    owner = taxonomy.owner_project  # no query when there is no owner
    if owner is None:
        return bool(user.is_staff or user.is_superuser)
    return access.has_role(user, owner, Role.ML_ENGINEER)


def _create_nodes(version: TaxonomyVersion, nodes: tuple[FlatNode, ...]) -> dict[str, TaxonomyNode]:
    """Insert nodes level by level (parents first) and return them by key."""
    by_key: dict[str, TaxonomyNode] = {}
    for level in range(3):
        rows = [
            TaxonomyNode(
                version=version,
                key=node.key,
                name=node.name,
                description=node.description,
                parent=by_key[node.parent_key] if node.parent_key else None,
                level=node.level,
                order=node.order,
                colour=node.colour,
                hotkey=node.hotkey or "",
                valence=node.valence,
                arousal=node.arousal,
            )
            for node in nodes
            if node.level == level
        ]
        for created in TaxonomyNode.objects.bulk_create(rows):
            by_key[created.key] = created
    return by_key


@transaction.atomic
def import_document(
    document: TaxonomyDocument,
    *,
    user: User | None = None,
    owner_project: Project | None = None,
) -> TaxonomyVersion:
    """Create a new taxonomy from a validated document, as its version 1, owned by
    `owner_project` (None: an instance-wide preset).

    Raises ValueError when a taxonomy with the same slug exists: a new version of an
    existing taxonomy goes through `create_next_version`, with its mapping.
    """
    if Taxonomy.objects.filter(slug=document.slug).exists():
        raise ValueError(
            f'A taxonomy with slug "{document.slug}" exists already; create a new version of it '
            "instead."
        )
    taxonomy = Taxonomy.objects.create(
        name=document.name,
        slug=document.slug,
        description=document.description,
        source=document.source,
        owner_project=owner_project,
    )
    version = TaxonomyVersion.objects.create(
        taxonomy=taxonomy, number=1, note="Imported", created_by=user
    )
    _create_nodes(version, document.nodes)
    audit.record(
        user,
        "taxonomy.imported",
        project=owner_project,
        target=version,
        details={"taxonomy": taxonomy.slug, "nodes": len(document.nodes)},
    )
    return version


def install_preset(slug: str) -> TaxonomyVersion:
    """The latest version of a shipped preset, installing it on first use (idempotent)."""
    existing = TaxonomyVersion.objects.filter(taxonomy__slug=slug).order_by("-number").first()
    if existing is not None:
        return existing
    return import_document(load_preset(slug))


def flat_nodes(version: TaxonomyVersion) -> list[FlatNode]:
    nodes = list(version.nodes.select_related("parent").order_by("level", "order", "pk"))
    return [
        FlatNode(
            key=node.key,
            name=node.name,
            parent_key=node.parent.key if node.parent else None,
            level=node.level,
            order=node.order,
            colour=node.colour,
            hotkey=node.hotkey or None,
            valence=node.valence,
            arousal=node.arousal,
            description=node.description,
        )
        for node in nodes
    ]


def export_version(version: TaxonomyVersion) -> dict:
    """The version as the import/export JSON document (round-trips through parse_document)."""
    taxonomy = version.taxonomy
    document = to_document(
        taxonomy.name, taxonomy.slug, taxonomy.description, taxonomy.source, flat_nodes(version)
    )
    document["version"] = version.number
    return document


@transaction.atomic
def replace_version_content(version: TaxonomyVersion, document: TaxonomyDocument) -> None:
    """Edit an unused version in place; a used one raises TaxonomyLocked."""
    # Lock the version row so that a concurrent edit waits; annotations protect their
    # nodes through the PROTECT foreign key, so a racing annotation makes this fail
    # rather than lose a label.
    TaxonomyVersion.objects.select_for_update().get(pk=version.pk)
    reason = lock_reason(version)
    if reason is not None:
        raise TaxonomyLocked(
            f"{version} is immutable ({reason}); create a new version with a mapping."
        )
    before = version.nodes.count()
    version.nodes.all().delete()  # children go with their parents (CASCADE)
    _create_nodes(version, document.nodes)
    audit.record(
        None,
        "taxonomy.version_edited",
        project=version.taxonomy.owner_project,
        target=version,
        details={"nodes": {"before": before, "after": len(document.nodes)}},
    )
    transaction.on_commit(lambda: forget_node_index(version.pk))


@transaction.atomic
def create_next_version(
    version: TaxonomyVersion,
    document: TaxonomyDocument,
    mapping: Mapping[str, str | None],
    *,
    note: str = "",
    user: User | None = None,
) -> TaxonomyVersion:
    """Create the next version of a taxonomy with an explicit old-key → new-key mapping.

    Every node of `version` must appear in `mapping`; the value is a key of the new
    document, or None when the feeling is dropped. Nothing is written if a check fails.
    """
    old_keys = set(version.nodes.values_list("key", flat=True))
    new_keys = {node.key for node in document.nodes}
    problems = [
        f'old node "{key}" is not mapped (map it to a new key or to null)'
        for key in sorted(old_keys - set(mapping))
    ]
    problems += [
        f'mapping names "{key}", which is not a node of {version}'
        for key in sorted(set(mapping) - old_keys)
    ]
    problems += [
        f'"{old}" maps to "{new}", which is not a node of the new version'
        for old, new in sorted(mapping.items())
        if new is not None and new not in new_keys
    ]
    if problems:
        raise MappingError(problems)

    taxonomy = Taxonomy.objects.select_for_update().get(pk=version.taxonomy_id)
    number = (taxonomy.versions.aggregate(top=Max("number"))["top"] or 0) + 1
    new_version = TaxonomyVersion.objects.create(
        taxonomy=taxonomy, number=number, previous=version, note=note, created_by=user
    )
    new_nodes = _create_nodes(new_version, document.nodes)
    old_nodes = {node.key: node for node in version.nodes.all()}
    NodeMapping.objects.bulk_create(
        NodeMapping(
            source=old_nodes[old],
            target_version=new_version,
            target=new_nodes[new] if new is not None else None,
        )
        for old, new in mapping.items()
    )
    audit.record(
        user,
        "taxonomy.version_created",
        project=taxonomy.owner_project,
        target=new_version,
        details={
            "previous": version.number,
            "number": number,
            "nodes": len(document.nodes),
            "dropped": sorted(old for old, new in mapping.items() if new is None),
            "note": note[:500],
        },
    )
    return new_version


def parse_and_import(
    data: object, *, user: User | None = None, owner_project: Project | None = None
) -> TaxonomyVersion:
    return import_document(parse_document(data), user=user, owner_project=owner_project)


def _ancestors(version: TaxonomyVersion) -> set[int]:
    seen: set[int] = set()
    node: TaxonomyVersion | None = version
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        node = node.previous
    return seen


def check_assignment(project: Project, version: TaxonomyVersion) -> None:
    """Raise MappingError unless the project may switch to `version`.

    The wheel must be a preset or the project's own, and every version the project's labels
    were made on must be the new version or one of its ancestors, so that each existing
    label has a chain of mappings to the new version.
    """
    owner = version.taxonomy.owner_project_id
    if owner is not None and owner != project.pk:
        raise MappingError([f"{version.taxonomy.slug} belongs to another project."])
    used = set(
        Annotation.objects.filter(clip__project=project)
        .values_list("node__version_id", flat=True)
        .distinct()
    )
    used |= set(
        GoldClip.objects.filter(clip__project=project)
        .values_list("node__version_id", flat=True)
        .distinct()
    )
    used.discard(None)
    orphaned = used - _ancestors(version)
    if orphaned:
        names = ", ".join(str(v) for v in TaxonomyVersion.objects.filter(pk__in=orphaned))
        raise MappingError(
            [
                f"{project} has labels on {names}; switch only to a later version of the "
                "same taxonomy, whose mappings carry those labels over."
            ]
        )


@transaction.atomic
def assign_to_project(project: Project, version: TaxonomyVersion) -> None:
    """Switch a project's taxonomy (checked by `check_assignment`)."""
    Project.objects.select_for_update().filter(pk=project.pk).first()
    check_assignment(project, version)
    before = str(project.taxonomy_version) if project.taxonomy_version_id else None
    project.taxonomy_version = version
    Project.objects.filter(pk=project.pk).update(taxonomy_version=version)
    audit.record(
        None,
        "project.taxonomy_changed",
        project=project,
        target=version,
        details={"taxonomy_version": {"before": before, "after": str(version)}},
    )
