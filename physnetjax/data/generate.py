"""Label a molecule's thermal configurations with GFN2-xTB: ``python -m physnetjax.data.generate``.

Samples configurations by Langevin molecular dynamics driven by the same
GFN2-xTB calculator (``tblite``, optional extra ``physnetjax[xtb]``) and writes a
PhysNet-style ``.npz``:

* ``R`` (M, n, 3) float32 Å, ``F`` (M, n, 3) float32 eV/Å, ``D`` (M, 3) float32 e·Å
  (about the coordinate origin), ``Qa`` (M, n) float32 Mulliken charges in e;
* ``E`` (M,) float64 eV — absolute energies are ~10² eV, where a float32 ulp is
  ~3e-5 eV, so they are kept in float64 and shifted before training;
* ``Z`` (M, n) int8, ``N`` (M,) int16, ``Q`` (M,) float32 total charge in e;
* metadata scalars ``method``, ``temperature_K``, ``timestep_fs``, ``friction_per_fs``,
  ``stride``, ``equilibration_steps``, ``seed``, ``source``, ``tblite_version``.

The bundled ``physnetjax/data/ethanol_gfn2.npz`` was made with::

    python -m physnetjax.data.generate --frames 2000 --out physnetjax/data/ethanol_gfn2.npz

Frames are ``stride`` MD steps apart (default 20 × 0.5 fs = 10 fs) after
``equilibration_steps`` discarded steps, so successive frames are only weakly
correlated.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
import time
from pathlib import Path

import numpy as np

from physnetjax.cli_errors import cli_main
from physnetjax.cli_help import HelpFormatter, describe
from physnetjax.validation import check_output_path

logger = logging.getLogger(__name__)


def _structure(spec: str):
    """An ``ase.Atoms`` from a file path or an ``ase.build.molecule`` name (e.g. CH3CH2OH)."""
    import ase.build
    import ase.io

    if Path(spec).exists():
        return ase.io.read(spec)
    try:
        return ase.build.molecule(spec)
    except KeyError:
        raise ValueError(f"{spec!r} is neither an existing structure file nor an ase.build.molecule name") from None


def generate(
    molecule: str = "CH3CH2OH",
    frames: int = 1000,
    stride: int = 20,
    temperature: float = 500.0,
    timestep: float = 0.5,
    friction: float = 0.01,
    equilibration_steps: int = 2000,
    method: str = "GFN2-xTB",
    charge: float = 0.0,
    seed: int = 0,
) -> dict:
    """Run Langevin MD with a tblite calculator and collect labelled frames.

    Args:
      molecule: structure file or ``ase.build.molecule`` name.
      frames: number of frames M to keep.
      stride: MD steps between kept frames.
      temperature: Langevin bath temperature in K.
      timestep: MD timestep in fs.
      friction: Langevin friction in 1/fs.
      equilibration_steps: steps run and discarded before the first frame.
      method: tblite method name (GFN2-xTB, GFN1-xTB, IPEA1-xTB).
      charge: total charge in e.
      seed: seed of the Maxwell–Boltzmann start velocities and the Langevin noise.

    Returns:
      dict of arrays in the layout of the module docstring.
    """
    import ase.constraints
    import ase.md.langevin
    import ase.md.velocitydistribution
    import ase.units

    try:
        from tblite.ase import TBLite
    except ImportError as error:
        raise ValueError("labelling needs tblite: pip install 'physnetjax[xtb]'") from error

    atoms = _structure(molecule)
    atoms.calc = TBLite(method=method, charge=charge, verbosity=0)
    rng = np.random.default_rng(seed)
    ase.md.velocitydistribution.thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    ase.md.velocitydistribution.Stationary(atoms)
    ase.md.velocitydistribution.ZeroRotation(atoms)
    atoms.set_constraint(ase.constraints.FixCom())
    dyn = ase.md.langevin.Langevin(
        atoms,
        timestep=timestep * ase.units.fs,
        temperature_K=temperature,
        friction=friction / ase.units.fs,
        fixcm=False,
        rng=rng,
    )
    dyn.run(equilibration_steps)
    n = len(atoms)
    out = {
        "R": np.zeros((frames, n, 3), np.float32),
        "F": np.zeros((frames, n, 3), np.float32),
        "D": np.zeros((frames, 3), np.float32),
        "Qa": np.zeros((frames, n), np.float32),
        "E": np.zeros(frames, np.float64),
    }
    start = time.perf_counter()
    for k in range(frames):
        dyn.run(stride)
        out["R"][k] = atoms.get_positions()
        out["E"][k] = atoms.get_potential_energy()
        # The raw GFN2 forces: with constraints applied, FixCom would return f − m λ
        # (λ = Σ m f / Σ m²), which carries a spurious net force Σ f ≠ 0.
        out["F"][k] = atoms.get_forces(apply_constraint=False)
        out["D"][k] = atoms.get_dipole_moment()
        out["Qa"][k] = atoms.get_charges()
        if (k + 1) % 100 == 0:
            logger.info("%d/%d frames, %.1f s", k + 1, frames, time.perf_counter() - start)
    out["Z"] = np.tile(atoms.get_atomic_numbers().astype(np.int8), (frames, 1))
    out["N"] = np.full(frames, n, np.int16)
    out["Q"] = np.full(frames, charge, np.float32)
    out.update(
        method=np.array(method),
        temperature_K=np.array(temperature),
        timestep_fs=np.array(timestep),
        friction_per_fs=np.array(friction),
        stride=np.array(stride),
        equilibration_steps=np.array(equilibration_steps),
        seed=np.array(seed),
        source=np.array(f"physnetjax.data.generate: Langevin MD of {molecule} with tblite {method}"),
        tblite_version=np.array(importlib.metadata.version("tblite")),
    )
    return out


@cli_main("python -m physnetjax.data.generate")
def main(argv=None) -> int:
    """Command line; exit status as in :mod:`physnetjax.cli_errors` (3: ``--out`` not writable, checked first)."""
    parser = argparse.ArgumentParser(prog="python -m physnetjax.data.generate", formatter_class=HelpFormatter,
                                     description=describe(__doc__).split(":")[0] + " (needs the xtb extra: tblite).")
    parser.add_argument("--molecule", default="CH3CH2OH", help="structure file or ase.build.molecule name")
    parser.add_argument("--frames", type=int, default=1000, help="labelled frames to write")
    parser.add_argument("--stride", type=int, default=20, help="MD steps between frames")
    parser.add_argument("--temperature", type=float, default=500.0, help="Langevin MD temperature in K")
    parser.add_argument("--timestep", type=float, default=0.5, help="MD time step in fs")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs")
    parser.add_argument("--equilibration-steps", type=int, default=2000, help="MD steps before the first frame")
    parser.add_argument("--method", default="GFN2-xTB", help="tblite method (GFN2-xTB, GFN1-xTB, IPEA1-xTB)")
    parser.add_argument("--charge", type=float, default=0.0, help="total charge in e")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial velocities and Langevin noise")
    parser.add_argument("--out", required=True, help="output .npz path")
    parser.add_argument("--verbose", action="store_true", help="info log messages, and the traceback of an error")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s", force=True)
    check_output_path(args.out, overwrite=True, what="--out")
    if args.frames < 1 or args.stride < 1 or args.equilibration_steps < 0 or not args.timestep > 0:
        raise ValueError("--frames and --stride must be >= 1, --equilibration-steps >= 0 and --timestep > 0")
    data = generate(
        args.molecule, args.frames, args.stride, args.temperature, args.timestep, args.friction,
        args.equilibration_steps, args.method, args.charge, args.seed,
    )
    np.savez_compressed(args.out, **data)
    logger.info("wrote %s (%d bytes)", args.out, Path(args.out).stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
