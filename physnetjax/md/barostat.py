"""Constant pressure (NPT) for periodic cells: stochastic cell rescaling with a CSVR thermostat.

Same shape as :mod:`physnetjax.md.integrators`, with a force function that also
sees the cell and returns the stress::

    energy_force_stress_fn(positions, cell, nbrs) -> (E eV, F (N, 3) eV/Å, σ (3, 3) eV/Å³)
    neighbor_update(positions, cell, nbrs) -> nbrs                     (optional)

Sign conventions (as the model's ``stress`` output): σ = (1/V) ∂E/∂ε for a
homogeneous strain ε (positive under tension), the virial pressure is −tr σ / 3 and
the instantaneous pressure tensor and pressure are

    P_ab = Σ_i p_ia p_ib / m_i · C / V − σ_ab,      P = tr(P)/3 = 2K/(3V) − tr σ/3

(eV/Å³; 1 bar = :data:`physnetjax.units.BAR` eV/Å³). For an ideal gas P = N k_B T / V.

Barostat (Bernetti & Bussi 2020, J. Chem. Phys. 153, 114107; derived again here):
with scaled coordinates s = r / L and π = p L fixed, the cell follows overdamped
Langevin dynamics in ε = ln V (isotropic) or ε_a = ln L_a (anisotropic, each
Cartesian axis a on its own):

    dε = −(β_T/τ_P) (P_0 − P − g k_B T/V) dt + √(2 k_B T β_T dt / (V τ_P)) ξ

with P (isotropic) or P_aa (anisotropic) in place of P, β_T the compressibility
(sets the mobility; the right order of magnitude suffices), τ_P the barostat time
(relaxation time of the volume), ξ ~ N(0, 1) and g = N − N_f/3 (1 when the total
momentum is removed, N_f = 3N − 3). This samples exp(−(E_pot + K + P_0 V)/k_B T)
exactly in the limit dt → 0, hence ⟨P⟩ = P_0 − g k_B T ⟨1/V⟩ and
⟨V²⟩ − ⟨V⟩² = −k_B T ∂⟨V⟩/∂P_0 = k_B T ⟨V⟩ κ_T. Positions scale with the cell,
momenta inversely: r_a ← λ_a r_a, h_{·a} ← λ_a h_{·a}, p_a ← p_a / λ_a with λ_a = e^{dε_a}
(dε_a = dε/3 when isotropic). Anisotropic scaling changes the cell along the
Cartesian axes only; shear is not controlled (the off-diagonal stress is ignored).

One step h: CSVR(h/2) · kick(h/2) · cell rescaling(h) · drift(h) · forces · kick(h/2) · CSVR(h/2).

Conserved quantity: E_pot + K + heat, where ``heat`` accumulates the kinetic energy
removed by the thermostat and −(ΔK + ΔE_pot) of every cell rescaling, ΔE_pot
estimated from the stress by the trapezoid rule V Σ_a σ_aa dε_a (before the move and
after the next force evaluation). It changes only by the Verlet error and the error
of that estimate, so a stress inconsistent with the energy shows up as drift.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp

from physnetjax.md.integrators import (
    Frame,
    MDState,
    _check_timestep,
    _drift,
    _kick,
    frame_of,
    kinetic_energy,
)
from physnetjax.md.thermostats import (
    ThermostatState,
    check_temperature,
    check_time_constant,
    csvr_rescale,
    degrees_of_freedom_of,
    linear_ramp,
)
from physnetjax.units import AMU_A2_PER_FS2_IN_EV, BAR, BOLTZMANN

EnergyForceStressFn = Callable[[jax.Array, jax.Array, Any], tuple[jax.Array, jax.Array, jax.Array]]
CellNeighborUpdateFn = Callable[[jax.Array, jax.Array, Any], Any]


@flax.struct.dataclass
class NPTState(ThermostatState):
    """State of an NPT run: :class:`ThermostatState` plus the cell and its stress.

    Fields (beyond ThermostatState): cell (3, 3) Å, cell vectors as rows; stress
    (3, 3) eV/Å³ at ``positions``/``cell``.
    """

    cell: Optional[jax.Array] = None
    stress: Optional[jax.Array] = None


@flax.struct.dataclass
class NPTFrame(Frame):
    """A :class:`Frame` of a periodic cell plus volume V (Å³), instantaneous pressure P (eV/Å³) and, under a
    barostat, the cell (3, 3) Å (None in a fixed cell: NVE and NVT runs of a periodic system use it too)."""

    cell: Optional[jax.Array] = None
    volume: Optional[jax.Array] = None
    pressure: Optional[jax.Array] = None


def cell_volume(cell: jax.Array) -> jax.Array:
    """V = |det h| in Å³ for cell vectors h (3, 3) as rows."""
    return jnp.abs(jnp.linalg.det(cell))


def pressure_tensor(momenta: jax.Array, masses: jax.Array, cell: jax.Array, stress: jax.Array) -> jax.Array:
    """P_ab = Σ_i p_ia p_ib / m_i · C / V − σ_ab in eV/Å³ (p (N, 3) amu·Å/fs, m (N,) amu, σ (3, 3) eV/Å³)."""
    kinetic_tensor = jnp.einsum("ia,ib->ab", momenta / masses[:, None], momenta) * AMU_A2_PER_FS2_IN_EV
    return kinetic_tensor / cell_volume(cell) - stress


def instantaneous_pressure(momenta, masses, cell, stress) -> jax.Array:
    """P = tr(P_ab)/3 = 2K/(3V) − tr σ/3 in eV/Å³."""
    return jnp.trace(pressure_tensor(momenta, masses, cell, stress)) / 3.0


def periodic_frame_of(state: MDState, cell: jax.Array, stress: jax.Array) -> NPTFrame:
    """The observables of ``state`` in a periodic ``cell``: :func:`frame_of` plus V = |det h| (Å³) and
    P = 2K/(3V) − tr σ/3 (eV/Å³, :func:`instantaneous_pressure`).

    Args:
      state: any MD state (positions (N, 3) Å, momenta (N, 3) amu·Å/fs, masses (N,) amu).
      cell: h (3, 3) Å, cell vectors as rows.
      stress: σ (3, 3) eV/Å³ of the model at ``state.positions`` in ``cell`` (σ = (1/V) ∂E/∂ε).

    Returns:
      :class:`NPTFrame` with ``cell`` None (:func:`npt_frame_of` adds the barostat's).
    """
    frame = frame_of(state)
    cell = jnp.asarray(cell, state.momenta.dtype)
    return NPTFrame(**{f: getattr(frame, f) for f in frame.__dataclass_fields__}, volume=cell_volume(cell),
                    pressure=instantaneous_pressure(state.momenta, state.masses, cell, stress))


def npt_frame_of(state: NPTState) -> NPTFrame:
    """The observables of an NPT state: :func:`periodic_frame_of` at its cell and stress, plus the cell."""
    return periodic_frame_of(state, state.cell, state.stress).replace(cell=state.cell)


def _identity_cell_update(positions, cell, nbrs):
    return nbrs


def stochastic_cell_rescaling(
    energy_force_stress_fn: EnergyForceStressFn,
    dt: float,
    temperature_K: float,
    pressure: float,
    *,
    barostat_time_fs: float = 1000.0,
    compressibility: float = 4.5e-5 / BAR,
    thermostat_time_fs: float = 100.0,
    anisotropic: bool = False,
    temperature_end_K: Optional[float] = None,
    pressure_end: Optional[float] = None,
    ramp_steps: Optional[int] = None,
    degrees_of_freedom: Optional[int] = None,
    neighbor_update: Optional[CellNeighborUpdateFn] = None,
) -> tuple[Callable[..., NPTState], Callable[[NPTState], NPTState]]:
    """NPT by stochastic cell rescaling with a CSVR thermostat (module docstring).

    Args:
      energy_force_stress_fn: ``(positions, cell, nbrs) -> (E, F, σ)``.
      dt: time step h in fs.
      temperature_K: target T in K (start of a ramp).
      pressure: target P_0 in eV/Å³ (start of a ramp); ``physnetjax.units.BAR`` converts.
      barostat_time_fs: τ_P in fs (> 0).
      compressibility: β_T in Å³/eV (> 0); default 4.5e-5 bar⁻¹ (water).
      thermostat_time_fs: CSVR time τ_T in fs (> 0).
      anisotropic: rescale the three Cartesian axes independently (P_aa → P_0).
      temperature_end_K, pressure_end, ramp_steps: linear ramps over ``ramp_steps`` steps.
      degrees_of_freedom: N_f (default 3N; 3N − 3 when the total momentum is zero and conserved).
      neighbor_update: ``(positions, cell, nbrs) -> nbrs`` before every force evaluation.

    Returns:
      ``init_fn(positions, momenta, masses, cell, nbrs=None, key=None) -> NPTState`` and
      ``apply_fn(state) -> NPTState``.

    Raises:
      ValueError: non-positive dt, τ_P, τ_T or β_T, or a negative temperature.
    """
    _check_timestep(dt)
    check_temperature("temperature", temperature_K)
    check_temperature("temperature_end", temperature_end_K)
    check_time_constant("barostat time", barostat_time_fs)
    check_time_constant("thermostat time", thermostat_time_fs)
    if not compressibility > 0:
        raise ValueError(f"compressibility must be > 0, received {compressibility}")
    update = neighbor_update or _identity_cell_update
    target_T = linear_ramp(temperature_K, temperature_end_K, ramp_steps)
    target_P = linear_ramp(pressure, pressure_end, ramp_steps)
    c = math.exp(-0.5 * dt / thermostat_time_fs)
    mobility = compressibility / barostat_time_fs

    def evaluate(positions, cell, nbrs):
        nbrs = update(positions, cell, nbrs)
        energy, forces, stress = energy_force_stress_fn(positions, cell, nbrs)
        return energy, forces, stress, nbrs

    def init_fn(positions, momenta, masses, cell, nbrs=None, key=None) -> NPTState:
        masses = jnp.asarray(masses)
        degrees_of_freedom_of(masses, degrees_of_freedom)
        cell = jnp.asarray(cell, positions.dtype)
        energy, forces, stress, nbrs = evaluate(positions, cell, nbrs)
        return NPTState(positions=positions, momenta=momenta, forces=forces, masses=masses,
                        potential_energy=energy, nbrs=nbrs, heat=jnp.zeros((), energy.dtype),
                        key=jax.random.PRNGKey(0) if key is None else key, step=jnp.zeros((), jnp.int32),
                        cell=cell, stress=stress)

    def cell_strain(state: NPTState, kT, target_pressure, dof, key):
        """dε_a (3,) of one barostat step of length h."""
        volume = cell_volume(state.cell)
        g = state.masses.shape[0] - dof / 3.0
        tensor = pressure_tensor(state.momenta, state.masses, state.cell, state.stress)
        noise_scale = jnp.sqrt(2.0 * kT * mobility * dt / volume)
        if anisotropic:
            driving = jnp.diagonal(tensor) + g * kT / volume - target_pressure
            return mobility * driving * dt + noise_scale * jax.random.normal(key, (3,), tensor.dtype)
        driving = jnp.trace(tensor) / 3.0 + g * kT / volume - target_pressure
        d_log_volume = mobility * driving * dt + noise_scale * jax.random.normal(key, (), tensor.dtype)
        return jnp.full((3,), d_log_volume / 3.0)

    def apply_fn(state: NPTState) -> NPTState:
        dof = degrees_of_freedom_of(state.masses, degrees_of_freedom)
        dtype = state.momenta.dtype
        kT = (BOLTZMANN * target_T(state.step)).astype(dtype)
        target_pressure = target_P(state.step).astype(dtype)
        state = _kick(csvr_rescale(state, kT, dof, c), 0.5 * dt)
        key, strain_key = jax.random.split(state.key)
        strain = cell_strain(state, kT, target_pressure, dof, strain_key)
        scale = jnp.exp(strain)
        work_before = cell_volume(state.cell) * jnp.sum(jnp.diagonal(state.stress) * strain)
        kinetic_before = kinetic_energy(state.momenta, state.masses)
        state = state.replace(positions=state.positions * scale, momenta=state.momenta / scale,
                              cell=state.cell * scale[None, :], key=key)
        kinetic_change = kinetic_energy(state.momenta, state.masses) - kinetic_before
        state = _drift(state, dt)
        energy, forces, stress, nbrs = evaluate(state.positions, state.cell, state.nbrs)
        work_after = cell_volume(state.cell) * jnp.sum(jnp.diagonal(stress) * strain)
        heat = state.heat - kinetic_change - 0.5 * (work_before + work_after)
        state = state.replace(forces=forces, potential_energy=energy, stress=stress, nbrs=nbrs, heat=heat)
        state = csvr_rescale(_kick(state, 0.5 * dt), kT, dof, c)
        return state.replace(step=state.step + 1)

    return init_fn, apply_fn
