"""eGeMAPS v02 (88) and ComParE 2016 (6,373) functionals through audEERING's `opensmile`.

OPTIONAL: opensmile is under audEERING's research licence (non-commercial use only), so it is
never a dependency of EmoLoop. Install it yourself (`pip install opensmile==2.6.0`, or the
`opensmile` extra) only where that licence fits your use; without it these feature sets
report themselves unavailable.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
SETS = {"egemaps": ("eGeMAPSv02", 88), "compare": ("ComParE_2016", 6373)}


class OpenSmileUnavailable(RuntimeError):
    pass


def _module() -> Any:
    try:
        import opensmile
    except ImportError as exc:
        raise OpenSmileUnavailable(
            "the optional `opensmile` package is not installed (audEERING research licence, "
            "non-commercial; `pip install opensmile==2.6.0` where that licence fits)"
        ) from exc
    return opensmile


@cache
def _smile(feature_set: str) -> Any:
    opensmile = _module()
    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set),
        feature_level=opensmile.FeatureLevel.Functionals,
    )


class OpenSmileExtractor:
    licence = "audEERING research licence (non-commercial), optional extra"

    def __init__(self, name: str) -> None:
        feature_set, dim = SETS[name]
        opensmile = _module()
        self.name = name
        self.feature_set = feature_set
        self.dim = dim
        self.version = f"opensmile-{opensmile.__version__}-{feature_set}"
        self.description = f"openSMILE {feature_set} functionals ({dim})"

    def extract(self, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        frame = _smile(self.feature_set).process_signal(
            np.asarray(wave, dtype=np.float32), sample_rate
        )
        row: np.ndarray = np.nan_to_num(frame.to_numpy()[0].astype(np.float32))
        return row
