"""Creating dataset versions and reaching their files in storage (the rules the doors share)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import IO

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from audit import services as audit
from exports.core import aggregation as agg
from exports.core.archive import CHUNK_BYTES, MANIFEST, ZipEntry, list_files
from exports.models import (
    AUDIO_MODES,
    DatasetConversion,
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


Progress = Callable[[str, int, int], None]


def progress_recorder(model: type[DatasetVersion] | type[DatasetConversion], pk: int) -> Progress:
    """A progress callback that records (stage, done, total) on row `pk` of `model` (a
    version's build or a conversion: the page polls the row)."""

    def report(stage: str, done: int, total: int) -> None:
        model.objects.filter(pk=pk).update(progress={"stage": stage, "done": done, "total": total})

    return report


def failure_reason(exc: BaseException, what: str) -> str:
    """The error recorded for a failed build or conversion (a time-out says so)."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return f"TimeLimitExceeded: the {what} ran past its time limit and was stopped."
    return f"{type(exc).__name__}: {exc}"


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


def ensure_ready(version: DatasetVersion) -> DatasetVersion:
    """The version when it is ready; NotReady otherwise."""
    if version.status != DatasetVersion.Status.READY:
        raise NotReady(f"Dataset version {version.number} is {version.status}, not ready.")
    return version


def folder_of(version: DatasetVersion) -> Path:
    """The version's folder on this host when storage is a local folder (MEDIA_ROOT/…);
    NotImplementedError with remote storage (use `local_copy`)."""
    return Path(default_storage.path(version.folder))


def stored_name(version: DatasetVersion, relative: str) -> str:
    """The storage name of one file of the version (`datasets/<slug>-v<N>/<relative>`)."""
    return f"{version.folder}/{relative}"


# --- Files in storage ----------------------------------------------------------------------
#
# A version's files live in default_storage under its `folder` (datasets/<slug>-v<N>/…):
# with local storage that is MEDIA_ROOT/datasets/…, as before; with S3 storage objects under
# that prefix. A build writes into a private local scratch folder and then saves each file
# into storage (`store_folder`); downloads open them through storage (`open_file`, `size`).


def _local_path(name: str) -> Path | None:
    """The local path of a storage name, when storage is a local folder (else None)."""
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:  # S3 and other remote storages have no local path
        return None


def local_root() -> Path | None:
    """MEDIA_ROOT when default_storage is a local folder, else None."""
    return _local_path("")


def fetch(name: str, target: Path) -> None:
    """Copy one stored file to the local path `target` (its folders are created)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with default_storage.open(name, "rb") as source, target.open("wb") as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)


def stored_names(prefix: str) -> list[str]:
    """Every storage name under `prefix` (a folder), sorted; [] when there is none."""
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return []
    found = [f"{prefix}/{name}" for name in files]
    for folder in folders:
        found += stored_names(f"{prefix}/{folder}")
    return sorted(found)


def delete_stored(prefix: str) -> None:
    """Delete everything stored under `prefix` (a version's folder)."""
    for name in stored_names(prefix):
        default_storage.delete(name)
    local = _local_path(prefix)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)  # the empty folders FileSystemStorage leaves


def save_file(name: str, path: Path) -> None:
    """Save the local file `path` into storage as exactly `name` (replacing one there)."""
    if default_storage.exists(name):
        default_storage.delete(name)
    with path.open("rb") as source:
        saved = default_storage.save(name, File(source, name=Path(name).name))
    if saved != name:  # a concurrent writer took the name: never serve a renamed copy
        raise RuntimeError(f"storage saved {name!r} as {saved!r}")


def store_folder(local: Path, prefix: str) -> None:
    """Replace whatever is stored under `prefix` with the files of the local folder `local`
    (same relative names). SHA256SUMS goes last: a folder with it is complete."""
    delete_stored(prefix)
    names = list_files(local)
    for name in sorted(names, key=lambda n: n == MANIFEST):
        save_file(f"{prefix}/{name}", local / name)


def open_file(version: DatasetVersion, relative: str) -> IO[bytes]:
    """One file of a ready version, opened for reading from storage."""
    return default_storage.open(stored_name(ensure_ready(version), relative), "rb")


def file_size(version: DatasetVersion, relative: str) -> int:
    return int(default_storage.size(stored_name(version, relative)))


def zip_entries(version: DatasetVersion) -> list[ZipEntry]:
    """What the version's zip holds: every file of its SHA256SUMS and SHA256SUMS itself,
    sorted by name (the order `iter_zip` of the folder gives), each read from storage."""
    names = sorted([*manifest(version), MANIFEST])
    return [
        ZipEntry(name, file_size(version, name), partial(open_file, version, name))
        for name in names
    ]


@contextmanager
def local_copy(
    version: DatasetVersion, only: Callable[[str], bool] | None = None
) -> Iterator[Path]:
    """A local folder with the ready version's files (those `only` accepts, if given): the
    stored folder itself with local storage, else a private temporary copy (removed on
    exit)."""
    ensure_ready(version)
    local = _local_path(version.folder)
    if local is not None:
        yield local
        return
    with tempfile.TemporaryDirectory(prefix="emoloop-dataset-") as scratch:
        folder = Path(scratch) / Path(version.folder).name
        for name in [*manifest(version), MANIFEST]:
            if only is not None and not only(name):
                continue
            fetch(stored_name(version, name), folder / name)
        yield folder


def manifest(version: DatasetVersion) -> dict[str, str]:
    """path -> sha256 from the version's SHA256SUMS (the list of files that may be served)."""
    with open_file(version, MANIFEST) as file:
        text = file.read().decode("utf-8")
    entries: dict[str, str] = {}
    for line in text.splitlines():
        digest, _, name = line.partition("  ")
        entries[name] = digest
    return entries
