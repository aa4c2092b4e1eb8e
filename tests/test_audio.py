"""Tests for labelling.audio: ingestion checks, decoding, normalisation and VAD segmentation.

No database: nothing here requests `db`, so the module runs with or without pytest-django.
Real speech comes from the EmoDB clips that ship in demo/emodb, so nothing here depends on
data outside the repository.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from labelling.audio import (
    CANONICAL_RATE,
    REJECT_CODES,
    AudioRejected,
    SpeechSegment,
    decode,
    decode_mono_16k,
    peaks,
    probe,
    segment_speech,
    sha256_bytes,
    sha256_file,
    to_mono_16k,
    wav_bytes,
)

try:  # a package when tests/ has an __init__.py (or the rootdir is on sys.path) ...
    from tests.hostile_files import (
        DEFAULT_MAX_BYTES,
        DEFAULT_MAX_SECONDS,
        HOSTILE_CASES,
        fake_m4a,
        truncated_wav,
    )
except ImportError:  # ... else pytest's rootdir-less "prepend" import puts tests/ on sys.path
    from hostile_files import (  # type: ignore[no-redef]
        DEFAULT_MAX_BYTES,
        DEFAULT_MAX_SECONDS,
        HOSTILE_CASES,
        fake_m4a,
        truncated_wav,
    )

REPO = Path(__file__).resolve().parents[1]
DEMO_WAV = REPO / "demo" / "emodb" / "wav"
LIMITS = {"max_bytes": DEFAULT_MAX_BYTES, "max_seconds": DEFAULT_MAX_SECONDS}
ROOMY = {"max_bytes": 50_000_000, "max_seconds": 600.0}
SAMPLES = {"max_samples_per_second": 384_000}

# Six EmoDB utterances from the demo subset, one per speaker (03, 10, 11 male; 08, 09, 13
# female) and per emotion (disgust, boredom, sadness, anger, happiness, fear), with four
# different sentences; longer takes among those whose speech the VAD finds within 0.2 s of
# its energy span, so that joined with 0.4 s gaps they make ~17 s of speech.
# (The order puts a gap in each window the long-speech splitter searches.)
SEGMENTATION_CLIPS = (
    "03b10Ec.wav",
    "08a01Lc.wav",
    "10a01Wa.wav",
    "09a05Tb.wav",
    "11a02Fb.wav",
    "13a01Ac.wav",
)
GAP_S = 1.0
BOUNDARY_TOLERANCE_S = 0.25


def emodb_wav(name: str) -> Path:
    path = DEMO_WAV / name
    assert path.is_file(), f"{path} should ship with the repository (demo/emodb)"
    return path


def decode_mono(path: Path, **limits: float) -> np.ndarray:
    """The streaming decoder's output, for tests that compare it with the full decode."""
    mono, _ = decode_mono_16k(path, **limits, **SAMPLES)
    return mono


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Rejections


def _full(path: Path, **limits: float) -> object:
    return decode(path, **limits)


def _streamed(path: Path, **limits: float) -> object:
    return decode_mono_16k(path, **limits, **SAMPLES)


@pytest.mark.parametrize("decoder", [_full, _streamed], ids=["decode", "decode_mono_16k"])
@pytest.mark.parametrize("make", HOSTILE_CASES, ids=lambda f: f.__name__)
def test_hostile_file_is_rejected_with_its_code(tmp_path: Path, make, decoder) -> None:
    path, expected = make(tmp_path, **LIMITS)
    assert expected in REJECT_CODES
    assert path.stat().st_size < 200_000

    with pytest.raises(AudioRejected) as caught:
        decoder(path, **LIMITS)

    assert caught.value.code == expected, str(caught.value)
    message = str(caught.value)
    assert message[0].isupper()
    assert message.endswith(".")


def test_rejection_survives_pickling_for_celery() -> None:
    pickled = pickle.dumps(AudioRejected("truncated", "The file is cut short."))
    again = pickle.loads(pickled)  # noqa: S301 - our own bytes, as Celery does
    assert (again.code, str(again)) == ("truncated", "The file is cut short.")


def test_an_unknown_reject_code_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown reject code"):
        AudioRejected("bad_vibes", "Nope.")


def test_probe_refuses_a_cut_wav_before_any_decode(tmp_path: Path) -> None:
    path, _ = truncated_wav(tmp_path)
    with pytest.raises(AudioRejected) as caught:
        probe(path, **LIMITS)
    assert caught.value.code == "truncated"
    assert "50%" in str(caught.value)


def test_an_m4a_upload_is_told_to_convert_to_wav_or_flac(tmp_path: Path) -> None:
    path, _ = fake_m4a(tmp_path)
    with pytest.raises(AudioRejected, match="convert it to WAV or FLAC"):
        probe(path, **LIMITS)


# Every accepted container, written by libsndfile, must pass (no false "truncated" from the
# chunk parser or from MP3/OGG frame-count estimates) ...
VALID_CONTAINERS = [
    ("WAV", "PCM_16", "wav"),
    ("WAV", "PCM_24", "wav"),
    ("WAV", "FLOAT", "wav"),
    ("WAVEX", "PCM_16", "wav"),
    ("W64", "PCM_16", "w64"),
    ("RF64", "PCM_16", "rf64"),
    ("AIFF", "PCM_16", "aiff"),
    ("FLAC", "PCM_16", "flac"),
    ("OGG", "VORBIS", "ogg"),
    ("OGG", "OPUS", "opus"),
    ("MP3", "MPEG_LAYER_III", "mp3"),
]


@pytest.mark.parametrize(("fmt", "subtype", "ext"), VALID_CONTAINERS)
def test_every_accepted_container_decodes(tmp_path: Path, fmt: str, subtype: str, ext: str) -> None:
    rate = 48000 if subtype == "OPUS" else 22050
    path = tmp_path / f"ok.{ext}"
    sf.write(path, tone(1.5, rate), rate, format=fmt, subtype=subtype)

    samples, info = decode(path, **LIMITS)

    assert (info.format, info.subtype, info.channels) == (fmt, subtype, 1)
    assert samples.dtype == np.float32
    assert samples.shape == (info.frames, 1)
    assert info.duration_s == pytest.approx(1.5, abs=0.06)


# ... and each chunk-based container cut short must be caught by the header check.
@pytest.mark.parametrize(
    ("fmt", "ext"), [("WAVEX", "wav"), ("W64", "w64"), ("RF64", "rf64"), ("AIFF", "aiff")]
)
def test_every_chunked_container_cut_short_is_truncated(tmp_path: Path, fmt: str, ext: str) -> None:
    path = tmp_path / f"cut.{ext}"
    sf.write(path, tone(1.0, 16000), 16000, format=fmt, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])

    with pytest.raises(AudioRejected) as caught:
        decode(path, **LIMITS)
    assert caught.value.code == "truncated"


def test_a_streamed_wav_with_a_placeholder_data_size_is_accepted(tmp_path: Path) -> None:
    # ffmpeg writing to a pipe cannot seek back and leaves data size 0xFFFFFFFF.
    path = tmp_path / "piped.wav"
    sf.write(path, tone(1.0, 16000), 16000, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))

    _, info = decode(path, **LIMITS)
    assert info.frames == 16000


def test_probe_refuses_more_samples_than_the_duration_limit_allows(tmp_path: Path) -> None:
    # 0.5 s of 8 channels at 384 kHz is 1.5 M samples; 1 s at 384 k samples/s allows 384 k.
    path = tmp_path / "wide.flac"
    sf.write(path, np.zeros((192_000, 8), dtype=np.int16), 384_000, subtype="PCM_16")
    limits = {"max_bytes": 10_000_000, "max_seconds": 1.0, "max_samples_per_second": 384_000}

    for check in (probe, decode, decode_mono_16k):
        with pytest.raises(AudioRejected) as caught:
            check(path, **limits)
        assert caught.value.code == "too_large"
        message = str(caught.value)
        assert "8 channels at 384000 Hz" in message
        assert "1,536,000 samples" in message
        assert "384,000" in message

    # The same file passes once the budget covers it (the bound is inclusive).
    info = probe(path, max_bytes=10_000_000, max_seconds=1.0, max_samples_per_second=1_536_000)
    assert (info.channels, info.frames) == (8, 192_000)


def test_limits_are_inclusive(tmp_path: Path) -> None:
    path = tmp_path / "exact.wav"
    sf.write(path, tone(2.0, 16000), 16000, subtype="PCM_16")
    info = probe(path, max_bytes=path.stat().st_size, max_seconds=2.0)
    assert info.frames == 32000


# --------------------------------------------------------------------------------------------
# Decoding and normalisation


def test_an_emodb_file_decodes_with_the_duration_soundfile_reports() -> None:
    path = emodb_wav("03a01Fa.wav")
    reference = sf.info(str(path))

    samples, info = decode(path, **ROOMY)

    assert info.format == "WAV"
    assert info.subtype == "PCM_16"
    assert (info.sample_rate, info.channels) == (16000, 1)
    assert info.frames == reference.frames == samples.shape[0]
    assert info.duration_s == pytest.approx(reference.duration, abs=1e-9)
    mono = to_mono_16k(samples, info.sample_rate)
    assert mono.shape == (reference.frames,)
    np.testing.assert_array_equal(mono, samples[:, 0])


def test_stereo_44k_becomes_mono_16k_of_the_right_length(tmp_path: Path) -> None:
    left = tone(2.0, 44100, freq=440.0, amplitude=0.6)
    right = tone(2.0, 44100, freq=1000.0, amplitude=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")

    samples, info = decode(path, **ROOMY)
    mono = to_mono_16k(samples, info.sample_rate)

    assert samples.shape == (88200, 2)
    assert mono.dtype == np.float32
    assert mono.ndim == 1
    assert abs(mono.size - round(88200 * CANONICAL_RATE / 44100)) <= 1
    # Mean of channels: both tones survive, at half their amplitudes.
    spectrum = np.abs(np.fft.rfft(mono[1000:-1000]))
    freqs = np.fft.rfftfreq(mono.size - 2000, 1 / CANONICAL_RATE)
    assert freqs[np.argmax(spectrum)] == pytest.approx(440.0, abs=2.0)
    assert np.abs(mono[1000:-1000]).max() == pytest.approx(0.4, abs=0.03)


@pytest.mark.parametrize(
    ("rate", "channels", "seconds"),
    [(44100, 2, 7.3), (48000, 8, 3.1), (8000, 1, 9.7), (22050, 1, 0.2), (44101, 2, 4.0)],
)
def test_streamed_decoding_equals_decoding_whole_then_resampling(
    tmp_path: Path, rate: int, channels: int, seconds: float
) -> None:
    # Several blocks (65536 frames each) for the long cases, one partial block for 0.2 s.
    rng = np.random.default_rng(rate + channels)
    signal = (0.3 * rng.standard_normal((round(rate * seconds), channels))).astype(np.float32)
    signal[:, 0] += tone(seconds, rate, freq=440.0)[: signal.shape[0]]
    path = tmp_path / "in.wav"
    sf.write(path, signal, rate, subtype="FLOAT")

    full, info = decode(path, **ROOMY)
    expected = to_mono_16k(full, rate)
    streamed, streamed_info = decode_mono_16k(path, **ROOMY, **SAMPLES)

    assert streamed.dtype == np.float32
    assert streamed.shape == expected.shape
    assert np.abs(streamed - expected).max() < 1e-4
    assert streamed_info == info


def test_streamed_decoding_of_16k_mono_returns_the_samples_themselves() -> None:
    path = emodb_wav("03a01Fa.wav")
    samples, rate = sf.read(path, dtype="float32")

    mono, info = decode_mono_16k(path, **ROOMY, **SAMPLES)

    assert rate == 16000
    assert (info.sample_rate, info.channels, info.frames) == (16000, 1, samples.size)
    np.testing.assert_array_equal(mono, samples)


def test_an_awkward_sample_rate_resamples_without_a_giant_kernel() -> None:
    # gcd(44101, 16000) == 1: an exact ratio would need a 16000 x 44101 sinc kernel (~2.8 GB).
    mono = to_mono_16k(tone(1.0, 44101)[:, None], 44101)
    assert abs(mono.size - 16000) <= 2


# --------------------------------------------------------------------------------------------
# Serialisation and fingerprints


def test_wav_bytes_is_deterministic_and_lossless_for_16_bit_audio() -> None:
    quantised = np.round(tone(0.5, 16000) * 32768) / 32768
    first = wav_bytes(quantised, 16000)

    assert first == wav_bytes(quantised.copy(), 16000)
    assert sha256_bytes(first) == hashlib.sha256(first).hexdigest()
    back, rate = sf.read(io.BytesIO(first), dtype="float32")
    assert rate == 16000
    np.testing.assert_array_equal(back, quantised)


def test_wav_bytes_clips_instead_of_wrapping() -> None:
    data = wav_bytes(np.array([2.0, -2.0, 0.0], dtype=np.float32), 16000)
    pcm = np.frombuffer(data[44:], dtype="<i2")
    assert pcm.tolist() == [32767, -32768, 0]


def test_sha256_file_matches_hashlib_in_any_chunk_size(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 1000)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert sha256_file(path) == sha256_file(path, chunk=777) == expected


def test_peaks_has_one_value_per_bucket() -> None:
    signal = np.zeros(int(1.234 * 16000), dtype=np.float32)
    signal[5] = -0.75  # first bucket
    signal[-1] = 0.25  # last, partial bucket

    values = peaks(signal, 16000)

    assert len(values) == 124  # ceil(1.234 s * 100 per second)
    assert values[0] == 0.75
    assert values[-1] == 0.25
    assert max(values[1:-1]) == 0.0
    assert len(peaks(signal, 16000, points_per_second=10)) == 13


# --------------------------------------------------------------------------------------------
# Voice-activity segmentation


def _speech_span(clip: np.ndarray) -> tuple[float, float]:
    """First and last 10 ms frame within 40 dB of the clip's loudest frame, in seconds.

    EmoDB utterances carry 0-170 ms of their own room tone before and after the speech; the
    VAD rightly leaves it out, so the truth is where the speech energy is, not the file edges.
    """
    hop = 160
    n = clip.size // hop
    energy_db = 10 * np.log10((clip[: n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(energy_db > energy_db.max() - 40.0)
    return loud[0] * hop / 16000, (loud[-1] + 1) * hop / 16000


def _concatenate(gap_s: float, noise_dbfs: float | None) -> tuple[np.ndarray, list]:
    parts, truths, t = [], [], 0.0
    gap = np.zeros(int(gap_s * 16000), dtype=np.float32)
    for name in SEGMENTATION_CLIPS:
        clip, rate = sf.read(emodb_wav(name), dtype="float32")
        assert rate == 16000
        parts.append(gap)
        t += gap_s
        start, end = _speech_span(clip)
        truths.append((t + start, t + end))
        parts.append(clip)
        t += clip.size / 16000
    parts.append(gap)
    signal = np.concatenate(parts)
    if noise_dbfs is not None:
        noise = np.random.default_rng(0).standard_normal(signal.size) * 10 ** (noise_dbfs / 20)
        signal = (signal + noise).astype(np.float32)
    return signal, truths


def _assert_well_formed(segments: list[SpeechSegment], duration: float) -> None:
    assert segments == sorted(segments, key=lambda s: s.start_s)
    for seg in segments:
        assert 0.0 <= seg.start_s < seg.end_s <= duration
    for a, b in itertools.pairwise(segments):
        assert a.end_s <= b.start_s


@pytest.mark.parametrize("noise_dbfs", [None, -60.0], ids=["digital_silence", "noise_-60dBFS"])
def test_segmentation_finds_every_clip_boundary(noise_dbfs: float | None) -> None:
    signal, truths = _concatenate(GAP_S, noise_dbfs)

    segments = segment_speech(signal)

    _assert_well_formed(segments, signal.size / 16000)
    owners = [
        [i for i, (a, b) in enumerate(truths) if seg.end_s > a and seg.start_s < b]
        for seg in segments
    ]
    # No segment in the silence between clips, none spanning two clips.
    assert all(len(o) == 1 for o in owners), (segments, truths)
    for i, (true_start, true_end) in enumerate(truths):
        mine = [seg for seg, o in zip(segments, owners, strict=True) if o == [i]]
        assert mine, f"clip {SEGMENTATION_CLIPS[i]} not found"
        assert abs(mine[0].start_s - true_start) <= BOUNDARY_TOLERANCE_S, (mine, truths[i])
        assert abs(mine[-1].end_s - true_end) <= BOUNDARY_TOLERANCE_S, (mine, truths[i])


def test_a_longer_min_silence_keeps_each_sentence_whole() -> None:
    signal, truths = _concatenate(GAP_S, None)
    segments = segment_speech(signal, min_silence_s=0.6)
    assert len(segments) == len(truths)


def test_long_speech_is_split_at_its_quietest_points() -> None:
    # 0.4 s gaps and min_silence_s=2.0: the VAD sees one ~17 s stretch of speech, which
    # max_segment_s=5 must cut. A fixed-length cut would land mid-word; the quietest places
    # are the gaps between utterances (or pauses inside them).
    signal, _ = _concatenate(0.4, None)
    speech = signal[int(0.4 * 16000) : -int(0.4 * 16000)]

    segments = segment_speech(speech, min_silence_s=2.0, max_segment_s=5.0)

    _assert_well_formed(segments, speech.size / 16000)
    assert all(s.end_s - s.start_s <= 5.0 + 1e-3 for s in segments)
    cuts = [a.end_s for a, b in itertools.pairwise(segments) if a.end_s == b.start_s]
    assert len(cuts) >= 3
    loudest = np.abs(speech).max()
    for cut in cuts:
        at = int(cut * 16000)
        around = speech[at - 400 : at + 400]  # +-25 ms
        assert np.sqrt(np.mean(around**2)) < loudest * 10 ** (-40 / 20), f"cut at {cut} s"


def test_segmentation_of_nothing_is_nothing() -> None:
    assert segment_speech(np.zeros(0, dtype=np.float32)) == []
    assert segment_speech(np.zeros(3 * 16000, dtype=np.float32)) == []


def test_concurrent_callers_share_the_model_safely() -> None:
    signal, _ = _concatenate(GAP_S, None)
    expected = segment_speech(signal)
    results: list[list[SpeechSegment]] = []

    def work() -> None:
        results.append(segment_speech(signal))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


@pytest.mark.slow
def test_loading_silero_leaves_the_torch_thread_count_alone() -> None:
    # A fresh interpreter: in this one silero_vad may already be imported.
    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(3)\n"
        "from labelling.audio import segment_speech\n"
        "segment_speech(np.zeros(16000, dtype=np.float32))\n"
        "print(torch.get_num_threads())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == "3"
