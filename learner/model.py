"""The emotion classifier: an MLP over cached feature vectors with two heads.

Framework-free: numpy/torch in, modules and arrays out; every random choice is seeded.

- The *core* head predicts the wheel's core ring; the *fine* head predicts the finest ring
  that the project's labels reach (see learner.targets). Both are trained together on a
  shared trunk, so a label given only at the core ring still teaches the trunk and the core
  head, and a fine label teaches both heads (its core ancestor is part of the core target).
- Targets are soft distributions (the share of annotators per class) with a per-example
  weight; label smoothing mixes in a uniform distribution; class weights (inverse class
  mass on the training rows, mean 1) keep rare feelings from being ignored.
- An ensemble of `ensemble` members with different seeds averages its logits: small labelled
  sets make single networks vary a lot from seed to seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from learner.threads import torch_threads


@dataclass(frozen=True)
class TrainConfig:
    hidden: int = 256
    layers: int = 1
    dropout: float = 0.3
    input_dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    # None: as many epochs as give about `target_steps` optimiser steps, within bounds.
    epochs: int | None = None
    target_steps: int = 1500
    min_epochs: int = 10
    max_epochs: int = 200
    # Large sets (automatic epochs only): past the point where `min_epochs` epochs take more
    # than `target_steps` steps (9,600 rows at the defaults), the batch grows instead of the
    # step count, up to `max_batch_size`; and a member sees at most about `max_samples`
    # examples (fewer epochs, never under `min_large_epochs`). Smaller sets train exactly as
    # before. Without these a retrain on 10,000 clips (30,000 rows with augmented copies)
    # cost ten epochs of batches of 64: about 23,000 optimiser steps for the held-out run and
    # the refit, most of the loop's latency (docs/learner.md, "Latency").
    max_batch_size: int = 512
    max_samples: int = 150_000
    min_large_epochs: int = 3
    label_smoothing: float = 0.1
    class_weighting: bool = True
    fine_loss_weight: float = 1.0
    ensemble: int = 3
    seed: int = 0
    threads: int = 1

    def batch_size_for(self, n_rows: int) -> int:
        """The batch size for `n_rows` training rows (see max_batch_size)."""
        if self.epochs is not None:
            return self.batch_size
        grown = math.ceil(n_rows * self.min_epochs / max(1, self.target_steps))
        return int(max(self.batch_size, min(self.max_batch_size, grown)))

    def epochs_for(self, n_rows: int) -> int:
        if self.epochs is not None:
            return max(1, self.epochs)
        batch = self.batch_size_for(n_rows)
        if batch > self.batch_size:
            # Past the floor: min_epochs epochs of the grown batch make about target_steps.
            epochs = self.min_epochs
        else:
            steps_per_epoch = max(1, math.ceil(n_rows / batch))
            wanted = math.ceil(self.target_steps / steps_per_epoch)
            epochs = int(min(self.max_epochs, max(self.min_epochs, wanted)))
        if self.max_samples and n_rows * epochs > self.max_samples:
            epochs = max(self.min_large_epochs, math.ceil(self.max_samples / max(1, n_rows)))
        return min(epochs, self.max_epochs)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class EmotionMLP(nn.Module):
    """(N, D) standardised features -> core logits (N, Kc) and fine logits (N, Kf) or None."""

    def __init__(
        self,
        in_dim: int,
        n_core: int,
        n_fine: int,
        *,
        hidden: int = 256,
        layers: int = 1,
        dropout: float = 0.3,
        input_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Dropout(input_dropout)]
        width = in_dim
        for _ in range(layers):
            blocks += [
                nn.Linear(width, hidden),
                nn.LayerNorm(hidden),
                nn.GELU(),
                nn.Dropout(dropout),
            ]
            width = hidden
        self.trunk = nn.Sequential(*blocks)
        self.core = nn.Linear(width, n_core)
        # n_fine == 0: the finest labelled ring is the core ring; one head is enough.
        self.fine = nn.Linear(width, n_fine) if n_fine > 0 else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.trunk(x)
        return self.core(h), (self.fine(h) if self.fine is not None else None)


def build(in_dim: int, n_core: int, n_fine: int, config: TrainConfig) -> EmotionMLP:
    return EmotionMLP(
        in_dim,
        n_core,
        n_fine,
        hidden=config.hidden,
        layers=config.layers,
        dropout=config.dropout,
        input_dropout=config.input_dropout,
    )


def class_weights(targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(N, K) soft targets and (N,) example weights -> (K,) weights, mean 1 over present
    classes, 0 for classes absent from the rows."""
    mass = (targets * weights[:, None]).sum(axis=0)
    present = mass > 0
    out = np.zeros(targets.shape[1])
    if present.any():
        out[present] = mass[present].sum() / (present.sum() * mass[present])
    return out


def _soft_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    cw: torch.Tensor | None,
    smoothing: float,
) -> torch.Tensor | None:
    """Weighted soft-target cross-entropy; None when no row of the batch has this target."""
    w = weights if cw is None else weights * (targets @ cw)
    total = w.sum()
    if total <= 0:
        return None
    k = targets.shape[1]
    smoothed = (1 - smoothing) * targets + smoothing / k
    per_row = -(smoothed * torch.log_softmax(logits, dim=1)).sum(dim=1)
    return (w * per_row).sum() / total


EpochCallback = Callable[[int, int, float], None]  # (epoch, epochs, mean loss)


def _lr_schedule(
    optimiser: torch.optim.Optimizer, lr: float, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle schedule with a 10 % warm-up. OneCycleLR needs its warm-up to end after the
    first step and before the last (it divides by the phase lengths: exactly 10 steps gave a
    ZeroDivisionError), so short runs warm up over two steps, and runs of under four steps
    (epochs=1 on a handful of clips) keep a constant rate."""
    if steps < 4:
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda _step: 1.0)
    pct_start = max(0.1, 2.0 / steps)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=lr, total_steps=steps, pct_start=pct_start
    )


def fit(
    x: np.ndarray,
    core_targets: np.ndarray,
    core_weights: np.ndarray,
    fine_targets: np.ndarray | None,
    fine_weights: np.ndarray | None,
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
) -> list[EmotionMLP]:
    """Train `config.ensemble` networks; returns them in eval mode.

    x: (N, D) standardised features; core_targets: (N, Kc) rows summing to 1 (or 0 where the
    row has no core label, with weight 0); fine_targets: (N, Kf) likewise, or None.
    `on_epoch` is called after every epoch of every member (the training service beats its
    heartbeat and reports progress there), with epochs counted across members.
    """
    n, d = x.shape
    n_fine = 0 if fine_targets is None else fine_targets.shape[1]
    epochs = config.epochs_for(n)
    batch_size = config.batch_size_for(n)
    xt = torch.as_tensor(x, dtype=torch.float32)
    ct = torch.as_tensor(core_targets, dtype=torch.float32)
    cwt = torch.as_tensor(core_weights, dtype=torch.float32)
    ccw = (
        torch.as_tensor(class_weights(core_targets, core_weights), dtype=torch.float32)
        if config.class_weighting
        else None
    )
    if fine_targets is not None and fine_weights is not None:
        ft = torch.as_tensor(fine_targets, dtype=torch.float32)
        fwt = torch.as_tensor(fine_weights, dtype=torch.float32)
        fcw = (
            torch.as_tensor(class_weights(fine_targets, fine_weights), dtype=torch.float32)
            if config.class_weighting
            else None
        )
    members: list[EmotionMLP] = []
    total_epochs = epochs * config.ensemble
    with torch.random.fork_rng(), torch_threads(config.threads):
        for member in range(config.ensemble):
            seed = config.seed * 1000 + member
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed)
            net = build(d, core_targets.shape[1], n_fine, config)
            optimiser = torch.optim.AdamW(
                net.parameters(),
                lr=config.lr,
                weight_decay=config.weight_decay,
                # Large sets only (the batch grew): the fused kernel is the same AdamW with
                # different rounding, about a sixth cheaper per step on CPU (measured); small
                # sets keep the weights they always had.
                fused=True if batch_size > config.batch_size else None,
            )
            steps = epochs * max(1, math.ceil(n / batch_size))
            schedule = _lr_schedule(optimiser, config.lr, steps)
            net.train()
            for epoch in range(epochs):
                order = torch.randperm(n, generator=generator)
                running, batches = 0.0, 0
                for start in range(0, n, batch_size):
                    idx = order[start : start + batch_size]
                    core_logits, fine_logits = net(xt[idx])
                    loss = _soft_loss(core_logits, ct[idx], cwt[idx], ccw, config.label_smoothing)
                    if fine_logits is not None:
                        fine_loss = _soft_loss(
                            fine_logits, ft[idx], fwt[idx], fcw, config.label_smoothing
                        )
                        if fine_loss is not None:
                            fine_loss = config.fine_loss_weight * fine_loss
                            loss = fine_loss if loss is None else loss + fine_loss
                    if loss is not None:
                        optimiser.zero_grad(set_to_none=True)
                        # torch leaves Tensor.backward unannotated (its stub is wrong, not the call)
                        loss.backward()  # type: ignore[no-untyped-call]
                        optimiser.step()
                        running += float(loss.detach())
                        batches += 1
                    schedule.step()
                if on_epoch is not None:
                    on_epoch(member * epochs + epoch + 1, total_epochs, running / max(batches, 1))
            net.eval()
            members.append(net)
    return members


def predict_logits(
    members: list[EmotionMLP], x: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, D) -> core logits (N, Kc) and fine logits (N, Kf) or None, averaged over members."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    core, fine = [], []
    with torch.inference_mode():
        for net in members:
            c, f = net(xt)
            core.append(c)
            if f is not None:
                fine.append(f)
    core_mean = torch.stack(core).mean(dim=0).numpy()
    fine_mean = torch.stack(fine).mean(dim=0).numpy() if fine else None
    return core_mean, fine_mean


def members_state(members: list[EmotionMLP]) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in net.state_dict().items()} for net in members]


def load_members(
    states: list[dict[str, torch.Tensor]],
    in_dim: int,
    n_core: int,
    n_fine: int,
    config: TrainConfig,
) -> list[EmotionMLP]:
    members = []
    for state in states:
        net = build(in_dim, n_core, n_fine, config)
        net.load_state_dict(state)  # strict: a mismatching artifact fails loudly
        net.eval()
        members.append(net)
    return members
