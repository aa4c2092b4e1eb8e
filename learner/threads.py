"""Torch thread count for the duration of a block.

Celery runs several pool processes per machine; each would otherwise start one torch thread
per core, and oversubscribed cores make small tensors slower, not faster (measured: training
one network with 2 threads in each of 2 processes took 5x longer than with 1). One thread
also keeps training bit-for-bit reproducible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
