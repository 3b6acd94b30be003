"""Deterministic and stochastic thermostats for the canonical (NVT) ensemble, as pure functions.

Same shape as :mod:`physnetjax.md.integrators`: a builder returns
``(init_fn, apply_fn)``, the state is an explicit pytree that subclasses
:class:`~physnetjax.md.integrators.MDState`, and ``state.heat`` completes the
conserved quantity E_pot + K + heat that the driver watches.

Units: Å, fs, amu, eV, K (module docstring of ``integrators``). With N_f degrees of
freedom and target temperature T the target kinetic energy is K̄ = N_f k_B T / 2.

* :func:`nose_hoover_chain` — Nosé–Hoover chain (Martyna, Klein & Tuckerman 1992),
  deterministic; its extended energy is conserved.
* :func:`csvr` — stochastic velocity rescaling (Bussi, Donadio & Parrinello 2007),
  samples the canonical kinetic-energy distribution exactly; its "effective energy"
  (E_pot + K + kinetic energy removed by the thermostat) is conserved.

Both accept a linear temperature ramp (:func:`linear_ramp`): the target during step
k (0-based) is T(k) = T_start + (T_end − T_start) · min((k + ½) / n_ramp, 1).
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.md.integrators import (
    EnergyForceFn,
    MDState,
    NeighborUpdateFn,
    _check_timestep,
    _drift,
    _forces_at,
    _identity_update,
    _kick,
    kinetic_energy,
)
from physnetjax.units import BOLTZMANN

SUZUKI_YOSHIDA_WEIGHTS = {
    1: (1.0,),
    3: (1.0 / (2.0 - 2.0 ** (1.0 / 3.0)), 1.0 - 2.0 / (2.0 - 2.0 ** (1.0 / 3.0)), 1.0 / (2.0 - 2.0 ** (1.0 / 3.0))),
}
"""Suzuki–Yoshida weights w_α (Σ w_α = 1) of the fourth-order (3 weights) or trivial (1) factorisation."""


@flax.struct.dataclass
class ThermostatState(MDState):
    """:class:`MDState` plus the step counter that drives the ramps.

    Fields (beyond MDState): step: () int32, steps done since ``init_fn``.
    ``heat`` (eV) is the kinetic energy the thermostat removed so far.
    """

    step: jax.Array = 0


@flax.struct.dataclass
class NHCState(ThermostatState):
    """State of a Nosé–Hoover chain run (M thermostats).

    Fields (beyond :class:`ThermostatState`):
      chain_positions: (M,) thermostat coordinates ξ_j (dimensionless).
      chain_momenta: (M,) thermostat momenta p_ξj in eV·fs.
      ramp_work: () eV, change of the extended energy caused by the temperature ramp.
    ``heat`` = Σ_j p_ξj²/(2 Q_j) + N_f k_B T ξ_1 + k_B T Σ_{j≥2} ξ_j − ramp_work, so
    E_pot + K + heat is the conserved extended energy.
    """

    chain_positions: Optional[jax.Array] = None
    chain_momenta: Optional[jax.Array] = None
    ramp_work: jax.Array = 0.0


def linear_ramp(start: float, end: Optional[float], ramp_steps: Optional[int]) -> Callable[[jax.Array], jax.Array]:
    """Target value during step k: start + (end − start) · min((k + ½)/ramp_steps, 1); constant without ``end``."""
    if end is None or end == start:
        return lambda step: jnp.asarray(start, dtype=jnp.result_type(float))
    if ramp_steps is None or ramp_steps < 1:
        raise ValueError(f"a ramp needs ramp_steps >= 1, received {ramp_steps}")

    def value(step):
        fraction = jnp.minimum((step + 0.5) / ramp_steps, 1.0)
        return start + (end - start) * fraction

    return value


def check_temperature(name: str, value: Optional[float]) -> None:
    """Raise ValueError unless ``value`` (K) is None or ≥ 0."""
    if value is not None and not value >= 0:
        raise ValueError(f"{name} must be >= 0 K, received {value}")


def check_time_constant(name: str, value: float) -> None:
    """Raise ValueError unless ``value`` (fs) is > 0."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0 fs, received {value}")


def degrees_of_freedom_of(masses: jax.Array, degrees_of_freedom: Optional[int]) -> int:
    """N_f: ``degrees_of_freedom`` if given (≥ 1), else 3N for N = len(masses)."""
    dof = 3 * masses.shape[0] if degrees_of_freedom is None else int(degrees_of_freedom)
    if dof < 1:
        raise ValueError(f"degrees_of_freedom must be >= 1, received {dof}")
    return dof


def csvr_kinetic_energy(key: jax.Array, kinetic: jax.Array, target: jax.Array, dof: int, c: float) -> jax.Array:
    """Kinetic energy after a CSVR step of length Δt, c = exp(−Δt/τ) (Bussi et al. 2007, eq. A7).

    K' = c K + (1 − c) (K̄/N_f) (R_1² + S) + 2 R_1 √(c (1 − c) K K̄ / N_f)

    with R_1 ~ N(0, 1), S ~ χ²(N_f − 1) (the sum of N_f − 1 squared standard normals,
    O(N) work like a Langevin step; faster than a Gamma sampler on CPU), K̄ the target
    kinetic energy (eV). This is the exact solution over Δt of the stochastic
    differential equation of K, whose stationary law is the canonical Gamma(N_f/2, k_B T).

    Returns:
      K' in eV (≥ 0), same dtype as ``kinetic``.
    """
    normals = jax.random.normal(key, (dof,), dtype=kinetic.dtype)
    r1 = normals[0]
    rest = jnp.sum(normals[1:] ** 2)
    share = target / dof
    return (c * kinetic + (1.0 - c) * share * (r1 * r1 + rest)
            + 2.0 * r1 * jnp.sqrt(c * (1.0 - c) * kinetic * share))


def csvr_rescale(state, kT: jax.Array, dof: int, c: float):
    """One CSVR step on ``state.momenta``: p ← α p with α = √(K'/K); ``heat`` += K − K'.

    The key in ``state.key`` is split and advanced. K = 0 (all atoms at rest) is left
    unchanged (no direction to scale along).
    """
    key, step_key = jax.random.split(state.key)
    kinetic = kinetic_energy(state.momenta, state.masses)
    new_kinetic = csvr_kinetic_energy(step_key, kinetic, 0.5 * dof * kT, dof, c)
    moving = kinetic > 0
    safe_kinetic = jnp.where(moving, kinetic, 1.0)
    alpha = jnp.where(moving, jnp.sqrt(new_kinetic / safe_kinetic), 1.0)
    new_kinetic = jnp.where(moving, new_kinetic, kinetic)
    return state.replace(momenta=alpha * state.momenta, heat=state.heat + kinetic - new_kinetic, key=key)


def csvr(
    energy_force_fn: EnergyForceFn,
    dt: float,
    temperature_K: float,
    thermostat_time_fs: float = 100.0,
    *,
    temperature_end_K: Optional[float] = None,
    ramp_steps: Optional[int] = None,
    degrees_of_freedom: Optional[int] = None,
    neighbor_update: Optional[NeighborUpdateFn] = None,
) -> tuple[Callable[..., ThermostatState], Callable[[ThermostatState], ThermostatState]]:
    """Stochastic velocity rescaling (CSVR, Bussi–Donadio–Parrinello 2007), canonical ensemble.

    One step of length h = ``dt`` fs, symmetric around velocity Verlet::

        T(h/2):  p ← α p,  α² = K'/K  (K' from :func:`csvr_kinetic_energy`, c = exp(−h/(2τ)))
        V(h):    p ← p + (h/2) F / C;  r ← r + h p / m;  p ← p + (h/2) F / C
        T(h/2)

    τ = ``thermostat_time_fs`` is the relaxation time of K towards K̄ = N_f k_B T/2
    (⟨K(t)⟩ − K̄ decays as exp(−t/τ)). The rescaling keeps the total momentum zero if
    it was zero. ``heat`` accumulates K − K' of every thermostat step, so E_pot + K +
    heat (the effective energy) changes only by the Verlet error.

    Args:
      energy_force_fn, dt, neighbor_update: as in :func:`physnetjax.md.nve`.
      temperature_K: target T (start of the ramp) in K.
      thermostat_time_fs: τ in fs (> 0).
      temperature_end_K, ramp_steps: linear ramp to this T over ``ramp_steps`` steps.
      degrees_of_freedom: N_f (default 3N; use 3N − 3 when the total momentum is
        conserved and zero).

    Returns:
      ``init_fn(positions, momenta, masses, nbrs=None, key=None) -> ThermostatState``
      and ``apply_fn(state) -> ThermostatState``.
    """
    _check_timestep(dt)
    check_temperature("temperature", temperature_K)
    check_temperature("temperature_end", temperature_end_K)
    check_time_constant("thermostat time", thermostat_time_fs)
    update = neighbor_update or _identity_update
    target_T = linear_ramp(temperature_K, temperature_end_K, ramp_steps)
    c = math.exp(-0.5 * dt / thermostat_time_fs)

    def init_fn(positions, momenta, masses, nbrs=None, key=None) -> ThermostatState:
        masses = jnp.asarray(masses)
        degrees_of_freedom_of(masses, degrees_of_freedom)
        energy, forces, nbrs = _forces_at(energy_force_fn, update, positions, nbrs)
        return ThermostatState(positions=positions, momenta=momenta, forces=forces, masses=masses,
                               potential_energy=energy, nbrs=nbrs, heat=jnp.zeros((), energy.dtype),
                               key=jax.random.PRNGKey(0) if key is None else key,
                               step=jnp.zeros((), jnp.int32))

    def apply_fn(state: ThermostatState) -> ThermostatState:
        dof = degrees_of_freedom_of(state.masses, degrees_of_freedom)
        kT = (BOLTZMANN * target_T(state.step)).astype(state.momenta.dtype)
        state = csvr_rescale(state, kT, dof, c)
        state = _drift(_kick(state, 0.5 * dt), dt)
        energy, forces, nbrs = _forces_at(energy_force_fn, update, state.positions, state.nbrs)
        state = _kick(state.replace(forces=forces, potential_energy=energy, nbrs=nbrs), 0.5 * dt)
        state = csvr_rescale(state, kT, dof, c)
        return state.replace(step=state.step + 1)

    return init_fn, apply_fn


def nhc_chain_masses(temperature_K: float, thermostat_time_fs: float, chain_length: int, dof) -> np.ndarray:
    """(chain_length,) thermostat masses Q_j in eV·fs² of :func:`nose_hoover_chain`: Q_1 = N_f k_B T τ², Q_j = k_B T τ²
    (j ≥ 2), T its start temperature (K), τ its thermostat time (fs), N_f = ``dof``; float64."""
    kT_mass = BOLTZMANN * temperature_K * thermostat_time_fs**2
    return np.asarray([dof * kT_mass] + [kT_mass] * (chain_length - 1), np.float64)


def rebase_extended_energy(state: "NHCState", masses_Q, kT, dof) -> "NHCState":
    """``state`` with ``ramp_work`` set so that its chain, counted with thermostat masses ``masses_Q`` and target
    k_B T = ``kT`` (eV), keeps its ``heat``: the conserved quantity continues where it was when a restart runs the
    chain with another target temperature or other masses (without this it jumps by the change of
    :func:`chain_energy`, and its drift measures that jump)."""
    dtype = state.heat.dtype
    energy = chain_energy(state.chain_positions, state.chain_momenta, jnp.asarray(masses_Q, dtype),
                          jnp.asarray(kT, dtype), dof)
    return state.replace(ramp_work=energy - state.heat)


def chain_energy(chain_positions, chain_momenta, masses_Q, kT, dof):
    """Σ_j p_ξj²/(2 Q_j) + N_f k_B T ξ_1 + k_B T Σ_{j≥2} ξ_j in eV (Q_j in eV·fs², p_ξ in eV·fs)."""
    return (jnp.sum(0.5 * chain_momenta**2 / masses_Q) + dof * kT * chain_positions[0]
            + kT * jnp.sum(chain_positions[1:]))


def nose_hoover_chain(
    energy_force_fn: EnergyForceFn,
    dt: float,
    temperature_K: float,
    thermostat_time_fs: float = 100.0,
    chain_length: int = 3,
    *,
    chain_steps: int = 1,
    suzuki_yoshida_order: int = 3,
    temperature_end_K: Optional[float] = None,
    ramp_steps: Optional[int] = None,
    degrees_of_freedom: Optional[int] = None,
    neighbor_update: Optional[NeighborUpdateFn] = None,
) -> tuple[Callable[..., NHCState], Callable[[NHCState], NHCState]]:
    """Nosé–Hoover chain thermostat (canonical ensemble), deterministic and time-reversible.

    Equations of motion (M = ``chain_length`` thermostats, v_j = p_ξj / Q_j)::

        ṙ = p/m,   ṗ = F/C − v_1 p,   ξ̇_j = v_j
        ṗ_ξ1 = 2K − N_f k_B T − v_2 p_ξ1
        ṗ_ξj = p_ξ,j−1²/Q_{j−1} − k_B T − v_{j+1} p_ξj      (v_{M+1} = 0)

    with masses Q_1 = N_f k_B T τ², Q_j = k_B T τ² (j ≥ 2), τ = ``thermostat_time_fs``
    (10–100× the time step is typical), T the start temperature (Q stays fixed during a
    ramp). Linearised about K̄ = N_f k_B T / 2, K and v_1 oscillate with ω² = 2 N_f k_B T / Q_1
    = 2/τ²: period π√2 τ ≈ 4.44 τ, the time over which the thermostat corrects K (measured
    on free particles in the tests). Conserved (without a ramp):

        H_ext = E_pot + K + Σ_j p_ξj²/(2 Q_j) + N_f k_B T ξ_1 + k_B T Σ_{j≥2} ξ_j

    and with a ramp H_ext − (work of the ramp on the ξ terms), kept in ``heat``.

    Trotter factorisation of one step h: NHC(h/2) · Verlet(h) · NHC(h/2); each
    NHC(h/2) is ``chain_steps`` × the Suzuki–Yoshida weights w_α (order 1 or 3) of
    sub-steps δ = w_α h / (2 n_c), each: half-update p_ξM, …, p_ξ1 (from the end of
    the chain, p_ξj scaled by exp(−v_{j+1} δ/4) either side of the kick by δ/2·G_j),
    scale p ← p exp(−v_1 δ), advance ξ_j += v_j δ, then the same half-updates from
    p_ξ1 to p_ξM.

    Args:
      energy_force_fn, dt, neighbor_update: as in :func:`physnetjax.md.nve`.
      temperature_K: target T in K (start of the ramp).
      thermostat_time_fs: τ in fs (> 0).
      chain_length: M ≥ 1.
      chain_steps: n_c ≥ 1 sub-steps per half step.
      suzuki_yoshida_order: 1 or 3 (weights :data:`SUZUKI_YOSHIDA_WEIGHTS`).
      temperature_end_K, ramp_steps: linear temperature ramp.
      degrees_of_freedom: N_f (default 3N).

    Returns:
      ``init_fn(positions, momenta, masses, nbrs=None) -> NHCState`` (ξ = p_ξ = 0) and
      ``apply_fn(state) -> NHCState``.
    """
    _check_timestep(dt)
    check_temperature("temperature", temperature_K)
    check_temperature("temperature_end", temperature_end_K)
    if not temperature_K > 0:
        raise ValueError(f"temperature must be > 0 K for a Nosé–Hoover chain, received {temperature_K}")
    check_time_constant("thermostat time", thermostat_time_fs)
    if chain_length < 1 or chain_steps < 1:
        raise ValueError(f"chain_length and chain_steps must be >= 1, received {chain_length}, {chain_steps}")
    if suzuki_yoshida_order not in SUZUKI_YOSHIDA_WEIGHTS:
        raise ValueError(f"suzuki_yoshida_order must be one of {sorted(SUZUKI_YOSHIDA_WEIGHTS)}, "
                         f"received {suzuki_yoshida_order}")
    update = neighbor_update or _identity_update
    target_T = linear_ramp(temperature_K, temperature_end_K, ramp_steps)
    sub_steps = [w * 0.5 * dt / chain_steps for w in SUZUKI_YOSHIDA_WEIGHTS[suzuki_yoshida_order]] * chain_steps

    def chain_masses(dof, dtype):
        return jnp.asarray(nhc_chain_masses(temperature_K, thermostat_time_fs, chain_length, dof), dtype)

    def chain_force(j, kinetic, momenta_xi, masses_Q, kT, dof):
        if j == 0:
            return 2.0 * kinetic - dof * kT
        return momenta_xi[j - 1] ** 2 / masses_Q[j - 1] - kT

    def half_kick(j, kinetic, momenta_xi, masses_Q, kT, dof, delta):
        if j + 1 < chain_length:
            damping = jnp.exp(-0.25 * delta * momenta_xi[j + 1] / masses_Q[j + 1])
        else:
            damping = 1.0
        value = momenta_xi[j] * damping
        value = (value + 0.5 * delta * chain_force(j, kinetic, momenta_xi, masses_Q, kT, dof)) * damping
        return momenta_xi.at[j].set(value)

    def thermostat_half_step(state: NHCState, kT, dof) -> NHCState:
        masses_Q = chain_masses(dof, state.momenta.dtype)
        momenta_xi, positions_xi = state.chain_momenta, state.chain_positions
        kinetic = kinetic_energy(state.momenta, state.masses)
        scale = jnp.ones((), state.momenta.dtype)
        for delta in sub_steps:
            for j in reversed(range(chain_length)):
                momenta_xi = half_kick(j, kinetic, momenta_xi, masses_Q, kT, dof, delta)
            factor = jnp.exp(-delta * momenta_xi[0] / masses_Q[0])
            scale = scale * factor
            kinetic = kinetic * factor**2
            positions_xi = positions_xi + delta * momenta_xi / masses_Q
            for j in range(chain_length):
                momenta_xi = half_kick(j, kinetic, momenta_xi, masses_Q, kT, dof, delta)
        return state.replace(momenta=state.momenta * scale, chain_momenta=momenta_xi, chain_positions=positions_xi)

    def init_fn(positions, momenta, masses, nbrs=None) -> NHCState:
        masses = jnp.asarray(masses)
        degrees_of_freedom_of(masses, degrees_of_freedom)
        energy, forces, nbrs = _forces_at(energy_force_fn, update, positions, nbrs)
        zeros = jnp.zeros((chain_length,), energy.dtype)
        return NHCState(positions=positions, momenta=momenta, forces=forces, masses=masses,
                        potential_energy=energy, nbrs=nbrs, heat=jnp.zeros((), energy.dtype),
                        step=jnp.zeros((), jnp.int32), chain_positions=zeros, chain_momenta=zeros,
                        ramp_work=jnp.zeros((), energy.dtype))

    def apply_fn(state: NHCState) -> NHCState:
        dof = degrees_of_freedom_of(state.masses, degrees_of_freedom)
        dtype = state.momenta.dtype
        kT = (BOLTZMANN * target_T(state.step)).astype(dtype)
        kT_before = (BOLTZMANN * target_T(jnp.maximum(state.step - 1, 0))).astype(dtype)
        xi_weight = dof * state.chain_positions[0] + jnp.sum(state.chain_positions[1:])
        state = state.replace(ramp_work=state.ramp_work + (kT - kT_before) * xi_weight)
        state = thermostat_half_step(state, kT, dof)
        state = _drift(_kick(state, 0.5 * dt), dt)
        energy, forces, nbrs = _forces_at(energy_force_fn, update, state.positions, state.nbrs)
        state = _kick(state.replace(forces=forces, potential_energy=energy, nbrs=nbrs), 0.5 * dt)
        state = thermostat_half_step(state, kT, dof)
        heat = chain_energy(state.chain_positions, state.chain_momenta, chain_masses(dof, dtype), kT, dof)
        return state.replace(heat=heat - state.ramp_work, step=state.step + 1)

    return init_fn, apply_fn
