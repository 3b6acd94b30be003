"""MD with an ensemble: steps/s of a K-member ensemble (mean forces, force spread recorded) vs one member.

Model: the shipped ethanol example; the K members are its parameters plus 1 %
noise (speed does not depend on the values). Timed: :func:`physnetjax.md.driver.simulate`
(NVE, float32, 0.5 fs, a frame saved every 10 steps, the all-pairs edge set), wall
time of all chunks compiled ahead of time (the driver's ``steps_per_second``,
compile excluded). The ensemble evaluates all members in one compiled call per step
and the force spread once more at every saved frame (one extra ensemble evaluation
per 10 steps). Single and ensemble runs alternate so that a slow spell of the shared
machine hits both; medians and the range of the per-pair ratios are reported. The
cost of one ensemble inference call and of training is measured by
``bench_ensemble.py``.

    python benchmarks/bench_ensemble_md.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import logging

import ase.io
import jax
import jax.numpy as jnp
import numpy as np
from common import parse_args, publish, table

from physnetjax.checkpoint import load_checkpoint
from physnetjax.ensemble import PhysNetEnsemble, stack_members
from physnetjax.md.driver import simulate
from physnetjax.pretrained import example_geometry_path, example_model_path

logger = logging.getLogger("bench_ensemble_md")

SIZES = {"full": (2, 4, 8), "quick": (4,), "smoke": (2,)}
STEPS = {"full": 10000, "quick": 2000, "smoke": 20}
RUNS = {"full": 3, "quick": 2, "smoke": 1}


def noisy_members(params, count: int) -> list:
    """``count`` copies of ``params`` with independent multiplicative noise of 1 %."""
    members = []
    for k in range(count):
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(jax.random.PRNGKey(k), len(leaves))
        members.append(jax.tree_util.tree_unflatten(treedef, [
            leaf * (1 + 0.01 * jax.random.normal(key, leaf.shape, leaf.dtype)) for leaf, key in zip(leaves, keys)]))
    return members


def md_rate(model, params, atoms, steps: int) -> float:
    report = simulate(model, params, atoms, steps=steps, save_every=10, chunk_frames=max(1, steps // 10),
                      dtype="float32", temperature_K=300.0, max_force=1e4)
    return report.steps_per_second


def main() -> None:
    args = parse_args(__doc__)
    logging.basicConfig(level=logging.INFO)
    member, params = load_checkpoint(example_model_path())
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    atoms = ase.io.read(example_geometry_path())
    steps = STEPS[args.mode]
    rows, data = [], {"steps": steps, "save_every": 10, "runs": {}}
    for k in SIZES[args.mode]:
        ensemble, stacked = PhysNetEnsemble(member, k), stack_members(noisy_members(params, k))
        single_rates, ensemble_rates = [], []
        for _ in range(RUNS[args.mode]):
            single_rates.append(md_rate(member, params, atoms, steps))
            ensemble_rates.append(md_rate(ensemble, stacked, atoms, steps))
        ratios = [s / e for s, e in zip(single_rates, ensemble_rates)]
        slowdown = float(np.median(single_rates) / np.median(ensemble_rates))
        logger.info("K=%d: one member %.1f steps/s, ensemble %.1f steps/s, slow-down %.2f", k,
                    np.median(single_rates), np.median(ensemble_rates), slowdown)
        data["runs"][str(k)] = {"single_steps_per_second": single_rates, "ensemble_steps_per_second": ensemble_rates}
        rows.append([k, float(np.median(single_rates)), float(np.median(ensemble_rates)), slowdown,
                     f"{min(ratios):.2f}–{max(ratios):.2f}", len(ratios)])
    tables = [table("MD of ethanol with a K-member ensemble vs one member (NVE, float32, 0.5 fs)",
                    f"steps/s over all chunks of {steps} steps, compile excluded, median of alternating runs; "
                    "the ensemble also records the force spread every 10 steps",
                    ["K", "1 member steps/s", "ensemble steps/s", "slow-down", "pair ratios", "runs"], rows)]
    publish("bench_ensemble_md", args, tables, data)


if __name__ == "__main__":
    main()
