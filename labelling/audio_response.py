"""Serving stored audio safely: audio content types only, attachment-safe names, ranges.

Audio is never served from a public media URL. Every response names an audio content type
chosen from the decoded format (never from the uploaded name), carries nosniff and a
sandboxing CSP, and a Content-Disposition with a generated file name, so a file uploaded as
`x.html` can never render as a page.

How the bytes travel is EMOLOOP_AUDIO_DELIVERY, decided here after the caller's permission
check: `view` streams them from this process; `presigned` answers 302 to a short-lived
presigned URL of the object store (EMOLOOP_AUDIO_URL_TTL; the URL itself fixes the content
type and disposition); `accel` answers an empty response with `X-Accel-Redirect`, for nginx
to send the file from an internal location (docs/deploying.md, "Storage"). In the last two
modes no gunicorn thread streams audio.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from emoloop import storage as emoloop_storage

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def audio_response(
    request: HttpRequest, name: str, content_type: str, download_name: str
) -> HttpResponseBase:
    """Hand out a stored file the caller has checked the user may hear (see the module)."""
    delivery = settings.EMOLOOP_AUDIO_DELIVERY
    if delivery == "presigned":
        return _presigned(name, content_type, download_name)
    if delivery == "accel":
        return _accel(name, content_type, download_name)
    return _streamed(request, name, content_type, download_name)


def _headers(response: HttpResponseBase, download_name: str) -> HttpResponseBase:
    response["Content-Disposition"] = f'inline; filename="{download_name}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _presigned(name: str, content_type: str, download_name: str) -> HttpResponseBase:
    ttl = settings.EMOLOOP_AUDIO_URL_TTL
    url = emoloop_storage.presigned_url(
        name, ttl=ttl, content_type=content_type, filename=download_name
    )
    response = HttpResponse(status=302)
    response["Location"] = url
    # The URL expires: the redirect may not outlive it in any cache.
    response["Cache-Control"] = f"private, max-age={max(ttl // 2, 0)}"
    return response


def _accel(name: str, content_type: str, download_name: str) -> HttpResponseBase:
    response = HttpResponse(content_type=content_type)
    response["X-Accel-Redirect"] = emoloop_storage.accel_redirect_target(
        name,
        location=settings.EMOLOOP_AUDIO_ACCEL_LOCATION,
        ttl=settings.EMOLOOP_AUDIO_URL_TTL,
    )
    response["Cache-Control"] = "private, max-age=3600"
    return _headers(response, download_name)


def _streamed(
    request: HttpRequest, name: str, content_type: str, download_name: str
) -> HttpResponseBase:
    """Stream a stored file with HTTP Range support (browsers seek <audio> with ranges)."""
    size = default_storage.size(name)
    handle = default_storage.open(name, "rb")
    status, start, end = 200, 0, size - 1
    header = request.headers.get("Range", "")
    match = _RANGE.match(header.strip()) if header else None
    if match and (match.group(1) or match.group(2)):
        first, last = match.groups()
        if first:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        else:  # suffix range: the last N bytes
            start = max(size - int(last), 0)
        if start > end or start >= size:
            handle.close()
            refused = HttpResponse(status=416)
            refused["Content-Range"] = f"bytes */{size}"
            return refused
        status = 206
    handle.seek(start)
    length = end - start + 1
    response = FileResponse(_limited(handle, length), status=status, content_type=content_type)
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Cache-Control"] = "private, max-age=3600"
    return _headers(response, download_name)


def _limited(handle, length: int, chunk: int = 64 * 1024):
    try:
        remaining = length
        while remaining > 0:
            data = handle.read(min(chunk, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        handle.close()
