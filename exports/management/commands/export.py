"""python manage.py export SLUG [--format F] [--out DIR] [--seed N] [--zip] [--import-batch ID]"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from emoloop.commands import project_named
from exports import formats
from exports.core.archive import deterministic_zip
from exports.models import DatasetVersion
from exports.services import build, conversions, versions


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
        self.stdout.write(f"Dataset version {built.number} is ready: {built.folder} (in storage)")
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        name = formats.default_name(PurePosixPath(built.folder).name, fmt)
        target = out / (f"{name}.zip" if options["zip"] else name)
        if target.exists():
            raise CommandError(f"{target} exists already; choose another --out.")
        if fmt == "native":
            with versions.local_copy(built) as folder:
                if options["zip"]:
                    deterministic_zip(folder, target)
                else:
                    shutil.copytree(folder, target)
        else:
            quiet = options["verbosity"] == 0
            self._convert(built, fmt, target, as_zip=options["zip"], quiet=quiet)
        self.stdout.write(f"Written to {target}")

    def _convert(
        self, version: DatasetVersion, fmt: str, target: Path, *, as_zip: bool, quiet: bool
    ) -> None:
        """The stored conversion (exports.services.conversions), run here with a progress
        bar when it is not there yet; its zip copied to `target`, or unpacked with --zip
        absent (the folder `formats.materialise` wrote)."""
        bar = tqdm(unit="step", disable=quiet, total=len(conversions.STAGES))

        def progress(stage: str, done: int, total: int) -> None:
            bar.set_description(f"{fmt}: {stage}")
            bar.n = done
            bar.refresh()

        try:
            conversion = conversions.convert_inline(version, fmt, progress)
        except Exception as exc:
            raise CommandError(f"The {fmt} conversion failed: {exc}") from exc
        finally:
            bar.close()
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch:
            archive = Path(scratch) / "archive.zip"
            versions.fetch(conversion.archive, archive)
            if as_zip:
                archive.rename(target)
            else:
                with zipfile.ZipFile(archive) as unpacked:
                    unpacked.extractall(Path(scratch) / "folder")
                (Path(scratch) / "folder").rename(target)
