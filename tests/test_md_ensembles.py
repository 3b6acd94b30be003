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

import math

import ase
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import cast_params, perturbed_params

from physnetjax import PhysNet, init_params, predict_periodic
from physnetjax.checkpoint.format import save_checkpoint
from physnetjax.md import frame_of, maxwell_boltzmann_momenta, nve, run
from physnetjax.md.__main__ import main
from physnetjax.md.barostat import npt_frame_of, stochastic_cell_rescaling
from physnetjax.md.cell_potential import physnet_cell_potential
from physnetjax.md.driver import drift_and_fluctuation, simulate
from physnetjax.md.thermostats import csvr, nose_hoover_chain

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

    h = 0.5 fs (Verlet's kinetic bias (ωh)²/4 ≤ 0.6 % per well here). 6000 frames 10
    steps apart in 20 blocks of 1.5 ps, ≫ the thermostat and well periods (≤ 60 fs).
    """
    energy_force, _ = anharmonic_wells()
    init_fn, apply_fn = nose_hoover_chain(energy_force, 0.5, 300.0, thermostat_time_fs=20.0, chain_length=3)
    state = init_fn(*wells_start(300.0))
    state, _ = RUNNER(apply_fn, state, 100, 10, frame_of)
    _, frames = RUNNER(apply_fn, state, 6000, 10, frame_of)
    check_canonical_kinetic_energy(frames.kinetic_energy, 3 * NUM_WELLS, 300.0)


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
    exchanged = np.ptp(np.asarray(frames.conserved - frames.potential_energy - frames.kinetic_energy))
    assert exchanged > 1.0
    assert np.max(np.abs(conserved - start)) < 0.02 * exchanged

