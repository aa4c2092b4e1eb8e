"""Creating dataset versions and finding their files (the rules the doors share)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit import services as audit
from exports.core import aggregation as agg
from exports.models import (
    AUDIO_MODES,
    DatasetVersion,
    default_aggregation,
    default_split_targets,
)
from labelling.models import ImportBatch, Project

# Where versions live, relative to MEDIA_ROOT (next to clips/ and recordings/).
DATASETS_DIR = "datasets"
MAX_SEED = 2**32 - 1


class NotReady(Exception):
    """The version's files are not there yet (or it failed)."""


def code_version() -> str:
    """`git describe` of the source tree when it is a checkout, else the package version.

    Local only (no fetch); recorded once when a version is created so a rebuild gives the
    same version.json.
    """
    git = shutil.which("git")
    try:
        if git is None:
            raise FileNotFoundError("git")
        described = subprocess.run(  # noqa: S603 (fixed arguments)
            [git, "describe", "--always", "--dirty", "--tags"],
            cwd=settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        described = ""
    if described:
        return f"git:{described}"[:80]
    try:
        return f"emoloop {metadata.version('emoloop')}"
    except metadata.PackageNotFoundError:
        return "unknown"


def aggregation_policy() -> dict[str, object]:
    """The aggregation recorded on a new version: the model's default policy with crowd-kit's
    Dawid-Skene settings of `exports.core.aggregation` (DS_N_ITER, DS_TOL)."""
    return {**default_aggregation(), "dawid_skene": {"n_iter": agg.DS_N_ITER, "tol": agg.DS_TOL}}


def create_version(
    project: Project,
    *,
    user: User | None,
    seed: int = 0,
    import_batch: int | None = None,
    audio: str = "copy",
) -> DatasetVersion:
    """A new queued version numbered after the project's last one (1, 2, …).

    `audio` is "copy" (the canonical audio is copied into the version) or "reference" (no
    audio is copied; clips.csv names each clip's canonical file in storage).
    Raises ValueError for a seed out of range, an unknown audio mode or an import batch of
    another project. Two
    concurrent creations race for the same number; the unique constraint makes the loser
    retry with the next one.
    """
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be between 0 and {MAX_SEED}")
    if audio not in AUDIO_MODES:
        raise ValueError(f"audio must be one of {', '.join(AUDIO_MODES)}")
    query: dict[str, object] = {"clips": "labelled"}
    if import_batch is not None:
        if not ImportBatch.objects.filter(project=project, pk=import_batch).exists():
            raise ValueError(f"import batch {import_batch} is not in this project")
        query["import_batch"] = import_batch
    described = code_version()
    for _attempt in range(5):
        try:
            with transaction.atomic():
                last = DatasetVersion.objects.filter(project=project).aggregate(n=Max("number"))
                number = (last["n"] or 0) + 1
                version = DatasetVersion.objects.create(
                    project=project,
                    number=number,
                    query=query,
                    taxonomy_version=project.taxonomy_version,
                    options={"audio": audio},
                    split_seed=seed,
                    split_targets=default_split_targets(),
                    aggregation=aggregation_policy(),
                    code_version=described,
                    created_by=user,
                    created_at=timezone.now(),
                    folder=f"{DATASETS_DIR}/{project.slug}-v{number}",
                    progress={"stage": "queued", "done": 0, "total": 0},
                )
                audit.record(
                    user,
                    "dataset.created",
                    project=project,
                    target=version,
                    details={"number": number, "seed": seed, "query": query, "audio": audio},
                )
                return version
        except IntegrityError:
            continue
    raise RuntimeError("could not number the dataset version (too many concurrent creations)")


def folder_of(version: DatasetVersion) -> Path:
    return Path(settings.MEDIA_ROOT) / version.folder


def ready_folder(version: DatasetVersion) -> Path:
    """The folder of a ready version; NotReady otherwise."""
    if version.status != DatasetVersion.Status.READY:
        raise NotReady(f"Dataset version {version.number} is {version.status}, not ready.")
    return folder_of(version)


def format_folder(version: DatasetVersion, fmt: str) -> Path:
    """The folder of a ready version in format `fmt` (exports.formats), converted from its
    native folder on first use and kept next to it (`datasets/<slug>-v<N>-<fmt>/`).

    The conversion is written to a private temporary folder and renamed into place, so two
    requests converting at once cannot mix their files: the first rename wins and the other
    copy is dropped. Like the native folder, a converted folder is never changed.
    """
    # The converters bring pyarrow (hf) and audformat: imported when a format is asked for,
    # not by every importer of this module (the build process).
    from exports import formats

    if fmt not in formats.FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; choose one of {sorted(formats.FORMATS)}.")
    native = ready_folder(version)
    if fmt == "native":
        return native
    final = native.with_name(formats.default_name(native.name, fmt))
    if final.is_dir():
        return final
    scratch = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=native.parent))
    try:
        written = formats.materialise(
            native, fmt, scratch / final.name, audio_root=Path(settings.MEDIA_ROOT)
        )
        try:
            written.rename(final)
        except OSError:
            if not final.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def manifest(version: DatasetVersion) -> dict[str, str]:
    """path -> sha256 from the version's SHA256SUMS (the list of files that may be served)."""
    text = (ready_folder(version) / "SHA256SUMS").read_text(encoding="utf-8")
    entries: dict[str, str] = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        entries[name] = digest
    return entries
