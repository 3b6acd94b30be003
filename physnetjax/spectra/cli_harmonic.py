"""``python -m physnetjax.spectra harmonic``: harmonic frequencies, IR intensities and ZPE of one molecule.

Reads a checkpoint and a geometry (any file ``ase.io.read`` understands, first frame),
optimises the geometry (unless ``--no-optimize``), runs
:func:`physnetjax.spectra.harmonic` in float64, prints a table of the modes and writes
to the output directory

* ``harmonic.json``: ``frequencies_cm1``, ``intensities_km_mol`` (null for a model
  without charges), ``zero_point_energy_eV``, ``optimized_positions`` (Å, the geometry
  analysed), plus atomic numbers, the total charge used (``total_charge_e``: the option,
  else the geometry's), masses, energy, max |F|, imaginary flags, zero-mode flags and
  fragments (modes that are not vibrations, see
  :func:`physnetjax.spectra.modes_from_hessian`), reduced masses, normal modes,
  rigid-body wavenumbers, ``model`` (:func:`analysed_model`: the members of an ensemble
  checkpoint and that their mean energy is analysed) and a ``units`` table;
* ``harmonic.png``: the stick spectrum of the vibrations (needs matplotlib; ``--no-plot`` skips it);
* ``config.toml``: the options used (``--config`` on it repeats the run);
* ``unconverged.xyz``, only when the optimisation stops short of ``--fmax``: its last
  geometry (extxyz; energy, max |F| and steps in the comment line), to continue from
  with ``--geometry`` (exit 4, :func:`last_geometry_written`); a later successful run
  into the same folder removes it, unless it started from it.

The checkpoint, the geometry (an isolated molecule: a periodic one is refused) and the
output directory are checked before any computation. A charge model whose checkpoint records a
dipole R² in the molecular frame below :data:`physnetjax.dipole_surface.IR_R2_THRESHOLD` gets a
warning that its intensities are unreliable (:func:`physnetjax.dipole_surface.warn_unreliable_ir`).
Errors and exit codes: see :mod:`physnetjax.spectra.__main__`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from physnetjax.cli_config import OptionUse
from physnetjax.cli_errors import configure_logging
from physnetjax.errors import warn_caller
from physnetjax.jsonlines import written_whole

OPTIMIZER_OPTIONS = {"fmax": "--fmax", "max_steps": "--max-steps", "max_step": "--max-step",
                     "optimize": "--no-optimize"}
""":func:`~physnetjax.spectra.harmonic`'s optimisation keywords → the options that set them (``--no-optimize`` turns
``optimize`` off), in harmonic and ir alike."""
OPTION_OF = {**OPTIMIZER_OPTIONS, "masses": "--masses", "total_charge": "--total-charge"}
""":func:`~physnetjax.spectra.harmonic` keyword → the option that sets it: the names in the messages of the checks
run before any computation, of the optimisation and of the warning at a geometry that is not a minimum."""
JSON_NAME = "harmonic.json"
PNG_NAME = "harmonic.png"
UNCONVERGED_NAME = "unconverged.xyz"
"""The last geometry of an optimisation that stopped short of ``--fmax`` (harmonic and ir)."""


def add_molecule_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every spectra subcommand shares: model, molecule, output, charge, masses, verbosity."""
    parser.add_argument("--checkpoint", required=True, help="model checkpoint directory (physnetjax or legacy)")
    parser.add_argument("--geometry", required=True,
                        help="isolated molecule (pbc False), any file ase.io.read understands (first frame)")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument("--masses", type=float, nargs="+", metavar="AMU",
                        help="one mass per atom in amu (isotopes); default: the masses the geometry file stores "
                        "(an extxyz masses column), else standard atomic masses")
    parser.add_argument("--total-charge", type=float,
                        help="total charge in e (default: the geometry's info['charge'], else the sum of its "
                             "per-atom initial charges, else 0)")
    parser.add_argument("--verbose", action="store_true", help="log progress; print the traceback on errors")


def add_optimizer_arguments(parser: argparse.ArgumentParser) -> None:
    """``--fmax``, ``--max-steps`` and ``--max-step``: the geometry optimisation before the harmonic analysis
    (harmonic and ir)."""
    parser.add_argument("--fmax", type=float, default=1e-4, help="optimisation threshold on max |F| in eV/Å")
    parser.add_argument("--max-steps", type=int, default=1000, help="largest number of L-BFGS steps")
    parser.add_argument("--max-step", type=float, default=0.2, metavar="ANGSTROM",
                        help="largest displacement of any atom in one optimisation step, in Å (as ASE's maxstep)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of the ``harmonic`` subcommand on ``parser``."""
    add_molecule_arguments(parser)
    parser.add_argument("--no-optimize", action="store_true",
                        help="analyse the geometry as given (a warning names max |F| if it is above --fmax)")
    add_optimizer_arguments(parser)
    parser.add_argument("--no-plot", action="store_true", help="do not draw harmonic.png")


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; returns 0 (errors are exceptions for :mod:`physnetjax.spectra.__main__`)."""
    configure_logging("python -m physnetjax.spectra", args.verbose)
    result, atoms, model = _analyse(args)
    print(mode_table(result))
    out = Path(args.out)
    with written_whole(out / JSON_NAME) as tmp:
        tmp.write_text(json.dumps(result_json(result, args, model), indent=1))
    print(f"wrote {out / JSON_NAME}")
    if not args.no_plot:
        from physnetjax.spectra.plot import plot_stick_spectrum

        vibrations = ~result.zero_modes
        with written_whole(out / PNG_NAME) as tmp:
            plot_stick_spectrum(tmp, result.frequencies_cm1[vibrations],
                                None if result.intensities_km_mol is None else result.intensities_km_mol[vibrations],
                                title=f"{atoms.get_chemical_formula()}: harmonic spectrum")
        print(f"wrote {out / PNG_NAME}")
    return 0


def _analyse(args):
    """Check inputs, load, optimise and analyse; returns (result, atoms, model); raises with a one-line message on
    bad input."""
    from physnetjax.checkpoint import load_checkpoint
    from physnetjax.cli_config import (CONFIG_NAME, check_config_replaceable, check_outputs_replaceable,
                                       refuse_unused_options, write_resolved_config)
    from physnetjax.dipole_surface import warn_unreliable_ir
    from physnetjax.spectra.harmonic import NonMinimumWarning, ZeroModeWarning, harmonic
    from physnetjax.spectra.molecule import require_molecule
    from physnetjax.spectra.optimize import check_optimizer_settings
    from physnetjax.spectra.plot import require_matplotlib
    from physnetjax.training_record import TrainingRecord
    from physnetjax.validation import atoms_total_charge, check_masses, check_output_directory, check_total_charge

    check_optimizer_settings(args.fmax, args.max_steps, OPTION_OF, args.max_step)
    refuse_unused_options(args.parser, args, OPTION_USES, args.chosen)
    if not args.no_plot:
        require_matplotlib()
    if not Path(args.checkpoint).exists():
        raise ValueError(f"--checkpoint {args.checkpoint} does not exist")
    atoms = read_geometry(args.geometry)
    require_molecule(atoms.numbers)  # before --out is written, and before a lone atom's geometry is judged
    if args.masses is not None:
        check_masses(args.masses, len(atoms), OPTION_OF)
    if args.total_charge is not None:
        check_total_charge(args.total_charge, atoms.numbers, names=OPTION_OF)
    model, params, metadata = load_checkpoint(args.checkpoint, with_metadata=True)  # a folder that is no checkpoint
    check_output_directory(args.out, what="--out", files=(JSON_NAME, PNG_NAME, CONFIG_NAME, UNCONVERGED_NAME))
    check_config_replaceable(args.parser, Path(args.out) / CONFIG_NAME)
    check_outputs_replaceable(args.parser, Path(args.out), (JSON_NAME, PNG_NAME))
    remove_earlier_results(Path(args.out), (JSON_NAME, PNG_NAME))
    write_resolved_config(args.parser, args, Path(args.out) / CONFIG_NAME)
    say_ensemble(model)
    total_charge = float(atoms_total_charge(atoms, args.total_charge, OPTION_OF))
    masses = molecule_masses(atoms, args.masses)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NonMinimumWarning)
        warnings.simplefilter("always", ZeroModeWarning)
        if model.charges:
            warn_unreliable_ir(metadata)
        try:
            with last_geometry_written(Path(args.out), atoms, args.geometry, total_charge):
                result = harmonic(model, params, atoms.numbers, atoms.positions, masses=masses,
                                  total_charge=total_charge, optimize=not args.no_optimize, fmax=args.fmax,
                                  max_steps=args.max_steps, max_step=args.max_step,
                                  training_record=TrainingRecord.from_metadata(metadata),
                                  names=OPTION_OF)
        finally:  # also before an error: a warning about the input (an untrained charge, say) explains it
            for warning in caught:
                sys.stderr.write(warnings.formatwarning(warning.message, warning.category, warning.filename,
                                                        warning.lineno))
    return result, atoms, model


OPTION_USES = [OptionUse(dest, "no_optimize", (True,), unused_at=True) for dest in ("max_steps", "max_step")]
"""Options that ``--no-optimize`` leaves unused: given with it, they are refused (the probe's --no-optimize
--max-steps 5 ran without a word)."""


def remove_earlier_results(out: Path, names) -> None:
    """Remove the files ``names`` an earlier run left in ``out`` (said on stdout), before this run writes its own: a
    plot this run does not draw (``--no-plot``), or the results of another geometry beside this run's settings after
    it failed, would otherwise pass for this run's."""
    for name in names:
        path = out / name
        if path.is_file():
            path.unlink()
            print(f"removed {path}, written by an earlier run into this --out")


@contextlib.contextmanager
def last_geometry_written(out: Path, atoms, geometry, total_charge: float):
    """Inside it, an :class:`~physnetjax.spectra.OptimizationError` of ``atoms``' optimisation writes its last
    geometry to ``out/unconverged.xyz`` (extxyz: ``atoms`` with those positions; ``energy_eV``, ``fmax_eV_per_A``,
    ``steps`` and the ``charge`` (e) it ran at, ``total_charge``, in the comment line) and is raised again with a
    message that names the file, from which ``--geometry`` continues: a command line keeps the geometry the error
    holds, and the file the ion it is.

    When the block ends without error, an ``out/unconverged.xyz`` left by an earlier run into the same folder
    no longer describes it and is removed (said on stdout), unless it is ``geometry``, the file this run
    started from (an input is never deleted).
    """
    import ase.io

    from physnetjax.spectra.optimize import OptimizationError

    path = out / UNCONVERGED_NAME
    try:
        yield
    except OptimizationError as error:
        last = atoms.copy()
        last.positions = error.positions
        last.set_initial_charges(None)
        last.info.update(energy_eV=error.energy, fmax_eV_per_A=error.fmax, steps=error.steps, charge=total_charge)
        with written_whole(path, also_kept="") as tmp:
            ase.io.write(tmp, last, format="extxyz")
        raise OptimizationError(error.summary, error.positions, error.energy, error.fmax, error.steps,
                                kept=f"in {path}: continue from it with --geometry {path}") from error
    if path.is_file() and not (Path(geometry).exists() and path.samefile(geometry)):
        path.unlink()
        print(f"removed {path}, the unconverged geometry of an earlier run into this --out")


def read_geometry(path):
    """The first frame of ``path`` as ``ase.Atoms``, an isolated molecule (a file of several frames warns).

    Raises:
      FileNotFoundError: no such file.
      PhysNetInputError: unreadable, or periodic in any direction (the spectra are of
        an isolated molecule: a cell would be ignored, and with it the periodic images).
    """
    import ase.io

    from physnetjax.errors import PhysNetInputError, PhysNetInputWarning
    from physnetjax.structure_file import read_failure

    try:
        frames = ase.io.iread(path)
        atoms = next(frames, None)
        more = atoms is not None and next(frames, None) is not None
    except FileNotFoundError:
        raise
    except Exception as error:
        raise PhysNetInputError(f"--geometry {path}: {read_failure(error, path)}") from error
    if atoms is None:
        raise PhysNetInputError(f"--geometry {path}: ASE reads no frame from it")
    if more:
        warn_caller(f"--geometry {path} holds several frames: the analysis is of the first one; write the frame "
                    "to analyse into a file of its own to analyse another", PhysNetInputWarning)
    if atoms.pbc.any():
        raise PhysNetInputError(
            f"--geometry {path} is periodic (pbc={atoms.pbc.tolist()}); the spectra are of an isolated molecule "
            "and would ignore the cell and the periodic images: write the molecule with pbc=False")
    return atoms


def say_ensemble(model) -> None:
    """For an ensemble checkpoint, print what the analysis is of: the members' mean energy (and dipole).

    The Hessian of the mean energy is the mean of the members' Hessians, so its frequencies
    are not the mean of the members' frequencies, and no spread of them is computed.
    """
    from physnetjax.ensemble.model import is_ensemble

    if is_ensemble(model):
        dipole = " and dipole" if model.charges else ""
        print(f"ensemble of {model.size} members: the analysis is of their mean energy{dipole} (one Hessian, the "
              "mean of theirs), not a spread over the members")


def analysed_model(model) -> dict:
    """What the analysis is of, as the output JSON's ``model``: ``{"ensemble_members": K, "analysed": text}``.

    K is the member count of an ensemble checkpoint (the energy analysed, and the dipole of
    the intensities or IR spectrum, are the members' means: see :func:`say_ensemble`) and 1
    for a single model; ``analysed`` says it in words ("the members' mean energy and dipole",
    "the model's energy", ...; a model without charges has no dipole).
    """
    from physnetjax.ensemble.model import is_ensemble

    dipole = " and dipole" if model.charges else ""
    if is_ensemble(model):
        return {"ensemble_members": model.size, "analysed": f"the members' mean energy{dipole}"}
    return {"ensemble_members": 1, "analysed": f"the model's energy{dipole}"}


def molecule_masses(atoms, masses=None):
    """The masses (amu) of the analysis: ``masses`` (``--masses``) if given, else those the geometry stores.

    A geometry file with masses (an extxyz ``masses`` column, as written for isotopes or by
    ``python -m physnetjax.md``, which runs with them) keeps them; each that differs from
    ASE's standard atomic mass is printed. Without either: None (standard atomic masses).
    """
    import ase.data

    if masses is not None or not atoms.has("masses"):
        return masses
    stored = atoms.get_masses()
    standard = ase.data.atomic_masses[atoms.numbers]
    changed = np.flatnonzero(~np.isclose(stored, standard, rtol=0.0, atol=1e-6))
    if changed.size:
        listed = ", ".join(f"atom {i} ({atoms.get_chemical_symbols()[i]}) {stored[i]:g} amu (standard "
                           f"{standard[i]:g})" for i in changed)
        print(f"masses from --geometry: {listed}")
    return stored


def mode_table(result) -> str:
    """The modes as a text table: index, wavenumber (cm⁻¹, 'i' for imaginary), intensity, reduced mass.

    A zero mode (``result.zero_modes``: not a vibration) is marked ``zero mode`` after its row.
    """
    has_intensity = result.intensities_km_mol is not None
    lines = [f"{'mode':>4}  {'cm^-1':>10}  {'km/mol' if has_intensity else '':>10}  {'mu (amu)':>9}"]
    for k, frequency in enumerate(result.frequencies_cm1):
        wavenumber = f"{abs(frequency):9.2f}{'i' if result.imaginary[k] else ' '}"
        intensity = f"{result.intensities_km_mol[k]:10.3f}" if has_intensity else f"{'':>10}"
        note = "  zero mode" if result.zero_modes[k] else ""
        lines.append(f"{k + 1:>4}  {wavenumber:>10}  {intensity}  {result.reduced_masses[k]:9.4f}{note}")
    lines.append(f"zero-point energy: {result.zero_point_energy:.6f} eV; energy {result.energy:.6f} eV at "
                 f"max |F| = {result.max_force:.2e} eV/Å; {'linear' if result.linear else 'non-linear'} molecule")
    imaginary = result.imaginary & ~result.zero_modes
    if imaginary.any():
        lines.append(f"{int(imaginary.sum())} imaginary mode(s): not a minimum")
    if result.zero_modes.any():
        lines.append(f"{int(result.zero_modes.sum())} zero mode(s): not vibrations but free motions"
                     + (f" of {len(result.fragments)} separate fragments" if len(result.fragments) > 1 else ""))
    return "\n".join(lines)


def result_json(result, args, model) -> dict:
    """The JSON document written to ``harmonic.json`` for ``result`` of ``model`` (the checkpoint's, as loaded)."""
    def listed(array):
        return None if array is None else array.tolist()

    return {
        "frequencies_cm1": result.frequencies_cm1.tolist(),
        "intensities_km_mol": listed(result.intensities_km_mol),
        "zero_point_energy_eV": result.zero_point_energy,
        "optimized_positions": result.positions.tolist(),
        "optimized": result.optimization is not None,
        "optimization_steps": None if result.optimization is None else result.optimization.steps,
        "atomic_numbers": result.atomic_numbers.tolist(),
        "total_charge_e": result.total_charge,
        "masses_amu": result.masses.tolist(),
        "energy_eV": result.energy,
        "max_force_eV_per_A": result.max_force,
        "imaginary": result.imaginary.tolist(),
        "zero_modes": result.zero_modes.tolist(),
        "fragments": [atoms.tolist() for atoms in result.fragments],
        "reduced_masses_amu": result.reduced_masses.tolist(),
        "normal_modes": result.normal_modes.tolist(),
        "linear": result.linear,
        "rigid_body_cm1": result.rigid_body_cm1.tolist(),
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "geometry": str(Path(args.geometry).resolve()),
        "model": analysed_model(model),
        "units": {
            "frequencies_cm1": "cm^-1 (imaginary as negative)",
            "intensities_km_mol": "km/mol",
            "zero_point_energy_eV": "eV",
            "optimized_positions": "Angstrom",
            "total_charge_e": "e",
            "masses_amu": "amu",
            "energy_eV": "eV",
            "max_force_eV_per_A": "eV/Angstrom",
            "reduced_masses_amu": "amu",
            "normal_modes": "Cartesian displacement, unit norm over all 3N components",
            "rigid_body_cm1": "cm^-1",
        },
    }
