"""factory_boy factories for clips and annotations (audio bytes are tiny real WAVs)."""

from __future__ import annotations

import factory
import numpy as np
from django.core.files.base import ContentFile

from labelling import audio
from labelling.models import Annotation, Clip, ClipSource


def tone_wav(seconds: float = 0.5, freq: float = 220.0) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    return audio.wav_bytes((0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)


class ClipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Clip

    original_name = factory.Sequence(lambda n: f"clip-{n}.wav")
    original_format = "WAV"
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    duration_s = 0.5
    sample_rate = 16000
    channels = 1
    source = ClipSource.UPLOAD
    speaker_id = factory.Sequence(lambda n: f"spk{n % 4}")
    original = factory.LazyAttribute(lambda o: ContentFile(tone_wav(), name=f"{o.sha256}.wav"))
    canonical = factory.LazyAttribute(lambda o: ContentFile(tone_wav(), name=f"{o.sha256}.wav"))
    peaks = factory.LazyFunction(lambda: [0.2] * 50)


class AnnotationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Annotation
