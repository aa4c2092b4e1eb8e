"""Container parsing: the declared size of the audio chunk, against the bytes present.

libsndfile silently accepts a WAV whose data chunk is cut short (it reads what is there), so
a half-uploaded file would become a clip with half a sentence. ``container_truncation``
walks the chunk headers of RIFF/RIFX/RF64/BW64, Wave64 and AIFF/AIFC files (never the audio,
and at most ``_MAX_CHUNKS`` of them) and says so. Called by ``probing.probe``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from labelling.audio.base import fmt_bytes

__all__ = ["container_truncation"]

_W64_DATA_GUID = b"data" + bytes.fromhex("f3acd3118cd100c04f8edb8a")
_MAX_CHUNKS = 4096  # a header with more chunks than this before 'data' is hostile, not audio


def container_truncation(path: Path, fmt: str, file_size: int) -> str | None:
    """Message when the data chunk declares more bytes than the file holds, else None."""
    with path.open("rb") as fh:
        if fmt in {"WAV", "WAVEX", "RF64"}:
            found = _riff_data_chunk(fh)
        elif fmt == "W64":
            found = _w64_data_chunk(fh)
        elif fmt == "AIFF":
            found = _aiff_data_chunk(fh)
        else:
            return None
    if found is None:
        return None
    data_start, declared = found
    available = max(0, file_size - data_start)
    if declared <= available:
        return None
    pct = 100 * available / declared
    return (
        f"The file is cut short: its header announces {fmt_bytes(declared)} of audio but only "
        f"{fmt_bytes(available)} ({pct:.0f}%) are present. The upload or the recording was "
        "probably interrupted; please upload the complete file."
    )


def _riff_data_chunk(fh: BinaryIO) -> tuple[int, int] | None:
    """(offset of the audio bytes, declared size) of a RIFF/RIFX/RF64/BW64 'data' chunk."""
    head = fh.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE":
        return None
    endian = ">" if head[:4] == b"RIFX" else "<"
    ds64_data_size: int | None = None
    pos = 12
    for _ in range(_MAX_CHUNKS):
        fh.seek(pos)
        header = fh.read(8)
        if len(header) < 8:
            return None
        cid, size = header[:4], struct.unpack(endian + "I", header[4:])[0]
        if cid == b"ds64":
            body = fh.read(24)
            if len(body) == 24:
                ds64_data_size = struct.unpack("<QQQ", body)[1]
        if cid == b"data":
            if size == 0xFFFFFFFF:
                if ds64_data_size is None:
                    # Placeholder written by streaming writers (e.g. ffmpeg to a pipe): the data
                    # runs to the end of the file, which libsndfile handles. Nothing to check.
                    return None
                size = ds64_data_size
            return pos + 8, size
        pos += 8 + size + (size & 1)
    return None


def _w64_data_chunk(fh: BinaryIO) -> tuple[int, int] | None:
    """Sony Wave64: 16-byte GUID ids, 64-bit sizes that include the 24-byte header, 8-aligned."""
    pos = 40  # riff GUID (16) + size (8) + wave GUID (16)
    for _ in range(_MAX_CHUNKS):
        fh.seek(pos)
        header = fh.read(24)
        if len(header) < 24:
            return None
        guid, size = header[:16], struct.unpack("<Q", header[16:])[0]
        if guid == _W64_DATA_GUID:
            return pos + 24, max(0, size - 24)
        if size < 24:
            return None
        pos += (size + 7) & ~7
    return None


def _aiff_data_chunk(fh: BinaryIO) -> tuple[int, int] | None:
    """AIFF/AIFC: big-endian IFF chunks; audio lives in 'SSND' after an 8-byte offset/blocksize."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in {b"AIFF", b"AIFC"}:
        return None
    pos = 12
    for _ in range(_MAX_CHUNKS):
        fh.seek(pos)
        header = fh.read(8)
        if len(header) < 8:
            return None
        cid, size = header[:4], struct.unpack(">I", header[4:])[0]
        if cid == b"SSND":
            return pos + 8, size
        pos += 8 + size + (size & 1)
    return None
