"""Closed-form checks of MD formulas the other tests reach only indirectly, or not at all: the kinetic temperature's
default degrees of freedom (3N), the temperature ramp's target at the middle of each step, and the CSVR thermostat's
time constant under NVT and NPT (found by an automated mutation sweep, 2026-12-06: the first was called nowhere, the
other two were caught only minutes into test_md_ensembles.py).

Reference values are derived here, independently of physnetjax.units (CODATA 2018 in SI), as in
test_md_ensembles.py.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.errors import PhysNetInputError, PhysNetInputWarning
from physnetjax.md import (csvr, langevin, maxwell_boltzmann_momenta, nose_hoover_chain, nve, stochastic_cell_rescaling,
                           temperature)
from physnetjax.md.driver import check_start_temperature, without_total_momentum
from test_md_ensembles import anharmonic_wells, wells_start
from physnetjax.md.ensembles import (TARGET_PRESSURE_KEY, TARGET_TEMPERATURE_KEY, TargetJump, checkpoint_ensemble,
                                     continue_targets, restore_ensemble_state)
from physnetjax.md.integrators import centre_of_mass_at_rest
from physnetjax.md.thermostats import linear_ramp
from physnetjax.validation import MAX_TEMPERATURE_K

E_CHARGE = 1.602176634e-19  # J per eV
AMU = 1.66053906660e-27  # kg
K_B = 1.380649e-23 / E_CHARGE  # eV/K
AMU_A2_FS2 = AMU * 1e-20 / 1e-30 / E_CHARGE  # 1 amu·Å²/fs² in eV


def test_temperature_counts_3n_degrees_of_freedom_by_default():
    """T = 2K / (3N k_B) without ``degrees_of_freedom``, K = Σ |p|²/(2m) summed by a float64 loop."""
    rng = np.random.default_rng(3)
    masses = rng.uniform(1.0, 40.0, size=7)
    momenta = rng.normal(size=(7, 3)) * np.sqrt(masses)[:, None] * 0.05
    kinetic = sum(float(momenta[i] @ momenta[i]) / (2.0 * masses[i]) for i in range(7)) * AMU_A2_FS2
    expected = 2.0 * kinetic / (3 * 7 * K_B)
    received = float(temperature(jnp.asarray(momenta), jnp.asarray(masses)))
    assert received == pytest.approx(expected, rel=1e-9)  # the constants agree with CODATA 2018 to ~1e-10
    assert float(temperature(jnp.asarray(momenta), jnp.asarray(masses), 3 * 7 - 3)) == pytest.approx(
        expected * 21 / 18, rel=1e-9)


@pytest.mark.parametrize("array", [np.asarray, jnp.asarray])
def test_centre_of_mass_at_rest_shifts_every_velocity_by_the_same_vector(array):
    """p_i − m_i P / M (a float64 loop): total momentum zero, every velocity changed by the same −P / M, so relative
    motion (the vibrations) is kept; MD's start momenta, the NVE part of an MD spectrum and restarts use it. With
    NumPy or JAX arrays alike."""
    rng = np.random.default_rng(11)
    masses = rng.uniform(1.0, 40.0, size=6)
    momenta = rng.normal(size=(6, 3)) * 0.3 + [0.4, -0.2, 0.1]
    total = [sum(momenta[i, a] for i in range(6)) for a in range(3)]
    expected = np.array([[momenta[i, a] - masses[i] * total[a] / sum(masses) for a in range(3)] for i in range(6)])
    at_rest = centre_of_mass_at_rest(array(momenta), array(masses))
    assert type(at_rest) is type(array(momenta))
    np.testing.assert_allclose(np.asarray(at_rest), expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.asarray(at_rest).sum(axis=0), 0.0, atol=1e-14)
    shift = (np.asarray(at_rest) - momenta) / masses[:, None]
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), rtol=0, atol=1e-14)


def test_linear_ramp_targets_the_middle_of_each_step():
    """T(k) = T_start + (T_end − T_start) · min((k + ½)/n, 1) (module docstring of thermostats): step 0 already
    moves half a step's worth, step n − 1 is half a step short of the end, and from step n on the end holds."""
    ramp = linear_ramp(200.0, 400.0, 10)
    for k in range(14):
        expected = 200.0 + 200.0 * min((k + 0.5) / 10, 1.0)
        assert float(ramp(jnp.asarray(k))) == pytest.approx(expected, rel=0, abs=1e-12), k
    assert float(linear_ramp(300.0, None, None)(jnp.asarray(5))) == 300.0


NUM_FREE = 2000
FREE_MASS = 40.0
CUBE = 200.0  # Å: an ideal gas, 2000 atoms in 8e6 Å³


def free_particles(positions, nbrs=None):
    return jnp.zeros(()), jnp.zeros_like(positions)


def free_particles_in_cell(positions, cell, nbrs=None):
    return jnp.zeros(()), jnp.zeros_like(positions), jnp.zeros((3, 3))


@pytest.mark.parametrize("ensemble", ["csvr", "npt"])
def test_csvr_relaxes_the_kinetic_energy_with_its_thermostat_time(ensemble):
    """Free particles started at 600 K under a 300 K CSVR thermostat with τ = 100 fs, h = 1 fs.

    Each thermostat half-step gives E[K'] = c K + (1 − c) K̄ with c = exp(−h/(2τ)) (Bussi et al. 2007, eq. A7:
    E[R_1² + S] = N_f), forces are zero, so E[K(t)] = K̄ + (K(0) − K̄) exp(−t/τ). With N_f = 6000 the spread of
    K(t)/K̄ is below √(2/N_f) = 1.8 %; the band is 0.08 (> 4σ). A thermostat time read as h·τ instead of h/τ
    (c = exp(−50)) puts K at K̄ from the first step: K(τ)/K̄ = 1 instead of 1 + e⁻¹ · (K(0)/K̄ − 1) ≈ 1.37.
    Under NPT (ideal gas near its own pressure, water's compressibility, τ_P = 1 ps) the cell changes ln V by
    ~1e-4 over the run, which moves K by < 1e-4 relative.
    """
    masses = jnp.full((NUM_FREE,), FREE_MASS)
    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(5), masses, 600.0)
    positions = jax.random.uniform(jax.random.PRNGKey(6), (NUM_FREE, 3), maxval=CUBE)
    if ensemble == "csvr":
        init_fn, apply_fn = csvr(free_particles, 1.0, 300.0, thermostat_time_fs=100.0)
        state = init_fn(positions, momenta, masses, key=jax.random.PRNGKey(7))
    else:
        ideal_gas_pressure = NUM_FREE * K_B * 300.0 / CUBE**3
        init_fn, apply_fn = stochastic_cell_rescaling(free_particles_in_cell, 1.0, 300.0, ideal_gas_pressure,
                                                      thermostat_time_fs=100.0)
        state = init_fn(positions, momenta, masses, jnp.eye(3) * CUBE, key=jax.random.PRNGKey(7))
    kinetic = lambda s: float(jnp.sum(s.momenta**2 / s.masses[:, None])) / 2.0 * AMU_A2_FS2
    target = 0.5 * 3 * NUM_FREE * K_B * 300.0
    start = kinetic(state) / target
    step = jax.jit(lambda s: jax.lax.fori_loop(0, 50, lambda _, x: apply_fn(x), s))
    for t in (50, 100, 150, 200):
        state = step(state)
        expected = 1.0 + (start - 1.0) * math.exp(-t / 100.0)
        assert abs(kinetic(state) / target - expected) < 0.08, (t, kinetic(state) / target, expected)


def test_start_momenta_temperature_over_3n_minus_3_and_its_refusal_above_the_limit():
    """check_start_temperature: 2K / ((3N − 3) k_B) by a float64 loop; momenta scaled to 0.6 and 1.2 times the
    accepted maximum are accepted and refused (a factor 2 in K would refuse the first)."""
    rng = np.random.default_rng(11)
    masses = rng.uniform(1.0, 40.0, size=6)
    momenta = rng.normal(size=(6, 3)) * np.sqrt(masses)[:, None] * 0.01
    kinetic = sum(float(momenta[i] @ momenta[i]) / (2.0 * masses[i]) for i in range(6)) * AMU_A2_FS2
    expected = 2.0 * kinetic / (15 * K_B)
    assert check_start_temperature(momenta, masses, 15) == pytest.approx(expected, rel=1e-9)
    scale = math.sqrt(MAX_TEMPERATURE_K / expected)
    assert check_start_temperature(momenta * scale * math.sqrt(0.6), masses, 15) == pytest.approx(
        0.6 * MAX_TEMPERATURE_K, rel=1e-9)
    with pytest.raises(PhysNetInputError, match="kinetic temperature of 1.2e"):
        check_start_temperature(momenta * scale * math.sqrt(1.2), masses, 15)


@pytest.mark.parametrize("held_K, warns", [(0.005, False), (0.015, True)])
def test_start_momenta_drift_is_warned_about_above_a_hundredth_of_a_kelvin(held_K, warns):
    """without_total_momentum warns when the removed drift |P|² / (M (3N − 3) k_B) held more than 0.01 K, and names
    that share; momenta that are a pure drift (p_i = m_i v) of ``held_K`` are built here from the formula."""
    masses = np.array([12.0, 1.0, 16.0, 1.0])
    speed = math.sqrt(held_K * (3 * 4 - 3) * K_B / (masses.sum() * AMU_A2_FS2))  # Å/fs
    momenta = masses[:, None] * np.array([speed, 0.0, 0.0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rest = without_total_momentum(momenta, masses)
    said = [str(w.message) for w in caught if issubclass(w.category, PhysNetInputWarning)]
    assert len(said) == int(warns)
    if warns:
        assert f"{held_K:.3g} K of the kinetic temperature over 9 degrees of freedom" in said[0]
    np.testing.assert_allclose(rest, 0.0, atol=1e-15)


def test_a_restart_reports_a_target_that_moves_by_more_than_one_unit_or_one_percent():
    """continue_targets names a target that moves by more than max(1, 1 % of the checkpoint's value): near 1 bar the
    absolute bar rules (1 -> 1.9 bar kept quiet, 1 -> 2.5 bar named), at 300 K the 1 % = 3 K (302.9 K quiet, 304 K
    named, as are both targets together)."""
    def jumps(saved, targets):
        state, changed = continue_targets("state", saved, targets, dof=6)
        assert state == "state"  # no Nosé–Hoover chain: the state is passed on as it was
        return changed

    assert jumps({TARGET_PRESSURE_KEY: 1.0}, {TARGET_PRESSURE_KEY: 1.9}) == []
    assert jumps({TARGET_PRESSURE_KEY: 1.0}, {TARGET_PRESSURE_KEY: 2.5}) == [TargetJump("pressure_bar", 1.0, 2.5, "bar")]
    assert jumps({TARGET_TEMPERATURE_KEY: 300.0}, {TARGET_TEMPERATURE_KEY: 302.9}) == []
    assert jumps({TARGET_TEMPERATURE_KEY: 300.0, TARGET_PRESSURE_KEY: 1.0},
                 {TARGET_TEMPERATURE_KEY: 304.0, TARGET_PRESSURE_KEY: 2.5}) == [
        TargetJump("temperature_K", 300.0, 304.0, "K"), TargetJump("pressure_bar", 1.0, 2.5, "bar")]
    assert jumps({}, {TARGET_TEMPERATURE_KEY: 304.0}) == []  # a checkpoint from before targets were recorded


def test_a_restart_takes_the_prng_key_of_any_ensemble_and_the_heat_only_of_its_own():
    """restore_ensemble_state into a CSVR state: a checkpoint of a CSVR run gives key and heat; a Langevin run's
    (recognised by its key in checkpoints from before the ensemble was recorded) only its key, its heat being
    another ensemble's; an NVE checkpoint (no key, no ensemble entry) leaves the fresh state as it was."""
    masses = jnp.full((4,), FREE_MASS)
    positions = jax.random.uniform(jax.random.PRNGKey(1), (4, 3), maxval=CUBE)
    init_fn, _ = csvr(free_particles, 1.0, 300.0, thermostat_time_fs=100.0)
    fresh = init_fn(positions, jnp.zeros((4, 3)), masses, key=jax.random.PRNGKey(0))
    saved_key = np.asarray(jax.random.PRNGKey(9))
    base = dict(positions=np.asarray(positions), momenta=np.zeros((4, 3)), step=5)
    csvr_run = dict(base, ensemble="csvr", key=saved_key, heat=np.float64(0.25))
    old_langevin = dict(base, key=saved_key, heat=np.float64(0.25))
    assert [checkpoint_ensemble(s) for s in (csvr_run, old_langevin, base)] == ["csvr", "langevin", "nve"]
    for saved, heat, key in ((csvr_run, 0.25, saved_key), (old_langevin, 0.0, saved_key),
                             (base, 0.0, np.asarray(jax.random.PRNGKey(0)))):
        state = restore_ensemble_state(fresh, saved, "csvr")
        assert float(state.heat) == heat
        np.testing.assert_array_equal(np.asarray(state.key), key)


@pytest.mark.parametrize("kinetic,dof,c", [(1.0, 6, 0.5), (0.3, 2, 0.9), (2.0, 1, 0.2)])
def test_csvr_kinetic_energy_has_the_exact_mean_and_variance_of_bussis_update(kinetic, dof, c):
    """K' = c K + (1 − c) s (R_1² + S) + 2 R_1 √(c (1 − c) K s), s = K̄/N_f, R_1 ~ N(0, 1), S ~ χ²(N_f − 1)
    (Bussi et al. 2007, eq. A7). R_1² + S ~ χ²(N_f) (mean N_f, variance 2 N_f) and E[R_1³] = 0, so

        E[K'] = c K + (1 − c) K̄,     Var[K'] = 2 N_f (1 − c)² s² + 4 c (1 − c) K s.

    Checked over 400,000 draws at small N_f, where a draw that reuses R_1 inside S, drops it, or mixes up the terms
    moves the mean by (1 − c) s or more: 5.2 standard errors of the mean and of the variance (that one from the
    draws' fourth central moment) are allowed (float64; a false alarm once in ~5 million runs each)."""
    from physnetjax.md.thermostats import csvr_kinetic_energy

    target = 0.8
    draws = 400_000
    keys = jax.random.split(jax.random.PRNGKey(11), draws)
    samples = np.asarray(jax.jit(jax.vmap(lambda key: csvr_kinetic_energy(
        key, jnp.asarray(kinetic, jnp.float64), jnp.asarray(target, jnp.float64), dof, c)))(keys))
    share = target / dof
    mean = c * kinetic + (1.0 - c) * target
    variance = 2 * dof * (1.0 - c) ** 2 * share**2 + 4.0 * c * (1.0 - c) * kinetic * share
    fourth = np.mean((samples - mean) ** 4)  # the sample variance's standard error is √((μ4 − σ⁴)/n)
    assert abs(samples.mean() - mean) < 5.2 * math.sqrt(variance / draws), (samples.mean(), mean)
    assert abs(samples.var() - variance) < 5.2 * math.sqrt((fourth - variance**2) / draws), (samples.var(), variance)
    assert samples.min() >= 0.0


def test_thermostat_degrees_of_freedom_default_to_3n_and_accept_one_but_not_zero():
    """N_f of the CSVR and Nosé–Hoover thermostats: 3N by default, any count >= 1 as given (one degree of freedom:
    a single bond's vibration), 0 and below refused by name."""
    from physnetjax.md.thermostats import degrees_of_freedom_of

    masses = jnp.ones(5)
    assert degrees_of_freedom_of(masses, None) == 15
    assert degrees_of_freedom_of(masses, 1) == 1 and degrees_of_freedom_of(masses, 12) == 12
    for bad in (0, -3):
        with pytest.raises(ValueError, match=rf"^degrees_of_freedom must be >= 1, received {bad}$"):
            degrees_of_freedom_of(masses, bad)


def test_csvr_leaves_atoms_at_rest_at_rest():
    """K = 0 gives no direction to rescale along (α = √(K'/K) would be K'/0): atoms at rest stay at rest, with
    finite momenta, no heat exchanged and the PRNG key advanced, step after step."""
    masses = jnp.full((4,), FREE_MASS)
    init_fn, apply_fn = csvr(free_particles, 1.0, 300.0, thermostat_time_fs=10.0)
    state = init_fn(jnp.eye(4, 3) * 3.0, jnp.zeros((4, 3)), masses, key=jax.random.PRNGKey(2))
    for _ in range(3):
        key = state.key
        state = apply_fn(state)
        assert not np.array_equal(state.key, key)
    np.testing.assert_array_equal(state.momenta, 0.0)
    assert float(state.heat) == 0.0


@pytest.mark.parametrize("ensemble", ["csvr", "npt"])
def test_csvr_one_step_moves_the_mean_kinetic_energy_by_exactly_c_squared(ensemble):
    """One CSVR step (two half-step rescalings, zero forces) of length h = 2 fs with τ = 2 fs: each half step has
    c = exp(−h/(2τ)) and E[K'] = c K + (1 − c) K̄ (Bussi et al. 2007, eq. A7), so E[K_1] = c² K_0 + (1 − c²) K̄,
    with c² = e⁻¹ here. Its variance by the law of total variance, Var[K'] = 2 N_f (1 − c)² s² + 4 c (1 − c) s E[K]
    + c² Var[K] (s = K̄/N_f). 200,000 free atoms from 600 K to a 300 K target: the band is 5 standard deviations
    (1 % of K̄); c read with h/τ as 1/(hτ) or with 10 % more of h moves K_1 by 40 % or 3.5 % of K̄. Under NPT the
    same thermostat acts; a cell of 1e9 Å³ at the gas's own pressure with τ_P = 1e6 fs moves ln V by ~1e-7, and K
    with it by twice that."""
    num_atoms, h, tau = 200_000, 2.0, 2.0
    masses = jnp.full((num_atoms,), FREE_MASS)
    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(8), masses, 600.0)
    if ensemble == "csvr":
        init_fn, apply_fn = csvr(free_particles, h, 300.0, thermostat_time_fs=tau)
        state = init_fn(jnp.zeros((num_atoms, 3)), momenta, masses, key=jax.random.PRNGKey(9))
    else:
        side = 1000.0
        init_fn, apply_fn = stochastic_cell_rescaling(free_particles_in_cell, h, 300.0,
                                                      num_atoms * K_B * 450.0 / side**3, thermostat_time_fs=tau,
                                                      barostat_time_fs=1e6)
        state = init_fn(jnp.zeros((num_atoms, 3)), momenta, masses, jnp.eye(3) * side, key=jax.random.PRNGKey(9))
    kinetic = lambda s: float(jnp.sum(s.momenta**2 / s.masses[:, None])) / 2.0 * AMU_A2_FS2
    dof = 3 * num_atoms
    target = 0.5 * dof * K_B * 300.0
    share, c, k0 = target / dof, math.exp(-0.5 * h / tau), kinetic(state)
    mean_half = c * k0 + (1.0 - c) * target
    var_half = 2 * dof * (1.0 - c) ** 2 * share**2 + 4.0 * c * (1.0 - c) * share * k0
    mean = c * mean_half + (1.0 - c) * target
    var = 2 * dof * (1.0 - c) ** 2 * share**2 + 4.0 * c * (1.0 - c) * share * mean_half + c * c * var_half
    assert mean == pytest.approx(c * c * k0 + (1.0 - c * c) * target, rel=1e-12)
    assert 5.0 * math.sqrt(var) < 0.011 * target
    assert abs(kinetic(jax.jit(apply_fn)(state)) - mean) < 5.0 * math.sqrt(var), (kinetic(state), mean)


WELLS, _ = anharmonic_wells()
"""The anharmonic wells of the thermostat tests (16 independent atoms, periods 20-60 fs): energy_force(r, nbrs)."""


@pytest.mark.parametrize("thermostat", ["csvr", "nvt-nhc"])
def test_a_thermostat_of_an_infinitely_long_time_is_velocity_verlet(thermostat):
    """With τ = 1e12 fs the CSVR rescaling (c = 1 − 5e-13: α = 1 ± ~1e-6) and the Nosé–Hoover chain (Q ∝ τ²: the
    chain's velocities stay ~1e-24 fs⁻¹) do nothing, so 200 steps equal NVE's velocity Verlet to 1e-5 Å and
    amu·Å/fs: a thermostat whose Verlet part kicks or drifts by other fractions of the step fails by far more."""
    positions, momenta, masses = wells_start(300.0, seed=4)
    reference_init, reference_step = nve(WELLS, 1.0)
    if thermostat == "csvr":
        init_fn, apply_fn = csvr(WELLS, 1.0, 300.0, thermostat_time_fs=1e12)
        state = init_fn(positions, momenta, masses, key=jax.random.PRNGKey(6))
    else:
        init_fn, apply_fn = nose_hoover_chain(WELLS, 1.0, 300.0, thermostat_time_fs=1e12)
        state = init_fn(positions, momenta, masses)
    run = lambda step, start: jax.jit(lambda s: jax.lax.fori_loop(0, 200, lambda _, x: step(x), s))(start)
    reference, state = run(reference_step, reference_init(positions, momenta, masses)), run(apply_fn, state)
    assert np.abs(np.asarray(reference.positions) - np.asarray(positions)).max() > 0.05  # the atoms moved
    np.testing.assert_allclose(state.positions, reference.positions, rtol=0, atol=1e-5)
    np.testing.assert_allclose(state.momenta, reference.momenta, rtol=0, atol=1e-5)


def test_nose_hoover_chain_sub_steps_integrate_the_same_chain():
    """n_c sub-steps per half step split the same chain flow into n_c pieces of h/(2 n_c) (each Suzuki–Yoshida
    weighted): with τ = 20 fs ≫ h = 1 fs, 1 and 3 sub-steps give the same 100 steps to 1e-6 (the chain's splitting
    error is tiny); sub-steps of n_c·h/2 each (a chain run n_c² times too long) move the atoms by far more."""
    positions, momenta, masses = wells_start(300.0, seed=4)
    finals = []
    for chain_steps in (1, 3):
        init_fn, apply_fn = nose_hoover_chain(WELLS, 1.0, 300.0, thermostat_time_fs=20.0, chain_steps=chain_steps)
        step = jax.jit(lambda s: jax.lax.fori_loop(0, 100, lambda _, x: apply_fn(x), s))
        finals.append(step(init_fn(positions, momenta, masses)))
    assert np.abs(np.asarray(finals[0].chain_positions)).max() > 1e-3  # the thermostat acted
    np.testing.assert_allclose(finals[1].positions, finals[0].positions, rtol=0, atol=1e-6)
    np.testing.assert_allclose(finals[1].momenta, finals[0].momenta, rtol=0, atol=1e-6)


def test_a_nose_hoover_chain_needs_a_temperature_above_zero():
    """Its masses Q ∝ k_B T: T = 0 would divide by zero and is refused by name; any T > 0 (0.5 K) is accepted."""
    with pytest.raises(ValueError, match=r"^temperature must be > 0 K for a Nosé–Hoover chain, received 0\.0$"):
        nose_hoover_chain(WELLS, 1.0, 0.0)
    nose_hoover_chain(WELLS, 1.0, 0.5)


def test_maxwell_boltzmann_momenta_at_zero_kelvin_are_zero_and_below_refused():
    """0 K (an MD started at rest) gives zero momenta, 0.5 K small non-zero ones, a negative temperature is refused
    by name."""
    masses = jnp.full((3,), 12.0)
    key = jax.random.PRNGKey(1)
    np.testing.assert_array_equal(maxwell_boltzmann_momenta(key, masses, 0.0), 0.0)
    assert 0.0 < float(temperature(maxwell_boltzmann_momenta(key, masses, 0.5), masses)) < 5.0
    with pytest.raises(ValueError, match=r"^temperature must be >= 0 K, received -1\.0$"):
        maxwell_boltzmann_momenta(key, masses, -1.0)


def test_langevin_one_step_moves_the_mean_kinetic_energy_by_exactly_c_squared():
    """One BAOAB step of free atoms (zero forces: only the O step p ← c p + √(1 − c²) √(m k_B T / C) ξ changes p),
    h = 2 fs, γ = 0.25 fs⁻¹, c = exp(−γh) = e^(-1/2): E[K_1] = c² K_0 + (1 − c²) K̄ and, per component,
    Var[p'²] = 2 s⁴ + 4 c² p² s² (s² = (1 − c²) m k_B T / C), so Var[K_1] = 3N (1 − c²)² (k_B T)²/2
    + 2 c² (1 − c²) k_B T K_0. 200,000 atoms from 600 K to 300 K: the band is 5 standard deviations (1 % of K̄);
    c = exp(−γ/h), right at h = 1 fs only, or a noise term of another size move K_1 by far more. 0 K (a quench) is a
    temperature, −1 K is refused by name."""
    num_atoms, h, friction = 200_000, 2.0, 0.25
    masses = jnp.full((num_atoms,), FREE_MASS)
    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(12), masses, 600.0)
    init_fn, apply_fn = langevin(free_particles, h, 300.0, friction)
    state = init_fn(jnp.zeros((num_atoms, 3)), momenta, masses, key=jax.random.PRNGKey(13))
    kinetic = lambda s: float(jnp.sum(s.momenta**2 / s.masses[:, None])) / 2.0 * AMU_A2_FS2
    kT, k0, c2 = K_B * 300.0, kinetic(state), math.exp(-2.0 * friction * h)
    target = 1.5 * num_atoms * kT
    mean = c2 * k0 + (1.0 - c2) * target
    deviation = math.sqrt(3 * num_atoms * (1.0 - c2) ** 2 * kT**2 / 2.0 + 2.0 * c2 * (1.0 - c2) * kT * k0)
    assert 5.0 * deviation < 0.011 * target
    assert abs(kinetic(jax.jit(apply_fn)(state)) - mean) < 5.0 * deviation, (kinetic(state), mean)
    langevin(free_particles, h, 0.0, friction)
    with pytest.raises(ValueError, match=r"^temperature must be >= 0 K, received -1\.0$"):
        langevin(free_particles, h, -1.0, friction)


def test_run_records_after_every_stride_steps_with_any_observer():
    """run() records frame k after (k + 1)·stride steps (stride 1 by default), for its Frame observer and any other
    (the MD spectrum observes dipoles and energies): each equal to stepping by hand (to float64 round-off)."""
    from physnetjax.md import frame_of, run

    positions, momenta, masses = wells_start(300.0, seed=4)
    init_fn, apply_fn = nve(WELLS, 1.0)
    state = init_fn(positions, momenta, masses)
    by_hand, current = [], state
    for _ in range(12):
        current = apply_fn(current)
        by_hand.append(np.asarray(current.positions))
    runner = jax.jit(run, static_argnums=(0, 2, 3, 4))
    _, frames = runner(apply_fn, state, 3, 4, frame_of)
    _, observed = runner(apply_fn, state, 3, 4, lambda s: s.positions)
    _, single = jax.jit(run, static_argnums=(0, 2))(apply_fn, state, 2)
    np.testing.assert_allclose(frames.positions, by_hand[3::4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(observed, by_hand[3::4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(single.positions, by_hand[:2], rtol=0, atol=1e-12)


@pytest.mark.parametrize("anisotropic", [False, True])
def test_a_barostat_step_at_rest_and_zero_pressure_draws_the_volume_noise_of_its_mobility(anisotropic):
    """Stochastic cell rescaling (Bernetti & Bussi 2020): d ln V = (β_T/τ_P)(P_int + g k_B T/V − P_0) h
    + √(2 k_B T β_T h / (τ_P V)) ξ. Atoms at rest without forces (P_int = 0, CSVR keeps them at rest), N_f = 3N
    (g = 0) and P_0 = 0 leave the noise alone: 100,000 steps from one state (one key each) give ln V'/V of mean 0
    and variance 2 k_B T β_T h / (τ_P V) (isotropic), or that variance for each ln L_a'/L_a (anisotropic: one
    independent strain per axis, uncorrelated), within 5 standard errors (2.2 % of the variance; a noise 10 % too large moves it by 10 %).
    k_B and the bar from CODATA here; β_T = 4.5e-5 bar⁻¹ (water), τ_P = 500 fs, h = 2 fs, V = 1000 Å³, T = 300 K.
    A compressibility of 0 is refused, any positive one accepted."""
    bar = 1e5 * 1e-30 / E_CHARGE  # eV/Å³
    beta, tau, h, side, draws = 4.5e-5 / bar, 500.0, 2.0, 10.0, 100_000
    init_fn, apply_fn = stochastic_cell_rescaling(free_particles_in_cell, h, 300.0, 0.0, barostat_time_fs=tau,
                                                  compressibility=beta, anisotropic=anisotropic)
    masses = jnp.full((2,), FREE_MASS)
    state = init_fn(jnp.array([[1.0, 2.0, 3.0], [6.0, 5.0, 4.0]]), jnp.zeros((2, 3)), masses, jnp.eye(3) * side)
    keys = jax.random.split(jax.random.PRNGKey(14), draws)
    cells = np.asarray(jax.jit(jax.vmap(lambda key: apply_fn(state.replace(key=key)).cell))(keys))
    logs = np.log(np.diagonal(cells, axis1=1, axis2=2) / side)  # (draws, 3): ln L_a'/L_a
    variance = 2.0 * K_B * 300.0 * beta * h / (tau * side**3)
    samples = logs if anisotropic else logs.sum(axis=1, keepdims=True)
    for column in samples.T:
        assert abs(column.mean()) < 5.0 * math.sqrt(variance / draws), column.mean()
        assert abs(column.var() - variance) < 5.0 * math.sqrt(2.0 / draws) * variance, (column.var(), variance)
    if anisotropic:  # three independent strains: correlations within 5 standard errors (1/√n) of 0
        correlations = np.corrcoef(logs.T)[np.triu_indices(3, 1)]
        assert np.abs(correlations).max() < 5.0 / math.sqrt(draws), correlations
    for bad in (0.0, -beta):
        with pytest.raises(ValueError, match=rf"^compressibility must be > 0, received {bad}$"):
            stochastic_cell_rescaling(free_particles_in_cell, h, 300.0, 0.0, compressibility=bad)
    stochastic_cell_rescaling(free_particles_in_cell, h, 300.0, 0.0, compressibility=1e-3)


def test_npt_counts_its_steps_for_its_ramps():
    """The NPT state's step (which the temperature and pressure ramps and restarts read) advances by one per step."""
    init_fn, apply_fn = stochastic_cell_rescaling(free_particles_in_cell, 1.0, 300.0, 0.0, temperature_end_K=400.0,
                                                  pressure_end=1e-3, ramp_steps=10)
    masses = jnp.full((2,), FREE_MASS)
    state = init_fn(jnp.array([[1.0, 2.0, 3.0], [6.0, 5.0, 4.0]]), jnp.zeros((2, 3)), masses, jnp.eye(3) * 10.0)
    for step in range(1, 4):
        state = apply_fn(state)
        assert int(state.step) == step
