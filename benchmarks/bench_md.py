"""JAX-native NVE vs ASE-driven NVE (same model, same molecule): steps per second, compile excluded.

Systems: ethanol (9 atoms), the A–T DNA base pair (30 atoms, shared data when
present, else the single base from tests/data), and a periodic box of ≥ 1000
atoms (ethanol molecules on a grid). Model: the shipped ethanol example
(speed does not depend on the quality of the fit). JAX: :func:`physnetjax.md.driver.simulate`
(float32, ``lax.scan`` chunks, in-jit neighbor list); ASE: ``VelocityVerlet`` with
:class:`PhysNetCalculator` (float32), after one warm-up step. Writes
``benchmarks/results/bench_md.json``.

    python benchmarks/bench_md.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import ase
import ase.io
import jax
import numpy as np
from ase.md.verlet import VelocityVerlet
from common import SHARED_DATA, write_json

from physnetjax.calculator import PhysNetCalculator
from physnetjax.checkpoint import load_checkpoint
from physnetjax.md.driver import simulate
from physnetjax.md.io import ASE_TIME_UNIT_FS, momenta_to_ase
from physnetjax.md.integrators import maxwell_boltzmann_momenta
from physnetjax.pretrained import example_geometry_path, example_model_path

logger = logging.getLogger("bench_md")


def systems(min_periodic_atoms: int) -> dict:
    ethanol = ase.io.read(example_geometry_path())
    basepair_file = SHARED_DATA / "basepairs" / "at_prod.npz"
    if basepair_file.exists():
        data = np.load(basepair_file)
        basepair = ase.Atoms(numbers=data["Z"][0], positions=data["R"][0])
    else:
        data = np.load(Path(__file__).parents[1] / "tests" / "data" / "molecules.npz")
        basepair = ase.Atoms(numbers=data["base_a_Z"], positions=data["base_a_R"])
    per_side = int(np.ceil((min_periodic_atoms / len(ethanol)) ** (1 / 3)))
    spacing = 4.6
    centred = ethanol.copy()
    centred.positions -= centred.positions.mean(axis=0)
    box = ase.Atoms(cell=np.eye(3) * per_side * spacing, pbc=True)
    for index in np.ndindex(per_side, per_side, per_side):
        molecule = centred.copy()
        molecule.positions += (np.array(index) + 0.5) * spacing
        box += molecule
    return {"ethanol": ethanol, "basepair": basepair, "periodic_box": box}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (smoke run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    model, params, _ = load_checkpoint(example_model_path())
    jax_steps = 1000 if args.quick else 10000
    ase_steps = 50 if args.quick else 500
    results = {}
    for name, atoms in systems(1000).items():
        big = len(atoms) >= 1000
        jax_result = jax_steps_per_second(model, params, atoms, jax_steps // 10 if big else jax_steps)
        ase_result = ase_steps_per_second(model, params, atoms, ase_steps // 10 if big else ase_steps)
        ratio = jax_result["steps_per_second"] / ase_result["steps_per_second"]
        results[name] = {"atoms": len(atoms), "periodic": bool(atoms.pbc.all()), "jax": jax_result,
                         "ase": ase_result, "speedup": ratio}
        logger.info("%s (%d atoms): JAX %.1f steps/s, ASE %.1f steps/s, ×%.1f", name, len(atoms),
                    jax_result["steps_per_second"], ase_result["steps_per_second"], ratio)
    path = write_json("bench_md", {"quick": args.quick, "dtype": "float32", "timestep_fs": 0.5,
                                   "results": results})
    logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
