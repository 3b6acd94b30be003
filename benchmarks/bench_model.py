"""Energy+forces throughput of PhysNet on batches of real molecules (compile time excluded).

Model: features=32, max_degree=2, num_iterations=2, n_res=2, cutoff 6 Å, float32.
Data: ethanol (9 atoms, GFN2 set) and Watson–Crick base pairs (29–30 atoms) from
../shared/data. For each batch size the jitted apply is compiled once, then timed
(median of repeats, each call blocked until the result is ready).

Usage: python benchmarks/bench_model.py [--quick]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from common import SHARED_DATA, machine_info, time_call, write_json
from physnetjax import PhysNet, apply_batch, batch_molecules, init_params


def load_frames(name: str, count: int):
    if name == "ethanol":
        data = np.load(SHARED_DATA / "ethanol_gfn2_500K.npz")
    else:
        data = np.load(SHARED_DATA / "basepairs" / f"{name}.npz")
    zs, rs = [], []
    for k in range(count):
        n = int(data["N"][k % len(data["N"])])
        zs.append(data["Z"][k % len(data["N"])][:n])
        rs.append(data["R"][k % len(data["N"])][:n])
    return zs, rs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batch sizes and repeats")
    args = parser.parse_args()
    model = PhysNet(features=32, max_degree=2, num_iterations=2, n_res=2, cutoff=6.0,
                    charges=True, zbl=True)
    params = init_params(model, 0)
    apply = jax.jit(lambda p, b: apply_batch(model, p, b))
    sizes = [1, 16] if args.quick else [1, 8, 32, 128]
    rows = []
    for system in ("ethanol", "at_prod"):
        for batch_size in sizes:
            zs, rs = load_frames(system, batch_size)
            batch = jax.device_put(batch_molecules(zs, rs, model.cutoff, pair_cutoff=None))
            timing = time_call(lambda: jax.block_until_ready(apply(params, batch)),
                               repeats=3 if args.quick else 7)
            atoms = sum(len(z) for z in zs)
            row = {"system": system, "batch_size": batch_size, "atoms": atoms,
                   "edges": int(np.sum(batch.edge_mask)), **timing,
                   "molecules_per_s": batch_size / timing["median_s"],
                   "atoms_per_s": atoms / timing["median_s"]}
            rows.append(row)
            print(f"{system:8s} B={batch_size:4d} atoms={atoms:5d}  {timing['median_s']*1e3:9.2f} ms "
                  f"(min {timing['min_s']*1e3:.2f}, max {timing['max_s']*1e3:.2f})  "
                  f"{row['molecules_per_s']:10.1f} mol/s  {row['atoms_per_s']:11.1f} atoms/s")
    path = write_json("bench_model", {"model": model.config(), "dtype": "float32",
                                      "timed": "jitted energy+forces, compile excluded, median of repeats",
                                      "rows": rows})
    print(f"machine: {machine_info()['cpu']} ({machine_info()['cores']} cores); wrote {path}")


if __name__ == "__main__":
    main()
