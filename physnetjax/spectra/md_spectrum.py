"""Anharmonic power and IR spectra of a molecule from MD with a PhysNet model.

:func:`md_spectrum` runs R independent replicas at once (``jax.vmap`` over replicas,
one compiled program, advanced in jitted ``lax.scan`` chunks):

1. The start geometry is moved to its centre of mass (the model is translation
   invariant, and μ̇ below does not depend on the origin), so float32 positions resolve
   the molecule, not its distance from the origin (3000 Å away, CO2 at 300 K broke energy
   conservation). Maxwell–Boltzmann momenta at T, then Langevin (BAOAB) equilibration for
   ``equilibration_ps`` at T (:func:`physnetjax.md.langevin`).
2. The centre-of-mass momentum is removed and the replicas continue in NVE
   (velocity Verlet, :func:`physnetjax.md.nve`) for ``time_ps``. Every
   ``record_every`` steps (interval Δt) the loop records the mass-scaled velocities
   u_i = √m_i v_i, the total energy and, for charge models, the dipole derivative
   μ̇ = Σ_i (∂μ/∂r_i)·v_i — the exact time derivative of the model's dipole
   μ = Σ_i q_i r_i, a Jacobian-vector product (``jax.jvp``) inside the loop.
3. Per replica r, with the thermostat temperature T (n_dof = 3N − 3; T_r is the
   replica's mean kinetic temperature 2⟨K⟩_r / (n_dof k_B) over the NVE part):

   * power spectrum (vibrational density of states, cm): the spectrum
     (:func:`physnetjax.spectra.autocorrelation.spectrum_from_correlation`, Parzen
     lag window, biased estimator: non-negative at every ν̃, see
     :mod:`physnetjax.spectra.autocorrelation`) of the mass-weighted velocity autocorrelation
     C_v(t) = Σ_i m_i ⟨v_i(0)·v_i(t)⟩ · C / (k_B T), C = 103.6427 eV per
     amu·Å²/fs². It integrates to ∫ S dν̃ = 2⟨K⟩_r / (k_B T) = n_dof T_r / T, whose
     canonical average over replicas is n_dof: each degree of freedom contributes
     one unit of area at its frequencies.
   * IR spectrum (km/mol per cm⁻¹): the spectrum of
     C_μ̇(t) = ⟨μ̇(0)·μ̇(t)⟩ · C / (k_B T) · A, A = N_A / (12 ε_0 c²) in km/mol per
     e²/amu (:data:`physnetjax.units.E2_PER_AMU_IN_KM_PER_MOL`). For a harmonic mode
     Q, μ̇ = (∂μ/∂Q) Q̇ and the canonical ⟨Q̇²⟩ = k_B T / C, so the band integrates
     on average to A |∂μ/∂Q|²: the harmonic IR intensity in km/mol (and, in every
     replica, the IR band over the power band of a mode is exactly A |∂μ/∂Q|²).
     This is the classical absorption line shape α(ν̃) n(ν̃) ∝ β ω² FT⟨μ μ⟩ per
     mole, which for a harmonic system equals the quantum absorption.
   * No quantum-correction factor is applied, and none is needed: the quantum absorption
     is α n ∝ (ω / ħ)(1 − e^{−x}) FT⟨μμ⟩_qm, x = ħω / (k_B T) = h c ν̃ / (k_B T), and with
     the harmonic approximation FT⟨μμ⟩_qm ≈ x / (1 − e^{−x}) FT⟨μμ⟩_cl (exact for a
     harmonic system) it is β ω² FT⟨μμ⟩_cl, the line shape above. Multiplying that by
     x / (1 − e^{−x}) again (``--quantum-correction`` before 2026-12-05) counted the factor
     twice: x ≈ 12 for the CO2 asymmetric stretch at 300 K.

   The spectra are averaged over replicas; the per-replica spectra are kept. Both are
   ≥ 0 (to rounding), so is every band integral. The resolution is
   Δν̃ = 1 / (c · T_corr), T_corr = ``max_correlation_ps`` (the correlation window;
   default half the NVE time); a line is 1.37 Δν̃ wide at half maximum with the default.

What the spectra contain besides the vibrations: the free molecule rotates (its
angular momentum is kept), so rotation shows up near 0 cm⁻¹ in the power spectrum
and, through the rotating dipole, as P/R-branch side bands of the IR lines (as in a
gas-phase spectrum). Velocity Verlet raises a harmonic frequency to
(2/h) arcsin(ωh/2), i.e. by ≈ (ωh)²/24 relative (+0.25 % at 2600 cm⁻¹ for h = 0.5 fs).

Energy conservation: after every chunk the largest |E(t) − E(0)| of each replica
is compared with the thermal kinetic energy n_dof k_B T / 2; above
``max_energy_error`` times that the run stops with :class:`EnergyConservationError`
(reduce the timestep), above a quarter of it a warning is issued.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Callable, Mapping, NamedTuple, Optional

import ase.data
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.calculator import cast_params
from physnetjax.device_memory import check_fits
from physnetjax.distance_domain import DOMAIN_MARGIN, TrainingDistancesWarning
from physnetjax.errors import PhysNetInputWarning, RunStoppedError, displayed, namer, warn_caller
from physnetjax.md.integrators import (
    MDState,
    centre_of_mass_at_rest,
    conserved_quantity,
    kinetic_energy,
    langevin,
    maxwell_boltzmann_momenta,
    nve,
    run,
)
from physnetjax.md.potential import DENSE_MAX_ATOMS, physnet_potential
from physnetjax.predict import evaluation_dtype, split_element_energies
from physnetjax.training_record import NO_TRAINING_RECORD, TrainingRecord, training_record_of
from physnetjax.validation import (check_length_unit, check_masses, check_range, check_seed, check_temperature,
                                   validate_structure)
from physnetjax.spectra.rigid_body import fragments_within
from physnetjax.spectra.autocorrelation import (
    autocorrelation,
    resolution_cm1,
    spectrum_from_correlation,
)
from physnetjax.units import AMU_A2_PER_FS2_IN_EV, BOLTZMANN, E2_PER_AMU_IN_KM_PER_MOL, SPEED_OF_LIGHT_CM_PER_FS

logger = logging.getLogger(__name__)

MIN_TIMESTEP_FS = 1e-3
"""Shortest MD time step of a spectrum (10⁶ steps per ps; a 1e-300 fs step asked for 10³⁰⁰ frames, and 5e-324 fs
ended in a ZeroDivisionError)."""
MAX_RECORD_WAVENUMBER_CM1 = 4000.0
"""The record interval must resolve vibrations up to this wavenumber (Nyquist limit)."""
CHUNKS = 20
"""The NVE part runs in this many jitted chunks (progress is reported between them)."""
LINE_WIDTH_RESOLUTIONS = 1.37
"""Full width at half maximum of an MD line in resolutions Δν̃ (biased Parzen estimator, window = half the run)."""
ESTIMATOR, WINDOW = "biased", "parzen"
"""Autocorrelation normalisation and lag window of the spectra: together non-negative at every ν̃."""


class EnergyConservationError(RunStoppedError):
    """The NVE part did not conserve energy: the spectrum would be meaningless (CLI exit 4)."""


class DissociationError(RunStoppedError):
    """A replica's molecule came apart: the spectrum would be that of its fragments (CLI exit 4)."""


def fragment_count(positions, cutoff: float) -> int:
    """Groups of atoms (N, 3) Å linked by distances below ``cutoff`` Å (the model's message-passing cutoff: groups
    farther apart than it are separate molecules to the model)."""
    return len(fragments_within(positions, cutoff))


@dataclasses.dataclass
class MDSpectrum:
    """Spectra from :func:`md_spectrum` (K wavenumbers, R replicas).

    Fields:
      frequencies_cm1: (K,) wavenumbers ν̃ in cm⁻¹ (0 … Nyquist, zero-padded grid).
      power_spectrum: (K,) replica mean of the vibrational density of states in cm
        (degrees of freedom per cm⁻¹; ∫ = (3N − 3) · mean(T_r) / T).
      ir_spectrum: (K,) replica mean IR absorption in km/mol per cm⁻¹ (∫ over a band =
        its intensity in km/mol), or None for a model without charges.
      resolution_cm1: Δν̃ = 1 / (c T_corr) in cm⁻¹.
      temperatures_K: (R,) mean kinetic temperature of each replica in the NVE part.
      energy_errors: (R,) max |E(t) − E(0)| over the NVE part / (n_dof k_B T / 2).
      replica_power_spectra: (R, K); replica_ir_spectra: (R, K) or None.
      settings: the run's parameters (as run: actual equilibration time, record interval).
      md_seconds: wall time of the MD after compilation; compile_seconds: compilation.
    """

    frequencies_cm1: np.ndarray
    power_spectrum: np.ndarray
    ir_spectrum: Optional[np.ndarray]
    resolution_cm1: float
    temperatures_K: np.ndarray
    energy_errors: np.ndarray
    replica_power_spectra: np.ndarray
    replica_ir_spectra: Optional[np.ndarray]
    settings: dict
    md_seconds: float = 0.0
    compile_seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict (arrays as lists, None kept)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out


def md_spectrum(
    model,
    params,
    atomic_numbers,
    positions,
    *,
    temperature_K: float,
    time_ps: float,
    timestep_fs: float = 0.5,
    equilibration_ps: float = 2.0,
    replicas: int = 4,
    friction: float = 0.01,
    record_every: int = 4,
    total_charge: float = 0.0,
    masses=None,
    seed: int = 0,
    max_correlation_ps: Optional[float] = None,
    dtype=None,
    max_energy_error: float = 0.1,
    progress: Optional[Callable[[int, int], None]] = None,
    training_record: TrainingRecord = NO_TRAINING_RECORD,
    names: Optional[Mapping[str, str]] = None,
) -> MDSpectrum:
    """Power and IR spectra of an isolated molecule from Langevin-equilibrated NVE MD (module docstring).

    Args:
      model, params: a :class:`physnetjax.PhysNet` and its variables.
      atomic_numbers: (N,) ints, N ≥ 2. positions: (N, 3) Å start geometry.
      temperature_K: T > 0 of the equilibration thermostat and the initial momenta.
      time_ps: length of the NVE part per replica (> 0).
      timestep_fs: MD time step (> 0).
      equilibration_ps: Langevin time before NVE (≥ 0; rounded up to whole chunks).
      replicas: independent trajectories R ≥ 1 (replica r uses key fold_in(PRNGKey(seed), r),
        so it does not depend on R).
      friction: Langevin friction γ in fs⁻¹ (> 0).
      record_every: steps between recorded frames (≥ 1); the record interval must
        resolve 4000 cm⁻¹ (default 4 × 0.5 fs = 2 fs: up to 8339 cm⁻¹). Recording costs
        about one force evaluation for a charge model (the dipole derivative is a
        Jacobian-vector product through the energy-only model call).
      total_charge: total charge Q in e.
      masses: (N,) amu (default: standard atomic masses; pass isotopes here).
      seed: PRNG seed.
      max_correlation_ps: correlation window T_corr (0 < T_corr ≤ time_ps; default
        time_ps / 2); sets the resolution 1 / (c T_corr).
      dtype: ``"float32"`` or ``"float64"`` (needs x64) for the MD; default: the model's precision
        (:func:`~physnetjax.predict.evaluation_dtype`).
      max_energy_error: allowed max |E(t) − E(0)| in units of n_dof k_B T / 2.
      progress: called as ``progress(steps_done, steps_total)`` after each chunk.
      training_record: what the model's training data held (checkpoint metadata,
        :class:`~physnetjax.training_record.TrainingRecord`); elements or a total charge outside
        it warn (the spectra do not depend on absolute energies, so compositions are not judged).
      names: keyword → how the messages name it; a command line passes its options, e.g.
        ``{"timestep_fs": "--timestep"}`` (:func:`physnetjax.errors.displayed`).

    Returns:
      :class:`MDSpectrum`.

    Raises:
      ValueError: invalid arguments (named with the value received).
      EnergyConservationError: NaN/Inf in the dynamics or energy not conserved.
      DissociationError: a replica's molecule came apart (more groups of atoms farther apart than the model's
        cutoff than at the start), judged after every chunk of the equilibration and the NVE part.

    Warns:
      PhysNetInputWarning: close contacts, a molecule stretched as by positions in bohr
        (:func:`physnetjax.validation.check_length_unit`), or elements or a total charge outside
        the training data (:meth:`physnetjax.training_record.TrainingRecord.check_structure`), or an
        equilibration shorter than 5 Langevin relaxation times (:func:`short_equilibration`).
      TrainingDistancesWarning: a replica left the training data's interatomic distances (judged after every
        chunk; ``settings["largest_distance_excursion"]`` keeps the largest excursion, 0 inside them).
    """
    z, r0 = validate_structure(atomic_numbers, positions, model.supported_max_atomic_number, total_charge=total_charge)
    check_length_unit(z, r0)
    training_record_of(training_record).check_structure(model, z, total_charge, positions=r0, consequence=None)
    check_molecule_size(z.shape[0])
    r0 = np.asarray(r0, np.float64)
    num_atoms = z.shape[0]
    plan = plan_run(temperature_K=temperature_K, time_ps=time_ps, timestep_fs=timestep_fs,
                    equilibration_ps=equilibration_ps, replicas=replicas, friction=friction,
                    record_every=record_every, max_correlation_ps=max_correlation_ps,
                    max_energy_error=max_energy_error, names=names)
    check_recorded_size(plan, num_atoms, names)
    short = short_equilibration(equilibration_ps, friction, names)
    if short:
        warn_caller(short, PhysNetInputWarning)
    replicas, record_every, interval_fs = plan.replicas, plan.record_every, plan.interval_fs
    num_frames, num_lags = plan.num_frames, plan.num_lags
    masses = ase.data.atomic_masses[z] if masses is None else check_masses(masses, num_atoms)
    dtype = evaluation_dtype(dtype, model, "md_spectrum")

    network, _ = split_element_energies(model)  # the energies serve conservation only: Σ E0 would cost resolution
    potential = physnet_potential(network, cast_params(params, dtype), z, total_charge=total_charge,
                                  method="all_pairs")
    nbrs = potential.allocate(r0)
    has_charges = bool(getattr(model, "charges", False))
    dof = 3 * num_atoms - 3
    mass_array = jnp.asarray(masses, dtype)
    start = jnp.asarray(r0 - masses @ r0 / masses.sum(), dtype)
    key = jax.random.PRNGKey(check_seed(seed, displayed("seed", names)))
    keys = jax.vmap(lambda r: jax.random.split(jax.random.fold_in(key, r)))(
        jnp.arange(replicas))

    steps_eq = int(math.ceil(equilibration_ps * 1e3 / timestep_fs))
    eq_chunks = min(CHUNKS, steps_eq)
    eq_chunk_steps = int(math.ceil(steps_eq / eq_chunks)) if eq_chunks else 0
    frames_per_chunk = int(math.ceil(num_frames / CHUNKS))
    nve_chunks = int(math.ceil(num_frames / frames_per_chunk))
    total_steps = eq_chunks * eq_chunk_steps + nve_chunks * frames_per_chunk * record_every

    def dipole_rate(positions, velocities):
        def dipole(r):
            return potential.outputs(r, nbrs, compute_forces=False)["dipoles"][0]
        return jax.jvp(dipole, (positions,), (velocities,))[1]

    def observe(state: MDState) -> dict:
        sqrt_m = jnp.sqrt(state.masses)[:, None]
        record = {"scaled_velocities": state.momenta / sqrt_m, "energy": conserved_quantity(state),
                  "kinetic": kinetic_energy(state.momenta, state.masses)}
        if has_charges:
            record["dipole_rate"] = dipole_rate(state.positions, state.momenta / state.masses[:, None])
        return record

    init_l, apply_l = langevin(potential.energy_force, timestep_fs, temperature_K, friction)
    _, apply_v = nve(potential.energy_force, timestep_fs)

    def start_replica(replica_keys):
        momenta = maxwell_boltzmann_momenta(replica_keys[0], mass_array, temperature_K)
        return init_l(start, momenta, mass_array, nbrs, replica_keys[1])

    def to_nve(state: MDState) -> MDState:
        return state.replace(momenta=centre_of_mass_at_rest(state.momenta, state.masses),
                             heat=jnp.zeros_like(state.heat), key=None)

    start_fragments = fragment_count(r0, float(model.cutoff))
    domain = training_record_of(training_record).distances
    excursion = {"largest": 0.0, "warned": False}

    def judge(state: MDState, when: str) -> None:
        """Refuse replicas that came apart; warn once about the first to leave the training distances."""
        positions = np.asarray(state.positions, np.float64)
        for replica, geometry in enumerate(positions):
            groups = fragments_within(geometry, float(model.cutoff))
            if len(groups) > start_fragments:
                raise DissociationError(
                    f"replica {replica} came apart {when}: its atoms form {len(groups)} groups more than "
                    f"{float(model.cutoff):g} Å (the model's cutoff) apart ({', '.join(str(g.tolist()) for g in groups)}"
                    f"), {start_fragments} at the start; the spectrum would be that of the fragments: lower "
                    f"{displayed('temperature_K', names)} (now {temperature_K:g} K)")
        if domain is None:
            return
        _, excursions, text = domain.outside(np.broadcast_to(z, (replicas, num_atoms)), positions,
                                             np.full(replicas, num_atoms))
        excursion["largest"] = max(excursion["largest"], float(excursions.max()))
        if text is not None and not excursion["warned"]:
            warn_caller(f"MD of the spectrum left its training data's interatomic distances {when} (replica "
                        f"{int(np.argmax(excursions))}): {text}: the model extrapolates there, and the spectrum "
                        f"with it (distances more than {DOMAIN_MARGIN:.0%} outside those of its training frames)",
                        TrainingDistancesWarning)
            excursion["warned"] = True

    t_compile = t_md = 0.0
    done = 0
    t0 = time.perf_counter()
    state = jax.jit(jax.vmap(start_replica))(keys)
    if eq_chunks:
        eq_chunk = jax.jit(jax.vmap(lambda s: run(apply_l, s, 1, eq_chunk_steps, lambda st: st.potential_energy)))
        compiled = eq_chunk.lower(state).compile()
        check_fits(compiled, f"the Langevin equilibration of {replicas} replicas")
        t_compile += time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(eq_chunks):
            state, energies = compiled(state)
            if not np.all(np.isfinite(np.asarray(energies))):
                raise EnergyConservationError("NaN/Inf energy during the Langevin equilibration")
            done += eq_chunk_steps
            judge(state, f"during the Langevin equilibration (by {done * timestep_fs * 1e-3:.3g} ps)")
            if progress is not None:
                progress(done, total_steps)
        t_md += time.perf_counter() - t0
        t0 = time.perf_counter()
    state = jax.vmap(to_nve)(state)
    energy0 = np.asarray(jax.vmap(conserved_quantity)(state))
    if not np.all(np.isfinite(energy0)):
        raise EnergyConservationError("NaN/Inf energy at the start of the NVE part")
    thermal = 0.5 * dof * BOLTZMANN * temperature_K
    round_off = round_off_hint(energy0, thermal, dtype, names)
    nve_chunk = jax.jit(jax.vmap(lambda s: run(apply_v, s, frames_per_chunk, record_every, observe)))
    compiled = nve_chunk.lower(state).compile()
    check_fits(compiled, f"chunks of {frames_per_chunk} frames of {replicas} NVE replicas")
    t_compile += time.perf_counter() - t0
    max_error = np.zeros(replicas)
    chunks = []
    t0 = time.perf_counter()
    for _ in range(nve_chunks):
        state, record = compiled(state)
        record = jax.device_get(record)
        deviation = np.abs(np.asarray(record["energy"], np.float64) - energy0[:, None])
        if not np.all(np.isfinite(deviation)):
            raise EnergyConservationError("NaN/Inf energy in the NVE part: the dynamics blew up")
        max_error = np.maximum(max_error, deviation.max(axis=1) / thermal)
        if max_error.max() > max_energy_error:
            raise EnergyConservationError(
                f"NVE energy not conserved: max |E(t) - E(0)| = {max_error.max():.3g} x n_dof k_B T / 2 "
                f"(replica {int(max_error.argmax())}) > {max_energy_error:g} allowed; "
                + (round_off if round_off else f"reduce {displayed('timestep_fs', names)} (now {timestep_fs:g} fs)")
            )
        chunks.append(record)
        done += frames_per_chunk * record_every
        judge(state, f"in the NVE part (by {done * timestep_fs * 1e-3:.3g} ps of the run)")
        if progress is not None:
            progress(done, total_steps)
    t_md += time.perf_counter() - t0
    if max_error.max() > 0.25 * max_energy_error:
        warn_caller(f"NVE energy conservation is marginal: max |E(t) - E(0)| = {max_error.max():.3g} x "
                    f"n_dof k_B T / 2; {round_off or 'consider a smaller timestep'}")

    def gather(name):
        return np.concatenate([np.asarray(c[name], np.float64) for c in chunks], axis=1)[:, :num_frames]

    kinetic = gather("kinetic")
    temperatures = 2.0 * kinetic.mean(axis=1) / (dof * BOLTZMANN)
    velocities = gather("scaled_velocities")
    dipole_rates = gather("dipole_rate") if has_charges else None
    power, ir = [], []
    for r in range(replicas):
        freqs, spectrum, ir_spectrum = spectra_of_trajectory(
            velocities[r], None if dipole_rates is None else dipole_rates[r], interval_fs, temperature_K, num_lags)
        power.append(spectrum)
        ir.append(ir_spectrum)
    power = np.stack(power)
    ir = np.stack(ir) if has_charges else None
    settings = dict(
        temperature_K=float(temperature_K), time_ps=num_frames * interval_fs * 1e-3, timestep_fs=float(timestep_fs),
        equilibration_ps=eq_chunks * eq_chunk_steps * timestep_fs * 1e-3, replicas=replicas,
        friction_per_fs=float(friction), record_every=record_every, record_interval_fs=interval_fs,
        max_correlation_ps=num_lags * interval_fs * 1e-3, total_charge=float(total_charge),
        masses_amu=[float(m) for m in masses], seed=int(seed),
        dtype=str(dtype), degrees_of_freedom=dof, window=WINDOW, normalization=ESTIMATOR,
        largest_distance_excursion=None if domain is None else excursion["largest"],
        units={"frequencies": "cm^-1", "power_spectrum": "cm (degrees of freedom per cm^-1)",
               "ir_spectrum": "km/mol per cm^-1"},
    )
    logger.info("MD spectrum: %d replicas x %.3g ps NVE in %.1f s (compile %.1f s), T = %s K",
                replicas, settings["time_ps"], t_md, t_compile, np.round(temperatures, 1).tolist())
    return MDSpectrum(
        frequencies_cm1=freqs, power_spectrum=power.mean(axis=0),
        ir_spectrum=None if ir is None else ir.mean(axis=0),
        resolution_cm1=resolution_cm1(num_lags * interval_fs), temperatures_K=temperatures,
        energy_errors=max_error, replica_power_spectra=power, replica_ir_spectra=ir, settings=settings,
        md_seconds=t_md, compile_seconds=t_compile,
    )


class RunPlan(NamedTuple):
    """Validated MD-spectrum settings: R replicas, steps between records, record interval (fs),
    recorded NVE frames and correlation lags."""

    replicas: int
    record_every: int
    interval_fs: float
    num_frames: int
    num_lags: int


MAX_RECORDED_VALUES = 2e8
"""Largest number of values an MD spectrum records (frames × replicas × (3N + 3): velocities and dipole rates):
1.6 GB in float64 on the host, with as much again in float32 on the device. CO2 for 10 ps with the defaults (4
replicas, a frame every 2 fs) records 2.4e5 values, ethanol for 100 ps with 32 replicas 4.8e7; CO2 with
``--time-ps 1e6`` asked for 2.4e10 and grew to 6 GB within 20 s before it was stopped."""


def check_recorded_size(plan: "RunPlan", num_atoms: int, names: Optional[Mapping[str, str]] = None) -> None:
    """ValueError naming the settings when the run of ``plan`` for ``num_atoms`` atoms would record more than
    :data:`MAX_RECORDED_VALUES` values (checked before any work, not found out of memory)."""
    name = namer(names)
    values = float(plan.num_frames) * plan.replicas * (3 * num_atoms + 3)
    if values > MAX_RECORDED_VALUES:
        raise ValueError(
            f"the run would record {values:.3g} values ({_count(plan.num_frames)} frames × {plan.replicas} replicas × "
            f"{3 * num_atoms + 3} per frame), {8 * values / 2**30:.3g} GiB in float64, more than the "
            f"{MAX_RECORDED_VALUES:.0e} allowed: lower {name('time_ps')} or {name('replicas')}, or raise "
            f"{name('record_every')} (every recorded frame counts)")


def _count(number: int) -> str:
    """An integer as digits up to 10¹², beyond in 3 significant figures (a 1e-300 fs timestep asked for 10³⁰⁰ frames)."""
    return str(number) if number < 10**12 else f"{float(number):.3g}"


ROUND_OFF_SHARE = 1e-4
"""Share of the thermal energy n_dof k_B T / 2 above which the float32 spacing of the conserved energy makes an
energy-conservation failure a matter of round-off rather than of the timestep. Round-off of positions and forces
adds up to a few hundred such spacings over a run: CO2 (shipped model, 2 replicas, 1 ps) at 0.001 K, spacing 0.029
of the thermal energy, erred by 5.85 of it; at 0.1 K, 2.9e-4, by 0.094 (the marginal warning's range)."""


def round_off_hint(energies, thermal_eV: float, dtype, names: Optional[Mapping[str, str]] = None) -> str:
    """What to do about an energy-conservation failure that float32 round-off explains (else ""): the spacing of
    float32 numbers at the conserved ``energies`` (eV) above :data:`ROUND_OFF_SHARE` of ``thermal_eV``. CO2 at
    0.001 K failed with 5.9 × n_dof k_B T / 2 and got "reduce timestep_fs", which made it worse (11.3); float64
    conserved it to 0.005."""
    if np.dtype(dtype) != np.float32:
        return ""
    spacing = float(np.spacing(np.float32(np.max(np.abs(energies)))))
    if spacing <= ROUND_OFF_SHARE * thermal_eV:
        return ""
    return (f"float32 resolves the energy only to {spacing:.2g} eV, {spacing / thermal_eV:.2g} x n_dof k_B T / 2 at "
            f"this temperature: run in float64 ({displayed('dtype', names)} float64), not with a smaller timestep")


EQUILIBRATION_RELAXATION_TIMES = 5.0
"""Langevin relaxation times 1/γ the equilibration should last. A molecule that starts at one geometry with
Maxwell–Boltzmann momenta alone holds about k_B T / 2 per vibration instead of k_B T (at a minimum, all of it
kinetic); the thermostat closes the gap as e^{−γt}, so after t the band integrals are short by about e^{−γt} / 2:
50 % without equilibration (CO2 at 20 K: bands at 0.25–0.47 of the harmonic intensities), 0.3 % after 5/γ."""


def short_equilibration(equilibration_ps: float, friction: float, names: Optional[Mapping[str, str]] = None
                        ) -> Optional[str]:
    """A warning text when ``equilibration_ps`` is shorter than :data:`EQUILIBRATION_RELAXATION_TIMES` / γ
    (γ = ``friction`` in fs⁻¹), else None."""
    name = namer(names)
    relaxations = equilibration_ps * 1e3 * friction
    if relaxations >= EQUILIBRATION_RELAXATION_TIMES:
        return None
    return (f"{name('equilibration_ps')} {equilibration_ps:g} ps is {relaxations:.2g} Langevin relaxation times "
            f"(1/{name('friction')} = {1e-3 / friction:g} ps): the replicas start at one geometry with kinetic energy "
            f"only, so their vibrations enter NVE with about {1 - 0.5 * math.exp(-relaxations):.0%} of the thermal "
            f"energy and the bands come out weaker by about that; equilibrate for at least "
            f"{EQUILIBRATION_RELAXATION_TIMES * 1e-3 / friction:g} ps")


VERLET_SHIFT_WARNING = 0.01
"""Relative shift of a line by the velocity Verlet time step above which the ``ir`` command warns."""


def verlet_wavenumber_cm1(wavenumbers_cm1, timestep_fs: float) -> np.ndarray:
    """Where velocity Verlet with step h puts a harmonic line of wavenumber ν̃: (2/h) arcsin(ωh/2) / (2πc), with
    ω = 2πc ν̃ in fs⁻¹; ≈ ν̃ (1 + (ωh)²/24). NaN where ωh ≥ 2 (the integration is unstable)."""
    omega_h = 2.0 * math.pi * SPEED_OF_LIGHT_CM_PER_FS * np.asarray(wavenumbers_cm1, np.float64) * timestep_fs
    with np.errstate(invalid="ignore"):
        shifted = 2.0 * np.arcsin(np.where(omega_h < 2.0, omega_h / 2.0, np.nan))
    return shifted / (2.0 * math.pi * SPEED_OF_LIGHT_CM_PER_FS * timestep_fs)


def check_timestep_for_lines(wavenumbers_cm1, timestep_fs: float, names: Optional[Mapping[str, str]] = None
                             ) -> Optional[str]:
    """For the harmonic lines ``wavenumbers_cm1`` (> 0): ValueError when velocity Verlet at ``timestep_fs`` is
    unstable for the fastest (ωh ≥ 2); a warning text when it shifts a line by more than
    :data:`VERLET_SHIFT_WARNING` (Verlet conserves a shadow energy, so energy conservation does not show it:
    CO2's 2593.5 cm⁻¹ line ran at 2891 cm⁻¹ with 3 fs, and the band table's ±150 cm⁻¹ window missed it);
    else None."""
    name = namer(names)
    lines = np.asarray(wavenumbers_cm1, np.float64)
    if lines.size == 0:
        return None
    fastest = float(lines.max())
    moved = float(verlet_wavenumber_cm1(fastest, timestep_fs))
    stable_below = 1.0 / (math.pi * SPEED_OF_LIGHT_CM_PER_FS * fastest)
    if not np.isfinite(moved):
        raise ValueError(f"{name('timestep_fs')} {timestep_fs:g} fs is too long for the {fastest:.1f} cm^-1 vibration: "
                         f"velocity Verlet is unstable from {stable_below:.3g} fs (ωh ≥ 2); use at most "
                         f"{_timestep_for_shift(fastest, 0.0025):.2g} fs")
    shift = moved / fastest - 1.0
    if shift <= VERLET_SHIFT_WARNING:
        return None
    return (f"{name('timestep_fs')} {timestep_fs:g} fs moves the {fastest:.1f} cm^-1 line to {moved:.1f} cm^-1 "
            f"(+{shift:.1%}; velocity Verlet raises a line by ≈ (ωh)²/24, unseen by the energy conservation): "
            f"MD peaks sit above the harmonic lines by that much; use at most "
            f"{_timestep_for_shift(fastest, 0.0025):.2g} fs for about 0.25 %")


def _timestep_for_shift(wavenumber_cm1: float, shift: float) -> float:
    """The step h (fs) at which velocity Verlet raises a line of ``wavenumber_cm1`` by about the relative ``shift``:
    (ωh)²/24 = shift."""
    return math.sqrt(24.0 * shift) / (2.0 * math.pi * SPEED_OF_LIGHT_CM_PER_FS * wavenumber_cm1)


def check_molecule_size(num_atoms: int) -> None:
    """ValueError unless 2 ≤ ``num_atoms`` ≤ :data:`~physnetjax.md.potential.DENSE_MAX_ATOMS` (md_spectrum)."""
    if not 2 <= num_atoms <= DENSE_MAX_ATOMS:
        raise ValueError(f"md_spectrum is for isolated molecules of 2 to {DENSE_MAX_ATOMS} atoms, received {num_atoms}")


def spectra_of_trajectory(scaled_velocities, dipole_rates, interval_fs: float, temperature_K: float, num_lags: int
                          ) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Power and IR spectra of one recorded trajectory (step 3 of the module docstring; NumPy, float64).

    S_power = spectrum of Σ_i ⟨u_i(0)·u_i(t)⟩ · C / (k_B T) (cm), S_IR = spectrum of
    ⟨μ̇(0)·μ̇(t)⟩ · C / (k_B T) · A (km/mol per cm⁻¹), both with the biased estimator and
    the Parzen lag window; C = 103.6427 eV per amu·Å²/fs², A = N_A / (12 ε_0 c²).

    Args:
      scaled_velocities: (T, N, 3) u_i = √m_i v_i in √amu·Å/fs, sampled every ``interval_fs``.
      dipole_rates: (T, 3) μ̇ in e·Å/fs at the same times, or None.
      interval_fs: sampling interval Δt in fs.  temperature_K: T in K.  num_lags: M, the window in samples.

    Returns:
      (wavenumbers (K,) cm⁻¹, power spectrum (K,), IR spectrum (K,) or None).
    """
    kt_amu = BOLTZMANN * temperature_K / AMU_A2_PER_FS2_IN_EV
    vacf = autocorrelation(scaled_velocities, num_lags, ESTIMATOR).sum(axis=(1, 2)) / kt_amu
    wavenumbers, power = spectrum_from_correlation(vacf, interval_fs, window=WINDOW)
    if dipole_rates is None:
        return wavenumbers, power, None
    dacf = autocorrelation(dipole_rates, num_lags, ESTIMATOR).sum(axis=1) / kt_amu * E2_PER_AMU_IN_KM_PER_MOL
    return wavenumbers, power, spectrum_from_correlation(dacf, interval_fs, window=WINDOW)[1]


def plan_run(*, temperature_K, time_ps, timestep_fs, equilibration_ps, replicas, friction, record_every,
             max_correlation_ps, max_energy_error, names: Optional[Mapping[str, str]] = None) -> RunPlan:
    """Check the settings of :func:`md_spectrum` (same meaning) without running anything.

    ``names``: keyword → how the messages name the setting (a command line passes its
    options, e.g. ``{"max_correlation_ps": "--correlation-ps"}``); by default the keywords.

    Raises:
      ValueError: a non-positive or non-finite temperature, time, timestep, friction or
        tolerance; negative equilibration; replicas or record_every < 1; a record
        interval that cannot resolve 4000 cm⁻¹; a correlation window longer than the
        NVE time or holding fewer than 8 frames.
    """
    name = namer(names)

    _check_positive(name("temperature_K"), temperature_K, "K")
    check_temperature(name("temperature_K"), temperature_K)
    _check_positive(name("time_ps"), time_ps, "ps")
    _check_positive(name("timestep_fs"), timestep_fs, "fs")
    if timestep_fs < MIN_TIMESTEP_FS:
        raise ValueError(f"{name('timestep_fs')} must be at least {MIN_TIMESTEP_FS:g} fs, received {timestep_fs!r}: a "
                         f"spectrum needs picoseconds of MD, {1e3 / MIN_TIMESTEP_FS:.0e} steps per ps at the limit")
    _check_positive(name("friction"), friction, "fs^-1")
    _check_positive(name("max_energy_error"), max_energy_error, "")
    check_range(name("equilibration_ps"), equilibration_ps, "ps", 0.0)
    if int(replicas) != replicas or replicas < 1:
        raise ValueError(f"{name('replicas')} must be an integer >= 1, received {replicas}")
    if int(record_every) != record_every or record_every < 1:
        raise ValueError(f"{name('record_every')} must be an integer >= 1, received {record_every}")
    interval_fs = timestep_fs * int(record_every)
    nyquist = 1.0 / (2.0 * SPEED_OF_LIGHT_CM_PER_FS * interval_fs)
    if nyquist < MAX_RECORD_WAVENUMBER_CM1:
        raise ValueError(
            f"record interval {interval_fs:g} fs ({name('timestep_fs')} × {name('record_every')}) resolves only up "
            f"to {nyquist:.0f} cm^-1 (the Nyquist wavenumber) < {MAX_RECORD_WAVENUMBER_CM1:.0f} cm^-1, the fastest "
            "molecular vibrations (X-H stretches), which would fold back into the spectrum at lower wavenumbers "
            f"whatever part of it is shown; lower {name('record_every')} or {name('timestep_fs')}"
        )
    num_frames = int(round(time_ps * 1e3 / interval_fs))
    if max_correlation_ps is None:
        max_correlation_ps = time_ps / 2.0
    _check_positive(name("max_correlation_ps"), max_correlation_ps, "ps")
    if max_correlation_ps > time_ps:
        raise ValueError(
            f"{name('time_ps')} = {time_ps:g} ps is shorter than the correlation window {name('max_correlation_ps')} = "
            f"{max_correlation_ps:g} ps (resolution {resolution_cm1(max_correlation_ps * 1e3):.3g} cm^-1); "
            f"increase {name('time_ps')} or lower {name('max_correlation_ps')}"
        )
    num_lags = int(round(max_correlation_ps * 1e3 / interval_fs))
    if num_lags < 8 or num_frames < num_lags:
        raise ValueError(
            f"the correlation window of {max_correlation_ps:g} ps holds {num_lags} recorded frames "
            f"({interval_fs:g} fs apart) of {num_frames}; need at least 8: increase {name('time_ps')}/"
            f"{name('max_correlation_ps')}"
        )
    return RunPlan(int(replicas), int(record_every), interval_fs, num_frames, num_lags)


def _check_positive(name, value, unit):
    if isinstance(value, bool) or not (isinstance(value, (int, float, np.floating, np.integer))
                                       and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0{' ' + unit if unit else ''}, received {value!r}")
