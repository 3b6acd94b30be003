"""Molecular-dynamics integrators as pure functions (jax-md style).

Every simulation has the same shape::

    init_fn, apply_fn = nve(energy_force_fn, dt)            # or langevin(...)
    state = init_fn(positions, momenta, masses, nbrs)        # host or jit
    state = apply_fn(state)                                  # one step, jit-able
    state, frames = run(apply_fn, state, num_frames, stride) # lax.scan chunk

``energy_force_fn(positions, nbrs) -> (energy, forces)`` returns the potential
energy (scalar, eV) and forces (N, 3) eV/Å; ``nbrs`` is any pytree it needs (a
neighbor list, or None). An optional ``neighbor_update(positions, nbrs) -> nbrs``
refreshes it before every force evaluation.

Units: Å, fs, amu, eV, K. Momenta p = m v are in amu·Å/fs. With
C = :data:`physnetjax.units.AMU_A2_PER_FS2_IN_EV` (1 amu·Å²/fs² = C eV):

* kick:  p ← p + (h/2) F / C            (F in eV/Å → amu·Å/fs²)
* drift: r ← r + h p / m
* kinetic energy K = Σ_i |p_i|² / (2 m_i) · C  [eV]
* temperature T = 2 K / (n_dof k_B)          [K]

The state is an explicit pytree (:class:`MDState`), so it jits, scans and
checkpoints without hidden globals.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import flax.struct
import jax
import jax.numpy as jnp

from physnetjax.units import AMU_A2_PER_FS2_IN_EV, BOLTZMANN

EnergyForceFn = Callable[[jax.Array, Any], tuple[jax.Array, jax.Array]]
NeighborUpdateFn = Callable[[jax.Array, Any], Any]


@flax.struct.dataclass
class MDState:
    """State of an MD run. N atoms.

    Fields:
      positions: (N, 3) Å.
      momenta: (N, 3) amu·Å/fs.
      forces: (N, 3) eV/Å at ``positions``.
      masses: (N,) amu.
      potential_energy: () eV at ``positions``.
      nbrs: neighbor-list pytree used by the force function (or None).
      heat: () eV, energy removed by the thermostat so far (0 for NVE); the
        conserved quantity is E_pot + K + heat.
      key: PRNG key of the thermostat (None for NVE).
    """

    positions: jax.Array
    momenta: jax.Array
    forces: jax.Array
    masses: jax.Array
    potential_energy: jax.Array
    nbrs: Any = None
    heat: jax.Array = 0.0
    key: Optional[jax.Array] = None


def kinetic_energy(momenta: jax.Array, masses: jax.Array) -> jax.Array:
    """K = Σ_i |p_i|² / (2 m_i) · C in eV, for p (N, 3) amu·Å/fs and m (N,) amu."""
    return 0.5 * jnp.sum(momenta**2 / masses[:, None]) * AMU_A2_PER_FS2_IN_EV


def temperature(momenta: jax.Array, masses: jax.Array, degrees_of_freedom: int | None = None) -> jax.Array:
    """Instantaneous kinetic temperature T = 2 K / (n_dof k_B) in K (default n_dof = 3N)."""
    dof = 3 * masses.shape[0] if degrees_of_freedom is None else degrees_of_freedom
    return 2.0 * kinetic_energy(momenta, masses) / (dof * BOLTZMANN)


def conserved_quantity(state: MDState) -> jax.Array:
    """E_pot + K + heat in eV: the total energy for NVE, the thermostatted analogue for Langevin."""
    return state.potential_energy + kinetic_energy(state.momenta, state.masses) + state.heat


def maxwell_boltzmann_momenta(key: jax.Array, masses: jax.Array, temperature_K: float) -> jax.Array:
    """Momenta drawn from the Maxwell–Boltzmann distribution with zero total momentum.

    p_i ~ N(0, m_i k_B T / C) per component (amu·Å/fs), then the centre-of-mass
    momentum is removed: p_i ← p_i − m_i P / M with P = Σ p_i, M = Σ m_i. The
    removal takes 3 degrees of freedom, so the expected temperature over 3N − 3
    of them stays T.

    Args:
      key: PRNG key.
      masses: (N,) amu.
      temperature_K: T in K (≥ 0).

    Returns:
      (N, 3) momenta in amu·Å/fs, in the dtype of ``masses``.
    """
    if temperature_K < 0:
        raise ValueError(f"temperature must be >= 0 K, received {temperature_K}")
    masses = jnp.asarray(masses)
    sigma = jnp.sqrt(masses * BOLTZMANN * temperature_K / AMU_A2_PER_FS2_IN_EV)
    momenta = jax.random.normal(key, (masses.shape[0], 3), dtype=masses.dtype) * sigma[:, None]
    return centre_of_mass_at_rest(momenta, masses)


def centre_of_mass_at_rest(momenta, masses):
    """Momenta (N, 3) amu·Å/fs without their total momentum P = Σ p_i: p_i − m_i P / M with M = Σ m_i (amu),
    which changes every atom's velocity by the same −P / M. NumPy or JAX arrays, returned as the same kind."""
    return momenta - masses[:, None] * momenta.sum(axis=0) / masses.sum()


def _identity_update(positions, nbrs):
    return nbrs


def _forces_at(energy_force_fn, neighbor_update, positions, nbrs):
    nbrs = neighbor_update(positions, nbrs)
    energy, forces = energy_force_fn(positions, nbrs)
    return energy, forces, nbrs


def _kick(state: MDState, half_dt: float) -> MDState:
    return state.replace(momenta=state.momenta + half_dt * state.forces / AMU_A2_PER_FS2_IN_EV)


def _drift(state: MDState, dt: float) -> MDState:
    return state.replace(positions=state.positions + dt * state.momenta / state.masses[:, None])


def _check_timestep(dt: float):
    if not dt > 0:
        raise ValueError(f"timestep must be > 0 fs, received {dt}")


def nve(
    energy_force_fn: EnergyForceFn, dt: float, neighbor_update: Optional[NeighborUpdateFn] = None
) -> tuple[Callable[..., MDState], Callable[[MDState], MDState]]:
    """Velocity-Verlet integrator for the microcanonical (NVE) ensemble.

    One step of length h = ``dt`` fs::

        p ← p + (h/2) F(r) / C;   r ← r + h p / m;   p ← p + (h/2) F(r) / C

    Symplectic and time-reversible, global error O(h²); for a harmonic oscillator
    it conserves p²/2m + ½ k x² (1 − ω²h²/4) exactly.

    Returns:
      ``init_fn(positions, momenta, masses, nbrs=None) -> MDState`` (evaluates the
      forces once) and ``apply_fn(state) -> MDState`` (one step, jit-able).
    """
    _check_timestep(dt)
    update = neighbor_update or _identity_update

    def init_fn(positions, momenta, masses, nbrs=None) -> MDState:
        energy, forces, nbrs = _forces_at(energy_force_fn, update, positions, nbrs)
        return MDState(positions=positions, momenta=momenta, forces=forces, masses=jnp.asarray(masses),
                       potential_energy=energy, nbrs=nbrs, heat=jnp.zeros((), energy.dtype))

    def apply_fn(state: MDState) -> MDState:
        state = _drift(_kick(state, 0.5 * dt), dt)
        energy, forces, nbrs = _forces_at(energy_force_fn, update, state.positions, state.nbrs)
        state = state.replace(forces=forces, potential_energy=energy, nbrs=nbrs)
        return _kick(state, 0.5 * dt)

    return init_fn, apply_fn


def langevin(
    energy_force_fn: EnergyForceFn,
    dt: float,
    temperature_K: float,
    friction: float = 0.01,
    neighbor_update: Optional[NeighborUpdateFn] = None,
) -> tuple[Callable[..., MDState], Callable[[MDState], MDState]]:
    """Langevin dynamics (canonical ensemble, NVT) with the BAOAB splitting.

    One step of length h = ``dt`` fs with friction γ = ``friction`` fs⁻¹::

        B: p ← p + (h/2) F / C          A: r ← r + (h/2) p / m
        O: p ← c p + √(1 − c²) √(m k_B T / C) ξ,   c = exp(−γ h),  ξ ~ N(0, 1)
        A: r ← r + (h/2) p / m          B: p ← p + (h/2) F / C

    BAOAB samples positions with O(h²) error (exactly, for a harmonic potential);
    for a harmonic oscillator the full-step kinetic temperature is T (1 − ω²h²/4).
    The kinetic energy removed by the O step accumulates in ``state.heat``.

    Returns:
      ``init_fn(positions, momenta, masses, nbrs=None, key=PRNGKey(0)) -> MDState``
      and ``apply_fn(state) -> MDState``.
    """
    _check_timestep(dt)
    if temperature_K < 0:
        raise ValueError(f"temperature must be >= 0 K, received {temperature_K}")
    if not friction > 0:
        raise ValueError(f"friction must be > 0 fs^-1, received {friction}")
    update = neighbor_update or _identity_update
    c = math.exp(-friction * dt)
    kT = BOLTZMANN * temperature_K

    def init_fn(positions, momenta, masses, nbrs=None, key=None) -> MDState:
        energy, forces, nbrs = _forces_at(energy_force_fn, update, positions, nbrs)
        key = jax.random.PRNGKey(0) if key is None else key
        return MDState(positions=positions, momenta=momenta, forces=forces, masses=jnp.asarray(masses),
                       potential_energy=energy, nbrs=nbrs, heat=jnp.zeros((), energy.dtype), key=key)

    def apply_fn(state: MDState) -> MDState:
        state = _drift(_kick(state, 0.5 * dt), 0.5 * dt)
        key, noise_key = jax.random.split(state.key)
        noise = jax.random.normal(noise_key, state.momenta.shape, dtype=state.momenta.dtype)
        sigma = jnp.sqrt((1.0 - c * c) * state.masses * kT / AMU_A2_PER_FS2_IN_EV)
        kinetic_before = kinetic_energy(state.momenta, state.masses)
        momenta = c * state.momenta + sigma[:, None] * noise
        heat = state.heat + kinetic_before - kinetic_energy(momenta, state.masses)
        state = _drift(state.replace(momenta=momenta, heat=heat, key=key), 0.5 * dt)
        energy, forces, nbrs = _forces_at(energy_force_fn, update, state.positions, state.nbrs)
        state = state.replace(forces=forces, potential_energy=energy, nbrs=nbrs)
        return _kick(state, 0.5 * dt)

    return init_fn, apply_fn


@flax.struct.dataclass
class Frame:
    """Observables of one saved frame (arrays gain a leading frame axis when stacked by :func:`run`).

    Fields: positions (N, 3) Å, momenta (N, 3) amu·Å/fs, forces (N, 3) eV/Å,
    potential_energy, kinetic_energy, conserved (all eV), max_force (eV/Å, max |F_i|),
    max_forces_std (eV/Å, largest per-atom ensemble force spread ``forces_std``; None
    unless the driver records the uncertainty of an ensemble), peak_force (eV/Å, the
    largest |F_i| at any step since the previous frame, NaN if one was NaN; set by
    :func:`run`, None outside it), energies ((N,) eV, the per-atom split of the potential energy; None unless the
    driver records them).
    """

    positions: jax.Array
    momenta: jax.Array
    forces: jax.Array
    potential_energy: jax.Array
    kinetic_energy: jax.Array
    conserved: jax.Array
    max_force: jax.Array
    max_forces_std: Optional[jax.Array] = None
    peak_force: Optional[jax.Array] = None
    energies: Optional[jax.Array] = None


def frame_of(state: MDState) -> Frame:
    """The observables of ``state`` as a :class:`Frame`."""
    return Frame(
        positions=state.positions,
        momenta=state.momenta,
        forces=state.forces,
        potential_energy=state.potential_energy,
        kinetic_energy=kinetic_energy(state.momenta, state.masses),
        conserved=conserved_quantity(state),
        max_force=jnp.max(jnp.linalg.norm(state.forces, axis=-1)),
    )


def run(apply_fn: Callable[[MDState], MDState], state: MDState, num_frames: int, stride: int = 1,
        observe: Callable[[MDState], Any] = frame_of) -> tuple[MDState, Any]:
    """Advance ``num_frames * stride`` steps with ``lax.scan``; record ``observe(state)`` every ``stride`` steps.

    Jit it with ``apply_fn``, ``num_frames``, ``stride`` and ``observe`` static, e.g.
    ``jax.jit(run, static_argnums=(0, 2, 3, 4))``. Returns the final state and the
    stacked observations (leading axis ``num_frames``; frame k is after (k+1)·stride
    steps). ``observe`` maps a state to any pytree of arrays; the default records a
    :class:`Frame` (a periodic cell uses one that adds volume and pressure, NPT also the cell). A
    :class:`Frame` also gets ``peak_force``, the largest |F_i| at *any* of the ``stride``
    steps since the previous frame (NaN if one was NaN), so a force spike between saved
    frames is not missed.
    """
    tracks_force = isinstance(jax.eval_shape(observe, state), Frame)

    def advance(_, carry):
        current, largest = carry
        current = apply_fn(current)
        return current, jnp.maximum(largest, jnp.max(jnp.linalg.norm(current.forces, axis=-1)))

    def record(carry, _):
        if not tracks_force:
            carry = jax.lax.fori_loop(0, stride, lambda _, s: apply_fn(s), carry)
            return carry, observe(carry)
        largest = jnp.zeros((), carry.forces.dtype)
        carry, largest = jax.lax.fori_loop(0, stride, advance, (carry, largest))
        return carry, observe(carry).replace(peak_force=largest)

    return jax.lax.scan(record, state, None, length=num_frames)
