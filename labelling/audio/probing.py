"""Header checks: refuse a file from its first bytes and headers, before any decoding.

``probe`` reads only headers (soundfile.info, and the chunk headers of ``containers``), so
an upload form can refuse a file at once and a worker never starts a decode it would have to
abandon: size, container, stream parameters, truncation, duration and the decoding work
(frames x channels) are all bounded here. When libsndfile cannot read a file at all,
``_classify_unreadable`` tells "convert your file" from "damaged" from "not audio".
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from labelling.audio.base import (
    ACCEPTED_FORMATS,
    DEFAULT_MAX_SAMPLES_PER_SECOND,
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    AudioInfo,
    AudioRejected,
    fmt_bytes,
    fmt_seconds,
)
from labelling.audio.containers import container_truncation

__all__ = ["probe", "samples_budget"]

# libsndfile reports SF_COUNT_MAX frames when a header does not state its length (a streamed
# FLAC with total_samples = 0); it cannot then read the file at all.
_SF_COUNT_MAX = 2**63 - 1

_CONVERT_HINT = "Please convert it to WAV or FLAC and upload it again."


def _read_head(path: Path, n: int = 64) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


# Containers libsndfile cannot read, recognised by their first bytes. Used only after
# soundfile.info has failed, to tell "convert your file" from "this is not audio".
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def _sniff_unsupported(head: bytes) -> str | None:
    """Name of a known audio container that libsndfile cannot decode, or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "MP4/M4A (AAC or ALAC)"
    if head.startswith(_ASF_GUID):
        return "WMA/ASF"
    if head.startswith((b"#!AMR\n", b"#!AMR-WB\n", b"#!AMR_MC1.0\n")):
        return "AMR"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "WebM/Matroska"
    if head.startswith(b"MAC "):
        return "Monkey's Audio (APE)"
    if head.startswith(b"wvpk"):
        return "WavPack"
    if head.startswith((b".ra\xfd", b".RMF")):
        return "RealAudio"
    if head.startswith(b"ADIF"):
        return "AAC (ADIF)"
    # ADTS AAC: 12-bit sync word, then MPEG version bit and layer == 00 (MP3 has layer != 00).
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return "AAC (ADTS)"
    return None


_UNSUPPORTED_EXTENSIONS = {
    ".m4a": "M4A",
    ".mp4": "MP4",
    ".m4b": "M4A",
    ".aac": "AAC",
    ".3gp": "3GP",
    ".3g2": "3GP",
    ".mov": "QuickTime",
    ".wma": "WMA",
    ".asf": "ASF",
    ".amr": "AMR",
    ".awb": "AMR-WB",
    ".webm": "WebM",
    ".mka": "Matroska",
    ".mkv": "Matroska",
    ".ape": "Monkey's Audio (APE)",
    ".wv": "WavPack",
    ".ra": "RealAudio",
    ".rm": "RealAudio",
    ".ac3": "AC-3",
    ".dts": "DTS",
    ".mid": "MIDI",
    ".midi": "MIDI",
}

# First bytes of the containers we accept. When soundfile.info fails on one of these the file
# is a damaged recording rather than "not audio", and the uploader deserves to be told so.
_ACCEPTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"RIFF", "WAV"),
    (b"RIFX", "WAV"),
    (b"RF64", "RF64"),
    (b"BW64", "RF64"),
    (b"riff", "W64"),
    (b"fLaC", "FLAC"),
    (b"OggS", "OGG"),
    (b"FORM", "AIFF"),
)


def probe(
    path: Path,
    *,
    max_bytes: int,
    max_seconds: float,
    max_samples_per_second: int = DEFAULT_MAX_SAMPLES_PER_SECOND,
) -> AudioInfo:
    """Cheap checks that read only headers, so an upload can be refused before any decode.

    Order matters: size first (no parsing of huge files), then the container, then the stream
    parameters. For RIFF/RF64/W64/AIFF files the declared data-chunk size is also checked
    against the bytes present (``truncated``): that reads only chunk headers, and it lets an
    upload form refuse a cut-off WAV immediately instead of after a queued decode.

    The decoding work is bounded from the header too: frames x channels may not exceed
    ``max_seconds x max_samples_per_second`` (``too_large``). File size says nothing about
    it: FLAC codes silence in a few bytes per frame.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioRejected("empty", "The file does not exist or was not uploaded.") from None
    if size == 0:
        raise AudioRejected("empty", "The file is empty (0 bytes).")
    if size > max_bytes:
        shown, limit = fmt_bytes(size), fmt_bytes(max_bytes)
        if shown == limit:  # "150.0 kB; the limit is 150.0 kB" would read as a bug
            shown, limit = f"{size:,} bytes", f"{max_bytes:,} bytes"
        raise AudioRejected(
            "too_large",
            f"The file is {shown}; the limit is {limit}. "
            "Please split the recording or upload it as FLAC.",
        )

    try:
        raw = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise _classify_unreadable(path) from exc

    fmt, subtype = str(raw.format), str(raw.subtype)
    if fmt not in ACCEPTED_FORMATS:
        accepted = ", ".join(sorted(ACCEPTED_FORMATS))
        raise AudioRejected(
            "unsupported_format",
            f"{raw.format_info or fmt} files are not accepted (accepted: {accepted}). "
            + _CONVERT_HINT,
        )
    sample_rate, channels, frames = int(raw.samplerate), int(raw.channels), int(raw.frames)
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioRejected(
            "corrupt",
            f"The header states a sample rate of {sample_rate} Hz, which is not a real "
            f"recording rate ({MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz); the file is damaged.",
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioRejected(
            "corrupt",
            f"The header states {channels} channels; the file is damaged "
            f"(at most {MAX_CHANNELS} channels are accepted).",
        )
    if frames >= _SF_COUNT_MAX:
        raise AudioRejected(
            "corrupt",
            f"The {fmt} header does not state the length of the audio, so the file cannot be "
            "read. Please export it again (as WAV, or FLAC from a standard encoder).",
        )

    truncation = container_truncation(path, fmt, size)
    if truncation is not None:
        raise AudioRejected("truncated", truncation)

    duration = frames / sample_rate
    if duration > max_seconds:
        raise AudioRejected(
            "too_long",
            f"The recording lasts {fmt_seconds(duration)}; the limit is "
            f"{fmt_seconds(max_seconds)}. Please split it into shorter files.",
        )
    budget = samples_budget(max_seconds, max_samples_per_second)
    if frames * channels > budget:
        raise AudioRejected(
            "too_large",
            f"The file declares {channels} channel{'s' if channels != 1 else ''} at "
            f"{sample_rate} Hz for {fmt_seconds(duration)}: {frames * channels:,} samples to "
            f"decode, over the limit of {budget:,} ({fmt_seconds(max_seconds)} at "
            f"{max_samples_per_second:,} samples per second). Please mix it down to mono or "
            "stereo at 48 kHz or less and upload it again.",
        )
    if frames == 0:
        raise AudioRejected("empty", "The file is a valid audio file but contains no audio.")
    return AudioInfo(fmt, subtype, sample_rate, channels, frames, duration)


def samples_budget(max_seconds: float, max_samples_per_second: int) -> int:
    """Most frames x channels one file may decode to (see ``probe``)."""
    if max_samples_per_second <= 0:
        raise ValueError(f"max_samples_per_second must be positive, got {max_samples_per_second}")
    return int(max_seconds * max_samples_per_second)


def _classify_unreadable(path: Path) -> AudioRejected:
    """Why soundfile.info refused a file: unreadable container, damaged file, or not audio."""
    head = _read_head(path)
    known = _sniff_unsupported(head) or _UNSUPPORTED_EXTENSIONS.get(path.suffix.lower())
    if known is not None:
        return AudioRejected(
            "unsupported_format", f"{known} files cannot be read here. " + _CONVERT_HINT
        )
    for magic, name in _ACCEPTED_MAGIC:
        if head.startswith(magic):
            # Deviation from "info fails -> not_audio": the bytes say this is one of our own
            # formats, so "not audio" would mislead the uploader.
            return AudioRejected(
                "corrupt", f"The file looks like {name} but its header is damaged or incomplete."
            )
    return AudioRejected(
        "not_audio",
        "The file is not a recognised audio file (accepted: WAV, FLAC, OGG, MP3, AIFF).",
    )
