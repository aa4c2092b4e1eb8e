"""Pieces shared by the management commands of every app."""

from __future__ import annotations

from django.core.management.base import CommandError

from labelling.models import Project


def project_named(slug: str, *related: str) -> Project:
    """The project a command was given by its slug, with `related` paths joined; a clear
    CommandError (exit status 1, nothing done) when there is none."""
    project = Project.objects.select_related(*related).filter(slug=slug).first()
    if project is None:
        raise CommandError(f"No project with slug {slug!r}.")
    return project
