"""Self-supervised speech encoder embeddings (wav2vec 2.0 / HuBERT / WavLM from torchaudio).

Weights are never downloaded: the encoder is loaded from a local checkpoint file named in
settings (EMOLOOP_SSL_CHECKPOINT). Two checkpoint shapes are accepted:

- a dict ``{"arch": NAME, "state_dict": {...}}`` with NAME one of the torchaudio factories
  ``wav2vec2_base``, ``hubert_base``, ``wavlm_base`` (e.g. the ``state_dict()`` of a model
  from torchaudio.pipelines, saved on a machine with internet access), or
  ``{"arch": "wav2vec2_model" | "wavlm_model", "config": {...}, "state_dict": {...}}`` with
  the factory's keyword arguments (how the tests save a small random encoder);
- a bare state dict, with the architecture named by EMOLOOP_SSL_ARCH.

Features: every transformer layer's output, mean-pooled over time, concatenated
(layers x width values), so the classifier can pick the layers that carry emotion (middle
layers usually do). Long clips are encoded in windows of `WINDOW_S` seconds and pooled with
their lengths as weights, which bounds memory.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torchaudio.models as tam

NAME = "ssl"
CODE_VERSION = "1"
SAMPLE_RATE = 16000
WINDOW_S = 20.0
FACTORIES = {
    "wav2vec2_base": tam.wav2vec2_base,
    "hubert_base": tam.hubert_base,
    "wavlm_base": tam.wavlm_base,
}
CONFIGURABLE = {"wav2vec2_model": tam.wav2vec2_model, "wavlm_model": tam.wavlm_model}


class CheckpointError(RuntimeError):
    """The configured checkpoint is missing or cannot be loaded."""


@cache
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of the checkpoint, cached per (path, size, mtime) for the process."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_digest(path: str) -> str:
    stat = Path(path).stat()
    return _file_digest(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@cache
def _load(path: str, digest: str, default_arch: str) -> tuple[tam.Wav2Vec2Model, str]:
    """Every architecture here (HuBERT and WavLM too) is a torchaudio Wav2Vec2Model."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read the SSL checkpoint {path}: {exc}") from exc
    if isinstance(data, dict) and "state_dict" in data:
        arch = str(data.get("arch", default_arch))
        state = data["state_dict"]
        config = dict(data.get("config") or {})
    else:
        arch, state, config = default_arch, data, {}
    if arch in FACTORIES:
        model = FACTORIES[arch]()
    elif arch in CONFIGURABLE:
        if config.get("extractor_conv_layer_config"):
            config["extractor_conv_layer_config"] = [
                tuple(layer) for layer in config["extractor_conv_layer_config"]
            ]
        try:
            model = CONFIGURABLE[arch](**config)
        except TypeError as exc:
            raise CheckpointError(f"the checkpoint's config does not fit {arch}: {exc}") from exc
    else:
        known = ", ".join([*FACTORIES, *CONFIGURABLE])
        raise CheckpointError(f"unknown SSL architecture {arch!r}; expected one of {known}")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise CheckpointError(f"the checkpoint's weights do not fit {arch}: {exc}") from exc
    model.eval()
    return model, arch


# Output size per checkpoint digest: probing runs the encoder once, and extractors are built
# per request (prediction, assisted mode), so the answer is kept for the process.
_DIMS: dict[str, int] = {}


class SslExtractor:
    name = NAME
    licence = "torchaudio code (BSD-2-Clause); the weights' own licence applies"
    description = "Layer-wise mean-pooled embeddings of a local wav2vec 2.0/HuBERT/WavLM checkpoint"

    def __init__(self, checkpoint: str, default_arch: str = "wav2vec2_base") -> None:
        if not checkpoint:
            raise CheckpointError(
                "no SSL checkpoint is configured: set EMOLOOP_SSL_CHECKPOINT to a local "
                "wav2vec 2.0 / HuBERT / WavLM checkpoint file (nothing is downloaded)"
            )
        if not Path(checkpoint).is_file():
            raise CheckpointError(f"the SSL checkpoint {checkpoint} does not exist")
        self.checkpoint = checkpoint
        self.default_arch = default_arch
        self._digest = checkpoint_digest(checkpoint)
        self.model, self.arch = _load(str(Path(checkpoint).resolve()), self._digest, default_arch)
        # The version names the weights: another checkpoint means other features.
        self.version = f"{CODE_VERSION}-{self.arch}-{self._digest[:12]}"
        if self._digest not in _DIMS:
            probe = self.extract(np.zeros(SAMPLE_RATE, dtype=np.float32))
            _DIMS[self._digest] = int(probe.shape[0])
        self.dim = _DIMS[self._digest]

    def extract(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """(samples,) 16 kHz mono -> (layers * width,) float32."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"SSL features expect {SAMPLE_RATE} Hz audio, got {sample_rate}")
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        if x.numel() < SAMPLE_RATE // 10:  # the conv front end needs a few hundred samples
            x = torch.nn.functional.pad(x, (0, SAMPLE_RATE // 10 - x.numel()))
        window = int(WINDOW_S * SAMPLE_RATE)
        pooled: torch.Tensor | None = None
        total = 0
        with torch.inference_mode():
            for start in range(0, x.numel(), window):
                piece = x[start : start + window]
                if piece.numel() < SAMPLE_RATE // 10 and start > 0:
                    break  # a sliver at the end adds nothing but noise
                piece = (piece - piece.mean()) / (piece.std() + 1e-7)
                layers, _ = self.model.extract_features(piece[None])
                means = torch.cat([layer[0].mean(dim=0) for layer in layers])
                frames = layers[0].shape[1]
                pooled = means * frames if pooled is None else pooled + means * frames
                total += frames
        assert pooled is not None
        return (pooled / max(total, 1)).numpy().astype(np.float32)
