"""``python -m physnetjax.spectra ir``: anharmonic IR and power spectra of one molecule from MD with a model.

Reads a checkpoint and a geometry (any file ``ase.io.read`` understands, first frame),
runs the harmonic analysis (:func:`physnetjax.spectra.harmonic`, geometry optimised to
``--fmax`` in at most ``--max-steps`` steps unless ``--no-optimize``) and prints its table
of modes, then runs
:func:`physnetjax.spectra.md_spectrum` from the analysed geometry with a progress bar,
and writes to the output directory

* ``spectrum.csv``: columns ``wavenumber_cm1``, ``power_per_cm1`` (vibrational
  density of states, degrees of freedom per cm⁻¹) and, for charge models,
  ``ir_km_mol_per_cm1`` (IR absorption; a band integrates to its intensity in km/mol),
  from 0 to ``--max-wavenumber``;
* ``spectrum.json``: the MD settings, resolution, per-replica temperatures and energy
  errors, timings, and the harmonic lines (``harmonic``: frequencies, intensities,
  zero-point energy, analysed geometry) and, for each harmonic line, the MD peak
  positions and IR band integral around it (``bands``), and ``model``
  (:func:`physnetjax.spectra.cli_harmonic.analysed_model`: the members of an ensemble
  checkpoint, whose mean energy the MD runs on and whose mean dipole gives the IR spectrum);
* ``spectrum.png``: the power spectrum and the IR spectrum with the harmonic lines as
  sticks (needs matplotlib; ``--no-plot`` skips it);
* ``config.toml``: the options used (``--config`` on it repeats the run);
* ``unconverged.xyz``, only when the optimisation stops short of ``--fmax``: its last
  geometry, to continue from with ``--geometry`` (as ``harmonic``; a later successful run
  into the same folder removes it, unless it started from it).

Every setting, the checkpoint, the geometry and the output directory are checked
before any computation (a charge model whose checkpoint records a low dipole R² in the molecular
frame gets the warning of :func:`physnetjax.dipole_surface.warn_unreliable_ir`: its IR intensities
are unreliable); the ``--timestep`` is judged again against the harmonic lines before
the MD (:func:`physnetjax.spectra.md_spectrum.check_timestep_for_lines`: refused where velocity
Verlet is unstable for the fastest line, a warning where it raises it by more than 1 %).
Errors and exit codes: see :mod:`physnetjax.spectra.__main__`.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from pathlib import Path

from physnetjax.cli_config import OptionUse
from physnetjax.cli_errors import configure_logging
from physnetjax.errors import warn_caller
from physnetjax.jsonlines import written_whole
from physnetjax.spectra.cli_harmonic import (OPTIMIZER_OPTIONS, UNCONVERGED_NAME, add_molecule_arguments,
                                             add_optimizer_arguments)

OPTION_OF = {"temperature_K": "--temperature", "time_ps": "--time-ps", "timestep_fs": "--timestep",
             "equilibration_ps": "--equilibration-ps", "replicas": "--replicas", "friction": "--friction",
             "record_every": "--record-every", "max_correlation_ps": "--correlation-ps", "masses": "--masses",
             "total_charge": "--total-charge", "seed": "--seed", "dtype": "--dtype", **OPTIMIZER_OPTIONS}
""":func:`~physnetjax.spectra.md_spectrum` and :func:`~physnetjax.spectra.harmonic` keyword → the option that sets
it: the names in the messages of the checks run before any computation and of the harmonic analysis."""
FRICTION_USE = OptionUse("friction", "equilibration_ps", (0.0,), unused_at=True, note="Langevin equilibration only",
                         remedy="give an --equilibration-ps > 0")
"""``--friction`` acts in the Langevin equilibration only: with ``--equilibration-ps 0`` it is refused."""
JSON_UNITS = {
    "resolution_cm1": "cm^-1",
    "temperatures_K": "K (mean kinetic temperature of each replica in the NVE part)",
    "energy_errors": "max |E(t) - E(0)| of each replica in units of n_dof k_B T / 2",
    "settings": "in the names (_K, _ps, _fs, _per_fs fs^-1, _amu), total_charge e; settings.units: the spectra",
    "md_seconds": "s", "compile_seconds": "s",
    "harmonic": "frequencies_cm1 cm^-1 (imaginary as negative), intensities_km_mol km/mol, zero_point_energy_eV "
                "eV, optimized_positions Angstrom, total_charge_e e",
    "bands": "*_cm1 cm^-1, harmonic_km_mol and ir_band_km_mol km/mol, power_band_dof degrees of freedom "
             "(k_B T / 2 per quadratic term)",
    "spectrum_csv": "wavenumber_cm1 cm^-1, power_per_cm1 degrees of freedom per cm^-1, ir_km_mol_per_cm1 km/mol "
                    "per cm^-1",
}
"""Units of the entries of ``spectrum.json`` (its ``units`` table), as ``harmonic.json`` has one."""
CSV_NAME = "spectrum.csv"
JSON_NAME = "spectrum.json"
PNG_NAME = "spectrum.png"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of the ``ir`` subcommand on ``parser``."""
    add_molecule_arguments(parser)
    parser.add_argument("--temperature", type=float, required=True, help="temperature in K")
    parser.add_argument("--time-ps", type=float, required=True, help="NVE time per replica in ps")
    parser.add_argument("--replicas", type=int, default=4, help="independent trajectories run at once")
    parser.add_argument("--timestep", type=float, default=0.5, help="MD time step in fs")
    parser.add_argument("--equilibration-ps", type=float, default=2.0, help="Langevin equilibration in ps")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs")
    parser.add_argument("--record-every", type=int, default=4, help="MD steps between recorded frames")
    parser.add_argument("--correlation-ps", type=float,
                        help="correlation window in ps; resolution 1/(c T) (default: half of --time-ps)")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    parser.add_argument("--dtype", choices=("float32", "float64"),
                        help="MD precision (default: the checkpoint's, float64 for a model trained with --float64, "
                             "else float32)")
    parser.add_argument("--no-optimize", action="store_true",
                        help="start from the geometry as given (no optimisation before the harmonic analysis)")
    add_optimizer_arguments(parser)
    parser.add_argument("--max-wavenumber", type=float, default=4000.0,
                        help="largest wavenumber in cm^-1 written to the CSV and drawn")
    parser.add_argument("--no-plot", action="store_true", help="do not draw spectrum.png")


def main(args: argparse.Namespace) -> int:
    """Run the subcommand; returns 0 (errors are exceptions for :mod:`physnetjax.spectra.__main__`)."""
    configure_logging("python -m physnetjax.spectra", args.verbose)
    _run(args)
    return 0


def _check_inputs(args):
    """Everything that can be checked before any computation or output; returns (atoms, out path, the checkpoint's
    (model, params, metadata))."""
    from physnetjax.checkpoint import load_checkpoint
    from physnetjax.cli_config import (CONFIG_NAME, check_config_replaceable, check_outputs_replaceable,
                                       refuse_unused_options)
    from physnetjax.spectra.cli_harmonic import OPTION_USES, read_geometry
    from physnetjax.spectra.md_spectrum import check_molecule_size, check_recorded_size, plan_run
    from physnetjax.spectra.optimize import check_optimizer_settings
    from physnetjax.spectra.plot import require_matplotlib
    from physnetjax.validation import check_masses, check_output_directory, check_seed, check_total_charge

    plan = plan_run(temperature_K=args.temperature, time_ps=args.time_ps, timestep_fs=args.timestep,
             equilibration_ps=args.equilibration_ps, replicas=args.replicas, friction=args.friction,
             record_every=args.record_every, max_correlation_ps=args.correlation_ps, max_energy_error=0.1,
             names=OPTION_OF)
    check_optimizer_settings(args.fmax, args.max_steps, OPTION_OF, args.max_step)
    refuse_unused_options(args.parser, args, [*OPTION_USES, FRICTION_USE], args.chosen)
    check_seed(args.seed, "--seed")
    if not args.max_wavenumber > 0:
        raise ValueError(f"--max-wavenumber must be > 0 cm^-1, received {args.max_wavenumber}")
    if not args.no_plot:
        require_matplotlib()
    if not Path(args.checkpoint).exists():
        raise ValueError(f"--checkpoint {args.checkpoint} does not exist")
    atoms = read_geometry(args.geometry)
    check_molecule_size(len(atoms))
    check_recorded_size(plan, len(atoms), OPTION_OF)
    if args.total_charge is not None:
        check_total_charge(args.total_charge, atoms.numbers, names=OPTION_OF)
    if args.masses is not None:
        check_masses(args.masses, len(atoms), OPTION_OF)
    loaded = load_checkpoint(args.checkpoint, with_metadata=True)  # a folder that is no checkpoint: before --out
    out = check_output_directory(args.out, what="--out", files=(CSV_NAME, JSON_NAME, PNG_NAME, CONFIG_NAME,
                                                                UNCONVERGED_NAME))
    check_config_replaceable(args.parser, out / CONFIG_NAME)
    check_outputs_replaceable(args.parser, out, (CSV_NAME, JSON_NAME, PNG_NAME))
    return atoms, out, loaded


def _run(args) -> None:
    from physnetjax.checkpoint.format import stored_precision
    from physnetjax.cli_precision import switch_x64_on_for

    args.dtype = args.dtype or stored_precision(args.checkpoint)
    switch_x64_on_for(args.dtype)
    atoms, out, (model, params, metadata) = _check_inputs(args)

    from physnetjax.cli_config import CONFIG_NAME, write_resolved_config
    from physnetjax.dipole_surface import warn_unreliable_ir
    from physnetjax.errors import LengthUnitWarning, PhysNetInputWarning
    from physnetjax.spectra.cli_harmonic import (analysed_model, last_geometry_written, mode_table, molecule_masses,
                                                 remove_earlier_results, say_ensemble)
    from physnetjax.spectra.harmonic import harmonic
    from physnetjax.spectra.md_spectrum import check_timestep_for_lines, md_spectrum
    from physnetjax.training_record import TrainingRecord
    from physnetjax.validation import atoms_total_charge

    remove_earlier_results(out, (CSV_NAME, JSON_NAME, PNG_NAME))
    write_resolved_config(args.parser, args, out / CONFIG_NAME)
    say_ensemble(model)
    record = TrainingRecord.from_metadata(metadata)
    total_charge = float(atoms_total_charge(atoms, args.total_charge, OPTION_OF))
    masses = molecule_masses(atoms, args.masses)
    said: set = set()
    with warnings.catch_warnings(record=True) as caught:
        if model.charges:
            warn_unreliable_ir(metadata)
        try:
            with last_geometry_written(out, atoms, args.geometry, total_charge):
                lines = harmonic(model, params, atoms.numbers, atoms.positions, masses=masses,
                                 total_charge=total_charge, optimize=not args.no_optimize, fmax=args.fmax,
                                 max_steps=args.max_steps, max_step=args.max_step, training_record=record,
                                 names=OPTION_OF)
        finally:
            _tell(caught, said)
    print(f"harmonic analysis of {atoms.get_chemical_formula()}:")
    print(mode_table(lines))
    with warnings.catch_warnings(record=True) as caught:
        try:
            shifted = check_timestep_for_lines(lines.frequencies_cm1[~lines.imaginary & ~lines.zero_modes],
                                               args.timestep, OPTION_OF)
            if shifted is not None:
                warn_caller(shifted, PhysNetInputWarning)
            with _progress_bar(args.verbose) as progress:
                result = md_spectrum(
                    model, params, lines.atomic_numbers, lines.positions, temperature_K=args.temperature,
                    time_ps=args.time_ps, timestep_fs=args.timestep, equilibration_ps=args.equilibration_ps,
                    replicas=args.replicas, friction=args.friction, record_every=args.record_every,
                    total_charge=total_charge, masses=masses, seed=args.seed,
                    max_correlation_ps=args.correlation_ps, dtype=args.dtype, progress=progress,
                    training_record=record, names=OPTION_OF,
                )
        finally:
            # harmonic() judged the bond lengths of the given and of the optimised geometry, where the MD starts
            _tell(caught, said, skip=LengthUnitWarning)
    shown = result.frequencies_cm1 <= args.max_wavenumber
    half_width = isolated_half_width_cm1(result, lines)
    found = bands(result, lines, half_width)
    print(summary(result, found))
    _write_csv(out / CSV_NAME, result, shown)
    document = result.to_dict()
    for name in ("frequencies_cm1", "power_spectrum", "ir_spectrum", "replica_power_spectra", "replica_ir_spectra"):
        document.pop(name)
    document["harmonic"] = {
        "frequencies_cm1": lines.frequencies_cm1.tolist(),
        "intensities_km_mol": None if lines.intensities_km_mol is None else lines.intensities_km_mol.tolist(),
        "zero_point_energy_eV": lines.zero_point_energy,
        "optimized_positions": lines.positions.tolist(),
        "atomic_numbers": lines.atomic_numbers.tolist(),
        "total_charge_e": lines.total_charge,
    }
    document["bands"] = found
    problem = resolution_warning(result, found, half_width if half_width > BAND_HALF_WIDTH_CM1 else 0.0)
    if problem is not None:
        warn_caller(problem)
    document["checkpoint"] = str(Path(args.checkpoint).resolve())
    document["geometry"] = str(Path(args.geometry).resolve())
    document["spectrum_csv"] = CSV_NAME
    document["model"] = analysed_model(model)
    document["units"] = JSON_UNITS
    with written_whole(out / JSON_NAME) as tmp:
        tmp.write_text(json.dumps(document, indent=1))
    print(f"wrote {out / CSV_NAME} and {out / JSON_NAME}")
    if not args.no_plot:
        with written_whole(out / PNG_NAME) as tmp:
            plot_md_spectrum(tmp, result, lines, shown,
                             title=f"{atoms.get_chemical_formula()}, {args.temperature:g} K, "
                                   f"{result.settings['replicas']} × {result.settings['time_ps']:g} ps NVE")
        print(f"wrote {out / PNG_NAME}")


def _tell(caught, said: set, skip: tuple = ()) -> None:
    """Write the recorded warnings to stderr as the CLI shows warnings, each text once (``said`` holds those
    written); drop those of the categories ``skip`` (a warning class or a tuple of them). The MD starts from
    the analysed molecule, so what holds for both (a total charge the model ignores) is said once, by the
    harmonic analysis."""
    for warning in caught:
        text = str(warning.message)
        if text in said or issubclass(warning.category, skip):
            continue
        said.add(text)
        sys.stderr.write(warnings.formatwarning(warning.message, warning.category, warning.filename, warning.lineno))


class _progress_bar:
    """Context manager yielding ``progress(done, total)`` that drives a rich progress bar."""

    def __init__(self, verbose: bool):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("MD"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                             TimeElapsedColumn(), TimeRemainingColumn(), transient=not verbose)
        self._task = None

    def __enter__(self):
        self._bar.start()

        def progress(done: int, total: int) -> None:
            if self._task is None:
                self._task = self._bar.add_task("md", total=total)
            self._bar.update(self._task, completed=done)

        return progress

    def __exit__(self, *exc):
        self._bar.stop()
        return False


BAND_HALF_WIDTH_CM1 = 150.0
"""Half-width (cm⁻¹) of an isolated band of a slowly rotating molecule (see :func:`isolated_half_width_cm1`)."""


def bands(result, lines, max_half_width: float = BAND_HALF_WIDTH_CM1) -> list[dict]:
    """MD spectra around each distinct harmonic line: band centres, peak positions and band integrals.

    The lines are the real vibrations (imaginary and zero modes left out); lines closer
    than 1 cm⁻¹ are one (degenerate) band (:mod:`physnetjax.spectra.lines`). Each band spans the line where the
    run's velocity Verlet puts it (``md_line_cm1``, :func:`~physnetjax.spectra.md_spectrum.verlet_wavenumber_cm1`
    of the run's timestep: 2593 cm⁻¹ moves to 2911 cm⁻¹ at 3 fs, out of a window about the harmonic line)
    ± min(``max_half_width``, half the distance to the neighbouring bands) (callers pass
    :func:`isolated_half_width_cm1`, which widens it to a free molecule's rotational contour); in it the
    power and IR spectra's centres ν̄ = ∫ ν̃ S dν̃ / ∫ S dν̃ and maxima are located and the IR spectrum is
    integrated (trapezoid; km/mol, comparable with the summed harmonic intensity), as is the power
    spectrum (degrees of freedom: the band's share of the kinetic energy, in units of
    k_B T / 2 per quadratic term, equal to the degeneracy on average over replicas).
    The ratio IR band / power band estimates the intensity per mode however the energy
    happened to be shared among the modes in the replicas. The centre, not the maximum, is
    where the band lies: a rotating molecule's band is a contour whose maxima are its P and R
    branches, ±√(k_B T / I) away from the vibration (water's bend: 51 cm⁻¹ below its centre at
    300 K). A band whose span holds fewer than two points of the spectrum's grid (lines closer
    than the grid spacing of a short run) has None for its centres, peaks and integrals: the run
    cannot tell them apart.
    """
    import numpy as np

    from physnetjax.spectra.lines import degenerate_groups
    from physnetjax.spectra.md_spectrum import verlet_wavenumber_cm1

    vibrations = ~lines.imaginary & ~lines.zero_modes
    real = lines.frequencies_cm1[vibrations]
    intensities = None if lines.intensities_km_mol is None else lines.intensities_km_mol[vibrations]
    groups = degenerate_groups(real)
    harmonic_centres = [float(np.mean(real[g])) for g in groups]
    timestep = getattr(result, "settings", {}).get("timestep_fs")
    centres = (harmonic_centres if timestep is None
               else [float(c) for c in verlet_wavenumber_cm1(harmonic_centres, timestep)])
    nu = result.frequencies_cm1
    found = []
    for index, (group, centre) in enumerate(zip(groups, centres)):
        half = max_half_width
        if index > 0:
            half = min(half, 0.5 * (centre - centres[index - 1]))
        if index + 1 < len(centres):
            half = min(half, 0.5 * (centres[index + 1] - centre))
        window = np.abs(nu - centre) <= half
        band = {"harmonic_cm1": harmonic_centres[index], "md_line_cm1": centre, "degeneracy": len(group),
                "harmonic_km_mol": None if intensities is None else float(np.sum(intensities[group])),
                "power_centre_cm1": None, "power_peak_cm1": None, "power_band_dof": None,
                "half_width_cm1": float(half), "ir_centre_cm1": None, "ir_peak_cm1": None, "ir_band_km_mol": None}
        if np.count_nonzero(window) >= 2:
            for name, spectrum in (("power", result.power_spectrum), ("ir", result.ir_spectrum)):
                if spectrum is None:
                    continue
                area = float(np.trapezoid(spectrum[window], nu[window]))
                band[f"{name}_peak_cm1"] = float(nu[window][np.argmax(spectrum[window])])
                band[f"{name}_centre_cm1"] = (float(np.trapezoid(nu[window] * spectrum[window], nu[window]) / area)
                                              if area > 0.0 else None)
                band["power_band_dof" if name == "power" else "ir_band_km_mol"] = area
        found.append(band)
    return found


def isolated_half_width_cm1(result, lines) -> float:
    """Half-width (cm⁻¹) of an isolated band: :data:`BAND_HALF_WIDTH_CM1`, or the molecule's rotational contour
    at the run's temperature where that is wider
    (:func:`physnetjax.spectra.rotational_contour.rotational_contour_cm1`: water at 300 K ±315 cm⁻¹; the ±150
    cm⁻¹ band held 41 % of its bend's IR intensity)."""
    from physnetjax.spectra.rotational_contour import rotational_contour_cm1

    contour = rotational_contour_cm1(result.settings["masses_amu"], lines.positions, result.settings["temperature_K"])
    return max(BAND_HALF_WIDTH_CM1, contour)


def resolution_warning(result, found: list, contour_cm1: float = 0.0) -> str | None:
    """A warning when an MD line is wider (FWHM ≈ LINE_WIDTH_RESOLUTIONS × resolution) than a band's half-width,
    so that band's integral holds the tails of its neighbours' lines, or when a free molecule's rotational
    contour (half-width ``contour_cm1``, :func:`isolated_half_width_cm1`) is; else None."""
    from physnetjax.spectra.md_spectrum import LINE_WIDTH_RESOLUTIONS

    if not found:
        return None
    width = LINE_WIDTH_RESOLUTIONS * result.resolution_cm1
    narrowest = min(found, key=lambda band: band["half_width_cm1"])
    band = f"the ±{narrowest['half_width_cm1']:.0f} cm^-1 band around {narrowest['harmonic_cm1']:.0f} cm^-1"
    if max(width, contour_cm1) <= narrowest["half_width_cm1"]:
        return None
    if contour_cm1 < width:
        return (f"MD lines are ~{width:.0f} cm^-1 wide at half maximum (correlation window "
                f"{result.settings['max_correlation_ps']:g} ps, resolution {result.resolution_cm1:.0f} cm^-1), wider "
                f"than {band}: band integrals include their neighbours' tails; run longer (--time-ps, "
                "--correlation-ps)")
    return (f"the molecule's rotation spreads each band over ±{contour_cm1:.0f} cm^-1 at "
            f"{result.settings['temperature_K']:g} K (its rotational contour), wider than {band}: band centres and "
            "integrals include their neighbours' rotational wings (a longer run does not narrow them; compare "
            "the spectra, or a lower --temperature)")


def summary(result, found: list) -> str:
    """Text summary: settings, resolution, temperatures, energy conservation, the MD bands ``found``
    (:func:`bands`) beside the harmonic lines."""
    settings = result.settings
    replicas = f"{settings['replicas']} replica{'s' if settings['replicas'] != 1 else ''}"
    text = [
        f"MD: {replicas} × {settings['time_ps']:g} ps NVE after {settings['equilibration_ps']:g} ps "
        f"Langevin at {settings['temperature_K']:g} K (timestep {settings['timestep_fs']:g} fs, "
        f"{result.md_seconds:.1f} s + compile {result.compile_seconds:.1f} s)",
        f"replica temperatures (K): {' '.join(f'{t:.1f}' for t in result.temperatures_K)}; "
        f"max |E(t) - E(0)| / (n_dof k_B T / 2): {result.energy_errors.max():.2g}",
        f"resolution: {result.resolution_cm1:.2f} cm^-1 (correlation window {settings['max_correlation_ps']:g} ps, "
        f"{settings['window'].capitalize()} window)",
    ]
    text.append(f"{'harmonic cm^-1':>15}  {'km/mol':>9}  {'MD power centre':>15}  {'power band':>10}  "
                f"{'MD IR centre':>12}  {'IR band km/mol':>14}")
    def cell(value, width, digits):
        return f"{value:{width}.{digits}f}" if value is not None else f"{'-':>{width}}"

    for band in found:
        label = f"{band['harmonic_cm1']:.1f}" + (f" (x{band['degeneracy']})" if band["degeneracy"] > 1 else "")
        text.append(f"{label:>15}  {cell(band['harmonic_km_mol'], 9, 2)}  {cell(band['power_centre_cm1'], 15, 1)}  "
                    f"{cell(band['power_band_dof'], 10, 3)}  {cell(band['ir_centre_cm1'], 12, 1)}  "
                    f"{cell(band['ir_band_km_mol'], 14, 2)}")
    return "\n".join(text)


def _write_csv(path: Path, result, shown) -> None:
    header = ["wavenumber_cm1", "power_per_cm1"] + (["ir_km_mol_per_cm1"] if result.ir_spectrum is not None else [])
    columns = [result.frequencies_cm1[shown], result.power_spectrum[shown]]
    if result.ir_spectrum is not None:
        columns.append(result.ir_spectrum[shown])
    with written_whole(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in zip(*columns):
            writer.writerow([f"{value:.6g}" for value in row])


def plot_md_spectrum(path, result, lines, shown, title: str = "") -> None:
    """PNG: power spectrum (top) and IR spectrum with the harmonic lines as sticks (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from physnetjax.spectra.lines import merged_lines

    nu = result.frequencies_cm1[shown]
    real = ~lines.imaginary & ~lines.zero_modes
    rows = 2 if result.ir_spectrum is not None else 1
    figure, axes = plt.subplots(rows, 1, figsize=(8, 3.2 * rows), sharex=True, squeeze=False)
    power_axes = axes[0, 0]
    power_axes.plot(nu, result.power_spectrum[shown], color="tab:gray", linewidth=1.0)
    power_axes.set_ylabel("power spectrum\n(degrees of freedom per cm$^{-1}$)")
    for line in lines.frequencies_cm1[real]:
        power_axes.axvline(line, color="tab:red", linewidth=0.8, alpha=0.6)
    power_axes.set_title(title)
    if result.ir_spectrum is not None:
        ir_axes = axes[1, 0]
        ir_axes.plot(nu, result.ir_spectrum[shown], color="tab:blue", linewidth=1.0, label="MD (classical)")
        ir_axes.set_ylabel("IR absorption\n(km mol$^{-1}$ per cm$^{-1}$)")
        sticks = ir_axes.twinx()
        positions, heights = merged_lines(lines.frequencies_cm1[real], lines.intensities_km_mol[real])
        sticks.vlines(positions, 0.0, heights, color="tab:red", linewidth=1.5, label="harmonic")
        sticks.set_ylabel("harmonic intensity (km mol$^{-1}$,\ndegenerate modes summed)", color="tab:red")
        sticks.set_ylim(0.0, 1.1 * float(heights.max(initial=0.0)) or 1.0)
        ir_axes.set_ylim(bottom=0.0)
        handles = ir_axes.get_legend_handles_labels()[0] + sticks.get_legend_handles_labels()[0]
        ir_axes.legend(handles=handles, loc="upper left")
    axes[-1, 0].set_xlabel("wavenumber (cm$^{-1}$)")
    axes[-1, 0].set_xlim(0.0, float(nu.max(initial=1.0)))
    figure.tight_layout()
    with written_whole(path) as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
