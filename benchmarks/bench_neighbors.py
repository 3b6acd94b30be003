"""Neighbor-list build time vs system size, and model energy+forces throughput.

Periodic water-like boxes (0.1 atoms/Å³, one H2O per 3.1 Å site) of N = 1k … 100k
atoms, cutoff 5 Å, skin 0:

* ``jit cell``: :func:`physnetjax.neighbors.neighbor_list` cell list, one jitted
  rebuild (compiled beforehand, timed with ``block_until_ready``);
* ``host vesin``: :func:`physnetjax.neighbors.periodic_pairs` (float64, sorted);
* ``naive O(N²)``: NumPy all pairs under the minimum image, where it fits in memory.

Prints a table, fits the scaling exponent t ∝ N^k of each builder and writes JSON to
``benchmarks/results/bench_neighbors.json``. Then times energy+forces of a small
PhysNet on a 10k-atom periodic box (atoms/s).

Usage: ``python benchmarks/bench_neighbors.py [--quick]`` (quick: N ≤ 10k, fewer repeats).
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import platform
import time

import jax
import numpy as np

from physnetjax import PhysNet, init_params
from physnetjax.neighbors import apply_batch, batch_from_neighbors, neighbor_list, periodic_pairs

SPACING = 3.1
CUTOFF = 5.0


def water_box(num_atoms: int, seed: int = 0):
    """(Z, R, cell) of ≈ num_atoms atoms of randomly oriented waters on a jittered cubic grid."""
    repeats = max(2, round((num_atoms / 3) ** (1 / 3)))
    rng = np.random.default_rng(seed)
    angle = np.deg2rad(104.5)
    local = np.array([[0, 0, 0], [0.96, 0, 0], [0.96 * np.cos(angle), 0.96 * np.sin(angle), 0]])
    sites = np.array(list(itertools.product(range(repeats), repeat=3)), dtype=np.float64)
    rotations = np.linalg.qr(rng.normal(size=(len(sites), 3, 3)))[0]
    molecules = np.einsum("aj,mij->mai", local, rotations) + (SPACING * sites + rng.uniform(-0.2, 0.2, sites.shape))[:, None]
    z = np.tile([8, 1, 1], len(sites))
    return z, molecules.reshape(-1, 3), np.eye(3) * SPACING * repeats


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def naive_pairs(positions, cell, cutoff):
    """All-pairs minimum-image count (valid for cells wider than 2 × cutoff), blocked rows."""
    inverse = np.linalg.inv(cell)
    count = 0
    for start in range(0, len(positions), 2048):
        delta = positions[None, :, :] - positions[start:start + 2048, None, :]
        frac = delta @ inverse
        delta = (frac - np.rint(frac)) @ cell
        count += int(np.sum(np.sum(delta * delta, axis=-1) < cutoff * cutoff)) - min(2048, len(positions) - start)
    return count


def bench_builders(sizes, repeats, naive_limit):
    rows = []
    for target in sizes:
        z, r, cell = water_box(target)
        n = len(z)
        allocate, update = neighbor_list(CUTOFF, skin=0.0, method="cell", cell=cell)
        positions = jax.numpy.asarray(r, dtype=jax.numpy.float32)
        nbrs = allocate(positions)
        stale = nbrs.replace(reference_positions=nbrs.reference_positions + 1e3)  # forces a rebuild

        def jit_build():
            jax.block_until_ready(update(positions, stale))

        jit_build()
        row = {"atoms": n, "pairs": int(nbrs.num_pairs), "capacity": nbrs.capacity,
               "jit_cell_s": best_time(jit_build, repeats),
               "host_vesin_s": best_time(lambda: periodic_pairs(r, cell, CUTOFF), repeats),
               "naive_s": None}
        if n <= naive_limit:
            count = naive_pairs(r, cell, CUTOFF)
            assert count == row["pairs"], (count, row["pairs"])
            row["naive_s"] = best_time(lambda: naive_pairs(r, cell, CUTOFF), 1)
        rows.append(row)
        naive = "-" if row["naive_s"] is None else f"{row['naive_s'] * 1e3:.1f}"
        print(f"{n:>8d} {row['pairs']:>10d} {row['jit_cell_s'] * 1e3:>12.2f} {row['host_vesin_s'] * 1e3:>12.2f} "
              f"{naive:>12}", flush=True)
    return rows


def scaling_exponent(rows, key):
    points = [(r["atoms"], r[key]) for r in rows if r[key] is not None]
    if len(points) < 2:
        return None
    n, t = np.log(np.array(points)).T
    return float(np.polyfit(n, t, 1)[0])


def bench_model(num_atoms, repeats):
    """Energy+forces throughput (atoms/s) of a small float32 PhysNet on a periodic water box."""
    model = PhysNet(features=32, max_degree=1, num_iterations=2, num_basis_functions=16, cutoff=CUTOFF,
                    max_atomic_number=8, charges=False, zbl=True, n_res=1)
    params = init_params(model, 0)
    z, r, cell = water_box(num_atoms)
    nbrs = neighbor_list(CUTOFF, skin=0.0, method="cell", cell=cell)[0](np.asarray(r, np.float32))
    batch = batch_from_neighbors(z, np.asarray(r, np.float32), nbrs, cell=np.asarray(cell, np.float32))
    apply = jax.jit(lambda p, b: apply_batch(model, p, b))
    jax.block_until_ready(apply(params, batch))
    seconds = best_time(lambda: jax.block_until_ready(apply(params, batch)), repeats)
    return {"atoms": len(z), "edges": int(nbrs.num_pairs), "seconds": seconds, "atoms_per_s": len(z) / seconds,
            "model": "features=32 max_degree=1 num_iterations=2 n_res=1 zbl float32"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N <= 10k atoms and fewer repeats")
    args = parser.parse_args()
    sizes = [1000, 3000, 10000] if args.quick else [1000, 3000, 10000, 30000, 100000]
    repeats = 2 if args.quick else 3
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), cutoff {CUTOFF} Å, water box")
    print(f"{'atoms':>8} {'pairs':>10} {'jit cell ms':>12} {'vesin ms':>12} {'naive ms':>12}")
    rows = bench_builders(sizes, repeats, naive_limit=10000)
    exponents = {key: scaling_exponent(rows, key) for key in ("jit_cell_s", "host_vesin_s", "naive_s")}
    per_atom = {key: [r[key] / r["atoms"] * 1e6 for r in rows if r[key] is not None] for key in exponents}
    for key, k in exponents.items():
        if k is not None:
            spread = max(per_atom[key]) / min(per_atom[key])
            print(f"{key:>14}: t ∝ N^{k:.2f}; µs/atom {min(per_atom[key]):.3f} … {max(per_atom[key]):.3f} "
                  f"(max/min {spread:.2f})")
    model = bench_model(10000, repeats)
    print(f"model E+F on {model['atoms']} atoms ({model['edges']} edges): {model['seconds'] * 1e3:.1f} ms, "
          f"{model['atoms_per_s']:.3g} atoms/s")
    out = pathlib.Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    record = {"quick": args.quick, "device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
              "platform": platform.platform(), "cutoff": CUTOFF, "builders": rows,
              "scaling_exponents": exponents, "us_per_atom": per_atom, "model": model}
    (out / "bench_neighbors.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'bench_neighbors.json'}")


if __name__ == "__main__":
    main()
