"""Where media lives: the local filesystem or an S3-compatible object store.

The settings build `STORAGES` with `storages_setting` (this module must stay importable while
the settings load: nothing from Django is imported at module level). The other helpers are
for code that must hand a file to a library that wants a path (`local_copy`) and for the
audio view's delivery modes (`presigned_url`, `accel_redirect_target`).

Why the staging area and every worker input goes through `default_storage`: a Celery worker
on another host shares the object store, the database and the broker with the web host, and
nothing else (docs/deploying.md, "Storage").
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from django.core.exceptions import ImproperlyConfigured

STORAGE_KINDS = ("local", "s3")
AUDIO_DELIVERIES = ("view", "presigned", "accel")
S3_BACKEND = "storages.backends.s3.S3Storage"
LOCAL_BACKEND = "django.core.files.storage.FileSystemStorage"
STATICFILES = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}


def s3_options(
    *,
    bucket: str,
    endpoint_url: str = "",
    region: str = "us-east-1",
    access_key: str = "",
    secret_key: str = "",
    prefix: str = "",
    addressing_style: str = "",
    url_ttl: int = 300,
) -> dict[str, Any]:
    """django-storages' S3Storage options for one bucket (empty strings mean "not set").

    `file_overwrite=False` keeps the filesystem's rule (a second save under a taken name gets
    a new name), which the content-addressed saves in labelling.services.storage rely on.
    Credentials left empty fall back to boto3's own chain (instance role, ~/.aws).
    """
    if not bucket:
        raise ImproperlyConfigured("EMOLOOP_STORAGE=s3 needs S3_BUCKET (the bucket's name).")
    options: dict[str, Any] = {
        "bucket_name": bucket,
        "region_name": region or None,
        "endpoint_url": endpoint_url or None,
        "location": prefix.strip("/"),
        "file_overwrite": False,
        "default_acl": None,
        "querystring_auth": True,
        "querystring_expire": url_ttl,
        "signature_version": "s3v4",
        "addressing_style": addressing_style or ("path" if endpoint_url else None),
        # An S3 file read through the storage API is spooled to a temporary file above this
        # size (django-storages' default, 0, keeps the whole object in memory).
        "max_memory_size": 8 * 1024 * 1024,
    }
    if access_key:
        options["access_key"] = access_key
    if secret_key:
        options["secret_key"] = secret_key
    return options


def storages_setting(kind: str, s3: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Django's STORAGES for `kind` ("local" or "s3"; `s3` holds s3_options' answer)."""
    if kind == "local":
        return {"default": {"BACKEND": LOCAL_BACKEND}, "staticfiles": dict(STATICFILES)}
    if kind == "s3":
        if s3 is None:
            raise ImproperlyConfigured("EMOLOOP_STORAGE=s3 needs the S3_* settings.")
        return {"default": {"BACKEND": S3_BACKEND, "OPTIONS": s3}, "staticfiles": dict(STATICFILES)}
    raise ImproperlyConfigured(
        f"EMOLOOP_STORAGE must be one of {', '.join(STORAGE_KINDS)}, got {kind!r}"
    )


def check_audio_delivery(delivery: str, storage: str) -> str:
    """Refuse an unknown mode, and presigned URLs where there is no object store to sign."""
    if delivery not in AUDIO_DELIVERIES:
        raise ImproperlyConfigured(
            f"EMOLOOP_AUDIO_DELIVERY must be one of {', '.join(AUDIO_DELIVERIES)}, got {delivery!r}"
        )
    if delivery == "presigned" and storage != "s3":
        raise ImproperlyConfigured("EMOLOOP_AUDIO_DELIVERY=presigned needs EMOLOOP_STORAGE=s3.")
    return delivery


def s3_origin(options: dict[str, Any], endpoint_url: str = "") -> str:
    """The origin (scheme://host[:port]) a browser fetches presigned URLs from.

    Read off a URL signed (offline: no request is made) by boto3 with the storage's own
    options, `endpoint_url` replacing theirs when given (S3_PUBLIC_ENDPOINT_URL), so it is the
    host botocore really puts in the audio view's redirects: on AWS a virtual-host name like
    ``<bucket>.s3.amazonaws.com``, or path style when the bucket's name has dots.
    Settings call this while they load, so it builds the client itself: django-storages'
    S3Storage reads Django's settings when it is created.
    """
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url or options.get("endpoint_url") or None
    if endpoint:
        parts = urlsplit(endpoint)
        if not parts.scheme or not parts.netloc:
            raise ImproperlyConfigured(f"not an absolute URL for the object store: {endpoint!r}")
    # The same client S3Storage.connection builds; dummy credentials (the host does not
    # depend on them, and none are looked up).
    client = boto3.session.Session(
        aws_access_key_id="origin-probe",
        aws_secret_access_key="origin-probe",  # noqa: S106 - not a secret: a throwaway signature
    ).client(
        "s3",
        region_name=options.get("region_name"),
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": options.get("addressing_style")},
            signature_version=options.get("signature_version"),
        ),
    )
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": options["bucket_name"], "Key": "probe"}, ExpiresIn=60
    )
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class StorageUnavailable(Exception):
    """The object store failed in a way worth retrying (no answer, a 5xx, throttling)."""


# S3 error codes that say "later" rather than "no" (besides any 5xx status).
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
    }
)


def is_transient_error(exc: BaseException) -> bool:
    """Whether `exc` (or an error it wraps) is a passing object-store failure.

    botocore's own errors (no connection, a read time-out, a closed connection) and S3
    answers with a 5xx status or a throttling code are; a 404 / NoSuchKey (the object is
    really missing), a 403 and other 4xx answers are not. False without botocore installed.
    """
    try:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:  # pragma: no cover - boto3 is a dependency; local installs may lack it
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BotoCoreError):
            return True
        if isinstance(current, ClientError):
            error = current.response.get("Error", {})
            status = current.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            return (
                int(status) >= 500 or int(status) == 429 or error.get("Code") in (_TRANSIENT_CODES)
            )
        # `raise ... from`, and boto3's S3UploadFailedError raised while handling the real one.
        wrapper = isinstance(current, Boto3Error)
        current = current.__cause__ or (current.__context__ if wrapper else None)
    return False


def csp_with_origin(policy: str, origin: str, directives: tuple[str, ...]) -> str:
    """Add `origin` to each of `directives` in a Content-Security-Policy string.

    A directive that is absent is added as `'self' origin` (what `default-src 'self'` gave it
    plus the origin), so the rest of the policy is unchanged.
    """
    parts = [part.strip() for part in policy.split(";") if part.strip()]
    for directive in directives:
        for index, part in enumerate(parts):
            if part.split()[0] == directive:
                if origin not in part.split():
                    parts[index] = f"{part} {origin}"
                break
        else:
            parts.append(f"{directive} 'self' {origin}")
    return "; ".join(parts)


# --- Runtime helpers (Django is set up) ----------------------------------------------------


def is_local(storage: Any = None) -> bool:
    """Whether `storage` (default_storage) keeps files on this host's disk."""
    from django.core.files.storage import FileSystemStorage

    return isinstance(storage if storage is not None else _default(), FileSystemStorage)


def _default() -> Any:
    from django.core.files.storage import default_storage

    # isinstance sees through the lazy proxy (LazyObject forwards __class__).
    return default_storage


@contextmanager
def local_copy(name: str, *, suffix: str = "", storage: Any = None) -> Iterator[Path]:
    """A path on this host holding the bytes of stored file `name`, removed afterwards.

    For libraries that want a path (decoders, archive readers). The copy is streamed in
    blocks into a private temporary folder (not under MEDIA_ROOT), so a worker on another
    host decodes what the web host staged in the object store.
    """
    from storages.backends.s3 import S3Storage
    from storages.utils import clean_name

    target = storage if storage is not None else _default()
    with tempfile.TemporaryDirectory(prefix="emoloop-") as tmp:
        path = Path(tmp) / ("object" + suffix)
        with path.open("wb") as out:
            if isinstance(target, S3Storage):
                # Streamed to the file by boto3 (the storage's file object would spool it).
                key = target._normalize_name(clean_name(name))
                target.bucket.download_fileobj(key, out)
            else:
                with target.open(name, "rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
        yield path


def presigned_url(
    name: str, *, ttl: int, content_type: str = "", filename: str | None = None
) -> str:
    """A short-lived GET URL for stored file `name`, signed for the browser's endpoint.

    With S3_PUBLIC_ENDPOINT_URL set (compose: web and workers reach MinIO as http://minio:9000,
    browsers through another name) the URL is signed for that host: Signature V4 covers the
    Host header, so a URL signed for the internal name would be refused by the public one.
    """
    from django.conf import settings
    from django.core.files.storage import default_storage

    parameters = {"ResponseContentType": content_type} if content_type else {}
    if filename:
        parameters["ResponseContentDisposition"] = f'inline; filename="{quote(filename)}"'
    public = getattr(settings, "S3_PUBLIC_ENDPOINT_URL", "")
    signer: Any = _signer_for(public) if public else default_storage
    return str(signer.url(name, parameters=parameters or None, expire=ttl))


_SIGNERS: dict[tuple[str, str], Any] = {}


def _signer_for(endpoint: str) -> Any:
    """An S3Storage like default_storage but with another endpoint (signing is local)."""
    from django.conf import settings
    from storages.backends.s3 import S3Storage

    options = dict(settings.STORAGES["default"].get("OPTIONS", {}))
    key = (endpoint, repr(sorted(options.items())))
    if key not in _SIGNERS:
        options["endpoint_url"] = endpoint
        _SIGNERS[key] = S3Storage(**options)
    return _SIGNERS[key]


def accel_redirect_target(name: str, *, location: str, ttl: int) -> str:
    """The `X-Accel-Redirect` value handing stored file `name` to nginx.

    Local storage: `location` + the name (nginx aliases the internal location to MEDIA_ROOT).
    S3: `location` + the presigned URL without its scheme (host/key?signature), which an
    internal nginx location proxies to the object store (docs/deploying.md, "Storage").
    """
    base = "/" + location.strip("/") + "/"
    if is_local():
        return base + quote(name)
    signer: Any = _default()
    url = urlsplit(str(signer.url(name, expire=ttl)))
    query = f"?{url.query}" if url.query else ""
    return f"{base}{url.netloc}{url.path}{query}"
