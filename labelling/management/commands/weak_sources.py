"""python manage.py weak_sources SLUG [MODEL --weight W --enable/--disable --force/--no-force]

Lists a project's weak-label sources (external models whose predictions were imported) with
their weight, agreement with the humans, flag and whether they train the model; with MODEL
and an option, changes that source's settings first (labelling/services/interop/sources.py).
"""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError, CommandParser

from emoloop.commands import project_named
from labelling.services.interop.sources import set_source, source_reports


class Command(BaseCommand):
    help = "List (and set the weight, enabled and force of) a project's weak-label sources."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_slug")
        parser.add_argument("model", nargs="?", help="The source (model name) to change.")
        parser.add_argument("--weight", type=float, help="0..1 (a human label weighs 1).")
        parser.add_argument("--enable", action=argparse.BooleanOptionalAction, default=None)
        parser.add_argument("--force", action=argparse.BooleanOptionalAction, default=None)

    def handle(self, *args, **options) -> None:
        project = project_named(options["project_slug"], "taxonomy_version")
        changes = {
            "weight": options["weight"],
            "enabled": options["enable"],
            "force": options["force"],
        }
        if any(v is not None for v in changes.values()):
            if not options["model"]:
                raise CommandError("name the source (MODEL) to change")
            try:
                set_source(project, options["model"], **changes)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        for r in source_reports(project):
            agreement = f"{r.agreement:.2f}" if r.agreement is not None else "-"
            self.stdout.write(
                f"{r.model_name}: clips={r.clips} weight={r.weight} enabled={r.enabled} "
                f"force={r.force} overlap={r.overlap} agreement={agreement} "
                f"flagged={r.flagged} used_for_training={r.used_for_training}"
            )
