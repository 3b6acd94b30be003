"""Run MD with a PhysNet model in jitted chunks: overflow handling, stop on blow-up, output, report.

:func:`simulate` advances the system ``chunk_frames × save_every`` steps per jitted
call (:func:`physnetjax.md.run`, a ``lax.scan``). After each chunk, on the host:

1. If the neighbor list overflowed anywhere in the chunk, the chunk is discarded,
   the capacity multiplier grown ×1.5, the list re-allocated from the chunk's start
   positions and the chunk re-run; after :data:`MAX_OVERFLOW_RETRIES` such re-runs of one
   chunk the run stops (:class:`MDInstabilityError`): its pairs multiply, the system collapsed.
2. If any saved frame has a non-finite energy/position, or a force above
   ``max_force`` eV/Å at any step since the previous saved frame (``Frame.peak_force``)
   — or, in NVE, a conserved energy that has moved more than
   ``energy_tolerance`` meV/atom from its start value — the good frames are
   written, the last good frame is saved to ``<out>.last_good.xyz`` (without
   ``out`` nothing is written; the message gives its step) and
   :class:`MDInstabilityError` (:class:`EnergyConservationError` for the energy) is
   raised; with ``on_energy_drift="warn"`` the energy only gives a warning. A thermostatted or
   NPT run whose conserved quantity moves that far (the default tolerance) warns at its end
   (:func:`conserved_drift_warning`) and does not stop. Atoms
   closer than 0.1 Å in a saved frame stop the run the same way; the first frame with atoms closer
   than 0.5 Å warns (:class:`~physnetjax.errors.CloseContactWarning`), and the report and any
   later stop message name the closest approach.
3. With an ensemble model (:class:`~physnetjax.ensemble.PhysNetEnsemble`) every
   saved frame records ``max_forces_std_eV_per_A``, the largest per-atom force
   spread of the members (computed inside the jitted chunk). With
   ``uncertainty_threshold``, the start frame is checked first (past it: ``"stop"``
   ends the run before any step and saves no frame as trusted, ``"flag"`` warns);
   then the first saved frame past it either ends the run
   (``on_uncertainty="stop"``: the trusted frames before it are written, the last
   trusted one also to ``<out>.last_trusted.xyz`` (not without ``out``), and the
   report says where and why it stopped; no exception) or is flagged (``"flag"``:
   frames carry ``uncertain`` True and the run goes on). A new run stopped before its
   first trusted saved frame leaves no ``out`` and ``<out>.jsonl`` (empty, they would
   look like the result of a run; a restart leaves its earlier frames) and says so; so
   does a run stopped by a blow-up or an energy drift (point 2) or interrupted before it.
4. With a training record that holds the training data's interatomic distances
   (:mod:`physnetjax.distance_domain`), every kept saved frame is judged against them: its
   largest relative excursion beyond them is recorded as ``distance_excursion`` (0 inside),
   the first frame outside them by more than the margin warns
   (:class:`~physnetjax.distance_domain.TrainingDistancesWarning`, with its step; not again,
   and not at all when the start geometry already warned), and the report counts those frames.
5. Frames go to the trajectory (extxyz or .traj, see :mod:`physnetjax.md.io`), one
   JSON line per saved frame to ``<out>.jsonl`` (:data:`LOG_KEYS`, flushed per line;
   a restart drops the lines after its step, then appends; ensembles add
   ``max_forces_std_eV_per_A`` and, with a threshold, ``uncertain``; a distance record
   ``distance_excursion``; a periodic cell ``pressure_bar`` and ``volume_A3``, also in the
   trajectory frames' ``info``), and every
   ``checkpoint_every`` chunks the state is written to an ``.npz`` checkpoint from
   which ``restart=`` continues (it records the ensemble and the model's
   :func:`params_fingerprint`, which the command line checks on ``--restart``, and
   the :func:`state_checksum` of the state and the masses, which every restart
   checks); a restart first drops the trajectory frames the killed run wrote after
   that checkpoint, so steps stay monotonic and unique, and refuses a trajectory or log
   whose last frame is before the checkpoint's step (it would go on after a gap).

Frame of reference (:mod:`physnetjax.md.frame_of_reference`). An isolated
(non-periodic) system is integrated about an origin c, the centroid of its start
positions (in float64), as :func:`physnetjax.predict` and the calculator evaluate
it: the state holds r − c in ``dtype``, so the float32 round-off of positions and
forces is that of a molecule at the origin, wherever the user put it (1000 Å from
the origin one float32 ulp is 6e-5 Å, and the position updates of v·dt ≈ 1e-3 Å per
step each lose up to half an ulp to rounding). A periodic system starts with every
atom moved into the cell by whole lattice vectors m_i · h (in float64), as the
calculator does. Everything written — trajectory frames, last good/trusted frames,
MD-state checkpoints — is in the user's frame, r + c or r + m_i · h (h the frame's
cell) in float64; checkpoints also record c (``origin``) so that a restart
continues about the same origin.

Energy conservation. Velocity Verlet conserves a shadow Hamiltonian; the true
energy fluctuates by about (ω·dt)²/8 of the thermal energy 3 k_B T per atom for a
mode of angular frequency ω. For the fastest molecular vibration (an X–H stretch,
≲ 4000 cm⁻¹, ω ≈ 0.75 fs⁻¹) at 300 K that is ≈ 1.4 meV/atom at 0.5 fs and
≈ 5.6 meV/atom at 1 fs, and most modes are much slower. The default
:data:`ENERGY_TOLERANCE_MEV_PER_ATOM` = 20 meV/atom (≈ 15× the 0.5 fs estimate,
≈ 0.8 k_B T at 300 K) lets float32 round-off and normal fluctuations pass and stops
a timestep beyond the integrator's stability (10 fs: hundreds of meV/atom) or forces
that are not the gradient of the energy.

The report (:class:`MDReport`) gives the drift of the conserved quantity from a
least-squares line through all saved frames (meV/atom/ps), its fluctuation about
that line (meV/atom, standard deviation), the mean temperature and the speed; for
a periodic cell (every ensemble) also the mean pressure and volume. The conserved quantity of each ensemble
(E_pot + K + heat) is listed in :mod:`physnetjax.md.ensembles`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import ase
import ase.io
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax import compilation
from physnetjax.calculator import cast_params
from physnetjax.device_memory import check_fits
from physnetjax.distance_domain import DOMAIN_MARGIN, TrainingDistancesWarning
from physnetjax.ensemble.model import is_ensemble
from physnetjax.jsonlines import append_record, read_log, start_log, written_whole
from physnetjax.errors import (CloseContactWarning, InputNotFoundError, OutOfMemoryError, OutputWriteError,
                               PhysNetInputError, PhysNetInputWarning, RunStoppedError, displayed, displayed_setting,
                               namer, out_of_memory_as, warn_caller)
from physnetjax.md.ensembles import (
    CENTRE_OF_MASS_AT_REST,
    CHAIN_MASSES_KEY,
    ENSEMBLES,
    TARGET_PRESSURE_KEY,
    TARGET_TEMPERATURE_KEY,
    EnsembleOptions,
    build_dynamics,
    check_ensemble_settings,
    checkpoint_arrays,
    checkpoint_ensemble,
    continue_targets,
    restore_ensemble_state,
    run_targets,
)
from physnetjax.md.close_contacts import CloseContact, closer, closest_contact
from physnetjax.md.frame_of_reference import FrameOfReference
from physnetjax.md.integrators import (MDState, centre_of_mass_at_rest, kinetic_energy,
                                       maxwell_boltzmann_momenta, run)
from physnetjax.md.io import (TRAJECTORY_FORMATS, TrajectoryWriter, frame_atoms, momenta_from_ase, replace_frames,
                              trajectory_until)
from physnetjax.md.potential import AllPairs
from physnetjax.neighbors import image_reach, model_triplet_cutoff
from physnetjax.npz_file import NpzReadError, read_npz
from physnetjax.units import AMU_A2_PER_FS2_IN_EV, ASE_TIME_UNIT_FS, BAR, BOLTZMANN
from physnetjax.training_record import NO_TRAINING_RECORD, TrainingRecord, training_record_of
from physnetjax.predict import check_params_fit, evaluation_dtype, out_of_memory_error
from physnetjax.validation import (MAX_TEMPERATURE_K, MAX_TEMPERATURE_REASON, atoms_total_charge, check_count,
                                   check_length_unit, check_masses, check_output_path, check_range, check_seed,
                                   check_total_charge, validate_structure)

logger = logging.getLogger(__name__)

MAX_CELL_RETRIES = 8
"""Re-runs of one chunk (each with half the frames) after the NPT cell outgrew its neighbor lists."""
MAX_OVERFLOW_RETRIES = 8
"""Re-runs of one chunk after its neighbor lists overflowed, each with 1.5× the capacity (×26 in all): more means
pairs that multiply within one chunk, as no physical system's do (atoms or a cell that collapse, NaN positions)."""
LOG_KEYS = ("step", "time_fs", "potential_energy_eV", "kinetic_energy_eV", "conserved_eV", "temperature_K",
            "max_force_eV_per_A")
"""Keys of each ``<out>.jsonl`` line (one per saved frame; the frame's values in eV, K, eV/Å); a periodic cell adds
(in every ensemble) the instantaneous pressure ``pressure_bar`` (P = 2K/(3V) − tr σ/3, bar) and ``volume_A3``."""


ENERGY_TOLERANCE_MEV_PER_ATOM = 20.0
"""meV/atom: largest |E_conserved(t) − E_conserved(0)| / N accepted in NVE (see the module docstring)."""

ENERGY_DRIFT_ACTIONS = ("stop", "warn")
UNCERTAINTY_ACTIONS = ("stop", "flag")

ENSEMBLE_ONLY_ARGUMENTS = {
    "friction": ("langevin",),
    "temperature_end_K": ("nvt-nhc", "csvr", "npt"),
    "thermostat_time_fs": ("nvt-nhc", "csvr", "npt"),
    "chain_length": ("nvt-nhc",),
    "pressure_bar": ("npt",),
    "pressure_end_bar": ("npt",),
    "barostat_time_fs": ("npt",),
    "compressibility_per_bar": ("npt",),
    "anisotropic": ("npt",),
    "energy_tolerance": ("nve",),
    "on_energy_drift": ("nve",),
}
"""Keyword arguments of :func:`simulate` that only some ensembles use (→ those ensembles); given (not None) to
another ensemble they are refused. Their values when not given: :class:`~physnetjax.md.ensembles.EnsembleOptions`,
:data:`ENERGY_TOLERANCE_MEV_PER_ATOM` and ``"stop"``."""


def check_ensemble_arguments(ensemble: str, **given) -> None:
    """PhysNetInputError naming the :data:`ENSEMBLE_ONLY_ARGUMENTS` given (not None) that ``ensemble`` does not use."""
    unused = [name for name, users in ENSEMBLE_ONLY_ARGUMENTS.items()
              if given.get(name) is not None and ensemble not in users]
    if unused:
        names = ", ".join(f"{name}={given[name]!r} ({' / '.join(ENSEMBLE_ONLY_ARGUMENTS[name])} only)"
                          for name in unused)
        them = "it" if len(unused) == 1 else "them"
        raise PhysNetInputError(f"ensemble={ensemble!r} does not use {names}: leave {them} out (None) or choose an "
                                "ensemble that uses them")


class MDInstabilityError(RunStoppedError):
    """The dynamics produced NaN/Inf or an absurd force; the last good frame was saved."""


class EnergyConservationError(MDInstabilityError):
    """NVE stopped conserving energy beyond the tolerance; the last good frame was saved."""


@dataclasses.dataclass
class MDReport:
    """Summary of a run. Energies per atom; drift from a linear fit of the conserved quantity vs time.

    Ensembles add ``max_forces_std_eV_per_A`` (largest per-atom force spread of the checked
    frames; None for a single model), ``uncertain_frames`` (frames past
    ``uncertainty_threshold``, a stopping one included) and, when the run stopped on the
    uncertainty, ``stop_reason`` and ``last_trusted`` (path of the saved frame; None without ``out``).
    ``frames`` counts the saved frames the run kept (written to ``out``; 0 only when it stopped
    before its first trusted frame).
    A periodic cell (every ensemble) records the means over the kept frames of the instantaneous pressure
    ``mean_pressure_bar`` (P = 2K/(3V) − tr σ/3) and of the volume ``mean_volume_A3``; None for an isolated system.
    ``geometry_momenta_temperature_K`` is the kinetic temperature of start momenta taken from the
    geometry (not drawn at ``temperature_K``), else None. ``closest_contact`` is the closest approach
    of two atoms in the saved frames when below 0.5 Å (:mod:`physnetjax.md.close_contacts`), else None.
    A thermostatted run records its mean target temperature ``target_temperature_K`` (the middle of
    a ramp), the relaxation time of its kinetic energy ``kinetic_relaxation_fs``
    (:func:`kinetic_relaxation_time_fs`) and the mean temperatures of the first and second half of its
    saved frames ``half_temperatures_K``; None in NVE. ``conserved_deviation_meV_per_atom`` is the largest
    deviation of a thermostatted or NPT run's conserved quantity from its start value in the kept frames when it
    passed :data:`ENERGY_TOLERANCE_MEV_PER_ATOM` (the run warned: :func:`conserved_drift_warning`), else None.
    ``kinetic_fluctuation_meV_per_atom`` is an NVE run's standard deviation of K over its saved frames (the
    scale its energy fluctuation is judged on: :meth:`integration_note`), else None.
    With a record of the training data's interatomic distances, ``frames_outside_training`` counts the kept frames
    outside them by more than the margin, ``first_outside_step`` is the step of the first (None: none), and
    ``largest_distance_excursion`` is the largest excursion of a kept frame (relative, 0 inside); all None without
    a record.
    """

    steps: int
    time_ps: float
    num_atoms: int
    drift_meV_per_atom_per_ps: float
    fluctuation_meV_per_atom: float
    mean_temperature_K: float
    steps_per_second: float
    compile_seconds: float
    reallocations: int
    out: Optional[str]
    all_pairs: bool = False
    ensemble: str = "nve"
    mean_pressure_bar: Optional[float] = None
    mean_volume_A3: Optional[float] = None
    max_forces_std_eV_per_A: Optional[float] = None
    uncertainty_threshold: Optional[float] = None
    uncertain_frames: int = 0
    stop_reason: Optional[str] = None
    last_trusted: Optional[str] = None
    drawn_temperature_K: Optional[float] = None
    geometry_momenta_temperature_K: Optional[float] = None
    start_potential_above_mean_eV: Optional[float] = None
    degrees_of_freedom: Optional[int] = None
    closest_contact: Optional[CloseContact] = None
    frames: int = 0
    target_temperature_K: Optional[float] = None
    kinetic_relaxation_fs: Optional[float] = None
    half_temperatures_K: Optional[tuple[float, float]] = None
    conserved_deviation_meV_per_atom: Optional[float] = None
    kinetic_fluctuation_meV_per_atom: Optional[float] = None
    frames_outside_training: Optional[int] = None
    first_outside_step: Optional[int] = None
    largest_distance_excursion: Optional[float] = None

    @property
    def stopped(self) -> bool:
        """True when the run ended early because a frame's uncertainty passed the threshold."""
        return self.stop_reason is not None

    def integration_note(self) -> Optional[str]:
        """That an NVE run's timestep is long for its model, or None: when its energy fluctuation (std about the
        drift line) is more than :data:`NVE_FLUCTUATION_RATIO` of its kinetic energy's over at least
        :data:`NVE_FLUCTUATION_FRAMES` saved frames. The energy tolerance stops a run only once the energy has moved
        20 meV/atom, which a 1 ps run at a too-long step need not reach (ethanol, shipped model: ratio 0.012 at
        0.5 fs, 0.054 at 1 fs, 0.52 at 2 fs, which passed 1 ps and stopped at 1.1 ps of a longer run)."""
        if (self.ensemble != "nve" or self.kinetic_fluctuation_meV_per_atom is None
                or self.frames < NVE_FLUCTUATION_FRAMES or not self.kinetic_fluctuation_meV_per_atom > 0):
            return None
        ratio = self.fluctuation_meV_per_atom / self.kinetic_fluctuation_meV_per_atom
        if not ratio > NVE_FLUCTUATION_RATIO:
            return None
        return (f"note: the energy fluctuates by {ratio:.2g} of the kinetic energy's fluctuation "
                f"({self.fluctuation_meV_per_atom:.3g} of {self.kinetic_fluctuation_meV_per_atom:.3g} meV/atom; a "
                f"well-resolved integration stays below 0.05): the timestep "
                f"{1e3 * self.time_ps / self.steps:.3g} fs is long for this model, and a longer run would drift "
                "further; halve it")

    def temperature_note(self) -> Optional[str]:
        """Why the mean temperature differs from --temperature, or None.

        In NVE only the total energy is conserved: ``temperature_K`` only draws the start
        momenta, whose kinetic temperature scatters about it by √(2/N_f) (a random draw over
        N_f = 3N − 3 degrees of freedom), and ⟨K⟩ − K(0) = E_pot(0) − ⟨E_pot⟩: a start
        geometry whose potential energy lies above the run's mean (not a minimum, e.g. a
        snapshot from a hotter run) heats the system by 2 (E_pot(0) − ⟨E_pot⟩) / (N_f k_B); one below it (a
        minimum) cools it, and the note says "below" with the magnitude in eV.
        A thermostatted run gets a note only when its mean temperature lies more than
        :data:`TEMPERATURE_NOTE_SIGMAS` times :func:`mean_temperature_scatter_K` from the target. It says
        that the run has not reached equilibrium with the thermostat when the run is shorter than
        :data:`EQUILIBRATION_RELAXATION_TIMES` relaxation times or its two halves differ by more than
        that many times the scatter of their difference (√2 × a half's) with the second nearer the target,
        else that the thermostat does not hold the target (with the second half further off: that the
        temperature moves away from it, which no start far from equilibrium explains). When the run's conserved
        quantity moved beyond the tolerance (``conserved_deviation_meV_per_atom``) it says instead that the
        integration heats the system: the timestep is too long for this model (or the forces are not conservative).
        """
        if self.target_temperature_K is not None:
            return self._thermostat_note()
        if self.ensemble != "nve" or self.drawn_temperature_K is None:
            return None
        above = self.start_potential_above_mean_eV
        heating = 2 * above / (self.degrees_of_freedom * BOLTZMANN)
        offset = f"{above:+.4g} eV above" if above >= 0 else f"{-above:.4g} eV below"
        return (f"note: NVE keeps the energy, not the temperature: the start velocities drawn at --temperature "
                f"had {self.drawn_temperature_K:.1f} K (random over {self.degrees_of_freedom} degrees of freedom, "
                f"±{100 * math.sqrt(2 / self.degrees_of_freedom):.0f} %), and the start geometry's potential energy "
                f"was {offset} its mean over the run ({heating:+.1f} K once shared out as kinetic energy)")

    def _thermostat_note(self) -> Optional[str]:
        if self.half_temperatures_K is None:
            return None
        run_fs = 1e3 * self.time_ps
        scatter = mean_temperature_scatter_K(self.target_temperature_K, self.degrees_of_freedom, run_fs,
                                             self.kinetic_relaxation_fs, self.frames)
        off = self.mean_temperature_K - self.target_temperature_K
        if abs(off) <= TEMPERATURE_NOTE_SIGMAS * scatter:
            return None
        first, second = self.half_temperatures_K
        half_scatter = mean_temperature_scatter_K(self.target_temperature_K, self.degrees_of_freedom, run_fs / 2,
                                                  self.kinetic_relaxation_fs, self.frames // 2)
        halves_differ = abs(first - second) > TEMPERATURE_NOTE_SIGMAS * math.sqrt(2) * half_scatter
        receding = abs(second - self.target_temperature_K) > abs(first - self.target_temperature_K)
        if self.conserved_deviation_meV_per_atom is not None:
            why = (f"its conserved quantity moved {self.conserved_deviation_meV_per_atom:.3g} meV/atom from its start "
                   "value, so the integration itself heats or cools the system: the timestep is too long for this "
                   "model (or its forces are not conservative); use a smaller timestep")
        elif (run_fs < EQUILIBRATION_RELAXATION_TIMES * self.kinetic_relaxation_fs
                or (halves_differ and not receding)):
            why = ("the run has not reached equilibrium with the thermostat (it started far from it: a start geometry "
                   "still relaxing, or momenta at another temperature): leave out its first part, or run longer")
        else:
            why = ("the thermostat does not hold the target"
                   + (" (the temperature moves away from it: the second half is further off)" if halves_differ else "")
                   + ": " + ("a Nosé-Hoover chain that does not reach every mode of a small or stiff molecule (try "
                             "csvr or langevin), " if self.ensemble == "nvt-nhc" else "")
                   + "heat from the integration (a smaller timestep) or from where the model extrapolates")
        return (f"note: the mean temperature is {off:+.1f} K from the thermostat's {self.target_temperature_K:.1f} K, "
                f"more than {TEMPERATURE_NOTE_SIGMAS} times its expected scatter (±{scatter:.2g} K over "
                f"{self.time_ps:.4g} ps, {self.degrees_of_freedom} degrees of freedom, kinetic energy relaxing in "
                f"{self.kinetic_relaxation_fs:.4g} fs); its first half averaged {first:.1f} K, its second "
                f"{second:.1f} K: {why}")

    @property
    def edge_set(self) -> str:
        """How the model's edges were found: the constant all-pairs set or an in-jit neighbor list."""
        if self.all_pairs:
            return f"all {self.num_atoms * (self.num_atoms - 1)} ordered pairs (constant, no neighbor list)"
        return f"neighbor list (re-allocations: {self.reallocations})"

    def lines(self) -> list[str]:
        quantity = "energy" if self.ensemble == "nve" else f"conserved quantity ({self.ensemble})"
        return [
            f"steps: {self.steps} ({self.time_ps:.4g} ps, {self.num_atoms} atoms)",
            f"{quantity} drift: {_figure(self.drift_meV_per_atom_per_ps, '+.4g', ' meV/atom/ps (linear fit)')}",
            f"{quantity} fluctuation: {_figure(self.fluctuation_meV_per_atom, '.4g', ' meV/atom (std about the fit)')}",
        ] + ([self.integration_note()] if self.integration_note() else []) + [
            f"mean temperature: {self.mean_temperature_K:.2f} K",
        ] + ([self.temperature_note()] if self.temperature_note() else []) + self._start_velocity_lines() + (
            [f"mean pressure: {self.mean_pressure_bar:.5g} bar", f"mean volume: {self.mean_volume_A3:.6g} Å³"]
            if self.mean_pressure_bar is not None else []) + [
            f"speed: {_figure(self.steps_per_second, '.1f', ' steps/s')} (compile {self.compile_seconds:.1f} s "
            "excluded)",
            f"edges: {self.edge_set}",
        ] + self._contact_lines() + self._domain_lines() + self._uncertainty_lines() + self._trajectory_lines()

    def _contact_lines(self) -> list[str]:
        if self.closest_contact is None:
            return []
        return [f"closest approach: {self.closest_contact.describe()}: the model extrapolates there"]

    def _domain_lines(self) -> list[str]:
        """How the kept frames lie against the training data's interatomic distances (with a record)."""
        if self.frames_outside_training is None or self.frames == 0:
            return []
        largest = f"largest excursion {self.largest_distance_excursion:.1%}"
        if not self.largest_distance_excursion:
            return ["training distances: every saved frame within them"]
        if not self.frames_outside_training:
            return [f"training distances: every saved frame within their {DOMAIN_MARGIN:.0%} margin ({largest})"]
        return [f"training distances: {self.frames_outside_training} of {self.frames} saved frame(s) more than "
                f"{DOMAIN_MARGIN:.0%} outside them, the first at step {self.first_outside_step} ({largest}): the "
                "model extrapolates there"]

    def _trajectory_lines(self) -> list[str]:
        """Where the saved frames went: the trajectory and its frame count, or that none was written."""
        if self.out is None:
            return []
        if self.frames == 0:
            return [f"trajectory: none (no saved frame was trusted; nothing was written to {self.out})"]
        return [f"trajectory: {self.out} ({self.frames} frame(s) written)"]

    def _start_velocity_lines(self) -> list[str]:
        """Where the start velocities came from, when not from a draw at --temperature (the geometry's momenta)."""
        if self.geometry_momenta_temperature_K is None:
            return []
        target = "" if self.ensemble == "nve" else f"; --temperature is the {self.ensemble} target"
        return [f"start velocities: the geometry's momenta ({self.geometry_momenta_temperature_K:.1f} K), not drawn "
                f"at --temperature{target}"]

    def _uncertainty_lines(self) -> list[str]:
        if self.max_forces_std_eV_per_A is None:
            return []
        threshold = ("" if self.uncertainty_threshold is None else
                     f" (threshold {self.uncertainty_threshold:g} eV/Å, {self.uncertain_frames} frame(s) past it)")
        lines = [f"uncertainty: max per-atom force spread {self.max_forces_std_eV_per_A:.4g} eV/Å over the checked "
                 f"frames{threshold}"]
        if self.stopped:
            lines.append(f"stopped early: {self.stop_reason}")
        return lines


def _figure(value: float, spec: str, unit: str) -> str:
    """``value`` formatted with ``spec`` and followed by ``unit``; "n/a" when it is NaN (too few frames, no steps)."""
    return f"{value:{spec}}{unit}" if np.isfinite(value) else "n/a"


def drift_and_fluctuation(time_ps, conserved_eV, num_atoms) -> tuple[float, float]:
    """Slope (meV/atom/ps) of the least-squares line E(t) = a + b t and the std of E about it (meV/atom)."""
    t = np.asarray(time_ps, np.float64)
    e = np.asarray(conserved_eV, np.float64)
    if t.shape[0] < 3:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(t, e, 1)
    residual = e - (intercept + slope * t)
    return 1e3 * slope / num_atoms, 1e3 * float(residual.std()) / num_atoms


def _save_npz(path: Path, **arrays) -> None:
    """Replace ``path`` with ``arrays`` in one step (:func:`~physnetjax.jsonlines.written_whole`): a write the file
    system refuses (disk full) leaves the MD checkpoint there unchanged and raises an OutputWriteError saying so."""
    with written_whole(path, also_kept="") as tmp:
        np.savez(tmp, **arrays)


def ensemble_options(temperature_K: float, ensemble_only: Mapping[str, Any]) -> EnsembleOptions:
    """The thermostat/barostat settings of a run at ``temperature_K`` (K): the :class:`EnsembleOptions` fields among
    ``ensemble_only`` (:data:`ENSEMBLE_ONLY_ARGUMENTS` as :func:`simulate` takes them) that are given (not None),
    the defaults for the others."""
    fields = {field.name for field in dataclasses.fields(EnsembleOptions)}
    given = {name: value for name, value in ensemble_only.items() if name in fields and value is not None}
    return EnsembleOptions(temperature_K=temperature_K, **given)


MAX_STEP = 2**31 - 1
"""Largest step number an MD run reaches, a restart's start step included: the device counts steps and the frames
between saves in 32-bit integers (2**31 steps of 0.5 fs are a microsecond)."""

MAX_STEP_REASON = "steps are counted in 32-bit integers on the device"
"""Why :data:`MAX_STEP`, as messages say it."""


def check_md_arguments(*, ensemble, temperature_K, timestep_fs, steps, save_every, chunk_frames, max_force, skin, out,
                       ensemble_only: Optional[Mapping[str, Any]] = None, uncertainty_threshold: Optional[float] = None,
                       on_uncertainty: str = "stop", atom_energies: bool = False,
                       names: Optional[Mapping[str, str]] = None) -> None:
    """Raise PhysNetInputError for an argument of :func:`simulate` that cannot run (checked before any work).

    ``ensemble_only`` holds the :data:`ENSEMBLE_ONLY_ARGUMENTS` as :func:`simulate` takes them
    (None or left out: not given, their default): one given to an ensemble that does not use
    it is refused (:func:`check_ensemble_arguments`), the settings the ensemble uses are checked
    by :func:`~physnetjax.md.ensembles.check_ensemble_settings`. ``names``: keyword → how the
    messages name the argument (a command line passes its options, e.g. ``{"timestep_fs":
    "--timestep"}``); by default the keywords of :func:`simulate`.
    """
    ensemble_only = {} if ensemble_only is None else ensemble_only

    name = namer(names)

    if ensemble not in ENSEMBLES:
        raise PhysNetInputError(f"{name('ensemble')} must be one of {ENSEMBLES}, received {ensemble!r}")
    check_ensemble_arguments(ensemble, **ensemble_only)
    check_count(name("steps"), steps, what="MD steps to run")
    check_count(name("save_every"), save_every, what="steps between saved frames")
    check_count(name("chunk_frames"), chunk_frames, what="saved frames per jitted chunk")
    if steps % save_every:
        raise PhysNetInputError(f"{name('steps')} ({steps}) must be a positive multiple of {name('save_every')} "
                                f"({save_every})")
    if steps > MAX_STEP:
        raise PhysNetInputError(f"{name('steps')} must be at most {MAX_STEP} ({MAX_STEP_REASON}), received {steps}")
    check_range(name("timestep_fs"), timestep_fs, "fs", 0.0, strict=True)
    check_range(name("max_force"), max_force, "eV/Å", 0.0, strict=True)
    check_range(name("skin"), skin, "Å", 0.0)
    check_ensemble_settings(ensemble, ensemble_options(temperature_K, ensemble_only), names)
    energy_tolerance = ensemble_only.get("energy_tolerance")
    if energy_tolerance is not None and not energy_tolerance > 0:
        raise PhysNetInputError(f"{name('energy_tolerance')} must be > 0 meV/atom, received {energy_tolerance}")
    on_energy_drift = ensemble_only.get("on_energy_drift")
    if on_energy_drift is not None and on_energy_drift not in ENERGY_DRIFT_ACTIONS:
        raise PhysNetInputError(f"{name('on_energy_drift')} must be one of {ENERGY_DRIFT_ACTIONS}, received "
                                f"{on_energy_drift!r}")
    if on_uncertainty not in UNCERTAINTY_ACTIONS:
        raise PhysNetInputError(f"{name('on_uncertainty')} must be one of {UNCERTAINTY_ACTIONS}, received "
                                f"{on_uncertainty!r}")
    if uncertainty_threshold is not None:
        check_range(name("uncertainty_threshold"), uncertainty_threshold, "eV/Å", 0.0, strict=True)
    if atom_energies and out is None:
        raise PhysNetInputError(f"{name('atom_energies')} writes the per-atom energies into the frames of "
                                f"{name('out')}: give {name('out')}, or leave {name('atom_energies')} out")
    if out is not None and Path(out).suffix.lower() not in TRAJECTORY_FORMATS:
        raise PhysNetInputError(f"{name('out')} {out}: a trajectory file must end in one of "
                                f"{sorted(TRAJECTORY_FORMATS)}")
    if out is not None:
        check_output_path(out, overwrite=True, what=name("out"))


def partial_pbc_message(model, pbc) -> str:
    """Why MD refuses a start geometry periodic along some directions only (``pbc``, 3 bools: a slab, a wire), and
    the two ways to run it: a cell periodic in all directions with vacuum wider than the model's reach
    (:func:`physnetjax.neighbors.image_reach`, Å) along the others, or ASE's dynamics with the calculator."""
    reach, reach_text = image_reach(model.member if is_ensemble(model) else model)
    open_axes = tuple(int(k) for k in np.flatnonzero(~np.asarray(pbc, dtype=bool)))
    axis = open_axes[0] if len(open_axes) == 1 else open_axes
    return (f"pbc={np.asarray(pbc, dtype=bool).tolist()}: MD runs only fully periodic or isolated systems; for a slab "
            f"or a wire, make the cell periodic in all three directions with vacuum along the non-periodic "
            f"direction(s) wider than {reach_text}, e.g. atoms.center(vacuum={reach:g}, "
            f"axis={axis}); atoms.pbc = True (which leaves {2 * reach:g} Å between the atoms and their images across "
            "the vacuum, so the energies and forces are those of the partly periodic system), or run ASE's dynamics "
            "with physnetjax.PhysNetCalculator, which handles partial PBC")


def md_out_of_memory(model, num_atoms: int, nbrs, error: BaseException, doing: str,
                     chunk_name: str = "chunk_frames") -> OutOfMemoryError:
    """OutOfMemoryError for MD of ``num_atoms`` atoms with neighbor state ``nbrs``: the list capacities (what the
    compiled step holds) and, when the D3 triangles are not the cause, fewer frames per chunk (``chunk_name``, the
    option that sets them) or fewer atoms."""
    if isinstance(nbrs, AllPairs):
        triangles = (num_atoms * (num_atoms - 1) * (num_atoms - 2) // 2  # pairs-of-pairs p < q per atom
                     if model_triplet_cutoff(model) is not None else None)
        sizes = (num_atoms * (num_atoms - 1), None, triangles)
    else:
        sizes = (nbrs.edges.capacity, None if nbrs.pairs is None else nbrs.pairs.capacity,
                 None if nbrs.triplets is None else nbrs.triplets.capacity)
    return out_of_memory_error(model, doing, num_atoms, *sizes, error,
                               remedy=f"the system is too large for this device; use fewer frames per chunk (a "
                                      f"smaller {chunk_name}: the device holds a chunk's frames), a device with more "
                                      "memory, or fewer atoms", atoms_are="atoms")


def simulate(
    model,
    params,
    atoms: ase.Atoms,
    *,
    ensemble: str = "nve",
    temperature_K: float = 300.0,
    timestep_fs: float = 0.5,
    steps: int = 1000,
    out: Optional[str] = None,
    save_every: int = 10,
    chunk_frames: int = 100,
    friction: Optional[float] = None,
    seed: int = 0,
    dtype=None,
    max_force: float = 100.0,
    skin: float = 0.5,
    capacity_multiplier: float = 1.25,
    checkpoint_path: Optional[str] = None,
    checkpoint_every: int = 10,
    restart: Optional[str] = None,
    progress: Optional[Callable[[int], None]] = None,
    training_record: TrainingRecord = NO_TRAINING_RECORD,
    energy_tolerance: Optional[float] = None,
    on_energy_drift: Optional[str] = None,
    thermostat_time_fs: Optional[float] = None,
    chain_length: Optional[int] = None,
    temperature_end_K: Optional[float] = None,
    pressure_bar: Optional[float] = None,
    pressure_end_bar: Optional[float] = None,
    barostat_time_fs: Optional[float] = None,
    compressibility_per_bar: Optional[float] = None,
    anisotropic: Optional[bool] = None,
    uncertainty_threshold: Optional[float] = None,
    on_uncertainty: str = "stop",
    atom_energies: bool = False,
    names: Optional[Mapping[str, str]] = None,
) -> MDReport:
    """Run MD of ``atoms`` with ``model``/``params`` in one of :data:`ENSEMBLES`.

    Args:
      atoms: the start geometry; its momenta are used if non-zero (less their total
        momentum, :func:`without_total_momentum`; finite, kinetic temperature at most
        :data:`~physnetjax.validation.MAX_TEMPERATURE_K`), else momenta are drawn from
        Maxwell–Boltzmann at ``temperature_K`` (zero total momentum). Its masses
        (``atoms.get_masses()``) must be finite and > 0 amu.
        Fully periodic atoms (pbc all True) run in their cell. Its total charge (e) is
        :func:`physnetjax.validation.atoms_total_charge`'s, as for the ASE calculator:
        ``atoms.info["charge"]``, else the sum of the initial charges, else 0.
      ensemble: ``"nve"`` (velocity Verlet), ``"langevin"`` (BAOAB, ``friction`` fs⁻¹),
        ``"nvt-nhc"`` (Nosé–Hoover chain of ``chain_length``, time ``thermostat_time_fs``),
        ``"csvr"`` (stochastic velocity rescaling, ``thermostat_time_fs``) or ``"npt"``
        (stochastic cell rescaling at ``pressure_bar`` with ``barostat_time_fs`` and
        ``compressibility_per_bar``, CSVR thermostat; ``anisotropic`` rescales the
        three axes independently); see :mod:`physnetjax.md.ensembles`. The settings
        only some ensembles use (:data:`ENSEMBLE_ONLY_ARGUMENTS`) default to None, their
        default value (:class:`~physnetjax.md.ensembles.EnsembleOptions`); given to an
        ensemble that does not use them they are refused, not ignored.
      temperature_K: initial / thermostat temperature in K.
      temperature_end_K, pressure_end_bar: linear ramps from ``temperature_K`` /
        ``pressure_bar`` to these over the ``steps`` of this call (NHC, CSVR, NPT).
      timestep_fs: time step in fs.
      steps: number of steps (a multiple of ``save_every``).
      out: trajectory path (.xyz/.extxyz/.traj) or None; the JSON Lines log goes to ``<out>.jsonl``.
      save_every: steps between saved frames (observables are sampled there too).
      chunk_frames: saved frames per jitted chunk.
      dtype: ``"float32"`` or ``"float64"`` (needs ``jax_enable_x64``); default: the model's precision
        (:func:`~physnetjax.predict.evaluation_dtype`).
      max_force: largest |F_i| in eV/Å accepted at any step before the run is stopped (the last good frame is
        the saved frame before that step).
      checkpoint_path: ``.npz`` file for MD-state checkpoints (every
        ``checkpoint_every`` chunks and at the end; they record ``ensemble`` and
        ``model``, the :func:`params_fingerprint` of ``params``), or None.
      restart: a checkpoint written by a previous run to continue from; it keeps the
        thermostat/barostat state (chain, cell, PRNG key, heat) when the ensemble is
        the same, and the cell of an NPT run. A checkpoint of another model (its
        recorded :func:`params_fingerprint`) is refused; one of another ensemble continues
        in ``ensemble`` with a warning (``python -m physnetjax.md`` refuses that switch
        unless ``--ensemble`` is given explicitly): its conserved quantity starts from
        ``ensemble``'s definition (heat 0: the total energy in NVE), and into an ensemble
        that keeps the centre of mass at rest (all but Langevin) the momenta lose their
        total momentum as a geometry file's do (:func:`without_total_momentum`).
      progress: called with 0 once the inputs passed their checks (before the first
        compilation), then with the number of steps completed after each chunk.
      training_record: what the model's training data held (checkpoint metadata,
        :class:`~physnetjax.training_record.TrainingRecord`); a start geometry outside it warns.
      energy_tolerance: NVE only: largest |E_conserved(t) − E_conserved(start)| in
        meV/atom before ``on_energy_drift`` applies ("stop": raise
        :class:`EnergyConservationError` after saving the last good frame; "warn").
        A restarted run measures from its restart point.
      uncertainty_threshold: eV/Å, for an ensemble model only: largest accepted
        max_i ``forces_std``_i of a saved frame (module docstring, point 3).
      on_uncertainty: ``"stop"`` (end the run at the first frame past the threshold,
        keep the last trusted frame; :attr:`MDReport.stopped`) or ``"flag"``.
      atom_energies: every frame written to ``out`` also holds the per-atom energies (eV, E0[Z_i] included,
        summing to the frame's energy; ``atoms.get_potential_energies()`` after reading it), from one more model
        evaluation per saved frame inside the compiled chunk (shared with the uncertainty's).
      names: keyword → how the messages (argument errors, stop reasons) name the argument; a
        command line passes its options, e.g. ``{"max_force": "--max-force"}`` (by default the keywords).

    Returns:
      :class:`MDReport` (``steps`` = the steps whose frames were kept: fewer than
      requested when stopped on uncertainty).

    Raises:
      ValueError: bad arguments. EnergyConservationError: see ``energy_tolerance``. PhysNetInputError: masses or
        momenta of the start geometry outside the ranges above, ASE constraints on it; a start geometry that fails
        :func:`physnetjax.validation.validate_structure` with ``strict=True`` (atoms closer
        than 0.5 Å are refused), fewer than 2 atoms, partial PBC, or ``npt`` without a cell. MDInstabilityError:
        NaN/Inf or |F| > max_force.
    """
    if not isinstance(atoms, ase.Atoms):  # a list of one Atoms was "MD needs at least 2 atoms, ... has 1"
        raise PhysNetInputError(f"atoms must be the start geometry as one ase.Atoms, received "
                                f"{type(atoms).__name__}")
    ensemble_only = dict(energy_tolerance=energy_tolerance, on_energy_drift=on_energy_drift,
                         temperature_end_K=temperature_end_K, friction=friction,
                         thermostat_time_fs=thermostat_time_fs, chain_length=chain_length, pressure_bar=pressure_bar,
                         pressure_end_bar=pressure_end_bar, barostat_time_fs=barostat_time_fs,
                         compressibility_per_bar=compressibility_per_bar, anisotropic=anisotropic)
    check_md_arguments(ensemble=ensemble, temperature_K=temperature_K, timestep_fs=timestep_fs, steps=steps,
                       save_every=save_every, chunk_frames=chunk_frames, max_force=max_force, skin=skin, out=out,
                       ensemble_only=ensemble_only, uncertainty_threshold=uncertainty_threshold,
                       on_uncertainty=on_uncertainty, atom_energies=atom_energies, names=names)
    check_count(displayed("checkpoint_every", names), checkpoint_every, what="chunks between MD checkpoints")
    if checkpoint_path is not None:
        check_output_path(checkpoint_path, overwrite=True, what=displayed("checkpoint_path", names))
    if restart is not None and not Path(restart).is_file():
        raise InputNotFoundError(f"restart file {restart} does not exist" if not Path(restart).exists() else
                                 f"restart file {restart} is a directory, not an MD-state checkpoint (.npz)", restart)
    check_params_fit(model, params)
    options = ensemble_options(temperature_K, ensemble_only)
    if ensemble == "nvt-nhc" and options.thermostat_time_fs < NHC_MIN_PERIOD_STEPS * timestep_fs:
        warn_caller(f"{displayed_setting('thermostat_time_fs', f'{options.thermostat_time_fs:g}', names)} fs is "
                    f"{options.thermostat_time_fs / timestep_fs:.3g} timesteps: a Nosé-Hoover chain oscillates with "
                    f"period π√2 τ, which the integration follows poorly below {NHC_MIN_PERIOD_STEPS} steps per τ "
                    "(ethanol at 0.5 fs: tau = 1 fs drifted 9.5 meV/atom/ps, tau = 0.5 fs ended in NaN); 10-100 "
                    "timesteps is typical", PhysNetInputWarning)
    energy_tolerance = ENERGY_TOLERANCE_MEV_PER_ATOM if energy_tolerance is None else energy_tolerance
    on_energy_drift = "stop" if on_energy_drift is None else on_energy_drift
    record_uncertainty = check_uncertainty_arguments(model, uncertainty_threshold, names)
    fingerprint = params_fingerprint(params) if checkpoint_path is not None or restart is not None else None
    dtype = evaluation_dtype(dtype, model, "simulate")
    params = cast_params(params, dtype)
    n = len(atoms)
    if n < 2:
        raise PhysNetInputError(f"MD needs at least 2 atoms, the start geometry has {n} (an isolated atom has no "
                                "dynamics: 3N - 3 = 0 degrees of freedom)")
    if np.any(atoms.pbc) and not np.all(atoms.pbc):
        raise PhysNetInputError(partial_pbc_message(model, atoms.pbc))
    if atoms.constraints:
        names = ", ".join(sorted({type(c).__name__ for c in atoms.constraints}))
        raise PhysNetInputError(f"the start geometry carries ASE constraints ({names}), which this MD does not apply: "
                                "the atoms would move freely; remove them (atoms.set_constraint(), or the move_mask "
                                "of an extxyz file), or run ASE's dynamics with physnetjax.PhysNetCalculator")
    if ensemble == "npt" and not np.all(atoms.pbc):
        raise PhysNetInputError(f"{displayed_setting('ensemble', 'npt', names)} needs a fully periodic cell, but the "
                                "start geometry is isolated (no pbc): give one with a cell and pbc all True, or "
                                f"choose another {displayed('ensemble', names)}")
    total_charge = check_total_charge(atoms_total_charge(atoms), atoms.numbers, where="MD start geometry")
    atoms = atoms.copy()  # every frame, restart file and last-good geometry written records the charge it ran at
    atoms.info["charge"] = total_charge
    atoms.set_initial_charges(None)
    z, r = validate_structure(atoms.numbers, atoms.positions, model.supported_max_atomic_number,
                              total_charge=total_charge, cell=atoms.cell.array, pbc=atoms.pbc, strict=True,
                              where="MD start geometry")
    if restart is None and not np.any(atoms.pbc):
        check_length_unit(z, r, "MD start geometry")
    training_record = training_record_of(training_record)
    warned_domain = training_record.check_structure(model, z, total_charge, positions=r, cell=atoms.cell.array,
                                                    pbc=atoms.pbc, where="MD start geometry",
                                                    consequence="the logged potential energies include it")
    domain = training_record.distances
    frames_outside, first_outside_step, largest_excursion = 0, None, 0.0
    cell = np.asarray(atoms.cell.array) if np.all(atoms.pbc) else None
    masses = jnp.asarray(check_masses(atoms.get_masses(), n, {"masses": START_MASSES}), dtype)
    positions = np.asarray(atoms.positions, np.float64)
    key = jax.random.PRNGKey(check_seed(seed, displayed("seed", names)))
    key, mb_key = jax.random.split(key)
    momenta = momenta_from_ase(atoms.get_momenta())
    drawn = not np.any(momenta) and restart is None
    from_geometry = bool(np.any(momenta)) and restart is None
    if from_geometry:
        momenta = without_total_momentum(check_finite_momenta(momenta), atoms.get_masses())
    if not np.any(momenta):
        momenta = np.asarray(maxwell_boltzmann_momenta(mb_key, masses, temperature_K))
    start_step, saved = 0, None
    if restart is not None:
        saved = read_restart(restart, atoms, model.supported_max_atomic_number)
        check_restart_records(restart, saved, ensemble, fingerprint, timestep_fs, names)
        positions, momenta = saved["positions"], saved["momenta"]
        if checkpoint_ensemble(saved) != ensemble and ensemble in CENTRE_OF_MASS_AT_REST:
            momenta = without_total_momentum(momenta, atoms.get_masses(), f"restart file {restart}: the momenta of "
                                             f"its {checkpoint_ensemble(saved)} run")
        start_step = int(saved["step"])
        if start_step + steps > MAX_STEP:
            raise PhysNetInputError(f"restart file {restart} is at step {start_step}: {displayed('steps', names)} "
                                    f"{steps} more would pass step {MAX_STEP} ({MAX_STEP_REASON})")
        if "key" in saved:
            key = jnp.asarray(saved["key"])
        if "cell" in saved and cell is not None:
            cell = saved["cell"]
    log = None if out is None else Path(f"{out}.jsonl")
    kept_records, kept_frames, dropped = (), [], 0
    if restart is not None and out is not None:  # both checked before the model compiles; changed once all checks pass
        kept_records = _log_records_until(log, start_step)
        kept_frames, dropped = trajectory_until(out, start_step)
    if cell is None:  # isolated: integrate about the start centroid (module docstring, "Frame of reference")
        frame = FrameOfReference.isolated(saved[ORIGIN_KEY] if saved is not None and ORIGIN_KEY in saved
                                          else np.asarray(positions, np.float64).mean(axis=0))
    else:
        frame = FrameOfReference.periodic(positions, cell)
    positions = jnp.asarray(frame.to_integrated(positions, cell), dtype)
    momenta = jnp.asarray(momenta, dtype)

    def dynamics_for(reference_cell):
        return build_dynamics(ensemble, model, params, atoms.numbers, reference_cell, timestep_fs, options, steps,
                              total_charge=total_charge, skin=skin, capacity_multiplier=capacity_multiplier,
                              record_uncertainty=record_uncertainty, record_atom_energies=atom_energies)

    reference_cell = None if cell is None else np.asarray(cell, np.float64)
    dynamics = dynamics_for(reference_cell)
    apply_fn, dof = dynamics.apply_fn, dynamics.degrees_of_freedom
    if from_geometry:
        check_start_temperature(momenta, atoms.get_masses(), dof)
    cell_now = None if cell is None else jnp.asarray(cell, dtype)
    nbrs = dynamics.allocate(positions, cell_now, capacity_multiplier)
    with out_of_memory_as(lambda error: md_out_of_memory(model, n, nbrs, error, "starting MD of",
                                                         displayed("chunk_frames", names))):
        state = compilation.jit_for_system(n, dynamics.init)(positions, momenta, masses, nbrs, key, cell_now)
    if saved is not None:
        state = restore_ensemble_state(state, saved, ensemble)
        state, changed = continue_targets(state, saved, run_targets(ensemble, options, steps, 0, dof), dof)
        if changed:
            warn_caller(_target_jump_message(restart, start_step, changed, ensemble, names), PhysNetInputWarning)
    if not np.isfinite(float(state.potential_energy)) or not np.all(np.isfinite(np.asarray(state.forces))):
        raise MDInstabilityError("the model gives NaN/Inf energy or forces at the start geometry")
    start_force = float(np.linalg.norm(np.asarray(state.forces), axis=-1).max())
    if start_force > max_force:
        raise MDInstabilityError(f"start geometry has |F| = {start_force:.3g} eV/Å > "
                                 f"{displayed_setting('max_force', max_force, names)} eV/Å")
    if start_force == 0.0 and n > 1 and cell is None:
        warn_caller("every force on the start geometry is exactly zero: the model's energy does not depend on where "
                    "the atoms are (an untrained model, whose output head starts at zero, or atoms all beyond its "
                    "cutoff of each other); the atoms will fly apart in straight lines. Check the checkpoint "
                    "(python -m physnetjax.check)", PhysNetInputWarning)
    spreads: list[float] = []
    uncertain_frames = 0
    stop_reason = last_trusted = None
    if uncertainty_threshold is not None:
        start_spread = float(jax.jit(dynamics.observe)(state).max_forces_std)
        if start_spread > uncertainty_threshold:
            reason = (f"the start geometry (step {start_step}) is already past the threshold: its largest per-atom "
                      f"force spread is {start_spread:.3g} eV/Å > "
                      f"{displayed_setting('uncertainty_threshold', f'{uncertainty_threshold:g}', names)} eV/Å")
            if on_uncertainty == "stop":
                spreads.append(start_spread)
                uncertain_frames = 1
                stop_reason = f"{reason}; no step was run and no frame is saved as trusted"
                logger.info("MD stopped: %s", stop_reason)
            else:
                warn_caller(f"{reason}; every frame may be flagged", PhysNetInputWarning)

    if dropped:
        replace_frames(out, kept_frames)
        warn_caller(f"{out}: dropped {dropped} frame(s) written after the MD checkpoint (step {start_step}) "
                    "before continuing", PhysNetInputWarning)
    writer = TrajectoryWriter(out, append=restart is not None) if out is not None else None
    checkpoint_step = (start_step if restart is not None and checkpoint_path is not None
                       and Path(restart).resolve() == Path(checkpoint_path).resolve() else None)
    if log is not None:
        start_log(log, kept_records)
    runner = compilation.jit_for_system(n, run, static_argnums=(0, 2, 3, 4))
    compiled: dict = {}
    compile_seconds = run_seconds = 0.0
    reallocations = 0
    multiplier = capacity_multiplier
    times = [start_step * timestep_fs * 1e-3]
    conserved = [float(state.potential_energy) + dynamics.element_energy + _kinetic(state) + float(state.heat)]
    temperatures = [2 * _kinetic(state) / (dof * BOLTZMANN)]
    potentials = [float(state.potential_energy) + dynamics.element_energy]
    pressures: list[float] = []
    volumes: list[float] = []
    done, chunks, retries, overflows, executed = 0, 0, 0, 0, 0
    warned_drift = False
    largest_deviation, first_deviating_step = 0.0, None  # thermostatted/NPT: of the conserved quantity, kept frames
    closest: Optional[CloseContact] = None
    total_frames = steps // save_every
    try:
        if progress is not None:
            progress(0)
        while done < steps and stop_reason is None:
            num_frames = min(chunk_frames, total_frames - done // save_every)
            shape_key = (num_frames, jax.tree.structure(state), tuple(x.shape for x in jax.tree.leaves(state)))
            t0 = time.perf_counter()
            with out_of_memory_as(lambda error: md_out_of_memory(
                    model, n, state.nbrs, error, f"running chunks of {num_frames} frames of MD of",
                    displayed("chunk_frames", names))):
                if shape_key not in compiled:
                    program = runner.lower(apply_fn, state, num_frames, save_every, dynamics.observe).compile()
                    compile_seconds += time.perf_counter() - t0
                    check_fits(program, f"a chunk of {num_frames} frames")
                    compiled[shape_key] = program
                    t0 = time.perf_counter()
                new_state, frames = compiled[shape_key](state)
                jax.block_until_ready(frames)
            run_seconds += time.perf_counter() - t0
            executed += num_frames * save_every
            if dynamics.variable_cell and bool(new_state.nbrs.over_strained):
                retries += 1
                if retries > MAX_CELL_RETRIES:
                    _stop(atoms, state, None, 0, start_step + done, save_every,
                          f"the cell was compressed beyond the neighbor lists' strain tolerance within one chunk "
                          f"{retries} times after step {start_step + done}; use a longer barostat time", out,
                          MDInstabilityError, frame, dynamics.element_energy,
                          _no_frame_note(out, restart) if len(times) == 1 else "")
                chunk_frames = max(1, chunk_frames // 2)
                reference = np.asarray(state.cell, np.float64)
                if not np.array_equal(reference, reference_cell):
                    reference_cell = reference
                    dynamics = dynamics_for(reference_cell)
                    apply_fn = dynamics.apply_fn
                    compiled.clear()
                logger.info("the cell outgrew its neighbor lists; re-building them in the cell of step %d and "
                            "running chunks of %d frames", start_step + done, chunk_frames)
                state = state.replace(nbrs=dynamics.allocate(state.positions, state.cell, multiplier))
                continue
            if bool(new_state.nbrs.did_overflow):
                overflows += 1
                if overflows > MAX_OVERFLOW_RETRIES:
                    _stop(atoms, state, None, 0, start_step + done, save_every,
                          f"the neighbor lists overflowed {overflows} times in a row within the chunk after step "
                          f"{start_step + done}, their capacity grown ×{1.5 ** (overflows - 1):.3g} in between: the "
                          f"pairs within the cutoff kept multiplying, as when the atoms or the cell collapse or the "
                          f"positions become NaN (a {displayed('timestep_fs', names)}, temperature or pressure far "
                          f"too large for the system)", out, MDInstabilityError, frame, dynamics.element_energy,
                          _no_frame_note(out, restart) if len(times) == 1 else "")
                multiplier *= 1.5
                reallocations += 1
                logger.info("neighbor list overflowed; discarding the chunk and re-allocating ×%.3g", multiplier)
                cell_now = state.cell if dynamics.variable_cell else cell_now
                state = state.replace(nbrs=dynamics.allocate(state.positions, cell_now, multiplier))
                continue
            host = jax.device_get(frames)
            host = host.replace(positions=frame.to_user(host.positions, host.cell if dynamics.variable_cell else cell),
                                potential_energy=np.asarray(host.potential_energy, np.float64) + dynamics.element_energy,
                                conserved=np.asarray(host.conserved, np.float64) + dynamics.element_energy,
                                energies=None if host.energies is None else
                                np.asarray(host.energies, np.float64) + dynamics.atom_element_energies)
            finite = (np.isfinite(host.conserved) & np.isfinite(host.positions).all(axis=(1, 2))
                      & np.isfinite(host.forces).all(axis=(1, 2)))
            frame_steps = start_step + done + save_every * np.arange(1, num_frames + 1)
            contacts = [closest_contact(host.positions[k], _frame_cell(host, k, cell_now, dynamics.variable_cell),
                                        atoms.pbc, frame_steps[k]) if finite[k] else None for k in range(num_frames)]
            overlapping = np.array([contact is not None and contact.overlapping for contact in contacts])
            seen = _closest_so_far(closest, contacts)
            good = finite & (host.peak_force <= max_force) & ~overlapping
            deviation = 1e3 * np.abs(host.conserved - conserved[0]) / n
            drifting = good & (deviation > energy_tolerance) if ensemble == "nve" else np.zeros_like(good)
            if drifting.any() and on_energy_drift == "warn":
                if not warned_drift:
                    reason = _drift_reason(deviation, drifting, energy_tolerance, seen[int(np.argmax(drifting))],
                                           names)
                    warn_caller(f"NVE energy not conserved: {reason}", RuntimeWarning)
                    warned_drift = True
            else:
                good &= ~drifting
            num_good = num_frames if good.all() else int(np.argmin(good))
            if num_good and closest is None and seen[num_good - 1] is not None:
                first = next(contact for contact in contacts if contact is not None)
                warn_caller(f"MD left the region the model knows: {first.describe()}; the model extrapolates there "
                            "and the frames from here on may not be physical (a cell too dense for the model, too "
                            "high a temperature, or a model trained without such contacts)",
                            CloseContactWarning)
            closest = seen[num_good - 1] if num_good else closest
            past = np.zeros(num_frames, bool)
            if uncertainty_threshold is not None:
                past = np.asarray(host.max_forces_std) > uncertainty_threshold
            num_trusted = num_good
            if on_uncertainty == "stop" and past[:num_good].any():
                num_trusted = int(np.argmax(past[:num_good]))
            excursions = np.zeros(num_trusted)
            if domain is not None and num_trusted:
                cells = None if cell is None else np.stack([_frame_cell(host, k, cell_now, dynamics.variable_cell)
                                                            for k in range(num_trusted)])
                outside, excursions, text = domain.outside(np.broadcast_to(z, (num_trusted, n)),
                                                           host.positions[:num_trusted], np.full(num_trusted, n),
                                                           cells)
                if outside.any():
                    if first_outside_step is None:
                        first_outside_step = int(frame_steps[np.argmax(outside)])
                    if not warned_domain:
                        warn_caller(f"MD left its training data's interatomic distances at step {first_outside_step}:"
                                    f" {text}: the model extrapolates there (distances more than "
                                    f"{DOMAIN_MARGIN:.0%} outside those of its training frames; the log's "
                                    "distance_excursion follows it frame by frame)", TrainingDistancesWarning)
                        warned_domain = True
                frames_outside += int(outside.sum())
                largest_excursion = max(largest_excursion, float(excursions.max()))
            for k in range(num_trusted):
                step = start_step + done + (k + 1) * save_every
                t_ps = step * timestep_fs * 1e-3
                kinetic = float(host.kinetic_energy[k])
                temp = 2 * kinetic / (dof * BOLTZMANN)
                times.append(t_ps)
                conserved.append(float(host.conserved[k]))
                temperatures.append(temp)
                potentials.append(float(host.potential_energy[k]))
                info = {"step": step, "time_fs": t_ps * 1e3, "temperature_K": temp,
                        "conserved_eV": float(host.conserved[k])}
                if record_uncertainty:
                    spreads.append(float(host.max_forces_std[k]))
                    info["max_forces_std_eV_per_A"] = spreads[-1]
                    if uncertainty_threshold is not None:
                        info["uncertain"] = bool(past[k])
                        uncertain_frames += int(past[k])
                if domain is not None:
                    info["distance_excursion"] = float(excursions[k])
                if cell is not None:
                    pressures.append(float(host.pressure[k]) / BAR)
                    volumes.append(float(host.volume[k]))
                    info.update(pressure_bar=pressures[-1], volume_A3=volumes[-1])
                if writer is not None:
                    template = _in_cell(atoms, host.cell[k] if dynamics.variable_cell else None)
                    try:
                        writer.write(frame_atoms(template, host.positions[k], host.momenta[k],
                                                 host.potential_energy[k], host.forces[k], info,
                                                 None if host.energies is None else host.energies[k]))
                    except OutputWriteError as error:
                        raise _write_failed(error, checkpoint_path, checkpoint_step) from error.cause
                if log is not None:
                    record = dict(zip(LOG_KEYS, (step, t_ps * 1e3, float(host.potential_energy[k]), kinetic,
                                                 float(host.conserved[k]), temp, float(host.max_force[k]))))
                    if cell is not None:
                        record.update(pressure_bar=pressures[-1], volume_A3=volumes[-1])
                    record.update({key: info[key] for key in ("max_forces_std_eV_per_A", "uncertain",
                                                              "distance_excursion") if key in info})
                    try:
                        append_record(log, record)
                    except OutputWriteError as error:
                        raise _write_failed(error, checkpoint_path, checkpoint_step) from error.cause
            if ensemble != "nve" and num_trusted:
                largest_deviation = max(largest_deviation, float(deviation[:num_trusted].max()))
                if first_deviating_step is None and largest_deviation > ENERGY_TOLERANCE_MEV_PER_ATOM:
                    first_deviating_step = int(frame_steps[np.argmax(deviation[:num_trusted]
                                                                     > ENERGY_TOLERANCE_MEV_PER_ATOM)])
            if num_trusted < num_good:
                spread = float(host.max_forces_std[num_trusted])
                spreads.append(spread)
                stop_step = start_step + done + (num_trusted + 1) * save_every
                target = None if out is None else Path(f"{out}.last_trusted.xyz")
                trusted_step = _save_last_frame(atoms, state, host, num_trusted, start_step + done, save_every, target,
                                                frame, dynamics.element_energy)
                threshold = displayed_setting("uncertainty_threshold", f"{uncertainty_threshold:g}", names)
                stop_reason = (f"at step {stop_step}: the largest per-atom force spread is {spread:.3g} eV/Å > "
                               f"{threshold} eV/Å; last trusted frame (step {trusted_step}) {_where_saved(target)}")
                last_trusted = None if target is None else str(target)
                uncertain_frames += 1
                logger.info("MD stopped %s", stop_reason)
                done += num_trusted * save_every
                if progress is not None:
                    progress(done)
                break
            if num_good < num_frames:
                if drifting[num_good]:
                    reason = _drift_reason(deviation, drifting, energy_tolerance, seen[num_good], names)
                elif overlapping[num_good]:
                    reason = f"{contacts[num_good].describe()}: the model extrapolated far beyond its training data"
                else:
                    reason = _blow_up_reason(host.peak_force[num_good], max_force, seen[num_good], names)
                _stop(atoms, state, host, num_good, start_step + done, save_every, reason, out,
                      EnergyConservationError if drifting[num_good] else MDInstabilityError, frame,
                      dynamics.element_energy, _no_frame_note(out, restart) if len(times) == 1 else "")
            state = new_state
            retries = overflows = 0
            done += num_frames * save_every
            chunks += 1
            if checkpoint_path is not None and (chunks % checkpoint_every == 0 or done >= steps):
                try:
                    _checkpoint(checkpoint_path, atoms, state, start_step + done, ensemble, fingerprint, frame, cell,
                                timestep_fs, run_targets(ensemble, options, steps, done - 1, dof))
                except OutputWriteError as error:
                    raise _write_failed(error, None if checkpoint_step is None else checkpoint_path,
                                        checkpoint_step) from error.cause
                checkpoint_step = start_step + done
            if progress is not None:
                progress(done)
    finally:
        if writer is not None:
            writer.close()
            if restart is None and len(times) == 1:  # stopped, blown up or interrupted before its first frame
                _remove_empty_outputs(out)
    kept = len(times) - 1
    if stop_reason is not None and kept == 0:  # stopped before its first trusted frame
        stop_reason += _no_frame_note(out, restart)
    drift, fluctuation = drift_and_fluctuation(times, conserved, n)
    if first_deviating_step is not None:
        warn_caller(conserved_drift_warning(ensemble, largest_deviation, first_deviating_step, drift, timestep_fs,
                                              closest, names), RuntimeWarning)
    return MDReport(
        steps=done, time_ps=done * timestep_fs * 1e-3, num_atoms=n,
        drift_meV_per_atom_per_ps=drift, fluctuation_meV_per_atom=fluctuation,
        mean_temperature_K=float(np.mean(temperatures[1:] or temperatures)),
        steps_per_second=executed / run_seconds if run_seconds > 0 else float("nan"),
        compile_seconds=compile_seconds, reallocations=reallocations, out=None if out is None else str(out),
        all_pairs=isinstance(state.nbrs, AllPairs), ensemble=ensemble,
        mean_pressure_bar=float(np.mean(pressures)) if pressures else None,
        mean_volume_A3=float(np.mean(volumes)) if volumes else None,
        max_forces_std_eV_per_A=(max(spreads) if spreads else float("nan")) if record_uncertainty else None,
        uncertainty_threshold=uncertainty_threshold, uncertain_frames=uncertain_frames, stop_reason=stop_reason,
        last_trusted=last_trusted,
        drawn_temperature_K=temperatures[0] if drawn and len(potentials) > 1 else None,
        geometry_momenta_temperature_K=temperatures[0] if from_geometry else None,
        start_potential_above_mean_eV=(potentials[0] - float(np.mean(potentials[1:]))
                                       if drawn and len(potentials) > 1 else None),
        degrees_of_freedom=dof, closest_contact=closest, frames=kept,
        target_temperature_K=mean_target_temperature_K(ensemble, options),
        kinetic_relaxation_fs=kinetic_relaxation_time_fs(ensemble, options),
        half_temperatures_K=(None if ensemble == "nve" or kept < 2 else
                             (float(np.mean(temperatures[1: 1 + kept // 2])),
                              float(np.mean(temperatures[1 + kept // 2:])))),
        conserved_deviation_meV_per_atom=largest_deviation if first_deviating_step is not None else None,
        kinetic_fluctuation_meV_per_atom=(float(np.std(temperatures[1:])) * dof * BOLTZMANN / 2 * 1e3 / n
                                          if ensemble == "nve" and kept >= 2 else None),
        frames_outside_training=None if domain is None else frames_outside,
        first_outside_step=first_outside_step,
        largest_distance_excursion=None if domain is None else largest_excursion,
    )


NVE_FLUCTUATION_RATIO = 0.1
"""Energy fluctuation over kinetic-energy fluctuation of an NVE run above which its report notes the timestep
(:meth:`MDReport.integration_note`; the usual rule of thumb asks for below 0.01–0.05)."""
NVE_FLUCTUATION_FRAMES = 20
"""Saved frames an NVE run needs before its fluctuation ratio is judged."""

TEMPERATURE_NOTE_SIGMAS = 4
"""How many :func:`mean_temperature_scatter_K` a thermostatted run's mean temperature may lie from its target
before the report says so (:meth:`MDReport.temperature_note`)."""
EQUILIBRATION_RELAXATION_TIMES = 5
"""Runs shorter than this many kinetic relaxation times are told their start still shows."""


NHC_MIN_PERIOD_STEPS = 10
"""Timesteps per Nosé-Hoover thermostat time τ_T below which MD warns (the chain's period is π√2 τ_T)."""
NHC_PERIOD_PER_TAU = math.pi * math.sqrt(2.0)
"""Period of a Nosé-Hoover thermostat's linear oscillation in units of its time τ: ω² = 2 N_f k_B T / Q_1 = 2 / τ²."""


def kinetic_relaxation_time_fs(ensemble: str, options: EnsembleOptions) -> Optional[float]:
    """The time (fs) in which a thermostat relaxes the kinetic energy: 1/(2γ) for Langevin (the momenta relax with
    γ, their square twice as fast), τ_T for CSVR and NPT (whose CSVR thermostat is defined so) and for a Nosé-Hoover
    chain the period of its oscillation, π√2 τ_T (Q_1 = N_f k_B T τ_T², :func:`physnetjax.md.nose_hoover_chain`);
    None for NVE."""
    if ensemble == "langevin":
        return 1.0 / (2.0 * options.friction)
    if ensemble == "nvt-nhc":
        return NHC_PERIOD_PER_TAU * options.thermostat_time_fs
    return None if ensemble == "nve" else options.thermostat_time_fs


def mean_target_temperature_K(ensemble: str, options: EnsembleOptions) -> Optional[float]:
    """The thermostat's target temperature (K) averaged over the run: the middle of a linear ramp from
    ``temperature_K`` to ``temperature_end_K``, else ``temperature_K``; None for NVE."""
    if ensemble == "nve":
        return None
    end = options.temperature_K if options.temperature_end_K is None else options.temperature_end_K
    return 0.5 * (options.temperature_K + end)


def mean_temperature_scatter_K(target_K: float, degrees_of_freedom: int, run_fs: float,
                               relaxation_fs: float, frames: int) -> float:
    """Expected standard deviation (K) of a thermostatted run's mean kinetic temperature over its ``frames`` saved
    frames.

    One frame's temperature scatters by T √(2/N_f) in the canonical ensemble; frames one
    relaxation time τ apart are nearly independent, so a run of length L holds about
    L / (2τ) of them, and a mean over its saved frames averages no more than their number:
    σ = T √(2/N_f) / √n with n = max(1, min(frames, L / (2τ))). An estimate for judging a mean,
    not an exact error bar. (Without the bound, 50 frames of a 5 ps Langevin run at 300 K were
    judged against ±1.6 K instead of ±11.5 K, and every seed got a note that it had not reached
    equilibrium.)
    """
    independent = max(1.0, min(float(frames), run_fs / (2.0 * relaxation_fs)))
    return target_K * math.sqrt(2.0 / degrees_of_freedom) / math.sqrt(independent)


COM_TEMPERATURE_NOTICE_K = 0.01
"""Kinetic temperature (K) of the start momenta's centre-of-mass motion above which :func:`without_total_momentum`
warns."""


START_MASSES = "the start geometry's masses (atoms.get_masses(): a masses array of the Atoms or of its file)"
"""How messages name the masses MD reads from the start geometry."""


def check_finite_momenta(momenta: np.ndarray) -> np.ndarray:
    """``momenta`` (N, 3) of a start geometry; PhysNetInputError naming the atoms whose momenta are NaN/Inf."""
    bad = np.nonzero(~np.all(np.isfinite(momenta), axis=-1))[0]
    if bad.size:
        raise PhysNetInputError(f"the start geometry's momenta are NaN or Inf at atom indices {bad.tolist()}: fix "
                                "them, or remove the momenta to draw them at the temperature")
    return momenta


def check_start_temperature(momenta: np.ndarray, masses: np.ndarray, degrees_of_freedom: int) -> float:
    """The kinetic temperature 2K/(N_f k_B) in K of a start geometry's ``momenta`` (N, 3) amu·Å/fs with ``masses``
    (N,) amu; PhysNetInputError above :data:`~physnetjax.validation.MAX_TEMPERATURE_K` (momenta in other units
    than ASE's, a slip the run would report as a blow-up)."""
    kinetic_eV = float(np.sum(momenta**2 / (2.0 * np.asarray(masses, np.float64)[:, None]))) * AMU_A2_PER_FS2_IN_EV
    temperature_K = 2.0 * kinetic_eV / (degrees_of_freedom * BOLTZMANN)
    if temperature_K > MAX_TEMPERATURE_K:
        raise PhysNetInputError(
            f"the start geometry's momenta have a kinetic temperature of {temperature_K:.3g} K, above the "
            f"{MAX_TEMPERATURE_K:g} K MD accepts ({MAX_TEMPERATURE_REASON}): are they in "
            f"other units than ASE's (amu·Å per ASE time unit, {ASE_TIME_UNIT_FS:.4g} fs)? Fix them, or remove them "
            "to draw momenta at the temperature")
    return temperature_K


def without_total_momentum(momenta, masses, where: str = "the start geometry's momenta") -> np.ndarray:
    """Start momenta (N, 3) amu·Å/fs without their total momentum: a geometry file's, or a restart's into an ensemble
    that keeps the centre of mass at rest (:data:`~physnetjax.md.ensembles.CENTRE_OF_MASS_AT_REST`).

    MD counts N_f = 3N − 3 degrees of freedom: the centre of mass is at rest, as for the
    drawn Maxwell–Boltzmann momenta. A total momentum P = Σ p_i would be a drift of the
    whole system that the reported temperature and the thermostats count as heat. It is
    removed, p_i ← p_i − m_i P / M; a :class:`PhysNetInputWarning` (naming the momenta as
    ``where`` says) names P, the kinetic energy removed, |P|² / (2M) · C, and the share of
    the kinetic temperature it held, |P|² / (M N_f k_B) · C, when that is above
    :data:`COM_TEMPERATURE_NOTICE_K`.
    """
    momenta = np.asarray(momenta, np.float64)
    masses = np.asarray(masses, np.float64)
    total = momenta.sum(axis=0)
    mass = masses.sum()
    dof = 3 * masses.shape[0] - 3
    removed_eV = float(total @ total) / (2.0 * mass) * AMU_A2_PER_FS2_IN_EV
    held_K = 2.0 * removed_eV / (dof * BOLTZMANN)
    if held_K > COM_TEMPERATURE_NOTICE_K:
        warn_caller(f"{where} have a total momentum of {np.round(total, 6).tolist()} amu·Å/fs (the centre of mass "
                    f"drifting at {np.linalg.norm(total) / mass:.3g} Å/fs, {held_K:.3g} K of the kinetic "
                    f"temperature over {dof} degrees of freedom): removed, which lowers the kinetic energy by "
                    f"{removed_eV:.3g} eV; the MD keeps the centre of mass at rest", PhysNetInputWarning)
    return centre_of_mass_at_rest(momenta, masses)


def check_uncertainty_arguments(model, threshold: Optional[float], names: Optional[Mapping[str, str]] = None) -> bool:
    """Whether the run records the ensemble uncertainty; PhysNetInputError for a threshold without an ensemble.

    Records for every ensemble model (:class:`~physnetjax.ensemble.PhysNetEnsemble`), in every
    ensemble; the threshold's value is checked by :func:`check_md_arguments`. ``names``: as there.
    """
    if threshold is not None and not is_ensemble(model):
        raise PhysNetInputError(
            f"{displayed('uncertainty_threshold', names)} needs an ensemble (a checkpoint of several members, see "
            "python -m physnetjax.ensemble combine); this model is a single PhysNet, which has no spread")
    return is_ensemble(model)


RESTART_KEYS = ("positions", "momenta", "numbers", "step")
"""Arrays every MD-state checkpoint holds (:func:`physnetjax.md.ensembles.checkpoint_arrays`)."""

ORIGIN_KEY = "origin"
"""MD-state checkpoint entry of an isolated run: the origin c (Å) it integrates about (module docstring)."""

MASSES_KEY = "masses"
"""MD-state checkpoint entry: the atomic masses (amu) the momenta belong to, checked by :func:`read_restart`."""

TOTAL_CHARGE_KEY = "total_charge"
"""MD-state checkpoint entry: the total charge (e) the run used; a restart must run at the same."""

GEOMETRY_CELL_KEY = "geometry_cell"
"""MD-checkpoint key: the start geometry's cell (3, 3) Å, zeros for an isolated system (a restart must run the same)."""

MASS_TOLERANCE_AMU = 1e-6
"""Largest difference (amu) between a restart file's masses and its geometry's that a restart accepts."""

STATE_CHECKSUM_KEY = "state_sha256"
"""MD-state checkpoint entry: :func:`state_checksum` of its other arrays, checked by :func:`read_restart`."""

UNCHECKED_KEYS = ("ensemble", "model", STATE_CHECKSUM_KEY)
"""Entries the checksum leaves out: the records of ensemble and model, which ``--restart`` checks on their own."""


def state_checksum(arrays: dict) -> str:
    """SHA-256 (hex) of the dynamical state in MD-checkpoint ``arrays``: every entry but :data:`UNCHECKED_KEYS`,
    by name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(set(arrays) - set(UNCHECKED_KEYS)):
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}{value.dtype.str}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def read_restart(path, atoms: ase.Atoms, max_atomic_number: int) -> dict:
    """The arrays of MD-state checkpoint ``path`` for a restart of ``atoms``, validated like a start geometry.

    Raises:
      PhysNetInputError: the file is not a readable .npz, lacks one of :data:`RESTART_KEYS`,
        holds another system (atomic numbers; a start geometry of another cell or periodicity,
        :data:`GEOMETRY_CELL_KEY`, in files that record it), a state that fails its recorded
        :func:`state_checksum` (edited after it was written; files without one are not
        checked), masses that differ from the geometry's by more than
        :data:`MASS_TOLERANCE_AMU` (an edited isotope: the saved momenta belong to the
        saved masses; files written before masses were kept hold none and are not
        checked), a total charge other than the geometry's (files that record it), a non-integer step,
        momenta that are not finite (n, 3), or positions
        (in the saved cell for a periodic run) that fail
        :func:`physnetjax.validation.validate_structure` with ``strict=True``.
    """
    try:
        saved = read_npz(path)
    except NpzReadError as error:
        raise PhysNetInputError(f"restart file {path} cannot be read as .npz: {error}; is it an MD checkpoint "
                                "(as --md-checkpoint writes)?") from error
    missing = [key for key in RESTART_KEYS if key not in saved]
    if missing:
        raise PhysNetInputError(f"restart file {path} is not an MD-state checkpoint (as --md-checkpoint writes): "
                                f"missing {', '.join(missing)} (keys present: {sorted(saved)})")
    if STATE_CHECKSUM_KEY in saved and str(saved[STATE_CHECKSUM_KEY]) != state_checksum(saved):
        raise PhysNetInputError(f"restart file {path} fails its SHA-256 check: its positions, momenta or thermostat "
                                "state were changed after the MD run wrote it, so the restart would not continue that "
                                "run; restore the file, or start a new run from a geometry file (--geometry)")
    if np.asarray(saved["numbers"]).tolist() != atoms.numbers.tolist():
        raise PhysNetInputError(f"restart file {path} holds a different system: atomic numbers "
                                f"{np.asarray(saved['numbers']).tolist()} instead of the geometry's "
                                f"{atoms.numbers.tolist()}")
    if MASSES_KEY in saved:
        _check_restart_masses(path, np.asarray(saved[MASSES_KEY]), atoms)
    if GEOMETRY_CELL_KEY in saved:
        _check_restart_cell(path, np.asarray(saved[GEOMETRY_CELL_KEY]), atoms)
    if TOTAL_CHARGE_KEY in saved:
        _check_restart_charge(path, np.asarray(saved[TOTAL_CHARGE_KEY]), atoms)
    step = np.asarray(saved["step"])
    if step.shape != () or not np.issubdtype(step.dtype, np.integer) or step < 0:
        raise PhysNetInputError(f"restart file {path}: step must be an integer >= 0, received {step.tolist()}")
    momenta = np.asarray(saved["momenta"])
    if (momenta.shape != (len(atoms), 3) or not np.issubdtype(momenta.dtype, np.floating)
            or not np.isfinite(momenta).all()):
        raise PhysNetInputError(f"restart file {path}: momenta must be finite numbers of shape ({len(atoms)}, 3), "
                                f"received shape {momenta.shape}, dtype {momenta.dtype}")
    for name, shape, kind in ((ORIGIN_KEY, (3,), np.floating), ("key", (2,), np.unsignedinteger),
                              ("cell", (3, 3), np.floating), (TARGET_TEMPERATURE_KEY, (), np.floating),
                              (TARGET_PRESSURE_KEY, (), np.floating),
                              (CHAIN_MASSES_KEY, np.shape(saved.get(CHAIN_MASSES_KEY, ())), np.floating)):
        value = np.asarray(saved.get(name, np.zeros(shape, np.uint32 if name == "key" else np.float64)))
        if value.shape != shape or not np.issubdtype(value.dtype, kind) or not np.isfinite(value).all():
            raise PhysNetInputError(f"restart file {path}: {name} must be finite {kind.__name__} numbers of shape "
                                    f"{shape}, received shape {value.shape}, dtype {value.dtype}")
    cell = saved["cell"] if "cell" in saved and np.all(atoms.pbc) else atoms.cell.array
    validate_structure(atoms.numbers, saved["positions"], max_atomic_number, cell=cell, pbc=atoms.pbc, strict=True,
                       where=f"restart file {path}")  # the charge is the start geometry's, checked by simulate
    return saved


def _check_restart_cell(path, recorded: np.ndarray, atoms: ase.Atoms) -> None:
    """Refuse restart file ``path`` if the start geometry it ``recorded`` (its cell, zeros: isolated) is not periodic
    as ``atoms`` are, or in another cell (within 1e-6 Å): the restart would continue another system, silently."""
    if recorded.shape != (3, 3) or not np.issubdtype(recorded.dtype, np.floating) or not np.isfinite(recorded).all():
        raise PhysNetInputError(f"restart file {path}: {GEOMETRY_CELL_KEY} must be finite floating numbers of shape "
                                f"(3, 3), received shape {recorded.shape}, dtype {recorded.dtype}")
    was_periodic, periodic = bool(np.any(recorded)), bool(np.all(atoms.pbc))
    if was_periodic != periodic:
        run_as = "in a periodic cell" if was_periodic else "as an isolated molecule"
        raise PhysNetInputError(f"restart file {path} was run {run_as}, but the geometry is "
                                f"{'periodic' if periodic else 'isolated'}: a restart continues the system it was run "
                                "as; restart with the geometry it was run with, or start a new run (--geometry)")
    if periodic and not np.allclose(recorded, atoms.cell.array, rtol=0.0, atol=1e-6):
        raise PhysNetInputError(f"restart file {path} was run in the cell {np.round(recorded, 6).tolist()} Å, the "
                                f"geometry has {np.round(atoms.cell.array, 6).tolist()} Å: a restart continues the run "
                                "in its cell; restart with the geometry it was run with, or start a new run (--geometry)")


def _check_restart_charge(path, recorded: np.ndarray, atoms: ase.Atoms) -> None:
    """Refuse restart file ``path`` if the total charge it ``recorded`` (e) is not that of ``atoms``
    (:func:`~physnetjax.validation.atoms_total_charge`, whose conflict warnings the run itself gives): the saved
    momenta and energies belong to the ion it was run as."""
    if recorded.shape != () or not np.issubdtype(recorded.dtype, np.floating) or not np.isfinite(recorded):
        raise PhysNetInputError(f"restart file {path}: {TOTAL_CHARGE_KEY} must be a finite number, received "
                                f"{recorded.tolist()!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhysNetInputWarning)
        charge = atoms_total_charge(atoms)
    if abs(float(recorded) - charge) > 1e-6:
        raise PhysNetInputError(f"restart file {path} was run at total charge {float(recorded):g} e, the geometry "
                                f"(or --total-charge) gives {charge:g} e: a restart continues the system it was run "
                                f"as; restart at {float(recorded):g} e, or start a new run (--geometry)")


def _check_restart_masses(path, masses: np.ndarray, atoms: ase.Atoms) -> None:
    """Refuse restart file ``path`` if its ``masses`` (amu) are not those of ``atoms`` (within
    :data:`MASS_TOLERANCE_AMU`)."""
    if masses.shape != (len(atoms),) or not np.issubdtype(masses.dtype, np.floating) or not np.isfinite(masses).all():
        raise PhysNetInputError(f"restart file {path}: masses must be finite floating numbers of shape "
                                f"({len(atoms)},), received shape {masses.shape}, dtype {masses.dtype}")
    geometry = atoms.get_masses()
    differing = np.flatnonzero(np.abs(masses - geometry) > MASS_TOLERANCE_AMU)
    if differing.size:
        symbols = atoms.get_chemical_symbols()
        listed = ", ".join(f"atom {i} ({symbols[i]}) {masses[i]:.6g} amu instead of the geometry's {geometry[i]:.6g} "
                           "amu" for i in differing)
        raise PhysNetInputError(f"restart file {path} holds other masses: {listed}; its momenta belong to its "
                                "masses, so the restart would not continue that run: restart with the geometry's "
                                "masses as they were, or start a new run from the geometry file (--geometry)")


def _target_jump_message(path, step: int, changed, ensemble: str, names: Optional[Mapping[str, str]]) -> str:
    """The warning of a restart whose thermostat/barostat targets jump (:func:`~physnetjax.md.ensembles.
    continue_targets`'s ``changed``), naming the options as ``names`` says."""
    jumps = ", ".join(f"{jump.keyword.rsplit('_', 1)[0]} {jump.before:.6g} → {jump.after:.6g} {jump.unit}"
                      for jump in changed)
    remedy = " and ".join(f"{displayed(jump.keyword, names)} {jump.before:.6g}" for jump in changed)
    ramp = {"temperature_K": "temperature_end_K", "pressure_bar": "pressure_end_bar"}
    return (f"restart file {path} (step {step}): the targets jump at the restart: {jumps} (the checkpoint's run held "
            "the first value in its last step, this run starts at the second; a ramp ("
            + " / ".join(displayed(ramp[jump.keyword], names) for jump in changed)
            + f") runs over this run's {displayed('steps', names)} from the start value), so the restart does not "
            f"continue that run as one long run would; to continue it, give {remedy}"
            + ("; the Nosé–Hoover conserved quantity is carried on across the change" if ensemble == "nvt-nhc"
               else ""))


def check_restart_records(path, saved: dict, ensemble: str, fingerprint: str, timestep_fs: float,
                          names: Optional[Mapping[str, str]] = None) -> None:
    """Check the ensemble, model and timestep recorded in MD-state checkpoint ``path`` (its arrays ``saved``).

    Another model (``fingerprint``: :func:`params_fingerprint` of this run's parameters)
    is refused, and so is another timestep (the times written count steps of one timestep: a
    0.5 fs run restarted at step 41000 with 1 fs jumped from 20.5 to 41 ps); another ensemble
    continues in ``ensemble`` with a warning (positions, momenta and cell carry over, the
    thermostat state and the conserved quantity start afresh, and into an ensemble of
    :data:`~physnetjax.md.ensembles.CENTRE_OF_MASS_AT_REST` :func:`simulate` removes the total momentum).
    Files written before these records were kept are not checked.

    Raises:
      PhysNetInputError: the recorded model or timestep is another one (named as ``names`` says).
    """
    if "timestep_fs" in saved and float(saved["timestep_fs"]) != float(timestep_fs):
        recorded = displayed_setting("timestep_fs", f"{float(saved['timestep_fs']):g}", names)
        raise PhysNetInputError(f"restart file {path} was run with {recorded} fs, not {timestep_fs:g} fs: the step "
                                f"count and the times written continue the run's, so continue it with {recorded}")
    if "model" in saved and str(saved["model"]) != fingerprint:
        raise PhysNetInputError(f"restart file {path} was written by a run of another model (its parameter "
                                "fingerprint differs from this model's): continue it with the model it was run with")
    if "ensemble" in saved and str(saved["ensemble"]) != ensemble:
        recorded = str(saved["ensemble"])
        warn_caller(f"restart file {path} was a {recorded} run and continues as ensemble {ensemble}: positions, "
                    f"momenta and cell carry over; the thermostat state starts afresh and the conserved quantity "
                    f"is {ensemble}'s from the restart on (the heat of the {recorded} run is not carried into it)",
                    PhysNetInputWarning)


def _log_records_until(log: Path, step: int) -> list[dict]:
    """The records of the MD log ``log`` up to ``step`` (those a restart from ``step`` keeps).

    Raises:
      PhysNetInputError: a damaged line (:func:`~physnetjax.jsonlines.read_log`), a record without an integer step,
        or a last kept record before ``step`` (a log cut, restored from an older copy or of another run: the restart
        would append after a gap).
    """
    records = read_log(log)
    for number, record in enumerate(records, start=1):
        if not isinstance(record.get("step"), int) or isinstance(record["step"], bool):
            raise PhysNetInputError(f"{log}, record {number}: no integer 'step' (received "
                                    f"{json.dumps(record.get('step'))}); the file was edited or is another file: "
                                    "restore it, or move it away to start a new log")
    kept = [record for record in records if record["step"] <= step]
    if kept and kept[-1]["step"] < step:
        raise PhysNetInputError(f"{log}: its last record is step {kept[-1]['step']} but the restart is at step {step}: "
                                "the records between are missing (the file was cut, restored from an older copy, or "
                                "is another run's), and the restart would append after a gap; restore the log the "
                                "checkpoint's run wrote, or move it away to start a new log")
    return kept


def _kinetic(state: MDState) -> float:
    return float(kinetic_energy(state.momenta, state.masses))


def params_fingerprint(params) -> str:
    """SHA-256 (hex) of model parameters: leaf paths, shapes and values (floats as float32, so a float64 run of
    the same checkpoint gives the same). MD-state checkpoints record it as ``model``."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        value = np.asarray(leaf)
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float32)
        digest.update(f"{jax.tree_util.keystr(path)}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def _write_failed(error: OutputWriteError, checkpoint_path, checkpoint_step) -> OutputWriteError:
    """``error`` (a trajectory, log or MD checkpoint write the file system refused) with how to go on: from the
    MD checkpoint at ``checkpoint_step`` (None: none written by this run)."""
    if checkpoint_path is not None and checkpoint_step is not None:
        how = (f"the MD checkpoint {checkpoint_path} is at step {checkpoint_step}: free space and continue with "
               f"--restart {checkpoint_path} (frames after that step are dropped)")
    elif checkpoint_path is not None and Path(checkpoint_path).exists():
        how = f"the MD checkpoint {checkpoint_path} is as before this run"
    else:
        how = "this run wrote no MD checkpoint (--md-checkpoint) to continue from: free space and run it again"
    return OutputWriteError(f"{error}; {how}", error.cause)


def _remove_empty_outputs(out) -> None:
    """Remove the trajectory ``out`` and its log that a fresh run created and stopped (on uncertainty, a blow-up or
    an energy drift), or was interrupted, before its first frame: empty files look like the result of a run
    (``ase.io.read`` fails on them: "Empty file")."""
    for path in (Path(out), Path(f"{out}.jsonl")):
        path.unlink(missing_ok=True)


def _no_frame_note(out, restart) -> str:
    """The clause of a stop message of a run that kept no frame: a fresh run leaves no ``out`` nor its log
    (:func:`_remove_empty_outputs`), a ``restart`` added none to them ('' without ``out``)."""
    if out is None:
        return ""
    if restart is None:
        return f"; the run leaves no {out} nor {out}.jsonl (they would hold no frame)"
    return f"; no frame was added to {out}"


def _checkpoint(path, atoms, state: MDState, step: int, ensemble: str, fingerprint: str, frame: FrameOfReference,
                cell, timestep_fs: float, targets: dict) -> None:
    """Write the MD-state checkpoint: positions in the user's frame (``frame``; Å, in the state's cell under a
    barostat, else ``cell``), the origin, the masses (amu) of ``atoms``, the timestep (fs) and the ensemble's
    ``targets`` in its last step (:func:`~physnetjax.md.ensembles.run_targets`) and the total charge (e) the run
    used (``atoms.info["charge"]``, which :func:`simulate` sets)."""
    arrays = checkpoint_arrays(state, atoms.numbers, step, ensemble)
    arrays.update(targets, timestep_fs=np.float64(timestep_fs))
    arrays.update(positions=frame.to_user(arrays["positions"], arrays.get("cell", cell)),
                  **{ORIGIN_KEY: frame.origin, MASSES_KEY: np.asarray(atoms.get_masses(), np.float64),
                     TOTAL_CHARGE_KEY: np.float64(atoms.info["charge"]),
                     GEOMETRY_CELL_KEY: np.asarray(atoms.cell.array if np.all(atoms.pbc) else np.zeros((3, 3)),
                                                   np.float64)})
    _save_npz(Path(path), model=fingerprint, **arrays, **{STATE_CHECKSUM_KEY: state_checksum(arrays)})
    logger.info("MD checkpoint at step %d written to %s", step, path)


def _frame_cell(host, k: int, cell, variable_cell: bool) -> Optional[np.ndarray]:
    """(3, 3) Å cell of saved frame ``k`` (its own under NPT), or None for an isolated system."""
    if cell is None:
        return None
    return np.asarray(host.cell[k] if variable_cell else cell, np.float64)


def _closest_so_far(closest: Optional[CloseContact], contacts: list) -> list:
    """For each frame of a chunk, the closest contact of the run up to and including it (None: none yet)."""
    seen = []
    for contact in contacts:
        closest = closer(closest, contact)
        seen.append(closest)
    return seen


def _extrapolated(contact: Optional[CloseContact]) -> str:
    """The clause of a stop message that names a close contact seen before the stop ('' without one)."""
    if contact is None:
        return ""
    return f"; by then {contact.describe()}: the model extrapolates there"


def _blow_up_reason(force: float, max_force: float, contact: Optional[CloseContact] = None,
                    names: Optional[Mapping[str, str]] = None) -> str:
    """Why the run blew up: a force (eV/Å) past ``max_force`` or a NaN/Inf, named as ``names`` does."""
    return (f"max |F| = {force:.3g} eV/Å > {displayed_setting('max_force', max_force, names)} eV/Å"
            if np.isfinite(force) else "NaN/Inf in energy, positions or forces") + _extrapolated(contact)


def _drift_reason(deviation, drifting, tolerance: float, contact: Optional[CloseContact] = None,
                  names: Optional[Mapping[str, str]] = None) -> str:
    """Why NVE stopped conserving energy (``tolerance`` in meV/atom); with a close contact seen, that the model
    extrapolates (not the timestep). The arguments are named as ``names`` does."""
    k = int(np.argmax(drifting))
    moved = (f"the conserved energy moved {deviation[k]:.3g} meV/atom from its start value (> "
             f"{displayed_setting('energy_tolerance', f'{tolerance:g}', names)} meV/atom)")
    if contact is not None:
        return (f"{moved}{_extrapolated(contact)}, which a smaller {displayed('timestep_fs', names)} does not mend: "
                "start from a geometry the model was trained near (a less dense cell, a lower temperature), or train "
                "on such contacts")
    return (f"{moved}; use a smaller {displayed('timestep_fs', names)} (or a larger "
            f"{displayed('energy_tolerance', names)}, or {displayed_setting('on_energy_drift', 'warn', names)})")


def conserved_drift_warning(ensemble: str, deviation: float, step: int, drift: float, timestep_fs: float,
                            contact: Optional[CloseContact] = None, names: Optional[Mapping[str, str]] = None) -> str:
    """The warning of a thermostatted or NPT run whose conserved quantity (E_pot + K + the thermostat's and
    barostat's energy) moved up to ``deviation`` meV/atom from its start value, past
    :data:`ENERGY_TOLERANCE_MEV_PER_ATOM` first at ``step``, with a fitted ``drift`` (meV/atom/ps): the thermostat
    hides the heat a timestep too long for the model makes (NVE would stop), so the run only warns. With a close
    contact seen, that the model extrapolates there. Arguments are named as ``names`` does."""
    return (f"{ensemble} conserved quantity not conserved: it moved up to {deviation:.3g} meV/atom from its start "
            f"value (more than the {ENERGY_TOLERANCE_MEV_PER_ATOM:g} meV/atom at which NVE stops, first at step "
            f"{step}; drift {_figure(drift, '+.3g', ' meV/atom/ps')}){_extrapolated(contact)}: "
            f"{displayed_setting('timestep_fs', f'{timestep_fs:g}', names)} fs is too long for this model (or its "
            f"forces are not conservative), the thermostat hides the heat the integration makes; use a smaller "
            f"{displayed('timestep_fs', names)}")


def _save_last_frame(atoms, state, host, num_good, chunk_start, save_every, target: Optional[Path],
                     frame: FrameOfReference, element_energy: float) -> int:
    """Write the last of the chunk's first ``num_good`` frames (the chunk's start state if 0) to ``target``; its step.

    ``host`` holds positions in the user's frame and the element energies in its energies (and per-atom energies,
    where recorded) already; the state's
    positions are moved there by ``frame`` and ``element_energy`` (eV, :attr:`Dynamics.element_energy`) is added to its
    potential energy.

    ``target`` None (a run without ``out``) writes nothing: no file appears that the run was not asked for.
    """
    if num_good > 0:
        k = num_good - 1
        cell = getattr(host, "cell", None)
        last = frame_atoms(_in_cell(atoms, None if cell is None else cell[k]), host.positions[k], host.momenta[k],
                           host.potential_energy[k], host.forces[k], {"step": chunk_start + num_good * save_every},
                           None if host.energies is None else host.energies[k])
    else:
        in_cell = _in_cell(atoms, getattr(state, "cell", None))
        last = frame_atoms(in_cell, frame.to_user(state.positions, in_cell.cell.array), state.momenta,
                           float(state.potential_energy) + element_energy, state.forces, {"step": chunk_start})
    if target is not None:
        with written_whole(target, also_kept="") as tmp:
            ase.io.write(tmp, last, format="extxyz")
    return int(last.info["step"])


def _in_cell(atoms, cell):
    """``atoms`` in ``cell`` (Å, rows; a variable-cell run's current cell), or ``atoms`` itself for None."""
    if cell is None:
        return atoms
    moved = atoms.copy()
    moved.set_cell(np.asarray(cell, np.float64))
    return moved


def _where_saved(target: Optional[Path]) -> str:
    """How a stop message says where its last frame went."""
    return f"saved to {target}" if target is not None else "not saved (the run has no --out)"


def _stop(atoms, state, host, num_good, chunk_start, save_every, reason, out, error, frame: FrameOfReference,
          element_energy: float, note: str = ""):
    """Save the last good frame (with ``out``), raise ``error`` (:class:`MDInstabilityError`) on the first bad one;
    the message ends with ``note`` (:func:`_no_frame_note` when the run kept no frame)."""
    target = None if out is None else Path(f"{out}.last_good.xyz")
    last_step = _save_last_frame(atoms, state, host, num_good, chunk_start, save_every, target, frame, element_energy)
    bad_step = chunk_start + (num_good + 1) * save_every
    raise error(f"MD stopped at step {bad_step}: {reason}. Last good frame (step {last_step}) {_where_saved(target)}"
                f"{note}")
