"""A ready version in another format (exports.formats), converted once by a Celery task and
kept in storage as one deterministic zip (`DatasetConversion`).

Converting takes from seconds to minutes (audformat and Hugging Face rewrite every table and
copy the audio), so no request does it: `request` records the conversion and queues its task
(`exports.tasks.convert_dataset`, default queue) and the API answers 202 with the progress
until the zip is stored; then the download streams it from storage. The CLI runs the same
`run` inline with a progress bar (`convert_inline`).

The zip is `datasets/<slug>-v<N>-<fmt>.zip` in default_storage, next to the version's folder:
the bytes of `deterministic_zip` of the folder `formats.materialise` writes (the same
version always gives the same bytes). The conversion runs in a private scratch folder; with
local storage it reads the native folder and by-reference audio in place, with remote
storage it copies them from storage first.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from exports.core.archive import deterministic_zip
from exports.models import DatasetConversion, DatasetVersion
from exports.services import versions

Progress = versions.Progress
# The stages a conversion reports, in order ({"stage", "done", "total": len(STAGES)}).
STAGES = ("fetching", "converting", "zipping", "storing")
# How often a client should ask again while a conversion runs (the 202 says it).
POLL_MS = 1000
# The task's limits (exports.tasks.convert_dataset): at the soft limit the conversion is
# recorded as failed; a worker killed outright (hard limit, OOM, kill -9) records nothing,
# so a row converting, or queued and sent, for longer than TIME_LIMIT + STALE_MARGIN has no
# worker left: `request` queues it again and `claim` may take it over.
TIME_LIMIT = 3600
SOFT_TIME_LIMIT = TIME_LIMIT - 60
STALE_MARGIN = 300
STALE_ERROR = (
    "The conversion's worker stopped without finishing (killed, or past its time limit); "
    "it is queued again on the next request."
)


def archive_name(version: DatasetVersion, fmt: str) -> str:
    """Where the format's zip is stored: `datasets/<slug>-v<N>-<fmt>.zip`."""
    from exports import formats

    return f"{formats.default_name(version.folder, fmt)}.zip"


def _check(version: DatasetVersion, fmt: str) -> None:
    from exports import formats

    if fmt not in formats.FORMATS or fmt == "native":
        raise ValueError(f"Unknown format {fmt!r}; choose one of {sorted(formats.FORMATS)}.")
    versions.ensure_ready(version)


def stale_before(now: datetime | None = None) -> datetime:
    """Rows started before this have lost their worker (TIME_LIMIT + STALE_MARGIN ago)."""
    return (now or timezone.now()) - timedelta(seconds=TIME_LIMIT + STALE_MARGIN)


def _stale(before: datetime) -> Q:
    """Converting, or queued and sent, since before `before` (rows from before started_at
    existed count from their creation)."""
    old = Q(started_at__lt=before) | Q(started_at__isnull=True, created_at__lt=before)
    converting = Q(status=DatasetConversion.Status.CONVERTING)
    sent = Q(status=DatasetConversion.Status.QUEUED, progress__sent=True)
    return (converting | sent) & old


def is_stale(conversion: DatasetConversion) -> bool:
    """Whether the row lost its worker (converting or sent, for too long)."""
    return DatasetConversion.objects.filter(_stale(stale_before()), pk=conversion.pk).exists()


def give_up_stale(conversion: DatasetConversion, *, requeue: bool) -> bool:
    """A stale row -> queued again (not sent) or failed with STALE_ERROR; compare-and-set
    on its status and started_at, so two requests never both re-send it. Whether this call
    changed it."""
    fields: dict[str, object] = (
        {"status": DatasetConversion.Status.QUEUED, "error": "", "progress": _beat_of("queued", 0)}
        if requeue
        else {"status": DatasetConversion.Status.FAILED, "error": STALE_ERROR,
              "finished_at": timezone.now()}
    )  # fmt: skip
    changed = (
        DatasetConversion.objects.filter(_stale(stale_before()), pk=conversion.pk)
        .filter(status=conversion.status, started_at=conversion.started_at)
        .update(started_at=None, **fields)
    )
    conversion.refresh_from_db()
    return bool(changed)


def request(
    version: DatasetVersion, fmt: str, *, retry_failed: bool = True
) -> tuple[DatasetConversion, bool]:
    """The version's conversion to `fmt`, and whether its task must be sent now: created
    (queued) when there is none, queued again when the last one failed (unless not
    `retry_failed`: a poll), and a queued one whose sending failed is sent again. One whose
    worker was lost (converting, or sent, longer than the time limit) counts as failed.
    Raises NotReady (version not ready) and ValueError (unknown format). The task is sent
    by `exports.tasks.request_conversion`, then `mark_sent`."""
    _check(version, fmt)
    conversion = DatasetConversion.objects.filter(version=version, fmt=fmt).first()
    if (
        conversion is not None
        and is_stale(conversion)
        and not give_up_stale(conversion, requeue=retry_failed)
    ):
        return conversion, False  # another request took it over (and sends it)
    if conversion is None:
        try:
            with transaction.atomic():
                conversion = DatasetConversion.objects.create(
                    version=version, fmt=fmt, progress=_beat_of("queued", 0)
                )
        except IntegrityError:  # a concurrent request created it (and sends it)
            return DatasetConversion.objects.get(version=version, fmt=fmt), False
    elif conversion.status == DatasetConversion.Status.FAILED and retry_failed:
        DatasetConversion.objects.filter(
            pk=conversion.pk, status=DatasetConversion.Status.FAILED
        ).update(status=DatasetConversion.Status.QUEUED, error="", progress=_beat_of("queued", 0))
        conversion.refresh_from_db()
    elif conversion.status != DatasetConversion.Status.QUEUED or conversion.progress.get("sent"):
        return conversion, False  # ready, converting, failed (a poll), or queued and sent
    return conversion, conversion.status == DatasetConversion.Status.QUEUED


def mark_sent(conversion: DatasetConversion) -> None:
    """Record that the queued conversion's task went to the broker (not sent again), and
    when (a message lost for longer than the time limit is sent again)."""
    DatasetConversion.objects.filter(
        pk=conversion.pk, status=DatasetConversion.Status.QUEUED
    ).update(progress={**_beat_of("queued", 0), "sent": True}, started_at=timezone.now())


def _beat_of(stage: str, done: int) -> dict[str, object]:
    return {"stage": stage, "done": done, "total": len(STAGES)}


def beat(conversion_id: int) -> Progress:
    """A progress callback that records (stage, done, total) on the conversion's row."""
    return versions.progress_recorder(DatasetConversion, conversion_id)


def claim(conversion_id: int) -> DatasetConversion | None:
    """queued (or converting by a lost worker: stale) -> converting, started now
    (compare-and-set); None when someone else has it or it is done."""
    claimable = Q(status=DatasetConversion.Status.QUEUED) | _stale(stale_before())
    claimed = (
        DatasetConversion.objects.filter(claimable, pk=conversion_id)
        .update(status=DatasetConversion.Status.CONVERTING, started_at=timezone.now())
    )  # fmt: skip
    if not claimed:
        return None
    return DatasetConversion.objects.select_related("version__project").get(pk=conversion_id)


def convert(conversion: DatasetConversion, progress: Progress) -> DatasetConversion:
    """Convert, zip and store a claimed conversion; mark it ready."""
    from exports import formats

    version, fmt = conversion.version, conversion.fmt
    name = archive_name(version, fmt)
    with ExitStack() as stack:
        progress(STAGES[0], 0, len(STAGES))
        native = stack.enter_context(versions.local_copy(version))
        audio_root = stack.enter_context(_audio_root(version, native))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emoloop-fmt-")))
        progress(STAGES[1], 1, len(STAGES))
        stem = Path(name).stem
        folder = formats.materialise(native, fmt, scratch / stem, audio_root=audio_root)
        progress(STAGES[2], 2, len(STAGES))
        archive = scratch / f"{stem}.zip"
        digest = deterministic_zip(folder, archive)
        progress(STAGES[3], 3, len(STAGES))
        versions.save_file(name, archive)
        size = archive.stat().st_size
    DatasetConversion.objects.filter(pk=conversion.pk).update(
        status=DatasetConversion.Status.READY, archive=name, size=size, sha256=digest,
        progress=_beat_of("ready", len(STAGES)), finished_at=timezone.now(), error="",
    )  # fmt: skip
    conversion.refresh_from_db()
    return conversion


@contextmanager
def _audio_root(version: DatasetVersion, native: Path) -> Iterator[Path | None]:
    """Where a by-reference version's audio is found locally: MEDIA_ROOT with local
    storage; with remote storage a temporary folder the clips' canonical files are copied
    into (their `audio_uri` are storage names). None for a version with its audio."""
    if version.options.get("audio", "copy") != "reference":
        yield None
        return
    media = versions.local_root()
    if media is not None:
        yield media
        return
    from exports.formats.native import NativeVersion

    with tempfile.TemporaryDirectory(prefix="emoloop-audio-") as scratch:
        root = Path(scratch)
        for clip in NativeVersion.open(native).rows("clips"):
            uri = str(clip.get("audio_uri") or "")
            target = (root / uri).resolve()
            if uri and target.is_relative_to(root.resolve()):  # never outside the scratch
                versions.fetch(uri, target)
        yield root


def run(conversion_id: int, progress: Progress | None = None) -> DatasetConversion | None:
    """Claim and convert one conversion; a failure is recorded on the row (failed, error)
    and raised again. None when there was nothing to claim (a retried task)."""
    conversion = claim(conversion_id)
    if conversion is None:
        return None
    try:
        return convert(conversion, progress or beat(conversion_id))
    except Exception as exc:
        DatasetConversion.objects.filter(pk=conversion_id).update(
            status=DatasetConversion.Status.FAILED,
            error=versions.failure_reason(exc, "conversion"), finished_at=timezone.now(),
        )  # fmt: skip
        raise


def convert_inline(
    version: DatasetVersion, fmt: str, progress: Progress | None = None
) -> DatasetConversion:
    """The conversion to `fmt`, run here when it is not ready (the CLI): no task queued.
    Raises RuntimeError when another process holds it or it failed."""
    conversion, _unsent = request(version, fmt)
    if conversion.status != DatasetConversion.Status.READY:
        run(conversion.pk, progress)
        conversion.refresh_from_db()
    if conversion.status != DatasetConversion.Status.READY:
        raise RuntimeError(
            f"The {fmt} conversion is {conversion.status} elsewhere; try again when it is done."
        )
    return conversion


def description(conversion: DatasetConversion, url: str) -> dict[str, object]:
    """What the API answers about a conversion (202 while it is not ready)."""
    return {
        "format": conversion.fmt,
        "status": conversion.status,
        "progress": conversion.progress,
        "error": conversion.error,
        "size": conversion.size,
        "sha256": conversion.sha256,
        "url": url,
        "poll_ms": POLL_MS,
    }


def native_description(version: DatasetVersion, url: str) -> dict[str, object]:
    """The same answer for the native layout, which is never converted (always ready)."""
    return {
        "format": "native", "status": DatasetConversion.Status.READY,
        "progress": {"stage": "ready", "done": len(STAGES), "total": len(STAGES)},
        "error": "", "size": None, "sha256": "", "url": url, "poll_ms": POLL_MS,
    }  # fmt: skip
