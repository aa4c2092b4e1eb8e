"""The default feature set (`acoustic`) as an Extractor.

Its own module so that `learner.features` imports torch (through `acoustic`) only when the
acoustic set is used: `get_extractor("acoustic")` or `learner.features.AcousticExtractor`.
"""

from __future__ import annotations

import numpy as np

from learner.features import acoustic


class AcousticExtractor:
    name = acoustic.NAME
    version = acoustic.VERSION
    dim = acoustic.DIM
    licence = "Apache-2.0 (EmoLoop code on torch/torchaudio)"
    description = (
        "Log-mel/MFCC statistics with pitch, energy, voicing and voice-quality functionals"
    )

    def extract(self, wave: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
        return acoustic.extract(wave, sample_rate)
