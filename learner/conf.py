"""Typed accessors for the learner's settings.

emoloop/settings.py reads every EMOLOOP_* variable from the environment once, at start-up,
with its default and bound (a malformed value stops start-up). These functions only read
``django.conf.settings``, at call time, so tests change a value through the `settings`
fixture. Callers: learner.services.features, learner.services.training, learner.tasks,
learner.api.
"""

from __future__ import annotations

from django.conf import settings

from learner.features import ExtractorOptions


def ssl_checkpoint() -> str:
    """Path of a local wav2vec 2.0 / HuBERT / WavLM checkpoint ("" = the ssl set is off)."""
    return str(settings.EMOLOOP_SSL_CHECKPOINT)


def ssl_arch() -> str:
    """Architecture of a bare state-dict checkpoint (wav2vec2_base, hubert_base, wavlm_base)."""
    return str(settings.EMOLOOP_SSL_ARCH)


def extractor_options() -> ExtractorOptions:
    return ExtractorOptions(ssl_checkpoint=ssl_checkpoint(), ssl_arch=ssl_arch())


def training_stale_seconds() -> int:
    """A running training whose heartbeat is older than this is taken for dead."""
    return int(settings.EMOLOOP_TRAINING_STALE_SECONDS)


def training_redispatch_seconds() -> int:
    """A training still queued after this long is sent to the broker again."""
    return int(settings.EMOLOOP_TRAINING_REDISPATCH_SECONDS)


def training_time_limit() -> int:
    """Hard time limit of one training task, in seconds (the soft limit is 60 s less)."""
    return int(settings.EMOLOOP_TRAINING_TIME_LIMIT)


def feature_chunk_size() -> int:
    """Clips per feature-extraction task."""
    return int(settings.EMOLOOP_FEATURE_CHUNK)


def torch_threads() -> int:
    """Threads for training. One is fastest for these small networks on shared cores, and
    keeps runs bit-for-bit reproducible."""
    return int(settings.EMOLOOP_TRAINING_THREADS)
