"""Energy+forces throughput of PhysNet on batches of molecules; batched vs one at a time; float32 vs float64.

Model: features=32, max_degree=2, num_iterations=2, n_res=2, cutoff 6 Å, charges and
ZBL (``--smoke``: features=8, max_degree=1). Data: ethanol (9 atoms, GFN2 set) and
the A–T base pair (30 atoms) from ../shared/data (frames reused cyclically).

What is timed (compile excluded: three warm-up calls per shape before timing; median of
repeats with min/max, each repeat blocked until the result is ready):

* throughput: one jitted energy+forces call on a padded batch of B molecules;
* batched vs single: the same B molecules as one batch call, and as B calls on
  one-molecule batches padded to one shape (one repeat = the whole loop, blocked at
  its end);
* float32 vs float64: the batch call with float32 parameters/positions in this
  process (x64 off), and with float64 in a subprocess started with
  ``JAX_ENABLE_X64=1``. Float32 must be timed without x64: under x64 e3x's tensor
  product promotes float32 inputs to float64, which would time a mixed model.

Writes ``bench_model.json`` and ``model_scaling.png`` (time per call vs atoms).

Usage: python benchmarks/bench_model.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np

from common import SHARED_DATA, ms, parse_args, table, time_call, publish
from physnetjax import PhysNet, apply_batch, batch_molecules, init_params
from physnetjax.neighbors import molecule_pairs

SIZES = {"full": [1, 8, 32, 128], "quick": [1, 32], "smoke": [2]}
REPEATS = {"full": 7, "quick": 3, "smoke": 2}
SYSTEMS = {"full": ("ethanol", "at_prod"), "quick": ("ethanol", "at_prod"), "smoke": ("ethanol",)}


def build_model(mode: str) -> PhysNet:
    if mode == "smoke":
        return PhysNet(features=8, max_degree=1, num_iterations=1, n_res=1, cutoff=6.0, charges=True, zbl=True)
    return PhysNet(features=32, max_degree=2, num_iterations=2, n_res=2, cutoff=6.0, charges=True, zbl=True)


def load_frames(name: str, count: int):
    """``count`` (Z, R) frames of the ethanol set or a base-pair set (cyclic over the file)."""
    path = SHARED_DATA / ("ethanol_gfn2_500K.npz" if name == "ethanol" else f"basepairs/{name}.npz")
    data = np.load(path)
    zs, rs = [], []
    for k in range(count):
        row = k % len(data["N"])
        n = int(data["N"][row])
        zs.append(data["Z"][row][:n])
        rs.append(data["R"][row][:n])
    return zs, rs


def batch_times(mode: str, dtype: str, sizes, model, params, apply) -> list:
    """Time the jitted batch call for every system and batch size; rows of dicts."""
    params = jax.tree_util.tree_map(lambda p: p.astype(dtype), params)
    rows = []
    for system in SYSTEMS[mode]:
        for batch_size in sizes:
            zs, rs = load_frames(system, batch_size)
            batch = jax.device_put(batch_molecules(zs, rs, model.cutoff, pair_cutoff=None, dtype=dtype))
            timing = time_call(lambda: jax.block_until_ready(apply(params, batch)), repeats=REPEATS[mode])
            atoms = sum(len(z) for z in zs)
            rows.append({"system": system, "batch_size": batch_size, "atoms": atoms,
                         "edges": int(np.sum(batch.edge_mask)), **timing,
                         "molecules_per_s": batch_size / timing["median_s"],
                         "atoms_per_s": atoms / timing["median_s"]})
    return rows


def single_times(mode: str, batch_size: int, model, params, apply) -> list:
    """B one-molecule calls vs one B-molecule call, float32."""
    rows = []
    for system in SYSTEMS[mode]:
        zs, rs = load_frames(system, batch_size)
        edges = max(len(molecule_pairs(r, model.cutoff)[0]) for r in rs)
        singles = [jax.device_put(batch_molecules([z], [r], model.cutoff, pair_cutoff=None, num_edges=edges))
                   for z, r in zip(zs, rs)]
        batch = jax.device_put(batch_molecules(zs, rs, model.cutoff, pair_cutoff=None))

        def loop():
            jax.block_until_ready([apply(params, single) for single in singles])

        batched = time_call(lambda: jax.block_until_ready(apply(params, batch)), repeats=REPEATS[mode])
        one_by_one = time_call(loop, repeats=REPEATS[mode])
        rows.append({"system": system, "molecules": batch_size, "batched": batched, "one_at_a_time": one_by_one,
                     "speedup": one_by_one["median_s"] / batched["median_s"]})
    return rows


def float64_in_subprocess(mode: str, sizes) -> list:
    """Run :func:`batch_times` in float64 in a fresh process with x64 enabled."""
    env = dict(os.environ, JAX_ENABLE_X64="1")
    flags = {"full": [], "quick": ["--quick"], "smoke": ["--smoke"]}[mode]
    command = [sys.executable, __file__, *flags, "--float64-worker", ",".join(map(str, sizes))]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for system in sorted({r["system"] for r in rows}):
        sel = [r for r in rows if r["system"] == system]
        ax.errorbar([r["atoms"] for r in sel], [r["median_s"] * 1e3 for r in sel],
                    yerr=[[(r["median_s"] - r["min_s"]) * 1e3 for r in sel],
                          [(r["max_s"] - r["median_s"]) * 1e3 for r in sel]], marker="o", label=system)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms in batch")
    ax.set_ylabel("energy+forces per call (ms)")
    ax.set_title("Batched molecules, float32 (median, min–max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    args = parse_args(__doc__, lambda p: p.add_argument(
        "--float64-worker", help="internal: time these comma-separated batch sizes in float64, print JSON"))
    sizes = SIZES[args.mode]
    model = build_model(args.mode)
    params = init_params(model, 0)
    apply = jax.jit(lambda p, b: apply_batch(model, p, b))
    if args.float64_worker:
        worker_sizes = [int(s) for s in args.float64_worker.split(",")]
        print(json.dumps(batch_times(args.mode, "float64", worker_sizes, model, params, apply)))
        return
    rows = batch_times(args.mode, "float32", sizes, model, params, apply)
    f64 = float64_in_subprocess(args.mode, sizes)
    singles = single_times(args.mode, sizes[-1], model, params, apply)
    step = "jitted energy+forces of one padded batch; compile excluded; median (min–max) of repeats"
    tables = [
        table("Model throughput (float32)", step,
              ["system", "B", "atoms", "edges", "ms/call (min–max)", "molecules/s", "atoms/s"],
              [[r["system"], r["batch_size"], r["atoms"], r["edges"], ms(r), r["molecules_per_s"],
                r["atoms_per_s"]] for r in rows]),
        table("float32 vs float64", step + "; float64 in a separate x64 process",
              ["system", "B", "float32 ms", "float64 ms", "f64/f32"],
              [[a["system"], a["batch_size"], ms(a), ms(b), b["median_s"] / a["median_s"]]
               for a, b in zip(rows, f64)]),
        table("Batched vs one molecule at a time (float32)",
              "B molecules as one batch call vs B single-molecule calls (loop blocked at its end); "
              "compile excluded; median (min–max)",
              ["system", "molecules", "batched ms", "one-at-a-time ms", "speedup"],
              [[r["system"], r["molecules"], ms(r["batched"]), ms(r["one_at_a_time"]), r["speedup"]]
               for r in singles]),
    ]
    publish("bench_model", args, tables,
            {"model": model.config(), "float32": rows, "float64": f64, "batched_vs_single": singles},
            plots={"model_scaling.png": lambda path: plot(rows, path)})


if __name__ == "__main__":
    main()
