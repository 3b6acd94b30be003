"""Interleaved A/B of the D3(BJ) cost on the dense periodic silicon box: two source trees, one run.

Each tree (``--before``, ``--after``: folders holding a ``physnetjax`` package, e.g. an
exported checkout of main and this one) runs in its own worker process that builds the
bench_dispersion model (features 32, max_degree 2, 2 iterations, cutoff 6 Å, ZBL,
float32) on the rattled 5×5×5 diamond silicon box (1000 atoms; ``--system ethanol``:
a batch of 32 rattled ethanol molecules instead) with and without
``dispersion="d3bj"`` (PBE0, ``--cutoff`` Å), and compiles both energy+forces calls.
The parent then asks the workers for one call at a time, round robin over
(before, without), (after, without), (before, with), (after, with), so a change of
load on a shared machine hits all four alike. Each call reports wall and process CPU
time; the D3 overhead is median(with) / median(without) − 1 per tree. The workers also
report the energy and forces of the model with D3 so the two trees can be compared
(max |ΔE|, |ΔF|).

Writes ``ab_dispersion.json`` (``ab_dispersion_ethanol.json`` for ``--system ethanol``).

Usage: python benchmarks/ab_dispersion.py --before DIR --after DIR [--cutoff 15] [--rounds 9] [--system si]
       [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

WORKER = r"""
import sys, time, json
import numpy as np, jax
from ase.build import bulk, molecule
from physnetjax import PhysNet, apply_batch, batch_molecules, batch_periodic, init_params
from physnetjax.neighbors import model_pair_cutoff
cutoff, system = float(sys.argv[1]), sys.argv[2]
atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((5, 5, 5))
atoms.rattle(0.05, seed=0)
ethanol = []
for k in range(32):
    copy = molecule("CH3CH2OH")
    copy.rattle(0.05, seed=k)
    ethanol.append(copy)
plain = PhysNet(features=32, max_degree=2, num_iterations=2, n_res=2, cutoff=6.0, zbl=True)
models = {"without": plain, "with": plain.clone(dispersion="d3bj", dispersion_cutoff=cutoff)}
params = init_params(plain, 0)
calls = {}
for name, model in models.items():
    if system == "ethanol":
        batch = batch_molecules([m.numbers for m in ethanol], [m.positions for m in ethanol], model.cutoff,
                                pair_cutoff=model_pair_cutoff(model))
    else:
        batch = batch_periodic([atoms.numbers], [atoms.positions], [np.asarray(atoms.cell)], model.cutoff,
                               pair_cutoff=model_pair_cutoff(model))
    batch = jax.device_put(batch)
    apply = jax.jit(lambda p, b, m=model: apply_batch(m, p, b))
    calls[name] = lambda apply=apply, batch=batch: jax.block_until_ready(apply(params, batch))
    for _ in range(3):
        out = calls[name]()
out = calls["with"]()
print(json.dumps({"energy": float(np.sum(out["energy"])), "forces": np.asarray(out["forces"]).tolist(),
                  "pairs": int(np.sum(batch.pair_mask))}), flush=True)
for line in sys.stdin:
    name = line.strip()
    start, start_cpu = time.perf_counter(), time.process_time()
    calls[name]()
    print(json.dumps([time.perf_counter() - start, time.process_time() - start_cpu]), flush=True)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=pathlib.Path, required=True)
    parser.add_argument("--after", type=pathlib.Path, required=True)
    parser.add_argument("--cutoff", type=float, default=15.0, help="dispersion cutoff in Å")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--system", choices=("si", "ethanol"), default="si",
                        help="the 1,000-atom Si box or a batch of 32 ethanol molecules")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent / "results")
    args = parser.parse_args()

    workers, reference = {}, {}
    for tag in ("before", "after"):
        tree = getattr(args, tag).resolve()
        env = {**os.environ, "PYTHONPATH": str(tree)}
        workers[tag] = subprocess.Popen([sys.executable, "-c", WORKER, str(args.cutoff), args.system], cwd=tree, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        reference[tag] = json.loads(workers[tag].stdout.readline())
    times = {(tag, name): [] for tag in workers for name in ("without", "with")}
    load = []
    for _ in range(args.rounds):
        load.append(os.getloadavg()[0])
        for name in ("without", "with"):
            for tag, worker in workers.items():
                worker.stdin.write(name + "\n")
                worker.stdin.flush()
                times[tag, name].append(json.loads(worker.stdout.readline()))
    for worker in workers.values():
        worker.stdin.close()
        worker.wait()

    result = {"system": args.system, "cutoff": args.cutoff, "rounds": args.rounds, "pairs": reference["after"]["pairs"],
              "load_average_1min": [min(load), max(load)],
              "max_abs_energy_difference_eV": abs(reference["before"]["energy"] - reference["after"]["energy"]),
              "max_abs_force_difference_eV_per_A": float(np.max(np.abs(
                  np.asarray(reference["before"]["forces"]) - np.asarray(reference["after"]["forces"]))))}
    for tag in workers:
        wall = {name: float(np.median([t[0] for t in times[tag, name]])) for name in ("without", "with")}
        cpu = {name: float(np.median([t[1] for t in times[tag, name]])) for name in ("without", "with")}
        result[tag] = {"wall_ms": {k: 1e3 * v for k, v in wall.items()}, "cpu_ms": {k: 1e3 * v for k, v in cpu.items()},
                       "overhead_wall": wall["with"] / wall["without"] - 1.0,
                       "overhead_cpu": cpu["with"] / cpu["without"] - 1.0}
        print(f"{tag:6s}: model {wall['without'] * 1e3:.0f} ms, model + D3 {wall['with'] * 1e3:.0f} ms wall "
              f"(overhead {100 * result[tag]['overhead_wall']:.0f} %); CPU time {cpu['without'] * 1e3:.0f} → "
              f"{cpu['with'] * 1e3:.0f} ms (overhead {100 * result[tag]['overhead_cpu']:.0f} %)")
    print(f"D3 cutoff {args.cutoff:g} Å, {result['pairs']} pairs, load average {min(load):.1f}–{max(load):.1f}; "
          f"|ΔE| = {result['max_abs_energy_difference_eV']:.2e} eV, "
          f"max |ΔF| = {result['max_abs_force_difference_eV_per_A']:.2e} eV/Å (float32)")
    args.out.mkdir(parents=True, exist_ok=True)
    name = "ab_dispersion.json" if args.system == "si" else f"ab_dispersion_{args.system}.json"
    (args.out / name).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
