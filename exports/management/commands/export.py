"""python manage.py export SLUG [--format F] [--out DIR] [--seed N] [--zip] [--import-batch ID]"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from emoloop.commands import project_named
from exports import formats
from exports.core.archive import deterministic_zip
from exports.models import DatasetVersion
from exports.services import build, versions


class Command(BaseCommand):
    help = (
        "Create a dataset version of the project (native format, docs/datasets.md) and "
        "build it here with a progress bar, as the Celery task would; with --out, write it "
        "there in --format (a folder, or with --zip its zip)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project_slug")
        parser.add_argument("--out", type=Path, help="Write the version here (a folder).")
        parser.add_argument(
            "--format",
            choices=sorted(formats.FORMATS),
            default="native",
            help="native (default), hf (Hugging Face audiofolder), audformat, labelstudio; "
            "written to DIR/<slug>-v<N>[-<format>].",
        )
        parser.add_argument("--zip", action="store_true", help="Write DIR/<name>.zip instead.")
        parser.add_argument("--seed", type=int, default=0, help="Split seed (default 0).")
        parser.add_argument("--import-batch", type=int, help="Only clips of this import batch.")

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_named(options["project_slug"])
        out: Path | None = options["out"]
        fmt: str = options["format"]
        if out is None and (fmt != "native" or options["zip"]):
            raise CommandError("--format and --zip say what to write to --out: give --out DIR.")
        try:
            version = versions.create_version(
                project, user=None, seed=options["seed"], import_batch=options["import_batch"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        bar = tqdm(unit="clip", disable=options["verbosity"] == 0)
        beat = build.beat(version.pk)

        def progress(stage: str, done: int, total: int) -> None:
            beat(stage, done, total)
            bar.set_description(stage)
            bar.total = total
            bar.n = done
            bar.refresh()

        try:
            built = build.run_build(version.pk, progress)
        except Exception as exc:
            raise CommandError(f"Dataset version {version.number} failed: {exc}") from exc
        finally:
            bar.close()
        if built is None or built.status != DatasetVersion.Status.READY:
            raise CommandError(f"Dataset version {version.number} was not built here.")
        folder = versions.folder_of(built)
        self.stdout.write(f"Dataset version {built.number} is ready: {folder}")
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        name = formats.default_name(folder.name, fmt)
        target = out / (f"{name}.zip" if options["zip"] else name)
        if target.exists():
            raise CommandError(f"{target} exists already; choose another --out.")
        if options["zip"] and fmt == "native":
            deterministic_zip(folder, target)
        elif options["zip"]:
            with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as scratch:
                deterministic_zip(formats.materialise(folder, fmt, Path(scratch) / name), target)
        else:
            formats.materialise(folder, fmt, target)
        self.stdout.write(f"Written to {target}")
