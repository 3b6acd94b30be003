"""Vibrational spectra: harmonic frequencies of the shipped models vs GFN2-xTB, and speed vs ASE.

Accuracy (CO2: the shipped charge model; ethanol: the older shipped model trained on
500 K MD only, no charges, and the shipped ``ethanol_ir`` charge model trained on MD plus
normal-mode frames):

* GFN2-xTB reference: tblite's ASE calculator (``tblite.ase.TBLite``, GFN2-xTB,
  accuracy 0.01), geometry relaxed with ASE ``BFGS`` to max |F| ≤ 5e-4 eV/Å starting
  from the shipped geometry, then ASE ``Infrared`` (central differences, δ = 0.01 Å,
  nfree 2) for frequencies and intensities (km/mol from ASE's (D/Å)²/amu).
* Model: :func:`physnetjax.spectra.harmonic` (float64 autodiff Hessian and dipole
  derivatives, rigid-body projection) after its own L-BFGS relaxation from the xTB
  geometry to max |F| ≤ 1e-4 eV/Å.
* Modes are compared after sorting (3N − 5 for CO2, 3N − 6 for ethanol, ASE's
  rigid-body modes, the smallest |ν̃|, dropped): mean and max absolute deviation.
  Each method is at its own minimum; both ethanol models are compared with the same
  xTB reference (relaxed from ``pretrained/ethanol/ethanol.xyz``, the gauche minimum).

Energy-only model call (``compute_forces=False``), before/after in one run:

* the derivatives of the harmonic analysis (float64 Hessian by forward-over-reverse
  autodiff + dipole Jacobian) of the 20-atom pyrazine dimer with the fresh charge model
  below, through energy/dipole functions that call the model with its forces
  (``compute_forces=True``, as before) and without (the library's path): first call
  (trace + compile + run) and median of repeats, plus XLA's FLOP count of each program;
* the dipole Jacobian-vector product recorded in the MD-IR loop (ethanol, float32,
  ``ethanol_ir`` model), both ways, interleaved calls, plus XLA's FLOP counts.

Speed (same model on both sides, float32 MD, float64 harmonic):

* Harmonic analysis of the pyrazine dimer (C8H8N4, 20 atoms, ASE's S22 geometry) with
  a freshly initialised model of the shipped size (features 16, max_degree 1, 2
  iterations, charges): :func:`harmonic` with ``optimize=False`` after one compiling
  call (median of repeats) vs ASE ``Infrared`` with :class:`PhysNetCalculator`
  (float64; 6N + 1 = 121 single points).
* MD-IR of ethanol, 8 replicas: :func:`physnetjax.spectra.md_spectrum` (Langevin
  equilibration then NVE, dipole derivative recorded every 4 steps of 0.5 fs; wall time
  after compilation) vs ASE ``VelocityVerlet`` + ``PhysNetCalculator`` (float32)
  recording dipole and velocities every 4 steps, timed over a shorter run and scaled
  to the same number of steps (8 replicas run one after another). The model is the
  shipped ``ethanol_ir`` charge model. The full pass runs 50 ps per replica;
  ``--quick`` runs 5 ps and scales to 50 ps (the table says which).

Writes ``bench_spectra.json``.

    python benchmarks/bench_spectra.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
import warnings

import ase.io
import ase.units
import jax
import numpy as np
from ase.collections import s22
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from ase.vibrations import Infrared
from common import parse_args, publish, summarise, table

from physnetjax import PhysNet
from physnetjax.calculator import PhysNetCalculator
from physnetjax.checkpoint import load_checkpoint
from physnetjax.md.integrators import maxwell_boltzmann_momenta
from physnetjax.md.io import ASE_TIME_UNIT_FS, momenta_to_ase
from physnetjax.neighbors import apply_batch, molecule_pairs, one_system_batch
from physnetjax.pretrained import (
    co2_geometry_path,
    co2_model_path,
    ethanol_ir_model_path,
    example_geometry_path,
    example_model_path,
)
from physnetjax.spectra import NonMinimumWarning, harmonic, harmonic_analysis, md_spectrum
from physnetjax.spectra.molecule import molecule_functions
from physnetjax.units import E2_PER_AMU_IN_KM_PER_MOL

jax.config.update("jax_enable_x64", True)
logger = logging.getLogger("bench_spectra")

MD_SETTINGS = {  # mode: (NVE ps per replica, equilibration ps, replicas, ASE steps timed)
    "full": (50.0, 2.0, 8, 2000),
    "quick": (5.0, 1.0, 8, 400),
    "smoke": (0.2, 0.05, 2, 20),
}
TARGET_PS = 50.0


def xtb_reference(atoms: ase.Atoms, workdir: str) -> dict:
    """GFN2-xTB minimum, frequencies (cm⁻¹, vibrations only, sorted) and intensities (km/mol)."""
    from tblite.ase import TBLite

    atoms = atoms.copy()
    atoms.calc = TBLite(method="GFN2-xTB", accuracy=0.01, verbosity=0)
    BFGS(atoms, logfile=None).run(fmax=5e-4, steps=500)
    fmax = float(np.abs(atoms.get_forces()).max())
    infrared = Infrared(atoms, name=f"{workdir}/xtb_ir", delta=0.01, nfree=2)
    infrared.run()
    frequencies = infrared.get_frequencies()
    intensities = infrared.intensities * ase.units.Debye**2 * E2_PER_AMU_IN_KM_PER_MOL
    num_rigid = 5 if _linear(atoms.positions) else 6
    order = np.argsort(np.abs(frequencies))[num_rigid:]
    vib = np.abs(frequencies[order])
    sort = np.argsort(vib)
    return {"positions": atoms.positions.copy(), "fmax": fmax, "frequencies_cm1": vib[sort],
            "intensities_km_mol": np.asarray(intensities[order])[sort],
            "imaginary": int(np.sum(np.abs(frequencies[order].imag) > np.abs(frequencies[order].real)))}


def _linear(positions, tolerance=1e-3) -> bool:
    centred = positions - positions.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    return bool(singular[1] < tolerance * singular[0])


def accuracy(name: str, checkpoint, geometry, workdir: str, references: dict) -> dict:
    """Model vs xTB harmonic modes; ``references`` caches the xTB result per start geometry."""
    model, params = load_checkpoint(checkpoint)
    atoms = ase.io.read(geometry)
    if str(geometry) not in references:
        references[str(geometry)] = xtb_reference(atoms, f"{workdir}/{name}")
    reference = references[str(geometry)]
    result = harmonic(model, params, atoms.numbers, reference["positions"])
    ours = np.sort(result.frequencies_cm1)
    order = np.argsort(result.frequencies_cm1)
    deviation = ours - reference["frequencies_cm1"]
    ours_intensity = None if result.intensities_km_mol is None else result.intensities_km_mol[order]
    logger.info("%s: MAD %.2f cm^-1", name, np.abs(deviation).mean())
    return {
        "molecule": name,
        "model": str(checkpoint),
        "xtb_fmax_eV_per_A": reference["fmax"],
        "xtb_imaginary": reference["imaginary"],
        "model_fmax_eV_per_A": result.max_force,
        "xtb_frequencies_cm1": reference["frequencies_cm1"].tolist(),
        "model_frequencies_cm1": ours.tolist(),
        "deviation_cm1": deviation.tolist(),
        "mad_cm1": float(np.abs(deviation).mean()),
        "max_abs_deviation_cm1": float(np.abs(deviation).max()),
        "xtb_intensities_km_mol": reference["intensities_km_mol"].tolist(),
        "model_intensities_km_mol": None if ours_intensity is None else ours_intensity.tolist(),
        "geometry_rmsd_A": float(np.sqrt(np.mean(_aligned_difference(result.positions, reference["positions"]) ** 2))),
    }


def _aligned_difference(a, b):
    """a − b after removing the centroid and the best rotation (Kabsch), (N, 3) Å."""
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    sign = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, 1.0, sign]) @ vt
    return a @ rotation - b


def harmonic_timing(repeats: int, workdir: str) -> dict:
    atoms = s22["Pyrazine_dimer"]
    model = PhysNet(features=16, max_degree=1, num_iterations=2, num_basis_functions=16, cutoff=5.0,
                    charges=True, max_atomic_number=8)
    n = len(atoms)
    dst, src = np.nonzero(~np.eye(n, dtype=bool))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), atoms.numbers, atoms.positions, dst, src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonMinimumWarning)
        start = time.perf_counter()
        harmonic(model, params, atoms.numbers, atoms.positions, optimize=False)
        first = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            harmonic(model, params, atoms.numbers, atoms.positions, optimize=False)
            times.append(time.perf_counter() - start)
    ase_atoms = atoms.copy()
    ase_atoms.calc = PhysNetCalculator(model, params, dtype="float64")
    ase_atoms.get_potential_energy()
    infrared = Infrared(ase_atoms, name=f"{workdir}/model_ir", delta=0.01, nfree=2)
    start = time.perf_counter()
    infrared.run()
    infrared.get_frequencies()
    ase_seconds = time.perf_counter() - start
    ours = summarise(times)
    return {"atoms": n, "physnetjax_first_call_s": first, "physnetjax": ours, "ase_infrared_s": ase_seconds,
            "ase_single_points": 6 * n + 1, "speedup": ase_seconds / ours["median_s"]}


def full_call_functions(model, atomic_numbers):
    """Energy and dipole of one molecule through the model's default call (forces computed, then unused)."""
    z = np.asarray(atomic_numbers, np.int32)
    dst, src = molecule_pairs(np.zeros((z.shape[0], 3)), None)

    def energy(positions, params):
        return apply_batch(model, params, one_system_batch(z, positions, dst, src))["energy"][0]

    def dipole(positions, params):
        return apply_batch(model, params, one_system_batch(z, positions, dst, src))["dipoles"][0]

    return energy, dipole


def fresh_functions(functions):
    """New function objects around (energy, dipole), so no compiled program cached for the originals is reused."""
    energy, dipole = functions
    return (lambda positions, params: energy(positions, params),
            lambda positions, params: dipole(positions, params))


def _flops(jitted, *args) -> float | None:
    analysis = jitted.lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return None if analysis is None or "flops" not in analysis else float(analysis["flops"])


def energy_only_timing(repeats: int, rounds: int) -> dict:
    """Harmonic derivatives and the MD dipole jvp, with the model's forces computed (before) and skipped (after).

    The harmonic part alternates the two paths over ``rounds``, each round with new
    function objects (so each first call traces and compiles afresh) and ``repeats``
    timed calls after it.
    """
    atoms = s22["Pyrazine_dimer"]
    model = PhysNet(features=16, max_degree=1, num_iterations=2, num_basis_functions=16, cutoff=5.0,
                    charges=True, max_atomic_number=8)
    n = len(atoms)
    dst, src = np.nonzero(~np.eye(n, dtype=bool))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), atoms.numbers, atoms.positions, dst, src)
    params64 = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64), params)
    masses = atoms.get_masses()
    variants = {"with forces (before)": full_call_functions(model, atoms.numbers),
                "energy-only (after)": tuple(molecule_functions(model, atoms.numbers))}
    first_calls = {label: [] for label in variants}
    steady = {label: [] for label in variants}
    frequencies = {}
    for _ in range(rounds):
        for label, functions in variants.items():
            energy_fn, dipole_fn = fresh_functions(functions)

            def analyse():
                return harmonic_analysis(energy_fn, atoms.positions, masses, dipole_fn=dipole_fn, args=(params64,))

            start = time.perf_counter()
            frequencies[label] = analyse().frequencies_cm1.tolist()
            first_calls[label].append(time.perf_counter() - start)
            for _ in range(repeats):
                start = time.perf_counter()
                analyse()
                steady[label].append(time.perf_counter() - start)
    harmonic_rows = {}
    for label, (energy_fn, _) in variants.items():
        harmonic_rows[label] = {"first_call_s": statistics.median(first_calls[label]),
                                "first_calls_s": first_calls[label], **summarise(steady[label]),
                                "hessian_flops": _flops(jax.jit(jax.hessian(energy_fn)), atoms.positions, params64),
                                "frequencies_cm1": frequencies[label]}

    ethanol_model, ethanol_params = load_checkpoint(ethanol_ir_model_path())
    ethanol = ase.io.read(example_geometry_path())
    params32 = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float32), ethanol_params)
    positions = np.asarray(ethanol.positions, np.float32)
    velocities = np.asarray(np.random.default_rng(0).standard_normal(positions.shape) * 0.01, np.float32)
    jvps = {}
    for label, (_, dipole_fn) in {"with forces (before)": full_call_functions(ethanol_model, ethanol.numbers),
                                  "energy-only (after)": fresh_functions(molecule_functions(ethanol_model,
                                                                                            ethanol.numbers))}.items():
        jvps[label] = jax.jit(lambda r, v, p, f=dipole_fn: jax.jvp(lambda x: f(x, p), (r,), (v,))[1])
    samples = {label: [] for label in jvps}
    for label, fn in jvps.items():
        for _ in range(3):
            jax.block_until_ready(fn(positions, velocities, params32))
    for _ in range(50 * repeats):
        for label, fn in jvps.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(positions, velocities, params32))
            samples[label].append(time.perf_counter() - start)
    jvp_rows = {label: {**summarise(samples[label]), "flops": _flops(fn, positions, velocities, params32)}
                for label, fn in jvps.items()}
    return {"harmonic_pyrazine_dimer": harmonic_rows, "md_dipole_jvp_ethanol": jvp_rows}


def md_timing(mode: str) -> dict:
    time_ps, equilibration_ps, replicas, ase_steps = MD_SETTINGS[mode]
    model, params = load_checkpoint(ethanol_ir_model_path())
    atoms = ase.io.read(example_geometry_path())
    result = md_spectrum(model, params, atoms.numbers, atoms.positions, temperature_K=300.0, time_ps=time_ps,
                         equilibration_ps=equilibration_ps, replicas=replicas, dtype="float32")
    steps = replicas * (result.settings["equilibration_ps"] + result.settings["time_ps"]) * 1e3 / 0.5
    ours_per_step = result.md_seconds / steps
    ase_atoms = atoms.copy()
    ase_atoms.calc = PhysNetCalculator(model, params, dtype="float32")
    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(0), np.asarray(ase_atoms.get_masses()), 300.0)
    ase_atoms.set_momenta(momenta_to_ase(np.asarray(momenta)))
    dynamics = VelocityVerlet(ase_atoms, timestep=0.5 / ASE_TIME_UNIT_FS)
    records = []
    dynamics.attach(lambda: records.append((ase_atoms.get_dipole_moment(), ase_atoms.get_velocities())), interval=4)
    dynamics.run(2)
    start = time.perf_counter()
    dynamics.run(ase_steps)
    ase_per_step = (time.perf_counter() - start) / ase_steps
    target_steps = replicas * (result.settings["equilibration_ps"] + TARGET_PS) * 1e3 / 0.5
    return {
        "replicas": replicas, "time_ps_run": result.settings["time_ps"],
        "equilibration_ps": result.settings["equilibration_ps"], "target_ps": TARGET_PS,
        "physnetjax_md_seconds": result.md_seconds, "physnetjax_compile_seconds": result.compile_seconds,
        "physnetjax_seconds_per_replica_step": ours_per_step,
        "physnetjax_seconds_at_target": ours_per_step * target_steps,
        "ase_steps_timed": ase_steps, "ase_seconds_per_step": ase_per_step,
        "ase_seconds_at_target": ase_per_step * target_steps, "speedup": ase_per_step / ours_per_step,
        "temperatures_K": result.temperatures_K.tolist(), "energy_errors": result.energy_errors.tolist(),
        "resolution_cm1": result.resolution_cm1,
    }


def main() -> None:
    args = parse_args(__doc__)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with tempfile.TemporaryDirectory() as workdir:
        molecules = [("CO2", co2_model_path(), co2_geometry_path())]
        if args.mode != "smoke":
            molecules += [("ethanol (MD-only model, no charges)", example_model_path(), example_geometry_path()),
                          ("ethanol_ir", ethanol_ir_model_path(), example_geometry_path())]
        references = {}
        results = [accuracy(name, ckpt, geometry, workdir, references) for name, ckpt, geometry in molecules]
        timing = harmonic_timing(repeats=1 if args.mode == "smoke" else 5, workdir=workdir)
    energy_only = energy_only_timing(repeats=1 if args.mode == "smoke" else 5,
                                     rounds=1 if args.mode == "smoke" else 3)
    md = md_timing(args.mode)

    tables = [table("Harmonic wavenumbers of the shipped models vs GFN2-xTB (tblite + ASE Infrared)",
                    "float64; modes sorted; model at its own minimum, xTB at its own",
                    ["molecule", "modes", "MAD cm⁻¹", "max |Δ| cm⁻¹", "target MAD cm⁻¹", "geometry RMSD Å"],
                    [[r["molecule"], len(r["deviation_cm1"]), r["mad_cm1"], r["max_abs_deviation_cm1"],
                      5.0 if r["molecule"] == "CO2" else 10.0, r["geometry_rmsd_A"]] for r in results])]
    for r in results:
        rows = []
        for k, (ref, ours) in enumerate(zip(r["xtb_frequencies_cm1"], r["model_frequencies_cm1"])):
            rows.append([k + 1, ref, ours, ours - ref, r["xtb_intensities_km_mol"][k],
                         None if r["model_intensities_km_mol"] is None else r["model_intensities_km_mol"][k]])
        tables.append(table(f"{r['molecule']}: mode by mode (intensities side by side)",
                            "km/mol; – where the model has no charges",
                            ["mode", "xTB cm⁻¹", "model cm⁻¹", "Δ cm⁻¹", "xTB km/mol", "model km/mol"], rows))
    tables.append(table(
        "Harmonic analysis, 20-atom pyrazine dimer, fresh charge model (features 16, 2 iterations)",
        "physnetjax: harmonic(optimize=False) after one compiling call, median of repeats; ASE: "
        "Infrared.run() with PhysNetCalculator (float64, 121 single points), one run",
        ["physnetjax s", "first call s", "ASE Infrared s", "speed-up"],
        [[timing["physnetjax"]["median_s"], timing["physnetjax_first_call_s"], timing["ase_infrared_s"],
          timing["speedup"]]]))
    harmonic_rows = energy_only["harmonic_pyrazine_dimer"]
    jvp_rows = energy_only["md_dipole_jvp_ethanol"]
    tables.append(table(
        "Energy-only model call (compute_forces=False) vs the default call inside derivatives, one run",
        "harmonic: derivatives (Hessian + dipole Jacobian, float64) of the 20-atom pyrazine dimer, fresh charge "
        "model, first call (median of 3 alternating fresh compiles) and median of 15 calls; MD: dipole jvp of ethanol (ethanol_ir, float32), interleaved "
        "calls, median; FLOPs from XLA's cost analysis",
        ["path", "harmonic first call s", "harmonic median s", "Hessian GFLOP", "MD dipole jvp µs",
         "jvp MFLOP"],
        [[label, harmonic_rows[label]["first_call_s"], harmonic_rows[label]["median_s"],
          None if harmonic_rows[label]["hessian_flops"] is None else harmonic_rows[label]["hessian_flops"] / 1e9,
          jvp_rows[label]["median_s"] * 1e6,
          None if jvp_rows[label]["flops"] is None else jvp_rows[label]["flops"] / 1e6]
         for label in harmonic_rows]))
    scaled = "measured" if md["time_ps_run"] == TARGET_PS else f"scaled from {md['time_ps_run']:g} ps"
    tables.append(table(
        f"MD-IR of ethanol, {md['replicas']} replicas × {TARGET_PS:g} ps NVE (+ {md['equilibration_ps']:g} ps "
        "Langevin), float32, 0.5 fs",
        f"physnetjax: md_spectrum wall time after compile ({scaled}); ASE: VelocityVerlet + PhysNetCalculator "
        f"recording dipole and velocities, {md['ase_steps_timed']} steps timed and scaled, replicas in sequence",
        ["physnetjax s", "compile s", "ASE s (scaled)", "speed-up"],
        [[md["physnetjax_seconds_at_target"], md["physnetjax_compile_seconds"], md["ase_seconds_at_target"],
          md["speedup"]]]))
    publish("bench_spectra", args, tables, {"accuracy": results, "harmonic_timing": timing,
                                            "energy_only_timing": energy_only, "md_ir_timing": md})


if __name__ == "__main__":
    main()
