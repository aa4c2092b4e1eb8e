"""Celery tasks of dataset versions: thin wrappers over exports.services (ids in)."""

from __future__ import annotations

from celery import shared_task
from django.contrib.auth.models import User

from emoloop.dispatch import BrokerUnavailable, publish, publish_after_commit
from exports.models import DatasetConversion, DatasetVersion
from exports.services import build, conversions, versions
from labelling.models import Project

# The limits live with the services: their stale-row checks depend on them.
BUILD_TIME_LIMIT = build.TIME_LIMIT


@shared_task(
    acks_late=True, reject_on_worker_lost=True, time_limit=BUILD_TIME_LIMIT,
    soft_time_limit=build.SOFT_TIME_LIMIT,
)  # fmt: skip
def build_dataset(version_id: int) -> str | None:
    """Build one version. Idempotent: a retried message finds it claimed and leaves."""
    version = build.run_build(version_id)
    return version.status if version else None


# A conversion copies the audio into its format (hf, audformat): minutes at most.
CONVERT_TIME_LIMIT = conversions.TIME_LIMIT


@shared_task(
    acks_late=True, reject_on_worker_lost=True, time_limit=CONVERT_TIME_LIMIT,
    soft_time_limit=conversions.SOFT_TIME_LIMIT,
)  # fmt: skip
def convert_dataset(conversion_id: int) -> str | None:
    """Convert a ready version to one format and store its zip (default queue). Idempotent:
    a retried message finds it claimed or done and leaves."""
    conversion = conversions.run(conversion_id)
    return conversion.status if conversion else None


@shared_task(acks_late=True)
def reap_stale_builds() -> int:
    """Beat: fail versions whose build worker died (exports.services.build)."""
    return build.reap_stale_builds()


def request_conversion(
    version: DatasetVersion, fmt: str, *, retry_failed: bool = True
) -> DatasetConversion:
    """The version's conversion to `fmt` (exports.services.conversions.request), its task
    sent once the row is committed when it needs one. BrokerUnavailable when the broker is
    down (the API answers 503); the row stays queued and the next request sends it."""
    conversion, unsent = conversions.request(version, fmt, retry_failed=retry_failed)
    if not unsent:
        return conversion

    def send() -> None:
        try:
            publish(convert_dataset, conversion.pk)
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"The {fmt} conversion is recorded but could not be queued. {exc.message}"
            ) from exc
        conversions.mark_sent(conversion)

    publish_after_commit(send)
    return conversion


def start_version(
    project: Project,
    *,
    user: User | None,
    seed: int = 0,
    import_batch: int | None = None,
    audio: str = "copy",
) -> DatasetVersion:
    """Create a queued version and send its build task once the row is committed.

    When the broker is down this raises BrokerUnavailable after the version is saved (the
    API answers 503); the version stays queued.
    """
    version = versions.create_version(
        project, user=user, seed=seed, import_batch=import_batch, audio=audio
    )

    def send() -> None:
        try:
            publish(build_dataset, version.pk)
        except BrokerUnavailable as exc:
            raise BrokerUnavailable(
                f"Dataset version {version.number} is saved but its build could not be "
                f"queued. {exc.message}"
            ) from exc

    publish_after_commit(send)
    return version
