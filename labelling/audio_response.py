"""Serving stored audio safely: audio content types only, attachment-safe names, ranges.

Audio is never served from a public media URL. Every response names an audio content type
chosen from the decoded format (never from the uploaded name), carries nosniff and a
sandboxing CSP, and a Content-Disposition with a generated file name, so a file uploaded as
`x.html` can never render as a page.
"""

from __future__ import annotations

import re

from django.core.files.storage import default_storage
from django.http import FileResponse, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def audio_response(
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
    response["Content-Disposition"] = f'inline; filename="{download_name}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


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
