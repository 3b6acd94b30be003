"""JAX-native NVE vs ASE-driven NVE (same model, same molecule): steps per second, compile excluded.

Systems: ethanol (9 atoms), three ethanol molecules 10 Å apart (27 atoms, beyond the
5 Å cutoff of each other) and a periodic box of ≥ 1000 atoms (ethanol molecules on a
5.5 Å grid); ``--smoke`` runs ethanol only. Model: the shipped ethanol example (speed
does not depend on the quality of the fit). It was trained on isolated ethanol only:
the MD driver stops runs that it drives into overlapping atoms, as it did within 1000
steps for the A–T base pair (its N never trained) and for ethanol 4.6 Å apart (the
liquid's density), which these systems replaced.

What is timed: JAX: :func:`physnetjax.md.driver.simulate` (float32, velocity Verlet,
0.5 fs, ``lax.scan`` chunks; edge set as the driver picks it: the constant all-pairs
set for ethanol, the in-jit neighbor list for the others), wall time of all chunks,
each compiled ahead of time (the driver's ``steps_per_second``, compile excluded);
ASE: ``VelocityVerlet`` with :class:`PhysNetCalculator` (float32), wall time of
``dyn.run(steps)`` after two warm-up steps. The two are run alternately, three times
each (once with ``--smoke``), so a slow spell of the shared machine hits both; the
table gives the medians, the ratio of the medians and the range of the per-pair
ratios. Writes ``bench_md.json``.

    python benchmarks/bench_md.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import logging
import time

import ase
import ase.io
import jax
import numpy as np
from ase.md.verlet import VelocityVerlet
from common import parse_args, table, publish

from physnetjax.calculator import PhysNetCalculator
from physnetjax.checkpoint import load_checkpoint
from physnetjax.md.driver import simulate
from physnetjax.md.io import ASE_TIME_UNIT_FS, momenta_to_ase
from physnetjax.md.integrators import maxwell_boltzmann_momenta
from physnetjax.pretrained import example_geometry_path, example_model_path

logger = logging.getLogger("bench_md")


def systems(min_periodic_atoms: int) -> dict:
    ethanol = ase.io.read(example_geometry_path())
    centred = ethanol.copy()
    centred.positions -= centred.positions.mean(axis=0)
    three = ase.Atoms()
    for k in range(3):
        molecule = centred.copy()
        molecule.positions += [10.0 * k, 0.0, 0.0]
        three += molecule
    per_side = int(np.ceil((min_periodic_atoms / len(ethanol)) ** (1 / 3)))
    spacing = 5.5
    box = ase.Atoms(cell=np.eye(3) * per_side * spacing, pbc=True)
    for index in np.ndindex(per_side, per_side, per_side):
        molecule = centred.copy()
        molecule.positions += (np.array(index) + 0.5) * spacing
        box += molecule
    return {"ethanol": ethanol, "ethanol_x3": three, "periodic_box": box}


def jax_steps_per_second(model, params, atoms, steps) -> dict:
    report = simulate(model, params, atoms, steps=steps, save_every=10, chunk_frames=steps // 10,
                      dtype="float32", temperature_K=300.0, max_force=1e4)
    return {"steps_per_second": report.steps_per_second, "compile_s": report.compile_seconds, "steps": steps}


def ase_steps_per_second(model, params, atoms, steps) -> dict:
    atoms = atoms.copy()
    atoms.calc = PhysNetCalculator(model, params, dtype="float32")
    p = np.asarray(maxwell_boltzmann_momenta(jax.random.PRNGKey(0), atoms.get_masses(), 300.0))
    atoms.set_momenta(momenta_to_ase(p))
    dyn = VelocityVerlet(atoms, timestep=0.5 / ASE_TIME_UNIT_FS)
    dyn.run(2)
    start = time.perf_counter()
    dyn.run(steps)
    seconds = time.perf_counter() - start
    return {"steps_per_second": steps / seconds, "steps": steps}


STEPS = {  # (JAX steps, ASE steps) for molecules and for the periodic box
    "full": ((10000, 500), (200, 20)),
    "quick": ((1000, 50), (50, 5)),
    "smoke": ((20, 3), None),
}
REPEATS = {"full": 3, "quick": 3, "smoke": 1}


def main() -> None:
    args = parse_args(__doc__)
    logging.basicConfig(level=logging.INFO)
    model, params = load_checkpoint(example_model_path())
    molecule_steps, box_steps = STEPS[args.mode]
    chosen = systems(1000)
    if box_steps is None:
        chosen = {"ethanol": chosen["ethanol"]}
    results = {}
    for name, atoms in chosen.items():
        jax_steps, ase_steps = box_steps if len(atoms) >= 1000 else molecule_steps
        runs = []
        for _ in range(REPEATS[args.mode]):
            runs.append((jax_steps_per_second(model, params, atoms, jax_steps),
                         ase_steps_per_second(model, params, atoms, ase_steps)))
        jax_rates = [j["steps_per_second"] for j, _ in runs]
        ase_rates = [a["steps_per_second"] for _, a in runs]
        pair_ratios = [j / a for j, a in zip(jax_rates, ase_rates)]
        ratio = float(np.median(jax_rates) / np.median(ase_rates))
        results[name] = {"atoms": len(atoms), "periodic": bool(atoms.pbc.all()),
                         "jax": {"steps_per_second": jax_rates, "compile_s": [j["compile_s"] for j, _ in runs],
                                 "steps": jax_steps},
                         "ase": {"steps_per_second": ase_rates, "steps": ase_steps},
                         "speedup": ratio, "pair_ratios": pair_ratios}
        logger.info("%s (%d atoms): JAX %.1f steps/s, ASE %.1f steps/s, ×%.1f (pairs %.1f–%.1f)", name,
                    len(atoms), np.median(jax_rates), np.median(ase_rates), ratio, min(pair_ratios),
                    max(pair_ratios))
    tables = [table("JAX-native MD vs ASE-driven MD (NVE, float32, 0.5 fs)",
                    "steps/s, median of runs alternating JAX and ASE; JAX: all chunks, compiled ahead of "
                    "time; ASE: after 2 warm-up steps; compile excluded; JAX/ASE = ratio of the medians "
                    "(range over the alternating pairs)",
                    ["system", "atoms", "JAX steps/s", "ASE steps/s", "JAX/ASE", "pair ratios", "runs",
                     "JAX steps", "ASE steps"],
                    [[name, r["atoms"], float(np.median(r["jax"]["steps_per_second"])),
                      float(np.median(r["ase"]["steps_per_second"])), r["speedup"],
                      f"{min(r['pair_ratios']):.1f}–{max(r['pair_ratios']):.1f}", len(r["pair_ratios"]),
                      r["jax"]["steps"], r["ase"]["steps"]] for name, r in results.items()])]
    publish("bench_md", args, tables, {"timestep_fs": 0.5, "results": results})


if __name__ == "__main__":
    main()
