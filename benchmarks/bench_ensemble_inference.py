"""Ensemble inference cost: one vmapped call for K members against one member, and MD with an ensemble.

Model: the shipped ethanol example; the K members are its parameters plus small
noise (speed does not depend on the values). What is timed:

* ``jitted_apply`` (float32, forces included) of one member and of the ensemble of
  K = 2, 4, 8 members (:class:`physnetjax.ensemble.PhysNetEnsemble`: one ``jax.vmap``
  over the stacked parameters, mean and spreads included) on one ethanol molecule
  (the ``predict``/calculator case) and on a batch of 32 ethanol frames (the
  evaluation/training case); median of repeats after warm-up (:func:`common.time_call`),
  the cost relative to one member beside it. Issue 16 target: K = 4 ≤ 2× one member.
* MD (:func:`physnetjax.md.driver.simulate`, NVE, float32, 0.5 fs, a frame saved
  every 10 steps): steps/s of one member and of the K = 4 ensemble, which also
  evaluates the force spread at every saved frame (one more ensemble evaluation per
  10 steps); compile excluded, runs alternated.

    python benchmarks/bench_ensemble_inference.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import logging

import ase.io
import jax
import jax.numpy as jnp
import numpy as np
from common import parse_args, publish, table, time_call

from physnetjax.checkpoint import load_checkpoint
from physnetjax.data import bundled_dataset_path, load_dataset
from physnetjax.ensemble import PhysNetEnsemble, stack_members
from physnetjax.md.driver import simulate
from physnetjax.neighbors import batch_molecules, model_pair_cutoff
from physnetjax.predict import jitted_apply
from physnetjax.pretrained import example_geometry_path, example_model_path

logger = logging.getLogger("bench_ensemble_inference")

SIZES = {"full": (2, 4, 8), "quick": (2, 4, 8), "smoke": (2,)}
REPEATS = {"full": 21, "quick": 7, "smoke": 2}
MD_STEPS = {"full": 4000, "quick": 1000, "smoke": 20}
MD_RUNS = {"full": 3, "quick": 2, "smoke": 1}


def noisy_members(params, count: int) -> list:
    """``count`` copies of ``params`` with independent noise of relative size 1 %."""
    members = []
    for k in range(count):
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = jax.random.split(jax.random.PRNGKey(k), len(leaves))
        members.append(jax.tree_util.tree_unflatten(treedef, [
            leaf * (1 + 0.01 * jax.random.normal(key, leaf.shape, leaf.dtype)) for leaf, key in zip(leaves, keys)]))
    return members


def frames_batch(model, count: int):
    """A batch of ``count`` frames of the bundled ethanol data (float32)."""
    data = load_dataset([bundled_dataset_path()])
    zs = [data.Z[i, :data.N[i]] for i in range(count)]
    rs = [data.R[i, :data.N[i]] for i in range(count)]
    return batch_molecules(zs, rs, model.cutoff, pair_cutoff=model_pair_cutoff(model), dtype=np.float32)


def timed_apply(model, params, batch, repeats: int) -> dict:
    apply = jitted_apply(model)
    return time_call(lambda: jax.block_until_ready(apply(params, batch)), repeats=repeats)


def md_rate(model, params, atoms, steps: int) -> float:
    report = simulate(model, params, atoms, steps=steps, save_every=10, chunk_frames=max(1, steps // 10),
                      dtype="float32", temperature_K=300.0, max_force=1e4)
    return report.steps_per_second


def main() -> None:
    args = parse_args(__doc__)
    logging.basicConfig(level=logging.INFO)
    member, params, _ = load_checkpoint(example_model_path())
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
    atoms = ase.io.read(example_geometry_path())
    batches = {"1 molecule": batch_molecules([atoms.numbers], [atoms.positions], member.cutoff,
                                             pair_cutoff=model_pair_cutoff(member), dtype=np.float32),
               "32 frames": frames_batch(member, 2 if args.mode == "smoke" else 32)}
    sizes = SIZES[args.mode]
    stacked = {k: stack_members(noisy_members(params, k)) for k in sizes}
    rows, data = [], {}
    for name, batch in batches.items():
        single = timed_apply(member, params, batch, REPEATS[args.mode])
        data[name] = {"1": single}
        rows.append([name, 1, single["median_s"] * 1e3, 1.0])
        for k in sizes:
            timing = timed_apply(PhysNetEnsemble(member, k), stacked[k], batch, REPEATS[args.mode])
            data[name][str(k)] = timing
            rows.append([name, k, timing["median_s"] * 1e3, timing["median_s"] / single["median_s"]])
            logger.info("%s: K=%d %.3g ms (×%.2f of one member)", name, k, timing["median_s"] * 1e3,
                        timing["median_s"] / single["median_s"])
    ensemble4 = PhysNetEnsemble(member, 4)
    md_params = stacked.get(4) if 4 in stacked else stack_members(noisy_members(params, 4))
    single_rates, ensemble_rates = [], []
    for _ in range(MD_RUNS[args.mode]):
        single_rates.append(md_rate(member, params, atoms, MD_STEPS[args.mode]))
        ensemble_rates.append(md_rate(ensemble4, md_params, atoms, MD_STEPS[args.mode]))
    md_row = [float(np.median(single_rates)), float(np.median(ensemble_rates)),
              float(np.median(single_rates) / np.median(ensemble_rates)), MD_STEPS[args.mode], len(single_rates)]
    data["md"] = {"single_steps_per_second": single_rates, "ensemble4_steps_per_second": ensemble_rates,
                  "steps": MD_STEPS[args.mode]}
    tables = [
        table("Ensemble of K members in one vmapped call vs one member (ethanol example model, float32)",
              "ms per jitted apply (energy, forces, charges; ensemble: + mean and spreads), median after warm-up; "
              "cost = time / time of one member (issue 16 target: K = 4 ≤ 2)",
              ["batch", "K", "ms", "cost vs 1 member"], rows),
        table("MD with a K = 4 ensemble (NVE, float32, 0.5 fs, spread evaluated every 10 steps)",
              "steps/s over all chunks, compile excluded, median of alternating runs",
              ["1 member steps/s", "K=4 steps/s", "slow-down", "steps", "runs"], [md_row]),
    ]
    publish("bench_ensemble_inference", args, tables, data)


if __name__ == "__main__":
    main()
