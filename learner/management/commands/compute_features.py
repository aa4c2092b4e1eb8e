"""python manage.py compute_features [PROJECT_SLUG] [--features NAME]"""

from __future__ import annotations

from functools import partial

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from labelling.models import Clip, Project
from learner.features import NAMES, ExtractorUnavailable
from learner.services import features, project_settings


class Command(BaseCommand):
    help = "Compute and cache missing feature vectors, here, for one project or all."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_slug", nargs="?")
        parser.add_argument(
            "--features", choices=NAMES, help="Feature set (default: each project's own)."
        )

    def handle(self, *args, **options) -> None:
        projects = Project.objects.all()
        if options["project_slug"]:
            projects = projects.filter(slug=options["project_slug"])
            if not projects.exists():
                raise CommandError(f"No project with slug {options['project_slug']!r}.")
        total = 0
        for project in projects:
            name = options["features"] or project_settings.settings_for(project).feature_set
            try:
                ex = features.extractor(name)
            except ExtractorUnavailable as exc:
                raise CommandError(str(exc)) from exc
            ids = list(
                features.missing(Clip.objects.filter(project=project), ex).values_list(
                    "pk", flat=True
                )
            )
            with tqdm(total=len(ids), desc=f"{project.slug} {name}", disable=not ids) as bar:
                total += features.compute(ids, name, on_clip=partial(bar.update, 1))
        self.stdout.write(f"{total} feature vector(s) computed.")
