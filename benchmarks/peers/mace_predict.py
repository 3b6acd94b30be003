"""Batched energy+forces of a trained MACE model on extxyz frames, timed; run with MACE's own interpreter.

Usage: PYTHON_OF_MACE mace_predict.py MODEL FRAMES.extxyz OUT.npz [--batch-size B] [--repeats K]

Reads the frames (positions and numbers only), packs them into batches of B with MACE's
own data loader (neighbour lists built on the host, as ``mace_eval_configs`` does) and
runs the model K + 1 times over all frames; the first pass warms up, each of the next K
passes is timed (host batching included). Writes ``OUT.npz`` with ``energy`` (M,) eV,
``forces`` (M, n, 3) eV/Å (frames zero-padded to the largest n), ``seconds`` (K,), the
wall time of each timed pass, and ``parameters`` (the model's parameter count). Part of
``benchmarks/bench_accuracy.py``; imports nothing of physnetjax.
"""

from __future__ import annotations

import argparse

import ase.io
import numpy as np
import torch
from mace import data
from mace.tools import torch_geometric, utils
from timed_passes import save_timed_passes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("frames")
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def one_pass(model, frames, z_table, batch_size: int):
    """Energies (M,) and per-frame forces of ``frames`` in batches of ``batch_size`` (one full pass)."""
    loader = torch_geometric.dataloader.DataLoader(
        dataset=[data.AtomicData.from_config(data.config_from_atoms(atoms), z_table=z_table,
                                             cutoff=float(model.r_max)) for atoms in frames],
        batch_size=batch_size, shuffle=False, drop_last=False)
    energies, forces = [], []
    for batch in loader:
        output = model(batch.to_dict(), training=False)
        energies.append(output["energy"].detach().numpy())
        counts = torch.bincount(batch.batch).tolist()
        forces.extend(np.split(output["forces"].detach().numpy(), np.cumsum(counts)[:-1]))
    return np.concatenate(energies), forces


def main() -> None:
    args = parse_args()
    torch.set_default_dtype(torch.float32)
    model = torch.load(args.model, map_location="cpu", weights_only=False).float()
    frames = ase.io.read(args.frames, index=":")
    z_table = utils.AtomicNumberTable([int(z) for z in model.atomic_numbers])
    save_timed_passes(lambda: one_pass(model, frames, z_table, args.batch_size), [len(a) for a in frames],
                      args.repeats, sum(p.numel() for p in model.parameters()), args.out)


if __name__ == "__main__":
    main()
