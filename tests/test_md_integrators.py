"""Integrators on analytic systems: harmonic diatomic (NVE) and harmonic wells (Langevin).

Expected values come from closed-form solutions whose unit conversions are derived
here in SI from CODATA 2018 values, independently of ``physnetjax.units``.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.md import (
    conserved_quantity,
    kinetic_energy,
    langevin,
    maxwell_boltzmann_momenta,
    nve,
    run,
    temperature,
)

# CODATA 2018, SI.
E_CHARGE = 1.602176634e-19  # C (J per eV)
AMU = 1.66053906660e-27  # kg
K_B = 1.380649e-23  # J/K

M1, M2 = 12.0, 15.995  # amu
K_SPRING = 50.0  # eV/Å²
R0 = 1.13  # Å
MU = M1 * M2 / (M1 + M2)


def omega_si_per_fs(k_ev_per_a2, mass_amu):
    """ω = √(k/μ) evaluated in SI (J/m², kg) and returned in fs⁻¹."""
    k_si = k_ev_per_a2 * E_CHARGE / 1e-20
    return math.sqrt(k_si / (mass_amu * AMU)) * 1e-15


@pytest.fixture(scope="module", autouse=True)
def x64():
    """Physics checks run in float64 (tests/conftest.py enables x64 for the whole suite)."""
    jax.config.update("jax_enable_x64", True)


def diatomic_energy_force(positions, nbrs):
    """E = ½ k (d − r0)², d = |r2 − r1|; forces by autodiff."""

    def energy(r):
        d = jnp.linalg.norm(r[1] - r[0])
        return 0.5 * K_SPRING * (d - R0) ** 2

    e, g = jax.value_and_grad(energy)(positions)
    return e, -g


def stretched_diatomic(a):
    d0 = R0 + a
    positions = jnp.array([[-M2 / (M1 + M2) * d0, 0.0, 0.0], [M1 / (M1 + M2) * d0, 0.0, 0.0]])
    return positions, jnp.zeros((2, 3)), jnp.array([M1, M2])


def run_diatomic(dt, steps, a=0.05):
    init_fn, apply_fn = nve(diatomic_energy_force, dt)
    state = init_fn(*stretched_diatomic(a))
    _, frames = jax.jit(run, static_argnums=(0, 2, 3))(apply_fn, state, steps, 1)
    d = np.linalg.norm(np.asarray(frames.positions[:, 1] - frames.positions[:, 0]), axis=-1)
    return d - R0, np.asarray(frames.potential_energy), np.asarray(frames.kinetic_energy)


def test_verlet_matches_exact_discrete_solution():
    """Verlet on x'' = −ω² x from (a, 0) gives exactly x_n = a cos(nθ), cos θ = 1 − (ωh)²/2.

    ω comes from SI, so a wrong MD unit (e.g. the original's 10⁴) fails at once.
    Tolerance 1e-9 a: float64 rounding accumulates ~ n ε ≈ 1e-12 over 2000 steps.
    """
    a, dt, steps = 0.05, 0.5, 2000
    x, _, _ = run_diatomic(dt, steps, a)
    omega = omega_si_per_fs(K_SPRING, MU)
    theta = math.acos(1.0 - 0.5 * (omega * dt) ** 2)
    expected = a * np.cos(theta * np.arange(1, steps + 1))
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-9 * a)


def test_period_matches_continuous_solution():
    """With small h the trajectory follows a cos(ωt) (analytic period 2π/ω).

    Verlet's phase error after n steps is n(θ − ωh) = nωh (ωh)²/24 + O(h⁵), so
    |x_n − a cos(ωnh)| ≤ a·nωh(ωh)²/24 · 1.01; a wrong period by 1e-4 would exceed it.
    """
    a, dt, steps = 0.05, 0.05, 4000
    x, _, _ = run_diatomic(dt, steps, a)
    omega = omega_si_per_fs(K_SPRING, MU)
    t = dt * np.arange(1, steps + 1)
    bound = a * t * omega * (omega * dt) ** 2 / 24 * 1.01
    assert np.all(np.abs(x - a * np.cos(omega * t)) <= bound + 1e-12)
    period_fs = 2 * math.pi / omega
    assert t[-1] > 5 * period_fs


def test_energy_conservation_and_error_order():
    """Verlet conserves H̃ = K + ½kx²(1 − (ωh)²/4) exactly; E oscillates within (ωh)²/4 · E0.

    From (a, 0): E0 = ½ka², H̃ = E0(1 − (ωh)²/4), and E_n − H̃ = ½kx_n²(ωh)²/4 ≥ 0, so
    max |E_n − E0| / E0 → (ωh)²/4 (x_n passes close to 0 over many periods: 2% slack).
    Halving h must divide the error by 4 (second order).
    """
    a = 0.05
    omega = omega_si_per_fs(K_SPRING, MU)
    e0 = 0.5 * K_SPRING * a**2
    errors = []
    for dt in (0.5, 0.25):
        x, pot, kin = run_diatomic(dt, int(4000 * 0.5 / dt), a)
        shadow = kin + 0.5 * K_SPRING * x**2 * (1 - (omega * dt) ** 2 / 4)
        np.testing.assert_allclose(shadow, e0 * (1 - (omega * dt) ** 2 / 4), rtol=1e-10)
        err = np.max(np.abs(pot + kin - e0)) / e0
        np.testing.assert_allclose(err, (omega * dt) ** 2 / 4, rtol=0.02)
        errors.append(err)
    np.testing.assert_allclose(errors[0] / errors[1], 4.0, rtol=0.03)


def test_maxwell_boltzmann_temperature_and_zero_momentum():
    """Velocity components have variance k_B T/m (derived in SI, m/s → Å/fs = 1e-5).

    With n = 3N − 3 = 29997 degrees of freedom the temperature estimate has relative
    standard deviation √(2/n) = 0.8%; the band is 4σ.
    """
    n, t0 = 10000, 300.0
    masses = jnp.full((n,), 12.0)
    p = maxwell_boltzmann_momenta(jax.random.PRNGKey(1), masses, t0)
    np.testing.assert_allclose(np.asarray(jnp.sum(p, axis=0)), 0.0, atol=1e-9)
    dof = 3 * n - 3
    t = float(temperature(p, masses, dof))
    assert abs(t - t0) < 4 * math.sqrt(2 / dof) * t0
    sigma_v_si = math.sqrt(K_B * t0 / (12.0 * AMU)) * 1e-5  # Å/fs
    v = np.asarray(p / masses[:, None])
    assert abs(v.std() / sigma_v_si - 1) < 4 * math.sqrt(1 / (2 * dof))


def test_kinetic_energy_units_from_si():
    """½ m v² for m = 1 amu, v = 1 Å/fs = 1e5 m/s, in eV from SI."""
    ke_si = 0.5 * AMU * 1e5**2 / E_CHARGE
    np.testing.assert_allclose(float(kinetic_energy(jnp.array([[1.0, 0, 0]]), jnp.array([1.0]))), ke_si, rtol=1e-12)


def harmonic_wells(k):
    """Independent atoms in wells E = ½ k Σ_i |r_i|²."""

    def energy_force(positions, nbrs):
        return 0.5 * k * jnp.sum(positions**2), -k * positions

    return energy_force


def test_langevin_mean_temperature_and_configuration():
    """BAOAB on N independent 3D harmonic wells at T0 = 300 K.

    Analytic BAOAB stationary moments for a harmonic well (Leimkuhler & Matthews 2013):
    ⟨x²⟩ = k_B T0 / k exactly and the full-step kinetic temperature is T0 (1 − (ωh)²/4).
    With period 20 fs and h = 1 fs that bias is 2.5%, which the band resolves.
    Band: 4 standard errors from 20 block averages (each block = 1000 steps ≫ the
    correlation time 1/γ = 20 fs, so blocks are independent); the standard error
    must itself be small (< 0.5% of T0), else the test could not fail.
    """
    n, t0, dt, gamma, mass = 256, 300.0, 1.0, 0.05, 12.0
    period = 20.0
    omega = 2 * math.pi / period
    k = omega**2 * mass * (AMU * 1e-20 / 1e-30 / E_CHARGE)  # eV/Å², from ω² = k/(m C)
    init_fn, apply_fn = langevin(harmonic_wells(k), dt, t0, friction=gamma)
    masses = jnp.full((n,), mass)
    key_x, key_p, key_run = jax.random.split(jax.random.PRNGKey(7), 3)
    kT = K_B * t0 / E_CHARGE
    x0 = jax.random.normal(key_x, (n, 3)) * math.sqrt(kT / k)
    state = init_fn(x0, maxwell_boltzmann_momenta(key_p, masses, t0), masses, key=key_run)
    runner = jax.jit(run, static_argnums=(0, 2, 3))
    state, _ = runner(apply_fn, state, 100, 10)
    _, frames = runner(apply_fn, state, 2000, 10)
    t_inst = np.asarray(frames.kinetic_energy) * 2 / (3 * n * kT) * t0
    x2 = np.mean(np.asarray(frames.positions) ** 2, axis=(1, 2))
    blocks_t = t_inst.reshape(20, -1).mean(axis=1)
    blocks_x = x2.reshape(20, -1).mean(axis=1)
    se_t = blocks_t.std(ddof=1) / math.sqrt(20)
    se_x = blocks_x.std(ddof=1) / math.sqrt(20)
    expected_t = t0 * (1 - (omega * dt) ** 2 / 4)
    assert se_t < 0.005 * t0
    assert abs(blocks_t.mean() - expected_t) < 4 * se_t
    assert abs(blocks_t.mean() - t0) > 4 * se_t
    assert abs(blocks_x.mean() - kT / k) < 4 * se_x


def test_langevin_conserved_quantity_tracks_heat():
    """E_pot + K + heat changes only by the integrator's O(h²) error, not by thermostat work."""
    mass, k, t0 = 12.0, 5.0, 300.0
    init_fn, apply_fn = langevin(harmonic_wells(k), 0.25, t0, friction=0.05)
    masses = jnp.full((8,), mass)
    state = init_fn(jnp.zeros((8, 3)), maxwell_boltzmann_momenta(jax.random.PRNGKey(3), masses, t0), masses)
    start = float(conserved_quantity(state))
    state, frames = jax.jit(run, static_argnums=(0, 2, 3))(apply_fn, state, 400, 10)
    total = np.asarray(frames.potential_energy + frames.kinetic_energy)
    assert np.ptp(total) > 0.05
    assert np.max(np.abs(np.asarray(frames.conserved) - start)) < 0.01 * np.ptp(total)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="timestep"):
        nve(diatomic_energy_force, 0.0)
    with pytest.raises(ValueError, match="friction"):
        langevin(diatomic_energy_force, 1.0, 300.0, friction=0.0)
    with pytest.raises(ValueError, match="temperature"):
        maxwell_boltzmann_momenta(jax.random.PRNGKey(0), jnp.ones(2), -1.0)
