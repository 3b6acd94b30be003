"""Model force function for MD: equals the calculator; JAX NVE equals ASE VelocityVerlet; I/O round trip."""

import math

import ase
import ase.io
import jax
import numpy as np
import pytest
from ase import units as ase_units
from ase.md.verlet import VelocityVerlet
from conftest import cast_params, perturbed_params

from physnetjax import PhysNet, init_params
from physnetjax.calculator import PhysNetCalculator
from physnetjax.md import maxwell_boltzmann_momenta, nve, run
from physnetjax.md.io import ASE_TIME_UNIT_FS, TrajectoryWriter, frame_atoms, momenta_from_ase
from physnetjax.md.potential import AllPairs, physnet_potential


@pytest.fixture(scope="module")
def setup(molecules):
    jax.config.update("jax_enable_x64", True)
    model = PhysNet(features=8, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=9, charges=True, zbl=True, n_res=1)
    params = cast_params(perturbed_params(init_params(model, 0), 0.2, seed=3), np.float64)
    z, r = molecules["ethanol"]
    return model, params, z, r


def test_ase_time_unit():
    """ASE's time unit is 1/ase.units.fs fs; ours is derived from physnetjax.units."""
    np.testing.assert_allclose(ASE_TIME_UNIT_FS, 1.0 / ase_units.fs, rtol=1e-7)


def test_potential_matches_calculator(setup):
    model, params, z, r = setup
    pot = physnet_potential(model, params, z)
    nbrs = pot.allocate(r)
    energy, forces = jax.jit(pot.energy_force)(r, pot.update(r, nbrs))
    atoms = ase.Atoms(numbers=z, positions=r, calculator=PhysNetCalculator(model, params, dtype="float64"))
    np.testing.assert_allclose(float(energy), atoms.get_potential_energy(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(forces), atoms.get_forces(), atol=1e-10)


@pytest.mark.parametrize("method", ["all_pairs", pytest.param("dense", marks=pytest.mark.slow)])
def test_jax_nve_equals_ase_velocity_verlet(setup, method):
    """100 steps of 0.5 fs from identical (r, p): the trajectories agree to 1e-9 Å.

    Same algorithm in float64; the only differences are summation orders (~1e-16
    relative), amplified over 50 fs by at most e^{λt} ~ 1e2–1e3 for molecular
    Lyapunov exponents λ ≲ 0.1 fs⁻¹, i.e. ≲ 1e-12 Å. A wrong unit or half-kick moves
    atoms by ≥ 1e-4 Å in 100 steps. ASE's time step is given in ASE time units derived
    from physnetjax.units (ASE's own ``units.fs`` uses CODATA 2014, ~1e-8 apart).
    Both edge sets: the constant all-pairs set and the in-jit neighbor list.
    """
    model, params, z, r = setup
    dt, steps = 0.5, 100
    atoms = ase.Atoms(numbers=z, positions=r)
    masses = atoms.get_masses()
    p0 = np.asarray(maxwell_boltzmann_momenta(jax.random.PRNGKey(0), np.asarray(masses), 500.0))

    pot = physnet_potential(model, params, z, method=method)
    init_fn, apply_fn = nve(pot.energy_force, dt, neighbor_update=pot.update)
    state = init_fn(r, p0, masses, pot.allocate(r))
    _, frames = jax.jit(run, static_argnums=(0, 2, 3))(apply_fn, state, steps, 1)

    atoms.calc = PhysNetCalculator(model, params, dtype="float64")
    atoms.set_momenta(p0 * ASE_TIME_UNIT_FS)
    ase_positions, ase_momenta = [], []

    def record():
        ase_positions.append(atoms.get_positions())
        ase_momenta.append(momenta_from_ase(atoms.get_momenta()))

    dyn = VelocityVerlet(atoms, timestep=dt / ASE_TIME_UNIT_FS)
    dyn.attach(record, interval=1)
    dyn.run(steps)
    ase_positions = np.array(ase_positions[1:])
    ase_momenta = np.array(ase_momenta[1:])
    displacement = np.abs(ase_positions[-1] - r).max()
    assert displacement > 0.01
    np.testing.assert_allclose(np.asarray(frames.positions), ase_positions, rtol=0, atol=1e-9)
    np.testing.assert_allclose(np.asarray(frames.momenta), ase_momenta, rtol=0, atol=1e-9 * np.abs(p0).max())
    total = np.asarray(frames.conserved)
    ase_total = atoms.get_potential_energy() + atoms.get_kinetic_energy()
    np.testing.assert_allclose(total[-1], ase_total, rtol=0, atol=1e-9)


@pytest.mark.parametrize("suffix", [".xyz", ".traj"])
def test_trajectory_round_trip(tmp_path, suffix):
    """Frames read back with ase.io give the stored potential and kinetic energy, forces and info."""
    template = ase.Atoms("CO", positions=[[0, 0, 0], [1.13, 0, 0]])
    rng = np.random.default_rng(0)
    writer = TrajectoryWriter(tmp_path / f"t{suffix}")
    stored = []
    for step in range(3):
        p = rng.normal(size=(2, 3))
        f = rng.normal(size=(2, 3))
        kinetic = 0.5 * np.sum(p**2 / template.get_masses()[:, None]) * ASE_TIME_UNIT_FS**2
        writer.write(frame_atoms(template, template.positions + 0.01 * step, p, -1.5 + step, f,
                                 {"step": step, "conserved_eV": 2.0 + step}))
        stored.append((p, f, kinetic))
    writer.close()
    frames = ase.io.read(tmp_path / f"t{suffix}", index=":")
    assert len(frames) == 3
    for step, (atoms, (p, f, kinetic)) in enumerate(zip(frames, stored)):
        np.testing.assert_allclose(atoms.get_potential_energy(), -1.5 + step)
        np.testing.assert_allclose(atoms.get_forces(), f, atol=1e-12)
        # extxyz stores momenta with 8 decimals (~1e-8 relative for |p| ~ 1): rtol 1e-7.
        np.testing.assert_allclose(atoms.get_kinetic_energy(), kinetic, rtol=1e-7 if suffix == ".xyz" else 1e-12)
        if suffix == ".xyz":
            assert atoms.info["step"] == step
            assert math.isclose(atoms.info["conserved_eV"], 2.0 + step)


def test_all_pairs_equals_neighbor_lists(setup):
    """The constant all-pairs edge set gives the neighbor-list results, pairs beyond every cutoff included.

    The molecule is stretched ×1.6 so that some pairs lie beyond the 4 Å cutoff and
    the ZBL switch, where they must contribute exactly nothing; bare Coulomb (no
    ``coulomb_lr_cutoff``) sums over all pairs in both cases. float64, agreement to
    summation-order rounding.
    """
    model, params, z, r = setup
    stretched = 1.6 * (r - r.mean(axis=0))
    distances = np.linalg.norm(stretched[:, None] - stretched[None], axis=-1)
    assert distances.max() > model.cutoff + 0.5
    listed = physnet_potential(model, params, z, method="dense")
    complete = physnet_potential(model, params, z, method="all_pairs")
    listed_nbrs, complete_nbrs = listed.allocate(stretched), complete.allocate(stretched)
    assert not isinstance(listed_nbrs, AllPairs) and isinstance(complete_nbrs, AllPairs)
    reference = jax.jit(listed.outputs)(stretched, listed_nbrs)
    result = jax.jit(complete.outputs)(stretched, complete.update(stretched, complete_nbrs))
    for key in ("energy", "electrostatics", "repulsion", "charges", "dipoles"):
        np.testing.assert_allclose(np.asarray(result[key]), np.asarray(reference[key]), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(result["forces"]), np.asarray(reference["forces"]), rtol=0, atol=1e-11)
    assert not bool(complete_nbrs.did_overflow)


def test_edge_set_choice(setup, molecules):
    """method=None: all pairs when the list would hold (nearly) all of them anyway, else a list."""
    model, params, z, r = setup
    compact = physnet_potential(model.clone(cutoff=8.0), params, z)
    assert isinstance(compact.allocate(r), AllPairs)
    chain = np.arange(12)[:, None] * np.array([1.5, 0.0, 0.0])
    spread = physnet_potential(model, params, np.full(12, 6))
    assert not isinstance(spread.allocate(chain), AllPairs)
    with pytest.raises(ValueError, match="isolated"):
        physnet_potential(model.clone(coulomb_lr_cutoff=4.0), params, z, cell=np.eye(3) * 20.0,
                          method="all_pairs")
    with pytest.raises(ValueError, match="method"):
        physnet_potential(model, params, z, method="verlet")
