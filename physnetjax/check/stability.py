"""Check 4: stability — force response to small displacements and a short NVE run.

``stability.curvature``: for ``displacement_trials`` random geometries R + δ, each atom
moved by δ = ``displacement`` Å in a random direction, the effective curvature

    κ = max_trials max_i |F_i(R + δ) − F_i(R)| / δ      (eV/Å²)

is compared with the bound of :class:`~physnetjax.check.settings.Thresholds`
(``curvature``). details: κ, max |F| at R and at the displaced geometries. Forces that
are zero at R and at every displaced geometry (≤ ``ZERO_FORCE`` eV/Å: an energy that
does not depend on the geometry, an untrained or broken model) give a warning: κ = 0
would pass a model whose surface the check cannot probe.

``stability.nve_energy`` and ``stability.nve_max_force``: velocity-Verlet NVE
(:func:`physnetjax.md.nve`) from R with Maxwell–Boltzmann momenta at
``nve_temperature`` (zero total momentum, atomic masses of ASE), ``nve_steps`` steps
of ``nve_timestep`` fs, in float64 on the full pair graph. Reported: max_t |E_tot(t)
− E_tot(0)| per atom (meV), the drift and fluctuation of
:func:`physnetjax.md.driver.drift_and_fluctuation` (slope of a least-squares line
through E_tot(t), meV/atom/ps; std about it, meV/atom) and the largest |F_i| seen (eV/Å). A non-finite energy fails both.
A periodic cell runs on the check's fixed lists, which hold every pair within the model's reach plus
:data:`~physnetjax.check.evaluate.PERIODIC_SKIN` of the start: they miss no pair while no atom has moved more than
half of it from its start (max_i |r_i(t) − r_i(0)| over the recorded frames, ``max_displacement_A``); beyond that
(a liquid that diffuses) both rows warn, as pairs may have come within reach unseen.
"""

from __future__ import annotations

import ase.data
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax import compilation
from physnetjax.check.evaluate import PERIODIC_SKIN, Evaluator
from physnetjax.check.report import CheckResult
from physnetjax.check.settings import CheckSettings, Thresholds
from physnetjax.md import frame_of, maxwell_boltzmann_momenta, nve, run
from physnetjax.md.driver import drift_and_fluctuation

GROUP = "stability"
ZERO_FORCE = 1e-6
"""eV/Å: forces no larger than this everywhere are "all zero" (as ``forces.FORCE_FLOOR``)."""


def random_displacements(rng: np.random.Generator, trials: int, num_atoms: int, length: float) -> np.ndarray:
    """(trials, n, 3) displacements, each atom moved by ``length`` Å in a uniformly random direction."""
    v = rng.normal(size=(trials, num_atoms, 3))
    return length * v / np.linalg.norm(v, axis=-1, keepdims=True)


def check_curvature(evaluator: Evaluator, index: int, settings: CheckSettings, thresholds: Thresholds) -> list:
    """Result ``stability.curvature`` (see module docstring)."""
    r = np.asarray(evaluator.structure.positions, np.float64)
    rng = np.random.default_rng(settings.seed + 1)
    moves = random_displacements(rng, settings.displacement_trials, r.shape[0], settings.displacement)
    _, forces = evaluator.evaluate(np.concatenate([r[None], r[None] + moves]))
    change = np.linalg.norm(forces[1:] - forces[:1], axis=-1)
    kappa = float(change.max() / settings.displacement)
    start = float(np.linalg.norm(forces[0], axis=-1).max())
    moved = float(np.linalg.norm(forces[1:], axis=-1).max())
    details = {"curvature_eV_per_A2": kappa, "max_force_at_start_eV_per_A": start,
               "max_force_displaced_eV_per_A": moved, "displacement_A": settings.displacement,
               "trials": settings.displacement_trials}
    message = (f"max |F| {start:.3g} → {moved:.3g} eV/Å after {settings.displacement} Å random moves; "
               f"κ = {kappa:.3g} eV/Å²")
    warning = None
    if max(start, moved) <= ZERO_FORCE:
        warning = ("every force is zero, at R and after every move: the energy does not depend on the geometry, "
                   "an untrained or broken model")
    return [CheckResult.measured("stability.curvature", GROUP, index, kappa, "eV/Å²", thresholds.curvature,
                                 message, details, warning=warning)]


_RUNNERS: dict = {}


def _nve_runner(evaluator: Evaluator, settings: CheckSettings):
    """Jitted ``(init, run)`` of the NVE integrator for this model and energy/force function."""
    frames = settings.nve_steps // settings.nve_stride
    key = (evaluator.energy_force, settings.nve_timestep, frames, settings.nve_stride)
    if key not in _RUNNERS:
        init_fn, apply_fn = nve(evaluator.energy_force, settings.nve_timestep)
        num_atoms = len(evaluator.structure.atomic_numbers)
        _RUNNERS[key] = (compilation.jit_for_system(num_atoms, init_fn),
                         compilation.jit_for_system(num_atoms, lambda state: run(apply_fn, state, frames,
                                                                                 settings.nve_stride)))
    return _RUNNERS[key]


def run_nve(evaluator: Evaluator, settings: CheckSettings) -> dict:
    """Run the NVE trajectory; returns time (ps) and conserved energy (eV) per recorded frame, max |F| (eV/Å) over
    the steps since the previous frame (every step is judged, not only the recorded ones), and the largest distance
    (Å) of an atom from its start over the recorded frames."""
    s = evaluator.structure
    masses = jnp.asarray(ase.data.atomic_masses[np.asarray(s.atomic_numbers)], jnp.float64)
    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(settings.seed), masses, settings.nve_temperature)
    init, simulate = _nve_runner(evaluator, settings)
    state = init(jnp.asarray(s.positions, jnp.float64), momenta, masses, evaluator.inputs)
    _, trajectory = simulate(state)
    first = frame_of(state)
    conserved = np.concatenate([[float(first.conserved)], np.asarray(trajectory.conserved)])
    max_force = np.concatenate([[float(first.max_force)], np.asarray(trajectory.peak_force)])  # every step's
    time_ps = np.arange(len(conserved)) * settings.nve_stride * settings.nve_timestep * 1e-3
    moved = np.linalg.norm(np.asarray(trajectory.positions) - np.asarray(s.positions)[None], axis=-1)
    return {"time_ps": time_ps, "conserved_eV": conserved, "max_force_eV_per_A": max_force,
            "max_displacement_A": float(np.max(moved))}


def check_nve(evaluator: Evaluator, index: int, settings: CheckSettings, thresholds: Thresholds) -> list:
    """Results ``stability.nve_energy`` (meV/atom) and ``stability.nve_max_force`` (eV/Å)."""
    n = evaluator.structure.num_atoms
    traj = run_nve(evaluator, settings)
    energy = traj["conserved_eV"]
    finite = bool(np.all(np.isfinite(energy)))
    deviation = float(np.max(np.abs(energy - energy[0]))) * 1e3 / n if finite else float("nan")
    drift, fluctuation = drift_and_fluctuation(traj["time_ps"], energy, n) if finite else (float("nan"),) * 2
    max_force = float(np.max(traj["max_force_eV_per_A"])) if finite else float("nan")
    details = {"steps": settings.nve_steps, "timestep_fs": settings.nve_timestep,
               "temperature_K": settings.nve_temperature, "max_deviation_meV_per_atom": deviation,
               "drift_meV_per_atom_per_ps": drift,
               "fluctuation_meV_per_atom": fluctuation, "max_force_eV_per_A": max_force,
               "first_nonfinite_frame": None if finite else int(np.argmin(np.isfinite(energy))),
               "max_displacement_A": traj["max_displacement_A"]}
    run_text = f"{settings.nve_steps} × {settings.nve_timestep} fs from {settings.nve_temperature:g} K"
    failure = None if finite else "energy became NaN/Inf"
    warning = None
    if evaluator.structure.periodic and not traj["max_displacement_A"] <= 0.5 * PERIODIC_SKIN:
        warning = (f"an atom moved {traj['max_displacement_A']:.3g} Å from its start, more than half the "
                   f"{PERIODIC_SKIN:g} Å skin of the run's fixed pair lists: pairs may have come within reach unseen "
                   "(a diffusing liquid; check it with --quick's shorter run, or run physnetjax.md)")
    return [
        CheckResult.measured("stability.nve_energy", GROUP, index, deviation, "meV/atom", thresholds.nve_energy,
                             f"{run_text}: max |E − E₀| {deviation:.3g} meV/atom, drift {drift:.3g} meV/atom/ps",
                             details, failure, warning),
        CheckResult.measured("stability.nve_max_force", GROUP, index, max_force, "eV/Å", thresholds.nve_force,
                             f"{run_text}: largest |F_i| {max_force:.3g} eV/Å", details, failure, warning),
    ]
