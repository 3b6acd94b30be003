"""Neighbor-list builders side by side, and energy+forces time vs size of one periodic system.

Periodic water-like boxes (randomly oriented H2O on a jittered cubic grid, one molecule
per 3.1 Å site, 0.1 atoms/Å³), cutoff 5 Å, skin 0. Builders, timed on the same box:

* ``jit cell``: :func:`physnetjax.neighbors.neighbor_list` cell list, one jitted
  rebuild (compiled beforehand, blocked until ready);
* ``host vesin``: :func:`physnetjax.neighbors.periodic_pairs` (float64, sorted);
* ``naive O(N²)``: NumPy all pairs under the minimum image (blocked rows), where the
  box is wider than 2 × cutoff and N is small enough; its pair count is checked
  against the cell list.

Each time is the median (min–max) of repeats after three warm-up calls; the scaling
exponent k of t ∝ N^k is a least-squares fit in log–log. Then the energy+forces call
of a small float32 PhysNet (features 32 (``--smoke``: 8), max_degree 1, 2 iterations, ZBL, no charges,
``edge_chunk_size`` 65536 so that memory stays O(N)) on one periodic box of 100 … ~10⁵ atoms
(neighbor list built outside the timed call; compile excluded; the temporary memory of
the compiled call from XLA's buffer assignment is recorded beside the time). Writes
``bench_neighbors.json`` and ``periodic_scaling.png``.

Usage: python benchmarks/bench_neighbors.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import itertools

import jax
import numpy as np

from common import ms, parse_args, table, time_call, publish
from physnetjax import PhysNet, init_params
from physnetjax.neighbors import apply_batch, batch_from_neighbors, neighbor_list, periodic_pairs

SPACING = 3.1
CUTOFF = 5.0
BUILDER_SIZES = {"full": [1000, 3000, 10000, 30000, 100000], "quick": [1000, 3000, 10000], "smoke": [400]}
MODEL_SIZES = {"full": [100, 300, 1000, 3000, 10000, 30000, 110000], "quick": [100, 300, 1000, 3000],
               "smoke": [100]}
EDGE_CHUNK = 65536
REPEATS = {"full": 3, "quick": 2, "smoke": 1}
NAIVE_LIMIT = 10000


def water_box(num_atoms: int, seed: int = 0):
    """(Z, R, cell) of ≈ num_atoms atoms of randomly oriented waters on a jittered cubic grid."""
    repeats = max(2, round((num_atoms / 3) ** (1 / 3)))
    rng = np.random.default_rng(seed)
    angle = np.deg2rad(104.5)
    local = np.array([[0, 0, 0], [0.96, 0, 0], [0.96 * np.cos(angle), 0.96 * np.sin(angle), 0]])
    sites = np.array(list(itertools.product(range(repeats), repeat=3)), dtype=np.float64)
    rotations = np.linalg.qr(rng.normal(size=(len(sites), 3, 3)))[0]
    jitter = rng.uniform(-0.2, 0.2, sites.shape)
    molecules = np.einsum("aj,mij->mai", local, rotations) + (SPACING * sites + jitter)[:, None]
    z = np.tile([8, 1, 1], len(sites))
    return z, molecules.reshape(-1, 3), np.eye(3) * SPACING * repeats


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


def bench_builders(sizes, repeats):
    rows = []
    for target in sizes:
        z, r, cell = water_box(target)
        allocate, update = neighbor_list(CUTOFF, skin=0.0, method="cell", cell=cell)
        positions = jax.numpy.asarray(r, dtype=jax.numpy.float32)
        nbrs = allocate(positions)
        stale = nbrs.replace(reference_positions=nbrs.reference_positions + 1e3)
        row = {"atoms": len(z), "pairs": int(nbrs.num_pairs), "capacity": nbrs.capacity,
               "jit_cell": time_call(lambda: jax.block_until_ready(update(positions, stale)), repeats),
               "host_vesin": time_call(lambda: periodic_pairs(r, cell, CUTOFF), repeats),
               "naive": None}
        if len(z) <= NAIVE_LIMIT and cell[0, 0] > 2 * CUTOFF:
            count = naive_pairs(r, cell, CUTOFF)
            if count != row["pairs"]:
                raise RuntimeError(f"naive pair count {count} differs from the cell list's {row['pairs']}")
            row["naive"] = time_call(lambda: naive_pairs(r, cell, CUTOFF), 1, warmup=0)
        rows.append(row)
        print(f"builders: {len(z)} atoms done", flush=True)
    return rows


def scaling_exponent(rows, key):
    points = [(r["atoms"], r[key]["median_s"]) for r in rows if r[key] is not None]
    if len(points) < 2:
        return None
    n, t = np.log(np.array(points)).T
    return float(np.polyfit(n, t, 1)[0])


def bench_periodic_model(sizes, repeats, features=32):
    """Energy+forces time of one periodic water box per size (float32)."""
    model = PhysNet(features=features, max_degree=1, num_iterations=2, num_basis_functions=16, cutoff=CUTOFF,
                    max_atomic_number=8, charges=False, zbl=True, n_res=1, edge_chunk_size=EDGE_CHUNK)
    params = init_params(model, 0)
    rows = []
    for target in sizes:
        z, r, cell = water_box(target)
        positions = np.asarray(r, np.float32)
        nbrs = neighbor_list(CUTOFF, skin=0.0, method="cell", cell=cell)[0](positions)
        batch = batch_from_neighbors(z, positions, nbrs, cell=np.asarray(cell, np.float32))
        apply = jax.jit(lambda p, b: apply_batch(model, p, b)).lower(params, batch).compile()
        temporary = apply.memory_analysis().temp_size_in_bytes
        timing = time_call(lambda: jax.block_until_ready(apply(params, batch)), repeats)
        rows.append({"atoms": len(z), "edges": int(nbrs.num_pairs), **timing,
                     "atoms_per_s": len(z) / timing["median_s"],
                     "us_per_atom": timing["median_s"] / len(z) * 1e6, "temp_bytes": temporary})
        print(f"periodic model: {len(z)} atoms done", flush=True)
    return model, rows


def plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    atoms = np.array([r["atoms"] for r in rows])
    median = np.array([r["median_s"] for r in rows]) * 1e3
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.errorbar(atoms, median, yerr=[median - np.array([r["min_s"] for r in rows]) * 1e3,
                                     np.array([r["max_s"] for r in rows]) * 1e3 - median], marker="o",
                label="energy+forces")
    ax.plot(atoms, median[-1] * atoms / atoms[-1], "k:", label="∝ N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms in periodic water box")
    ax.set_ylabel("ms per call")
    ax.set_title("One periodic system, float32 (median, min–max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    args = parse_args(__doc__)
    repeats = REPEATS[args.mode]
    builders = bench_builders(BUILDER_SIZES[args.mode], repeats)
    keys = ("jit_cell", "host_vesin", "naive")
    exponents = {key: scaling_exponent(builders, key) for key in keys}
    model, periodic = bench_periodic_model(MODEL_SIZES[args.mode], repeats, 8 if args.mode == "smoke" else 32)

    def ratio(row, key):
        return None if row[key] is None else row[key]["median_s"] / row["jit_cell"]["median_s"]

    tables = [
        table(f"Neighbor-list builders, periodic water box, cutoff {CUTOFF} Å",
              "one full rebuild; jit cell list compiled beforehand; median (min–max) of repeats "
              "(naive: one call); ratios = builder time / jit-cell time",
              ["atoms", "pairs", "jit cell ms", "vesin ms", "naive ms", "vesin/jit", "naive/jit"],
              [[r["atoms"], r["pairs"], ms(r["jit_cell"]), ms(r["host_vesin"]),
                None if r["naive"] is None else ms(r["naive"]), ratio(r, "host_vesin"), ratio(r, "naive")]
               for r in builders]),
        table("Builder scaling exponents (t ∝ N^k)", "least-squares fit of log median time vs log N",
              ["builder", "k"], [[key, exponents[key]] for key in keys]),
        table("Energy+forces of one periodic water box (float32)",
              "jitted energy+forces, neighbor list prebuilt; compile excluded; median (min–max); "
              f"model features {model.features}, max_degree 1, 2 iterations, ZBL, edge_chunk_size "
              f"{model.edge_chunk_size}; temp MB = XLA temporary buffers of the compiled call",
              ["atoms", "edges", "ms/call (min–max)", "atoms/s", "µs/atom", "temp MB"],
              [[r["atoms"], r["edges"], ms(r), r["atoms_per_s"], r["us_per_atom"], r["temp_bytes"] / 1e6]
               for r in periodic]),
    ]
    publish("bench_neighbors", args, tables,
            {"cutoff": CUTOFF, "builders": builders, "scaling_exponents": exponents,
             "periodic_model": periodic, "model": model.config()},
            plots={"periodic_scaling.png": lambda path: plot(periodic, path)})


if __name__ == "__main__":
    main()
