"""Batched energy+forces of a trained apax model on extxyz frames, timed; run with apax's own interpreter.

Usage: PYTHON_OF_APAX apax_predict.py MODEL_DIR FRAMES.extxyz OUT.npz [--batch-size B] [--repeats K]

``MODEL_DIR`` is apax's ``directory/experiment`` (its ``best`` parameters are loaded).
The model is built and jitted once, as ``apax.md.ASECalculator.batch_eval`` builds it
(which re-jits on every call, so it is not timed directly); each pass packs the frames
with apax's own padded in-memory dataset (neighbour lists on the host) and runs every
batch. The first pass compiles, each of the next K passes is timed (host batching
included). Writes ``OUT.npz`` with ``energy`` (M,) eV, ``forces`` (M, n, 3) eV/Å (zero
padded to the largest n), ``seconds`` (K,) and ``parameters`` (the model's parameter
count). Part of ``benchmarks/bench_accuracy.py``; imports nothing of physnetjax.
"""

from __future__ import annotations

import argparse
from functools import partial

import ase.io
import jax
import numpy as np
from apax.data.input_pipeline import CachedInMemoryDataset
from apax.train.checkpoints import restore_parameters
from timed_passes import save_timed_passes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("frames")
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def jitted_model(config, params, box):
    """The energy+forces function of the model, vmapped over a batch and jitted (one compile per shape)."""
    builder = config.model.get_builder()(config.model.model_dump())
    energy_and_forces = builder.build_energy_derivative_model(apply_mask=True, init_box=box).apply
    return jax.jit(jax.vmap(partial(energy_and_forces, params), in_axes=(0, 0, 0, 0, 0)))


def one_pass(model, frames, r_max: float, batch_size: int):
    """Energies (M,) and per-frame forces of ``frames`` (one full pass in batches of ``batch_size``)."""
    dataset = CachedInMemoryDataset(frames, r_max, batch_size, n_epochs=1, ignore_labels=True)
    energies, forces = [], []
    for inputs in dataset.batch():
        out = jax.device_get(model(inputs["positions"], inputs["numbers"], inputs["idx"], inputs["box"],
                                   inputs["offsets"]))
        for k in range(len(out["energy"])):
            energies.append(float(out["energy"][k]))
            forces.append(np.asarray(out["forces"][k][: int(inputs["n_atoms"][k])]))
    dataset.cleanup()
    return np.array(energies[: len(frames)]), forces[: len(frames)]


def main() -> None:
    args = parse_args()
    config, params = restore_parameters(args.model_dir)
    frames = ase.io.read(args.frames, index=":")
    model = jitted_model(config, params, frames[0].cell.array)
    r_max = config.model.basis.r_max
    save_timed_passes(partial(one_pass, model, frames, r_max, args.batch_size), [len(a) for a in frames],
                      args.repeats, sum(np.size(leaf) for leaf in jax.tree_util.tree_leaves(params)), args.out)


if __name__ == "__main__":
    main()
