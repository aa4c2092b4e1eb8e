"""Learner settings: a Django setting of the same name wins, else the environment.

The environment variables are read with emoloop.env's typed helpers (a malformed value fails
loudly). They are read at call time, not import time, so tests can change them through the
`settings` fixture.
"""

from __future__ import annotations

from django.conf import settings

from emoloop.env import env_int, env_str
from learner.features import ExtractorOptions


def _setting(name: str, default: object) -> object:
    return getattr(settings, name, default)


def ssl_checkpoint() -> str:
    """Path of a local wav2vec 2.0 / HuBERT / WavLM checkpoint ("" = the ssl set is off)."""
    return str(_setting("EMOLOOP_SSL_CHECKPOINT", env_str("EMOLOOP_SSL_CHECKPOINT", "")))


def ssl_arch() -> str:
    """Architecture of a bare state-dict checkpoint (wav2vec2_base, hubert_base, wavlm_base)."""
    return str(_setting("EMOLOOP_SSL_ARCH", env_str("EMOLOOP_SSL_ARCH", "wav2vec2_base")))


def extractor_options() -> ExtractorOptions:
    return ExtractorOptions(ssl_checkpoint=ssl_checkpoint(), ssl_arch=ssl_arch())


def training_stale_seconds() -> int:
    """A running training whose heartbeat is older than this is taken for dead."""
    return int(
        _setting(
            "EMOLOOP_TRAINING_STALE_SECONDS",
            env_int("EMOLOOP_TRAINING_STALE_SECONDS", 300, minimum=10),
        )
    )


def training_redispatch_seconds() -> int:
    """A training still queued after this long is sent to the broker again."""
    return int(
        _setting(
            "EMOLOOP_TRAINING_REDISPATCH_SECONDS",
            env_int("EMOLOOP_TRAINING_REDISPATCH_SECONDS", 600, minimum=10),
        )
    )


def training_time_limit() -> int:
    """Hard time limit of one training task, in seconds (the soft limit is 60 s less)."""
    return int(
        _setting(
            "EMOLOOP_TRAINING_TIME_LIMIT",
            env_int("EMOLOOP_TRAINING_TIME_LIMIT", 3 * 3600, minimum=120),
        )
    )


def feature_chunk_size() -> int:
    """Clips per feature-extraction task."""
    return int(_setting("EMOLOOP_FEATURE_CHUNK", env_int("EMOLOOP_FEATURE_CHUNK", 50, minimum=1)))


def torch_threads() -> int:
    """Threads for training. One is fastest for these small networks on shared cores, and
    keeps runs bit-for-bit reproducible."""
    return int(
        _setting("EMOLOOP_TRAINING_THREADS", env_int("EMOLOOP_TRAINING_THREADS", 1, minimum=1))
    )
