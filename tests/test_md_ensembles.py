"""NVT (Nosé–Hoover chain, CSVR) and NPT (stochastic cell rescaling) on analytic systems and a tiny PhysNet cell.

Reference values are derived here, independently of physnetjax.units (CODATA 2018 in SI):

* canonical kinetic energy with N_f degrees of freedom: K ~ Gamma(N_f/2, k_B T), so
  ⟨K⟩ = N_f k_B T/2 and ⟨(K − ⟨K⟩)²⟩ = N_f (k_B T)²/2;
* ideal gas at constant pressure P_0 (measure dV, zero total momentum): V ~ Gamma(N + 1, k_B T/P_0);
* the NPT identities ⟨P⟩ + k_B T⟨1/V⟩ = P_0 (module docstring of physnetjax.md.barostat) and
  ⟨δV²⟩ = −k_B T ∂⟨V⟩/∂P_0.

Statistical bounds are 4 standard errors. Standard errors come from block averages
whose blocks are much longer than the correlation time (stated per test), or exactly
from the barostat's noise (see :func:`barostat_noise_bound`).
"""

import json
import logging
import math

import ase
import ase.io
import ase.neighborlist
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ATM_MODEL_SHORT_CUTOFF, cast_params, perturbed_params

from physnetjax import PhysNet, init_params, predict_periodic
from physnetjax.checkpoint.format import save_checkpoint
from physnetjax.md import driver, frame_of, maxwell_boltzmann_momenta, nve, run
from physnetjax.md.__main__ import main
from physnetjax.md.barostat import npt_frame_of, stochastic_cell_rescaling
from physnetjax.md.cell_potential import physnet_cell_potential
from physnetjax.md.driver import MDInstabilityError, drift_and_fluctuation, simulate
from physnetjax.md.ensembles import checkpoint_arrays, restore_ensemble_state
from physnetjax.md.thermostats import csvr, nose_hoover_chain
from physnetjax.validation import MAX_PRESSURE_BAR

# CODATA 2018, SI.
E_CHARGE = 1.602176634e-19  # J per eV
AMU = 1.66053906660e-27  # kg
K_B_SI = 1.380649e-23  # J/K
K_B = K_B_SI / E_CHARGE  # eV/K
AMU_A2_FS2 = AMU * 1e-20 / 1e-30 / E_CHARGE  # 1 amu·Å²/fs² in eV
BAR = 1e5 * 1e-30 / E_CHARGE  # 1 bar in eV/Å³

RUNNER = jax.jit(run, static_argnums=(0, 2, 3, 4))


@pytest.fixture(scope="module", autouse=True)
def x64():
    jax.config.update("jax_enable_x64", True)


# -- analytic systems ---------------------------------------------------------------------


NUM_WELLS = 16
WELL_MASS = 12.0
PERIODS_FS = np.linspace(20.0, 60.0, NUM_WELLS)  # harmonic periods; a quartic term makes them anharmonic
QUARTIC = 1000.0  # eV/Å⁴: a|r|⁴ ≈ 0.3 k_B T at 300 K in the softest well


def anharmonic_wells():
    """Independent atoms in wells E = Σ_i [½ k_i |r_i|² + a Σ_c r_ic⁴], k_i = (2π/T_i)² m C; forces by autodiff."""
    k = jnp.asarray((2 * np.pi / PERIODS_FS) ** 2 * WELL_MASS * AMU_A2_FS2)

    def energy(r):
        return 0.5 * jnp.sum(k[:, None] * r**2) + QUARTIC * jnp.sum(r**4)

    def energy_force(r, nbrs):
        e, g = jax.value_and_grad(energy)(r)
        return e, -g

    return energy_force, np.asarray(k)


def wells_start(temperature, seed=0):
    _, k = anharmonic_wells()
    masses = jnp.full((NUM_WELLS,), WELL_MASS)
    key_x, key_p = jax.random.split(jax.random.PRNGKey(seed))
    x = jax.random.normal(key_x, (NUM_WELLS, 3)) * jnp.sqrt(K_B * temperature / jnp.asarray(k))[:, None]
    return x, maxwell_boltzmann_momenta(key_p, masses, temperature), masses


def block_mean_and_error(values, blocks=20):
    """Mean of ``values`` and its standard error from ``blocks`` block averages."""
    means = np.asarray(values).reshape(blocks, -1).mean(axis=1)
    return means.mean(), means.std(ddof=1) / math.sqrt(blocks)


def exchanged_energy(frames) -> float:
    """Range (eV) of the energy the thermostat (and the cell moves) exchanged: conserved − E_pot − K over the frames."""
    return float(np.ptp(np.asarray(frames.conserved - frames.potential_energy - frames.kinetic_energy)))


def check_canonical_kinetic_energy(kinetic, dof, temperature):
    """⟨K⟩ = N_f k_B T/2 and ⟨(K − N_f k_B T/2)²⟩ = N_f (k_B T)²/2 within 4 block standard errors.

    The bands must be narrow (4 errors < 4 % and < 24 % of the values) so that a
    temperature off by 5 % fails, and so does a micro-canonical sampler (for which
    Var K is about half the canonical value).
    """
    kT = K_B * temperature
    mean_expected, var_expected = 0.5 * dof * kT, 0.5 * dof * kT**2
    mean, mean_error = block_mean_and_error(kinetic)
    var, var_error = block_mean_and_error((np.asarray(kinetic) - mean_expected) ** 2)
    assert mean_error < 0.01 * mean_expected and var_error < 0.06 * var_expected
    assert abs(mean - mean_expected) < 4 * mean_error
    assert abs(var - var_expected) < 4 * var_error


def test_nose_hoover_chain_kinetic_energy_is_canonical():
    """NHC (M = 3, τ = 20 fs) on 16 anharmonic wells at 300 K: 48 degrees of freedom.

    h = 0.5 fs (Verlet's kinetic bias (ωh)²/4 ≤ 0.6 % per well here). 4000 frames 10
    steps apart in 20 blocks of 1 ps, ≫ the thermostat and well periods (≤ 60 fs).
    """
    energy_force, _ = anharmonic_wells()
    init_fn, apply_fn = nose_hoover_chain(energy_force, 0.5, 300.0, thermostat_time_fs=20.0, chain_length=3)
    state = init_fn(*wells_start(300.0))
    state, _ = RUNNER(apply_fn, state, 100, 10, frame_of)
    _, frames = RUNNER(apply_fn, state, 4000, 10, frame_of)
    check_canonical_kinetic_energy(frames.kinetic_energy, 3 * NUM_WELLS, 300.0)


def test_a_nose_hoover_thermostat_oscillates_with_period_pi_sqrt2_tau():
    """Free particles, one thermostat: linearising K̇ = −2 v K, Q v̇ = 2K − N_f k_B T about K̄ = N_f k_B T / 2 gives
    ω² = 2 N_f k_B T / Q = 2 / τ² for Q = N_f k_B T τ²: period π√2 τ ≈ 4.44 τ, not τ (the docs said τ)."""
    tau, dt, temperature = 20.0, 0.1, 300.0
    masses = jnp.full((NUM_WELLS,), WELL_MASS)

    def free(r, nbrs):
        return jnp.zeros(()), jnp.zeros_like(r)

    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(3), masses, temperature)
    target = 1.5 * NUM_WELLS * K_B * temperature
    kinetic = float(jnp.sum(momenta**2 / (2 * masses[:, None]))) * AMU_A2_FS2
    momenta = momenta * math.sqrt(1.01 * target / kinetic)  # K 1 % above its target: a small, linear swing
    init_fn, apply_fn = nose_hoover_chain(free, dt, temperature, thermostat_time_fs=tau, chain_length=1)
    _, frames = RUNNER(apply_fn, init_fn(jnp.zeros((NUM_WELLS, 3)), momenta, masses), 3000, 1, frame_of)
    swing = np.asarray(frames.kinetic_energy) - target
    downward = np.flatnonzero((swing[:-1] > 0) & (swing[1:] <= 0))
    crossings = dt * (downward + 1 + swing[downward] / (swing[downward] - swing[downward + 1]))  # fs, interpolated
    periods = np.diff(crossings)
    assert len(periods) >= 2
    np.testing.assert_allclose(periods, math.pi * math.sqrt(2) * tau, rtol=2e-3)
    options = driver.ensemble_options(temperature, {"thermostat_time_fs": tau})
    assert driver.kinetic_relaxation_time_fs("nvt-nhc", options) == pytest.approx(math.pi * math.sqrt(2) * tau)


def test_csvr_kinetic_energy_is_canonical_and_effective_energy_conserved():
    """CSVR (τ = 20 fs) on the same wells; then E_pot + K + heat stays within Verlet's error.

    Verlet's energy error is ~ (ωh)²/4 · E ≈ 1e-2 · 0.6 eV here; the heat exchanged is
    ~ 50 × larger, so a wrong sign or a missing term in ``heat`` fails.
    """
    energy_force, _ = anharmonic_wells()
    init_fn, apply_fn = csvr(energy_force, 0.5, 300.0, thermostat_time_fs=20.0)
    state = init_fn(*wells_start(300.0), key=jax.random.PRNGKey(3))
    state, _ = RUNNER(apply_fn, state, 100, 10, frame_of)
    start = float(state.potential_energy + 0.5 * jnp.sum(state.momenta**2 / state.masses[:, None]) * AMU_A2_FS2
                  + state.heat)
    _, frames = RUNNER(apply_fn, state, 6000, 10, frame_of)
    check_canonical_kinetic_energy(frames.kinetic_energy, 3 * NUM_WELLS, 300.0)
    conserved = np.asarray(frames.conserved)
    exchanged = exchanged_energy(frames)
    assert exchanged > 1.0
    assert np.max(np.abs(conserved - start)) < 0.02 * exchanged



def test_nose_hoover_extended_energy_drifts_no_more_than_nve_energy():
    """Same wells, same h = 1 fs, 20 ps from the same start: NHC's H_ext vs NVE's E.

    Both are Verlet at heart, so neither has a secular drift; the check is that the
    thermostat splitting adds none: |drift| (least-squares slope × run length) of H_ext
    is at most the NVE energy's own fluctuation scale (std about its fit, which the
    harmonic-wells shadow energy makes non-zero), and H_ext's fluctuation is within
    2× that of NVE. Meanwhile the chain exchanges > 30× that much energy.
    """
    energy_force, _ = anharmonic_wells()
    start = wells_start(300.0, seed=5)
    results = {}
    for name, (init_fn, apply_fn) in {
        "nve": nve(energy_force, 1.0),
        "nhc": nose_hoover_chain(energy_force, 1.0, 300.0, thermostat_time_fs=20.0, chain_length=3),
    }.items():
        _, frames = RUNNER(apply_fn, init_fn(*start), 2000, 10, frame_of)
        t_ps = 1e-2 * np.arange(1, 2001)
        drift, fluctuation = drift_and_fluctuation(t_ps, np.asarray(frames.conserved), 1)
        exchanged = exchanged_energy(frames)
        results[name] = (abs(drift) * t_ps[-1], fluctuation, exchanged)
    (_, nve_fluctuation, _), (nhc_drift, nhc_fluctuation, nhc_exchanged) = results["nve"], results["nhc"]
    assert nve_fluctuation > 0
    assert nhc_drift <= nve_fluctuation
    assert nhc_fluctuation <= 2 * nve_fluctuation
    assert nhc_exchanged > 30 * nve_fluctuation * 1e-3


@pytest.mark.parametrize("thermostat", ["nhc", "csvr"])
def test_temperature_ramp(thermostat):
    """A ramp 200 → 400 K over 40 ps: block temperatures follow the target with τ = 20 fs.

    The target in each of 8 blocks of 5 ps is the ramp's mean over the block; the
    thermostat lags it by about τ·dT/dt = 0.1 K, far inside the 6 % band (canonical
    fluctuation of a 5 ps block mean: ~2 %). NHC's extended energy minus the work of the
    ramp stays conserved (within 5 % of the energy the chain exchanged).
    """
    energy_force, _ = anharmonic_wells()
    steps = 80000
    build = nose_hoover_chain if thermostat == "nhc" else csvr
    init_fn, apply_fn = build(energy_force, 0.5, 200.0, thermostat_time_fs=20.0, temperature_end_K=400.0,
                              ramp_steps=steps)
    start = wells_start(200.0, seed=2)
    state = init_fn(*start) if thermostat == "nhc" else init_fn(*start, key=jax.random.PRNGKey(4))
    _, frames = RUNNER(apply_fn, state, 4000, 20, frame_of)
    temperature = 2 * np.asarray(frames.kinetic_energy) / (3 * NUM_WELLS * K_B)
    blocks = temperature.reshape(8, -1).mean(axis=1)
    targets = 200.0 + 200.0 * (np.arange(8) + 0.5) / 8
    np.testing.assert_allclose(blocks, targets, rtol=0.06)
    assert np.all(np.diff(blocks) > 0)
    conserved = np.asarray(frames.conserved)
    exchanged = exchanged_energy(frames)
    assert np.ptp(conserved) < 0.05 * exchanged


# -- NPT ----------------------------------------------------------------------------------

LJ_EPSILON, LJ_SIGMA, LJ_CUTOFF, ARGON_MASS = 0.0104, 3.405, 5.0, 39.948  # eV, Å, Å, amu


def lj_energy(positions, cell):
    """Shifted-force Lennard-Jones energy (C¹ at the cutoff), minimum image; every pair once (½ Σ_i Σ_j≠i).

    φ(r) = 4ε[(σ/r)¹² − (σ/r)⁶]; φ_sf(r) = φ(r) − φ(r_c) − (r − r_c) φ'(r_c) for r < r_c.
    Needs r_c < half the narrowest cell width.
    """

    def pair(r):
        return 4 * LJ_EPSILON * ((LJ_SIGMA / r) ** 12 - (LJ_SIGMA / r) ** 6)

    fractional = positions @ jnp.linalg.inv(cell)
    delta = fractional[None, :, :] - fractional[:, None, :]
    delta = (delta - jnp.round(delta)) @ cell
    r2 = jnp.sum(delta**2, axis=-1)
    inside = ~jnp.eye(positions.shape[0], dtype=bool) & (r2 < LJ_CUTOFF**2)
    r = jnp.sqrt(jnp.where(inside, r2, LJ_CUTOFF**2))
    energy = pair(r) - pair(LJ_CUTOFF) - (r - LJ_CUTOFF) * jax.grad(pair)(LJ_CUTOFF)
    return 0.5 * jnp.sum(jnp.where(inside, energy, 0.0))


def lj_energy_force_stress(positions, cell, nbrs):
    """E, F = −∂E/∂r and σ = (1/V) ∂E(r(1 + ε), h(1 + ε))/∂ε at ε = 0."""

    def strained(r, strain):
        deformation = jnp.eye(3) + strain
        return lj_energy(r @ deformation, cell @ deformation)

    energy, (grad_r, grad_strain) = jax.value_and_grad(strained, argnums=(0, 1))(positions, jnp.zeros((3, 3)))
    return energy, -grad_r, grad_strain / jnp.abs(jnp.linalg.det(cell))


def fcc_argon(cells=2, lattice=5.3, jitter=0.0, seed=0):
    """FCC lattice of cells³ × 4 argon atoms in a cube of side cells × lattice Å."""
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    grid = np.stack(np.meshgrid(*[np.arange(cells)] * 3, indexing="ij"), -1).reshape(-1, 1, 3)
    positions = (grid + basis[None]).reshape(-1, 3) * lattice
    positions += np.random.default_rng(seed).normal(scale=jitter, size=positions.shape)
    return jnp.asarray(positions), jnp.eye(3) * cells * lattice


def test_pressure_from_stress_matches_volume_derivative_of_energy():
    """−tr σ/3 = −∂E/∂V and −σ_aa = −(1/V) ∂E/∂ln L_a (fractional coordinates fixed), central differences in float64.

    The energy of a jittered FCC argon cell is differentiated numerically in the volume
    (isotropic scaling) and in each box length; δ = 1e-5 gives errors ~1e-10 relative.
    Also: the ideal-gas limit of the kinetic pressure, P = N k_B T/V for ⟨p_a²/m⟩ = k_B T/C.
    """
    from physnetjax.md.barostat import instantaneous_pressure, pressure_tensor

    positions, cell = fcc_argon(jitter=0.1, seed=3)
    energy_of = jax.jit(lj_energy)
    energy, _, stress = jax.jit(lj_energy_force_stress)(positions, cell, None)
    volume = float(jnp.linalg.det(cell))
    delta = 1e-5

    def scaled_energy(scale):
        return float(energy_of(positions * scale, cell * scale))

    volume_derivative = (scaled_energy((1 + delta) ** (1 / 3)) - scaled_energy((1 - delta) ** (1 / 3))) / (
        2 * delta * volume)
    assert abs(float(energy)) > 0.1
    np.testing.assert_allclose(-float(jnp.trace(stress)) / 3, -volume_derivative, rtol=1e-7)
    for axis in range(3):
        scale = np.ones(3)
        scale[axis] = math.exp(delta)
        up = float(energy_of(positions * scale, cell * scale))
        scale[axis] = math.exp(-delta)
        down = float(energy_of(positions * scale, cell * scale))
        np.testing.assert_allclose(float(stress[axis, axis]), (up - down) / (2 * delta * volume), rtol=1e-7)
    masses = jnp.full((positions.shape[0],), ARGON_MASS)
    momenta = jnp.tile(jnp.sqrt(masses * K_B * 100.0 / AMU_A2_FS2)[:, None], (1, 3))
    zero = jnp.zeros((3, 3))
    kinetic = np.asarray(pressure_tensor(momenta, masses, cell, zero))
    np.testing.assert_allclose(np.diag(kinetic), positions.shape[0] * K_B * 100.0 / volume, rtol=1e-12)
    np.testing.assert_allclose(float(instantaneous_pressure(momenta, masses, cell, stress)),
                               positions.shape[0] * K_B * 100.0 / volume - float(jnp.trace(stress)) / 3, rtol=1e-12)


def free_energy_force_stress(positions, cell, nbrs):
    """Ideal gas: no interactions."""
    return jnp.zeros(()), jnp.zeros_like(positions), jnp.zeros((3, 3))


@pytest.mark.parametrize("anisotropic", [False, True])
def test_ideal_gas_volume_distribution(anisotropic):
    """8 free atoms at 300 K and P_0 = 100 bar, zero total momentum: V ~ Gamma(N + 1, k_B T/P_0).

    ⟨V⟩ = (N + 1) k_B T/P_0 and Var V = (N + 1)(k_B T/P_0)² (module docstring). With
    β_T = 1/P_0 the volume relaxes in τ_P = 100 fs = 25 steps; 20 blocks of 4 ps.
    Dropping the k_B T/V term (g = 0) or the kinetic term would move ⟨V⟩ by ≥ 11 %.
    Anisotropic: the box shape is free (log-uniform), V keeps the same law; the
    variance is checked in the isotropic case only (with h/τ_P = 1/25 the anisotropic
    Euler steps inflate it by a few per cent, about the size of its error bar).
    """
    num_atoms, temperature, pressure = 8, 300.0, 100.0 * BAR
    kT = K_B * temperature
    mean_volume = (num_atoms + 1) * kT / pressure
    init_fn, apply_fn = stochastic_cell_rescaling(
        free_energy_force_stress, 4.0, temperature, pressure, barostat_time_fs=100.0, compressibility=1 / pressure,
        thermostat_time_fs=50.0, anisotropic=anisotropic, degrees_of_freedom=3 * num_atoms - 3)
    masses = jnp.full((num_atoms,), 4.0)
    momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(0), masses, temperature)
    state = init_fn(jnp.zeros((num_atoms, 3)), momenta, masses, jnp.eye(3) * mean_volume ** (1 / 3),
                    key=jax.random.PRNGKey(5))
    state, _ = RUNNER(apply_fn, state, 50, 10, npt_frame_of)
    _, frames = RUNNER(apply_fn, state, 4000, 5, npt_frame_of)
    volume = np.asarray(frames.volume)
    mean, mean_error = block_mean_and_error(volume)
    var, var_error = block_mean_and_error((volume - mean_volume) ** 2)
    assert mean_error < 0.025 * mean_volume
    assert abs(mean - mean_volume) < 4 * mean_error
    if not anisotropic:
        assert abs(var - (num_atoms + 1) * (kT / pressure) ** 2) < 4 * var_error
    else:
        lengths = np.diagonal(np.asarray(frames.cell), axis1=1, axis2=2)
        assert np.std(np.log(lengths[:, 0] / lengths[:, 1])) > 0.1


def run_lj_npt(pressure_bar, steps, seed, temperature=20.0, compressibility=170.0, barostat_time=500.0, dt=5.0):
    """32-atom FCC argon (shifted-force LJ, r_c = 5 Å) at constant T and P; returns frames after 2 ps."""
    positions, cell = fcc_argon()
    masses = jnp.full((positions.shape[0],), ARGON_MASS)
    init_fn, apply_fn = stochastic_cell_rescaling(
        lj_energy_force_stress, dt, temperature, pressure_bar * BAR, barostat_time_fs=barostat_time,
        compressibility=compressibility, thermostat_time_fs=100.0, degrees_of_freedom=3 * positions.shape[0] - 3)
    key_p, key_run = jax.random.split(jax.random.PRNGKey(seed))
    state = init_fn(positions, maxwell_boltzmann_momenta(key_p, masses, temperature), masses, cell, key=key_run)
    state, _ = RUNNER(apply_fn, state, 40, 10, npt_frame_of)
    _, frames = RUNNER(apply_fn, state, steps, 1, npt_frame_of)
    return state, frames


def test_lennard_jones_npt_holds_the_target_pressure():
    """⟨P⟩ + k_B T ⟨1/V⟩ = P_0 for FCC argon at 20 K and 500 bar (4000 steps of 5 fs).

    Bound, exact for the barostat's Euler steps: summing dε_n = μ h D_n + σ_n ξ_n over n
    steps gives mean(D) = (ln(V_n/V_0) − Σ σ_n ξ_n)/(μ h n), D = P + g k_B T/V − P_0,
    μ = β_T/τ_P, σ_n² = 2 k_B T μ h/V_n; so |mean(D)| ≤ 4 √(2 k_B T/(μ h ⟨V⟩ n)) +
    |ln(V_n/V_0)|/(μ h n), plus 1 % of the kinetic pressure N k_B T/V because the
    reported P is taken half a kick away from the barostat's. The system must stay a
    solid near its start volume (a blow-up or a wrong barostat sign fails).

    E_pot + K + heat stays within 2 % of the energy the thermostat and the cell moves
    exchanged (as for CSVR; this run: 0.06 %): the trapezoid estimate of the cell move's
    work is second order, a one-sided one drifts by 60 % of it.
    """
    temperature, pressure_bar, steps, mobility, dt = 20.0, 500.0, 4000, 170.0 / 500.0, 5.0
    start, frames = run_lj_npt(pressure_bar, steps, seed=11)
    kT = K_B * temperature
    volume = np.asarray(frames.volume)
    pressure = np.asarray(frames.pressure)
    start_volume = float(jnp.linalg.det(start.cell))
    bound = (4 * math.sqrt(2 * kT / (mobility * dt * volume.mean() * steps))
             + abs(math.log(volume[-1] / start_volume)) / (mobility * dt * steps) + 0.01 * 32 * kT / volume.mean())
    assert bound < 150 * BAR
    assert abs(np.mean(pressure + kT / volume) - pressure_bar * BAR) < bound
    assert 0.9 < volume.mean() / 10.6**3 < 1.3 and np.all(np.isfinite(pressure))
    conserved = np.asarray(frames.conserved)
    exchanged = exchanged_energy(frames)
    assert np.ptp(conserved) < 0.02 * exchanged


@pytest.mark.slow
def test_lennard_jones_volume_fluctuation_matches_compressibility():
    """κ_T from ⟨δV²⟩ = k_B T ⟨V⟩ κ_T at 500 bar equals −(1/V) Δ⟨V⟩/ΔP from runs at 250 and 750 bar.

    Each run: 6·10⁴ steps of 5 fs (300 ps); V relaxes in ~τ_P κ_T/β_T ≈ 0.5 ps, so 20
    blocks of 15 ps are independent. Both estimates get block standard errors; the
    bound is 4 combined errors (≈ 25 % of κ_T). The central difference's own error,
    O(ΔP²) with ΔP κ_T ≈ 2 %, is far smaller.
    """
    kT = K_B * 20.0  # 20 K
    volumes = {p: np.asarray(run_lj_npt(p, 60000, seed=int(p))[1].volume) for p in (250.0, 500.0, 750.0)}
    stats = {p: block_mean_and_error(v) for p, v in volumes.items()}
    v0, v0_error = stats[500.0]
    fluctuation, fluctuation_error = block_mean_and_error((volumes[500.0] - v0) ** 2)
    kappa_fluctuation = fluctuation / (kT * v0)
    kappa_fluctuation_error = fluctuation_error / (kT * v0)
    delta_p = 500.0 * BAR
    kappa_response = -(stats[750.0][0] - stats[250.0][0]) / (delta_p * v0)
    kappa_response_error = math.hypot(stats[750.0][1], stats[250.0][1]) / (delta_p * v0)
    combined = math.hypot(kappa_fluctuation_error, kappa_response_error)
    assert combined < 0.1 * kappa_response
    assert abs(kappa_fluctuation - kappa_response) < 4 * combined


@pytest.mark.parametrize("ensemble", ["nvt-nhc", "csvr", "npt"])
def test_checkpoint_round_trip_continues_bitwise(tmp_path, ensemble):
    """N steps, the driver's .npz checkpoint, a fresh state restored from it, N steps == 2N steps (to 1e-12).

    Wells for the thermostats, FCC argon for NPT (cell, key, heat restored; forces and
    stress re-evaluated from the saved positions and cell). N = 60 steps; the 2N-step
    run is the same compiled N-step program applied twice. The thermostat cases come
    out bit for bit equal; for NPT the restored state's forces and stress come from the
    (eager) ``init_fn`` instead of the jitted step, which rounds differently (1e-16).
    """
    if ensemble == "npt":
        positions, cell = fcc_argon(jitter=0.05)
        masses = jnp.full((positions.shape[0],), ARGON_MASS)
        momenta = maxwell_boltzmann_momenta(jax.random.PRNGKey(2), masses, 30.0)
        init_fn, apply_fn = stochastic_cell_rescaling(lj_energy_force_stress, 5.0, 30.0, 500.0 * BAR,
                                                      barostat_time_fs=200.0, compressibility=170.0,
                                                      thermostat_time_fs=50.0, anisotropic=True)
        observe = npt_frame_of

        def init(positions, momenta, masses, cell, key):
            return init_fn(positions, momenta, masses, cell, key=key)
    else:
        energy_force, _ = anharmonic_wells()
        positions, momenta, masses = wells_start(300.0, seed=9)
        cell = None
        build = nose_hoover_chain if ensemble == "nvt-nhc" else csvr
        init_fn, apply_fn = build(energy_force, 0.5, 300.0, thermostat_time_fs=10.0)
        observe = frame_of

        def init(positions, momenta, masses, cell, key):
            return init_fn(positions, momenta, masses) if ensemble == "nvt-nhc" else init_fn(
                positions, momenta, masses, key=key)

    key = jax.random.PRNGKey(8)
    half, _ = RUNNER(apply_fn, init(positions, momenta, masses, cell, key), 6, 10, observe)
    continuous, _ = RUNNER(apply_fn, half, 6, 10, observe)
    path = tmp_path / "state.npz"
    np.savez(path, **checkpoint_arrays(half, np.zeros(positions.shape[0], int), 60, ensemble))
    saved = dict(np.load(path))
    fresh = init(jnp.asarray(saved["positions"]), jnp.asarray(saved["momenta"]), masses,
                 None if cell is None else jnp.asarray(saved["cell"]), jax.random.PRNGKey(0))
    restarted, _ = RUNNER(apply_fn, restore_ensemble_state(fresh, saved, ensemble), 6, 10, observe)
    assert float(restarted.heat) != 0.0
    for name in ("positions", "momenta", "heat") + (("cell",) if cell is not None else ("chain_momenta",)
                                                    if ensemble == "nvt-nhc" else ()):
        np.testing.assert_allclose(np.asarray(getattr(restarted, name)), np.asarray(getattr(continuous, name)),
                                   rtol=0, atol=1e-12)


# -- PhysNet in a variable cell, the driver and its checkpoints ---------------------------

CELL = np.array([[6.0, 0.0, 0.0], [1.5, 5.6, 0.0], [0.8, 1.2, 5.3]])  # triclinic


@pytest.fixture(scope="module")
def crystal_model():
    """Tiny float64 PhysNet (cutoff 3.5 Å, force-shifted Coulomb to 5 Å, ZBL) and 12 atoms in CELL ≥ 1.2 Å apart."""
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=3.5,
                    max_atomic_number=9, charges=True, zbl=True, n_res=1, coulomb_lr_cutoff=5.0)
    params = cast_params(perturbed_params(init_params(model, 0), scale=0.1, seed=2), np.float64)
    rng = np.random.default_rng(5)
    images = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]) @ CELL
    positions = []
    while len(positions) < 12:
        trial = rng.uniform(0, 1, 3) @ CELL
        if all(np.min(np.linalg.norm(trial - p + images, axis=-1)) > 1.2 for p in positions):
            positions.append(trial)
    atoms = ase.Atoms(numbers=rng.choice([1, 6, 8], size=12), positions=np.asarray(positions), cell=CELL, pbc=True)
    return model, params, atoms


def _check_cell_potential(evaluate, model, params, numbers, positions, cell, state):
    """E, F, σ of the cell potential's jitted ``evaluate`` at ``positions`` in ``cell`` with neighbor ``state``
    equal predict_periodic's (1e-10), and the state did not overflow."""
    energy, forces, stress = evaluate(jnp.asarray(positions), jnp.asarray(cell), state)
    reference = predict_periodic(model, params, numbers, positions, cell)
    assert not bool(state.did_overflow)
    np.testing.assert_allclose(float(energy), reference["energy"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(forces), reference["forces"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(stress), reference["stress"], rtol=0, atol=1e-10)


def test_cell_potential_equals_predict_periodic_in_a_strained_cell(crystal_model):
    """Lists built in the reference cell, used in a strained one: E, F, σ equal predict_periodic's (1e-10).

    A compression beyond the strain tolerance (10 % linear > 5 %) raises the overflow flag.
    """
    model, params, atoms = crystal_model
    potential = physnet_cell_potential(model, params, atoms.numbers, CELL)
    nbrs = potential.allocate(jnp.asarray(atoms.positions), jnp.asarray(CELL))
    update, evaluate = jax.jit(potential.update), jax.jit(potential.energy_force_stress)
    strain = np.array([[0.03, 0.01, 0.0], [0.0, -0.04, 0.02], [0.0, 0.0, 0.02]])
    for deformation in (np.eye(3), np.eye(3) + strain):
        cell, positions = CELL @ deformation, atoms.positions @ deformation
        moved = update(jnp.asarray(positions), jnp.asarray(cell), nbrs)
        _check_cell_potential(evaluate, model, params, atoms.numbers, positions, cell, moved)
    squeezed = update(jnp.asarray(atoms.positions * 0.9), jnp.asarray(CELL * 0.9), nbrs)
    assert bool(squeezed.did_overflow)


def test_cell_potential_lists_hold_every_pair_up_to_the_strain_tolerance(crystal_model):
    """The documented guarantee at its limit, with a skin too thin to help (0.01 Å): compressed by 1/1.049
    (‖h⁻¹h₀‖₂ = 1.049 < 1 + t = 1.05) the lists allocated in the reference cell (not rebuilt: the fractional
    coordinates did not move) still hold every pair, so E, F, σ equal predict_periodic's (1e-10); 1/1.052 raises
    the over-strain flag. A tolerance of 0 is refused."""
    model, params, atoms = crystal_model
    potential = physnet_cell_potential(model, params, atoms.numbers, CELL, skin=0.01)
    nbrs = potential.allocate(jnp.asarray(atoms.positions), jnp.asarray(CELL))
    update, evaluate = jax.jit(potential.update), jax.jit(potential.energy_force_stress)
    cell, positions = CELL / 1.049, atoms.positions / 1.049
    reference = ase.neighborlist.neighbor_list("d", atoms, model.cutoff * 1.049)
    assert np.sum(reference > model.cutoff) > 0  # pairs within the cutoff only once compressed
    moved = update(jnp.asarray(positions), jnp.asarray(cell), nbrs)
    _check_cell_potential(evaluate, model, params, atoms.numbers, positions, cell, moved)
    assert bool(update(jnp.asarray(atoms.positions / 1.052), jnp.asarray(CELL / 1.052), nbrs).did_overflow)
    with pytest.raises(ValueError, match="strain_tolerance must be > 0, received 0.0"):
        physnet_cell_potential(model, params, atoms.numbers, CELL, strain_tolerance=0.0)


def test_cell_potential_refuses_atoms_on_each_others_images(crystal_model):
    """Atom 1 put 0.05 Å from the image of atom 0 one cell vector away (in a strained cell) gave a NaN energy
    without a word; physnet_potential refused it, physnet_cell_potential did not."""
    from physnetjax.errors import PhysNetInputError

    model, params, atoms = crystal_model
    potential = physnet_cell_potential(model, params, atoms.numbers, CELL)
    cell = CELL @ (np.eye(3) + np.diag([0.02, -0.01, 0.03]))
    positions = atoms.positions @ (np.eye(3) + np.diag([0.02, -0.01, 0.03]))
    positions[1] = positions[0] + cell[0] + [0.05, 0.0, 0.0]
    with pytest.raises(PhysNetInputError, match=r"atoms overlap: atoms 0-1 at 0\.05 Å \(below 0\.1 Å\)"):
        potential.allocate(jnp.asarray(positions), jnp.asarray(cell))
    potential.allocate(jnp.asarray(atoms.positions), jnp.asarray(CELL))


@ATM_MODEL_SHORT_CUTOFF
def test_cell_potential_carries_the_three_body_dispersion_term(crystal_model, atm_model):
    """NPT with a D3+ATM model (dispersion_three_body=True) ended in "needs a triplet list ... the physnetjax.md
    potentials build one": the cell potential built none. Now its triplets live in the reference cell like its
    lists: E, F, σ equal predict_periodic's (1e-10) in the reference cell, a strained one and after moves past
    skin / 2 (the lists and the triplets rebuilt)."""
    _, _, atoms = crystal_model
    model, params = atm_model
    potential = physnet_cell_potential(model, params, atoms.numbers, CELL, skin=0.2)
    nbrs = potential.allocate(jnp.asarray(atoms.positions), jnp.asarray(CELL))
    assert nbrs.triplets is not None and int(nbrs.triplets.num_triplets) > 0
    update, evaluate = jax.jit(potential.update), jax.jit(potential.energy_force_stress)
    moves = 0.15 * np.random.default_rng(1).standard_normal(atoms.positions.shape)
    strain = np.array([[0.02, 0.01, 0.0], [0.0, -0.03, 0.01], [0.0, 0.0, 0.02]])
    for deformation, moved in ((np.eye(3), 0.0), (np.eye(3) + strain, 0.0), (np.eye(3) + strain, moves)):
        cell, positions = CELL @ deformation, (atoms.positions + moved) @ deformation
        state = update(jnp.asarray(positions), jnp.asarray(cell), nbrs)
        _check_cell_potential(evaluate, model, params, atoms.numbers, positions, cell, state)
    assert not np.array_equal(np.asarray(state.triplets.triplets), np.asarray(nbrs.triplets.triplets))


def test_npt_pressure_ramp_to_its_start_pressure_is_the_constant_pressure_run(crystal_model, tmp_path):
    """pressure_end_bar is read in bar as pressure_bar is: a ramp from 5 kbar to 5 kbar runs the constant-pressure
    trajectory (same seed) step for step, cell included. A ramp end converted otherwise than its start drives the
    cell to another pressure."""
    model, params, atoms = crystal_model
    common = dict(ensemble="npt", temperature_K=300.0, pressure_bar=5000.0, barostat_time_fs=100.0,
                  thermostat_time_fs=20.0, timestep_fs=0.5, steps=20, save_every=10, dtype="float64", seed=3)
    simulate(model, params, atoms, out=str(tmp_path / "constant.traj"), **common)
    simulate(model, params, atoms, out=str(tmp_path / "ramp.traj"), pressure_end_bar=5000.0, **common)
    constant, ramp = ase.io.read(tmp_path / "constant.traj"), ase.io.read(tmp_path / "ramp.traj")
    assert np.linalg.norm(constant.cell.array - CELL) > 1e-4  # the barostat moved the cell
    np.testing.assert_allclose(ramp.cell.array, constant.cell.array, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ramp.positions, constant.positions, rtol=0, atol=1e-12)


def _squeezed_npt_run(crystal_model, tmp_path, caplog, chunk_frames):
    """20 kbar squeeze the cell by 7 % (linear) in 80 steps, past the lists' 5 % tolerance: (the driver's one
    rebuild message, the frames written)."""
    model, params, atoms = crystal_model
    out = tmp_path / f"{chunk_frames}.traj"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="physnetjax.md.driver"):
        simulate(model, params, atoms, ensemble="npt", temperature_K=300.0, pressure_bar=20000.0,
                 barostat_time_fs=100.0, thermostat_time_fs=20.0, timestep_fs=0.5, steps=80, save_every=5,
                 dtype="float64", seed=3, max_force=1e4, chunk_frames=chunk_frames, out=str(out))
    rebuilt = [r.getMessage() for r in caplog.records if "the cell outgrew its neighbor lists" in r.getMessage()]
    assert len(rebuilt) == 1, rebuilt
    return rebuilt[0], ase.io.read(out, index=":")


def test_npt_compressed_past_the_strain_tolerance_rebuilds_its_lists(crystal_model, tmp_path, caplog):
    """Past the lists' strain tolerance the driver discards the chunk, rebuilds the lists in the current cell and
    re-runs it: the run goes on to the end, and its last frames' energies and forces are predict_periodic's in
    their cells (1e-10, 1e-9)."""
    model, params, _ = crystal_model
    rebuilt, frames = _squeezed_npt_run(crystal_model, tmp_path, caplog, chunk_frames=8)
    assert "cell of step 40" in rebuilt and len(frames) == 16
    assert np.linalg.norm(np.linalg.solve(frames[-1].cell.array, CELL), ord=2) > 1.06
    for frame in frames[-3:]:
        reference = predict_periodic(model, params, frame.numbers, frame.positions, frame.cell.array)
        np.testing.assert_allclose(frame.get_potential_energy(), reference["energy"], rtol=0, atol=1e-10)
        np.testing.assert_allclose(frame.get_forces(), reference["forces"], rtol=0, atol=1e-9)


@pytest.mark.slow
def test_npt_rebuilds_at_other_steps_with_other_chunks_and_keeps_the_trajectory(crystal_model, tmp_path, caplog):
    """Chunks of 8 and of 1 frames outgrow the lists at other steps (40, 70) and give the same trajectory."""
    eight, frames = _squeezed_npt_run(crystal_model, tmp_path, caplog, chunk_frames=8)
    one, other = _squeezed_npt_run(crystal_model, tmp_path, caplog, chunk_frames=1)
    assert "cell of step 40" in eight and "cell of step 70" in one
    for frame, same in zip(frames, other, strict=True):
        np.testing.assert_allclose(frame.positions, same.positions, rtol=0, atol=1e-10)
        np.testing.assert_allclose(frame.cell.array, same.cell.array, rtol=0, atol=1e-10)


def test_npt_compressed_too_often_stops_and_saves_the_last_good_frame(crystal_model, tmp_path, monkeypatch):
    """Past MAX_CELL_RETRIES rebuilds the run stops (exit 4 on the command line, whose table promises the last good
    state); it raised without writing one. Here with no retry allowed: the squeeze of the test above first
    outgrows the lists in the chunk after step 40."""
    model, params, atoms = crystal_model
    monkeypatch.setattr(driver, "MAX_CELL_RETRIES", 0)
    out = tmp_path / "run.traj"
    with pytest.raises(MDInstabilityError, match=r"MD stopped at step 45: the cell was compressed beyond the neighbor "
                                                 r"lists' strain tolerance within one chunk 1 times after step 40; "
                                                 r"use a longer barostat time\. Last good frame \(step 40\) saved"):
        simulate(model, params, atoms, ensemble="npt", temperature_K=300.0, pressure_bar=20000.0,
                 barostat_time_fs=100.0, thermostat_time_fs=20.0, timestep_fs=0.5, steps=80, save_every=5,
                 dtype="float64", seed=3, max_force=1e4, chunk_frames=8, out=str(out))
    frames = ase.io.read(out, index=":")
    last = ase.io.read(f"{out}.last_good.xyz")
    assert len(frames) == 8 and last.info["step"] == 40
    # last_good.xyz is extxyz text (8 decimals); the .traj frames are binary float64.
    np.testing.assert_allclose(last.positions, frames[-1].positions, rtol=0, atol=1e-7)
    np.testing.assert_allclose(last.cell.array, frames[-1].cell.array, rtol=0, atol=1e-7)
    assert np.abs(last.cell.array - CELL).max() > 0.1  # the cell of step 40, not the start cell


def test_a_collapsing_cell_stops_the_run_instead_of_growing_its_lists_forever(crystal_model, monkeypatch):
    """At the largest pressure accepted, 1e8 bar, with a barostat time of one step the cell collapses to NaN within the
    first chunk; the neighbor lists then overflowed at every re-run and the driver grew their capacity ×1.5 without
    end (the run hung). Now MAX_OVERFLOW_RETRIES re-runs of one chunk stop it (here 2, for speed) with
    MDInstabilityError saying what multiplies and why."""
    model, params, atoms = crystal_model
    monkeypatch.setattr(driver, "MAX_OVERFLOW_RETRIES", 2)
    with pytest.raises(MDInstabilityError, match=r"MD stopped at step 5: the neighbor lists overflowed 3 times in a "
                                                 r"row within the chunk after step 0, their capacity grown ×2\.25 in "
                                                 r"between: the pairs within the cutoff kept multiplying, as when the "
                                                 r"atoms or the cell collapse or the positions become NaN \(a "
                                                 r"timestep_fs, temperature or pressure far too large"):
        simulate(model, params, atoms, ensemble="npt", temperature_K=300.0, pressure_bar=MAX_PRESSURE_BAR,
                 barostat_time_fs=0.5, thermostat_time_fs=20.0, timestep_fs=0.5, steps=20, save_every=5,
                 dtype="float64", seed=3)


@pytest.mark.slow
def test_npt_cli_report_trajectory_and_restart(crystal_model, tmp_path, capsys):
    """CLI NPT (anisotropic, CSVR) 20 steps + restart 20 steps == one run of 40 steps (positions, momenta, cell).

    The checkpoint keeps cell, PRNG key and heat; the report shows pressure and volume;
    frames carry the changing cell.
    """
    model, params, atoms = crystal_model
    ckpt = tmp_path / "model"
    save_checkpoint(ckpt, model, params)
    geometry = tmp_path / "start.traj"
    ase.io.write(geometry, atoms)
    common = ["--checkpoint", str(ckpt), "--geometry", str(geometry), "--ensemble", "npt", "--temperature", "300",
              "--pressure", "1000", "--barostat-time", "200", "--thermostat-time", "20",
              "--anisotropic", "--timestep", "0.5", "--steps", "20", "--save-every", "5", "--chunk", "2",
              "--float64", "--seed", "3"]
    state = tmp_path / "state.npz"
    assert main(common + ["--out", str(tmp_path / "a.xyz"), "--md-checkpoint", str(state)]) == 0
    report = capsys.readouterr().out
    assert "conserved quantity (npt) drift" in report and "mean pressure" in report and "mean volume" in report
    saved = np.load(state)
    assert {"cell", "key", "heat"} <= set(saved.files)
    first = ase.io.read(tmp_path / "a.xyz", index=":")
    assert not np.allclose(first[-1].cell.array, CELL)
    np.testing.assert_allclose(first[-1].cell.array, saved["cell"], rtol=0, atol=1e-12)
    assert main(common + ["--out", str(tmp_path / "b.xyz"), "--restart", str(state)]) == 0
    restarted = ase.io.read(tmp_path / "b.xyz", index=":")
    simulate(model, params, atoms, ensemble="npt", temperature_K=300.0, pressure_bar=1000.0, barostat_time_fs=200.0,
             thermostat_time_fs=20.0, anisotropic=True, timestep_fs=0.5, steps=40,
             save_every=5, chunk_frames=2, dtype="float64", seed=3, out=str(tmp_path / "c.xyz"))
    continuous = ase.io.read(tmp_path / "c.xyz", index=":")
    np.testing.assert_allclose(restarted[-1].positions, continuous[-1].positions, rtol=0, atol=1e-12)
    np.testing.assert_allclose(restarted[-1].get_momenta(), continuous[-1].get_momenta(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(restarted[-1].cell.array, continuous[-1].cell.array, rtol=0, atol=1e-12)
    np.testing.assert_allclose(restarted[-1].info["conserved_eV"], continuous[-1].info["conserved_eV"], atol=1e-12)


@pytest.mark.parametrize("ensemble", ["npt", pytest.param("langevin", marks=pytest.mark.slow)])
def test_md_far_from_the_cell_runs_as_in_it_and_writes_the_users_images(crystal_model, tmp_path, ensemble):
    """The crystal with its atoms given 100-190 cells away (~1000 Å), in float32: on main the state held those
    coordinates (one float32 ulp 6e-5 Å; the barostat scaled them about the origin) and the path left the in-cell
    one. Each atom now starts moved into the cell by whole lattice vectors m_i · h, and every frame and the MD
    checkpoint are written at the user's image r + m_i · h_k, h_k the frame's cell: less m_i · h_k they are the
    in-cell run's frames (the two start states agree to float64 round-off, so to float32 round-off after)."""
    model, params, atoms = crystal_model
    images = np.random.default_rng(7).integers(100, 190, size=(len(atoms), 3)) * np.array([1, -1, 1])
    far = atoms.copy()
    far.positions = atoms.positions + images @ CELL
    kwargs = dict(ensemble=ensemble, temperature_K=300.0, timestep_fs=0.5, steps=40, save_every=10, chunk_frames=2,
                  dtype="float32", seed=3, **(dict(pressure_bar=1000.0, barostat_time_fs=200.0, anisotropic=True,
                                                   thermostat_time_fs=20.0) if ensemble == "npt" else {}))
    simulate(model, params, atoms, out=str(tmp_path / "near.xyz"), **kwargs)
    simulate(model, params, far, out=str(tmp_path / "far.xyz"), checkpoint_path=str(tmp_path / "far.npz"), **kwargs)
    near_frames, far_frames = (ase.io.read(tmp_path / name, index=":") for name in ("near.xyz", "far.xyz"))
    assert len(near_frames) == len(far_frames) == 4
    assert (ensemble == "npt") != np.allclose(far_frames[-1].cell.array, CELL)
    for a, b in zip(near_frames, far_frames):
        np.testing.assert_allclose(b.cell.array, a.cell.array, rtol=0, atol=1e-6)
        np.testing.assert_allclose(b.positions - images @ b.cell.array, a.positions, rtol=0, atol=1e-5)
        np.testing.assert_allclose(b.get_momenta(), a.get_momenta(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), rtol=0, atol=1e-4)
    with np.load(tmp_path / "far.npz") as saved:
        np.testing.assert_allclose(saved["positions"], far_frames[-1].positions, rtol=0, atol=1e-7)  # extxyz: 1e-8 Å steps


def read_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.mark.parametrize("ensemble", ["nve", "csvr"])
def test_periodic_nve_and_nvt_record_the_pressure_of_every_saved_frame(crystal_model, tmp_path, ensemble):
    """NVE/NVT in a fixed periodic cell logged no pressure (NPT alone did). Every saved frame's ``pressure_bar``
    (OUT.jsonl and the trajectory's info) now equals P = (1/3V) Σ_i |p_i|²/m_i − tr σ/3 recomputed in float64
    from the frame written: momenta and masses as ASE reads them (Σ p²/m in eV in ASE's units), σ from
    predict_periodic at the frame's positions in CELL, 1 bar = 1e5 Pa (CODATA above); they agree to 6e-11 bar of
    ~3e4 bar. The report's mean pressure and volume are the means of the logged ones. The kinetic and the virial
    part are each > 1000 bar here (3e3-6e3 and 2e4-3e4), 1e11 times the tolerance, so a flipped or dropped part
    fails. The fixed-cell ensembles share one observer (NVE and CSVR stand for all four)."""
    model, params, atoms = crystal_model
    out = tmp_path / "t.traj"  # full float64 positions and momenta (extxyz rounds them to 8 decimals)
    report = simulate(model, params, atoms, ensemble=ensemble, temperature_K=300.0, timestep_fs=0.5, steps=12,
                      save_every=4, chunk_frames=3, dtype="float64", seed=4, out=str(out))
    frames = ase.io.read(out, index=":")
    records = read_jsonl(f"{out}.jsonl")
    volume = abs(np.linalg.det(CELL))
    assert len(frames) == len(records) == 3
    for frame, record in zip(frames, records):
        momenta, masses = frame.get_momenta(), frame.get_masses()
        kinetic = np.sum(momenta**2 / masses[:, None]) / (3 * volume) / BAR
        stress = predict_periodic(model, params, frame.numbers, frame.positions, CELL)["stress"]
        virial = -np.trace(stress) / 3 / BAR
        assert abs(kinetic) > 1000 and abs(virial) > 1000, (kinetic, virial)
        np.testing.assert_allclose(record["pressure_bar"], kinetic + virial, rtol=0, atol=1e-8)
        assert frame.info["pressure_bar"] == record["pressure_bar"]
        np.testing.assert_allclose([record["volume_A3"], frame.info["volume_A3"]], volume, rtol=1e-13)
    assert report.mean_pressure_bar == pytest.approx(np.mean([r["pressure_bar"] for r in records]), rel=1e-12)
    assert report.mean_volume_A3 == pytest.approx(volume, rel=1e-13)
    assert f"mean pressure: {report.mean_pressure_bar:.5g} bar" in report.lines()


def test_an_isolated_molecule_records_no_pressure(crystal_model, tmp_path):
    """Without a cell there is no pressure: no ``pressure_bar``/``volume_A3`` in the log or the frames, no mean."""
    model, params, crystal = crystal_model
    out = tmp_path / "t.xyz"
    report = simulate(model, params, ase.Atoms(crystal.numbers, crystal.positions), ensemble="csvr",
                      temperature_K=300.0, timestep_fs=0.5, steps=8, save_every=4, chunk_frames=2, dtype="float64",
                      out=str(out))
    records, frames = read_jsonl(f"{out}.jsonl"), ase.io.read(out, index=":")
    assert len(records) == len(frames) == 2
    for keys in [set(record) for record in records] + [set(frame.info) for frame in frames]:
        assert not keys & {"pressure_bar", "volume_A3"}, keys
    assert report.mean_pressure_bar is None and report.mean_volume_A3 is None
    assert not any("pressure" in line for line in report.lines())


@pytest.mark.slow
@pytest.mark.parametrize("ensemble", ["nvt-nhc", "csvr"])
def test_thermostat_restart_keeps_its_state(crystal_model, tmp_path, ensemble):
    """simulate 20 steps + restart + 20 steps == 40 steps for NHC (chain ξ, p_ξ) and CSVR (key, heat)."""
    model, params, atoms = crystal_model
    kwargs = dict(ensemble=ensemble, temperature_K=300.0, thermostat_time_fs=10.0, timestep_fs=0.5, save_every=5,
                  chunk_frames=4, dtype="float64", seed=1)
    state = tmp_path / "state.npz"
    simulate(model, params, atoms, steps=20, checkpoint_path=str(state), **kwargs)
    saved = np.load(state)
    if ensemble == "nvt-nhc":
        assert np.any(saved["chain_momenta"] != 0)
    restarted = simulate(model, params, atoms, steps=20, restart=str(state), out=str(tmp_path / "b.xyz"), **kwargs)
    continuous = simulate(model, params, atoms, steps=40, out=str(tmp_path / "c.xyz"), **kwargs)
    b, c = ase.io.read(tmp_path / "b.xyz"), ase.io.read(tmp_path / "c.xyz")
    np.testing.assert_allclose(b.positions, c.positions, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.get_momenta(), c.get_momenta(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.info["conserved_eV"], c.info["conserved_eV"], rtol=0, atol=1e-12)
    assert restarted.ensemble == continuous.ensemble == ensemble


def _target_warnings(caught):
    return [str(w.message) for w in caught if "the targets jump at the restart" in str(w.message)]


def test_a_restart_with_another_temperature_warns_and_keeps_the_nhc_conserved_quantity(crystal_model, tmp_path):
    """A Nosé–Hoover restart at another temperature moved the conserved quantity by the change of the chain energy
    (0.55 eV here; the report then gave a drift of 1225 meV/atom/ps), and no message said that the target jumped."""
    import warnings

    model, params, atoms = crystal_model
    kwargs = dict(ensemble="nvt-nhc", thermostat_time_fs=10.0, timestep_fs=0.5, save_every=5, chunk_frames=4,
                  dtype="float64", seed=1, out=str(tmp_path / "t.xyz"))
    state = tmp_path / "state.npz"
    simulate(model, params, atoms, steps=40, temperature_K=300.0, checkpoint_path=str(state), **kwargs)
    with np.load(state) as saved:
        assert float(saved["target_temperature_K"]) == 300.0
        k_t_tau2 = K_B * 300.0 * 10.0**2  # eV fs²: Q_j = k_B T τ², Q_1 = N_f k_B T τ² with N_f = 3N − 3
        np.testing.assert_allclose(saved["chain_masses"], [(3 * 12 - 3) * k_t_tau2, k_t_tau2, k_t_tau2], rtol=1e-9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = simulate(model, params, atoms, steps=40, temperature_K=600.0, restart=str(state), **kwargs)
    messages = _target_warnings(caught)
    assert len(messages) == 1 and "temperature 300 → 600 K" in messages[0] and "give temperature_K 300" in messages[0]
    conserved = np.diff([frame.info["conserved_eV"] for frame in ase.io.read(tmp_path / "t.xyz", index=":")])
    boundary, others = abs(conserved[7]), np.abs(np.delete(conserved, 7))  # frames 8 | 9: steps 40 → 45
    assert boundary <= 2 * others.max() and others.max() < 1e-3, conserved
    assert abs(report.drift_meV_per_atom_per_ps) < 10.0


def test_a_restarted_ramp_warns_that_it_starts_again(crystal_model, tmp_path):
    """--restart with the same ramp settings started the ramp from --temperature again without a word (the
    thermostat fell from 1420 K to 100 K in the probe); the checkpoint records the target of its last step."""
    import warnings

    model, params, atoms = crystal_model
    kwargs = dict(ensemble="csvr", temperature_K=300.0, temperature_end_K=600.0, thermostat_time_fs=10.0,
                  timestep_fs=0.5, save_every=5, chunk_frames=4, dtype="float64", seed=1)
    state = tmp_path / "state.npz"
    simulate(model, params, atoms, steps=20, checkpoint_path=str(state), **kwargs)
    with np.load(state) as saved:  # during step k of n: T0 + (T1 − T0)(k + ½)/n; the last step is k = 19 of 20
        assert float(saved["target_temperature_K"]) == pytest.approx(300.0 + 300.0 * 19.5 / 20, rel=1e-12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        simulate(model, params, atoms, steps=20, restart=str(state), **kwargs)
    messages = _target_warnings(caught)
    assert len(messages) == 1 and "temperature 592.5 → 307.5 K" in messages[0] and "a ramp (temperature_end_K) " \
        "runs over this run's steps from the start value" in messages[0], messages
    with warnings.catch_warnings(record=True) as caught:  # continued from the temperature reached: no jump
        warnings.simplefilter("always")
        simulate(model, params, atoms, steps=20, restart=str(state), **dict(kwargs, temperature_K=592.5))
    assert not _target_warnings(caught)


def test_bad_ensemble_arguments(crystal_model):
    model, params, atoms = crystal_model
    molecule = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions)
    with pytest.raises(ValueError, match="periodic cell"):
        simulate(model, params, molecule, ensemble="npt", steps=10, save_every=10)
    with pytest.raises(ValueError, match="thermostat_time_fs"):
        simulate(model, params, atoms, ensemble="csvr", thermostat_time_fs=0.0, steps=10, save_every=10)
    with pytest.raises(ValueError, match="compressibility"):
        simulate(model, params, atoms, ensemble="npt", compressibility_per_bar=-1.0, steps=10, save_every=10)
    with pytest.raises(ValueError, match="chain_length"):
        nose_hoover_chain(lj_energy_force_stress, 1.0, 300.0, chain_length=0)
    with pytest.raises(ValueError, match="ramp_steps"):
        csvr(lj_energy_force_stress, 1.0, 300.0, temperature_end_K=400.0)


@pytest.mark.parametrize("ensemble,periodic", [("nve", False), pytest.param("csvr", True, marks=pytest.mark.slow),
                                                   ("npt", True)])
def test_md_runs_at_the_geometry_total_charge(crystal_model, tmp_path, ensemble, periodic):
    """A charged system's MD forces are those of its charge: the driver ran every system as neutral.

    Temperature 0 and a 1e-4 fs step keep the first saved frame within ~1e-9 Å of the start,
    so its potential energy is predict_periodic's/predict's at the start geometry (float64).
    """
    from physnetjax import predict

    model, params, crystal = crystal_model
    atoms = crystal.copy() if periodic else ase.Atoms(crystal.numbers, crystal.positions)
    atoms.info["charge"] = 1.0
    out = tmp_path / "t.xyz"
    simulate(model, params, atoms, ensemble=ensemble, temperature_K=0.0, timestep_fs=1e-4, steps=2, save_every=1,
             chunk_frames=2, dtype="float64", out=str(out))
    first = ase.io.read(out, index=0).get_potential_energy()
    if periodic:
        charged, neutral = (predict_periodic(model, params, atoms.numbers, atoms.positions, CELL, total_charge=q)["energy"]
                            for q in (1.0, 0.0))
    else:
        charged, neutral = (predict(model, params, atoms.numbers, atoms.positions, total_charge=q)["energy"]
                            for q in (1.0, 0.0))
    assert abs(charged - neutral) > 1e-3  # the test can tell the two apart
    np.testing.assert_allclose(first, charged, rtol=0, atol=1e-6)


def test_md_cli_total_charge_overrides_the_geometry(crystal_model, tmp_path):
    """--total-charge replaces the geometry's info['charge'] (as in spectra)."""
    from physnetjax import predict

    model, params, crystal = crystal_model
    ckpt = tmp_path / "model"
    save_checkpoint(ckpt, model, params)
    atoms = ase.Atoms(crystal.numbers, crystal.positions)
    atoms.info["charge"] = 1.0
    ase.io.write(tmp_path / "start.xyz", atoms)
    out = tmp_path / "t.xyz"
    assert main(["--checkpoint", str(ckpt), "--geometry", str(tmp_path / "start.xyz"), "--total-charge", "-1",
                 "--temperature", "0", "--timestep", "1e-4", "--steps", "2", "--save-every", "1", "--chunk", "2",
                 "--float64", "--out", str(out)]) == 0
    expected = predict(model, params, atoms.numbers, atoms.positions, total_charge=-1.0)["energy"]
    np.testing.assert_allclose(ase.io.read(out, index=0).get_potential_energy(), expected, rtol=0, atol=1e-6)
