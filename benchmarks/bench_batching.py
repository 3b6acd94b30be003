"""Bucketed vs unbucketed batching: compile count and wall time of an epoch over molecules of mixed sizes.

Data: an equal number of frames of ethanol (9 atoms), CO2 (3), A–T (30) and G–C (29)
base pairs from ../shared/data, shuffled once (seed 0) into batches of B molecules.
Each batch is fed to one jitted energy+forces call (float32; model features 32,
max_degree 1, 2 iterations, cutoff 5 Å, ZBL; ``--smoke``: features 8, 1 iteration):

* ``bucketed``: :class:`physnetjax.MoleculeBatcher` (≤ 4 padded shapes);
* ``exact``: :func:`physnetjax.batch_molecules` with exact sizes (one shape per
  distinct (atoms, edges) of a batch).

For each, :class:`physnetjax.neighbors.CompileCounter` counts traces (= compiled shapes)
and two epochs over the same batches are timed as wall time of the whole loop (host
batch building included, blocked at the end of the epoch): epoch 1 includes every
compile, epoch 2 is steady state (all shapes cached). One run each.

Usage: python benchmarks/bench_batching.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import time

import jax
import numpy as np

from common import SHARED_DATA, parse_args, table, publish
from physnetjax import MoleculeBatcher, PhysNet, apply_batch, batch_molecules, init_params
from physnetjax.neighbors import CompileCounter, concatenate_padded, model_pair_cutoff

SOURCES = ("ethanol_gfn2_500K.npz", "co2_gfn2_500K.npz", "basepairs/at_prod.npz", "basepairs/gc_prod.npz")
PLAN = {"full": (16, 24), "quick": (16, 8), "smoke": (4, 2)}  # (batch size, batches per epoch); ≤ 100 frames per source


def mixed_dataset(per_source: int) -> dict:
    parts = []
    for name in SOURCES:
        data = np.load(SHARED_DATA / name)
        parts.append({"Z": data["Z"][:per_source], "R": data["R"][:per_source]})
    return concatenate_padded(parts)


def run_epoch(step, params, batches) -> float:
    start = time.perf_counter()
    outputs = [step(params, make()) for make in batches]
    jax.block_until_ready(outputs)
    return time.perf_counter() - start


def main():
    args = parse_args(__doc__)
    batch_size, num_batches = PLAN[args.mode]
    num = batch_size * num_batches
    data = mixed_dataset(-(-num // len(SOURCES)))
    order = np.random.default_rng(0).permutation(len(data["Z"]))[:num]
    if args.mode == "smoke":
        model = PhysNet(features=8, max_degree=1, num_iterations=1, n_res=1, cutoff=5.0, max_atomic_number=8)
    else:
        model = PhysNet(features=32, max_degree=1, num_iterations=2, n_res=1, cutoff=5.0, max_atomic_number=8)
    params = init_params(model, 0)
    pair_cutoff = model_pair_cutoff(model)
    chunks = [order[k:k + batch_size] for k in range(0, num, batch_size)]

    batcher = MoleculeBatcher(data, batch_size, model.cutoff, pair_cutoff)
    present = data["Z"] > 0

    def exact(indices):
        return batch_molecules([data["Z"][k][present[k]] for k in indices],
                               [data["R"][k][present[k]] for k in indices], model.cutoff, pair_cutoff=pair_cutoff)

    strategies = {"bucketed (MoleculeBatcher)": lambda idx: batcher.batch(idx), "exact shapes": exact}
    rows = []
    for name, build in strategies.items():
        step = CompileCounter(lambda p, b: apply_batch(model, p, b))
        batches = [lambda idx=idx: build(idx) for idx in chunks]
        first = run_epoch(step, params, batches)
        second = run_epoch(step, params, batches)
        shapes = sorted({build(idx).shape_key[:3] for idx in chunks}, key=str)
        rows.append({"strategy": name, "compiles": step.count, "epoch1_s": first, "epoch2_s": second,
                     "shapes": [list(s) for s in shapes]})
        print(f"{name}: {step.count} compiles, epoch 1 {first:.2f} s, epoch 2 {second:.2f} s", flush=True)
    bucketed, unbucketed = rows
    tables = [table(f"Bucketed vs exact-shape batches: {num} mixed molecules (ethanol, CO2, A–T, G–C), B={batch_size}",
                    "wall time of one epoch of jitted energy+forces calls incl. host batch building; epoch 1 "
                    "includes compiles, epoch 2 is steady state; one run each",
                    ["strategy", "compiled shapes", "epoch 1 s (with compiles)", "epoch 2 s (steady)"],
                    [[r["strategy"], r["compiles"], r["epoch1_s"], r["epoch2_s"]] for r in rows]
                    + [["exact / bucketed", unbucketed["compiles"] / bucketed["compiles"],
                        unbucketed["epoch1_s"] / bucketed["epoch1_s"], unbucketed["epoch2_s"] / bucketed["epoch2_s"]]])]
    publish("bench_batching", args, tables,
            {"batch_size": batch_size, "molecules": num, "levels": batcher.levels, "results": rows,
             "model": model.config()})


if __name__ == "__main__":
    main()
