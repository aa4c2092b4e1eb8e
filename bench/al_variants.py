"""Candidate query strategies, measured in the simulator before any becomes a registry entry.

Issue 12's ideas for saving labels, each a variant of the default (`uncertain_kcenter`)
built from learner.ranking's parts and added to the strategy registry of this process only
(the forked simulator workers inherit it; nothing is registered for projects):

- uk_ens: priority = the ensemble members' disagreement (mutual information between the 3
  members' predictions, BALD over members instead of MC-dropout passes), then the default's
  uncertainty-weighted k-center pick;
- uk_bal: class-balance aware: entropy x the expected inverse square-root share of the
  predicted class over the pool (clips the model assigns to rarely predicted classes first);
- uk_mix: half the batch from the default, half uniformly at random (exploration);
- uk_f3, uk_f20: candidate_factor 3 or 20 instead of 10 (less or more diversity).

Choose on some speakers, confirm on the others (do not tune on the final evaluation):

    python -m bench.al_variants --labels /tmp/labels_A.csv --strategies random,default,uk_ens \\
        --seeds 3 --rotations 5 --budget 140 [--steps 150] --out /tmp/A.json

`--labels` is a labels file of EmoDB (a subset of its speakers: copy the rows of
../shared/data/emodb/labels.csv); `--steps` trains a cheaper model (target_steps, 5-30
epochs) for choosing. Prints the simulator's table and `wall= cpu= load=`; writes the summary
(without per-run curves) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from learner import simulation
from learner.model import TrainConfig
from learner.pipeline import Predictor
from learner.ranking import strategies as registry
from learner.ranking import uncertainty
from learner.ranking.pool import Pool
from learner.simulation import loop

EMODB = Path(__file__).resolve().parents[2] / "shared" / "data" / "emodb"


def member_probabilities(
    predictor: Predictor, x: np.ndarray, speakers: list[str], seed: int
) -> np.ndarray:
    """(members, n, K) each ensemble member's probabilities, dropout off."""
    z = torch.as_tensor(predictor.normaliser.transform(x, speakers))
    out = []
    with torch.inference_mode():
        for net in predictor.members:
            logits, _ = net(z)
            out.append(torch.softmax(logits, dim=1).numpy())
    return np.stack(out).astype(np.float64)


def _disagreement(pool: Pool, params: Any, seed: int) -> np.ndarray:
    assert pool.mc_probs_core is not None
    mi: np.ndarray = uncertainty.bald(pool.mc_probs_core)
    return mi / max(np.log(pool.mc_probs_core.shape[2]), 1e-12)


def _balanced(pool: Pool, params: Any, seed: int) -> np.ndarray:
    assert pool.probs_core is not None
    h = registry._chunked_uncertainty(pool, "entropy", params["alpha"])
    share = pool.probs_core.mean(axis=0)
    w = 1.0 / np.sqrt(np.maximum(share, 1e-3))
    w = w / (share * w).sum()  # weight 1 on average over the pool
    out: np.ndarray = h * (pool.probs_core @ w)
    return out


def _mixed(pool: Pool, b: int, seed: int, params: Any, priority: np.ndarray) -> np.ndarray:
    k = b - b // 2
    first = registry._pick_uncertain_kcenter(pool, k, seed, params, priority)
    rest = np.setdiff1d(np.arange(pool.size), first)
    chosen = np.random.default_rng(seed).choice(rest, b - k, replace=False)
    return np.concatenate([first, chosen])


def register_variants() -> None:
    base = registry.STRATEGIES["uncertain_kcenter"]

    def spec(name: str, pick: Any, priority: Any, needs_mc: bool = False, **over: Any) -> Any:
        defaults = MappingProxyType({**base.defaults, **over})
        return registry.StrategySpec(name, pick, priority, defaults, name, True, needs_mc)

    variants = {
        "uk_f3": spec("uk_f3", base.pick, base.priority, candidate_factor=3),
        "uk_f20": spec("uk_f20", base.pick, base.priority, candidate_factor=20),
        "uk_ens": spec("uk_ens", base.pick, _disagreement, needs_mc=True),
        "uk_bal": spec("uk_bal", base.pick, _balanced),
        "uk_mix": spec("uk_mix", _mixed, base.priority),
    }
    registry.STRATEGIES = MappingProxyType({**registry.STRATEGIES, **variants})
    # Strategies that need MC passes get the ensemble members instead (only uk_ens does).
    loop._mc_probabilities = member_probabilities  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", required=True)
    parser.add_argument("--strategies", required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--budget", type=int, default=140)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--seed-set", default="auto")
    parser.add_argument("--embedding", default="features")
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    register_variants()
    corpus = simulation.load_corpus(EMODB, args.labels)
    features = simulation.compute_features(
        corpus, "acoustic", cache_dir=Path(__file__).resolve().parents[1] / "var/simulation-cache"
    )
    train = {}
    if args.steps:
        train["train"] = TrainConfig(
            ensemble=3, target_steps=args.steps, min_epochs=5, max_epochs=30
        )
    config = simulation.SimulationConfig(
        strategies=tuple(args.strategies.split(",")),
        seeds=args.seeds,
        rotations=args.rotations,
        budget=args.budget,
        batch_size=args.batch_size,
        seed_set=args.seed_set,
        embedding=args.embedding,
        **train,
    )
    started = time.time()
    summary = simulation.simulate(
        simulation.problem_from(corpus, features), config, workers=args.workers
    )
    cpu = sum(
        u.ru_utime + u.ru_stime
        for u in (resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(0))
    )
    print(simulation.markdown_table(summary))
    print(
        f"wall={time.time() - started:.0f}s cpu={cpu:.0f}s load={os.getloadavg()[0]:.1f} "
        f"full_pool_uar={summary['full_pool_uar']:.3f}"
    )
    summary.pop("runs", None)
    Path(args.out).write_text(json.dumps(summary, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
