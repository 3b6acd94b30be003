"""Model force function for MD: equals the calculator; JAX NVE equals ASE VelocityVerlet; I/O round trip."""

import math
import re

import ase
import ase.io
import jax
import numpy as np
import pytest
from ase import units as ase_units
from ase.md.verlet import VelocityVerlet
from conftest import cast_params, perturbed_params

from physnetjax import PhysNet, init_params, predict
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


def test_edge_set_choice_at_its_boundaries(setup):
    """method=None takes all pairs exactly when a list of radius cutoff + skin would need N(N−1) slots anyway
    (capacity_multiplier × the pairs within cutoff + skin ≥ N(N−1)); a diatomic is a molecule; one atom has no
    pairs to take: it gets a list (method="all_pairs" is refused for it by name), and predict's energy."""
    model, params, z, r = setup
    reach = model.cutoff + 0.5  # the default skin
    diatomic = physnet_potential(model, params, [8, 1])
    for distance, all_pairs in ((reach - 0.1, True), (reach + 0.1, False)):
        nbrs = diatomic.allocate(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, distance]]))
        assert isinstance(nbrs, AllPairs) is all_pairs, distance
    assert np.linalg.norm(r[:, None] - r[None], axis=-1).max() < reach  # every pair within reach: N(N-1) listed
    assert isinstance(physnet_potential(model, params, z, capacity_multiplier=1.0).allocate(r), AllPairs)
    pair = np.array([[0.0, 0.0, 0.0], [0.0, 0.3, 1.1]])
    explicit = physnet_potential(model, params, [8, 1], method="all_pairs")
    listed = physnet_potential(model, params, [8, 1], method="dense")
    np.testing.assert_allclose(np.asarray(explicit.energy_force(pair, explicit.allocate(pair))[1]),
                               np.asarray(listed.energy_force(pair, listed.allocate(pair))[1]), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="method='all_pairs' needs at least 2 atoms"):
        physnet_potential(model, params, [8], method="all_pairs")
    atom = np.array([[0.4, -0.2, 1.0]])
    single = physnet_potential(model, params, [8])
    energy, forces = single.energy_force(atom, single.allocate(atom))
    np.testing.assert_allclose(float(energy), predict(model, params, [8], atom)["energy"], rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(forces), 0.0)


def squeezed_overflow(setup):
    """A "dense" potential allocated without head-room on ethanol, and a neighbor state that overflowed: the
    molecule squeezed ×0.6 about its centre brings more pairs within the 4.5 Å list radius than the list holds."""
    model, params, z, r = setup
    pot = physnet_potential(model, params, z, method="dense", capacity_multiplier=1.0)
    nbrs = pot.allocate(2.0 * r)
    squeezed = r.mean(axis=0) + 0.6 * (r - r.mean(axis=0))
    updated = pot.update(squeezed, nbrs)
    assert bool(updated.did_overflow) and int(updated.edges.num_pairs) > updated.edges.capacity
    return pot, squeezed, updated


def test_overflowed_neighbors_raise_eagerly_and_give_nan_under_jit(setup):
    """An overflowed list's pairs are incomplete: eagerly energy_force names the overflow (it said "edge list is not
    a full directed list"); under jit the energy and forces are NaN, not a finite number from missing pairs. A fresh
    allocation at the same positions gives the calculator's (brute-force vesin list) energy and forces."""
    from physnetjax.neighbors import NeighborListOverflowError

    model, params, z, _ = setup
    pot, squeezed, overflowed = squeezed_overflow(setup)
    with pytest.raises(NeighborListOverflowError, match=r"neighbor list overflowed: \d+ pairs for capacity \d+; "
                                                        r"re-allocate it"):
        pot.energy_force(squeezed, overflowed)
    energy, forces = jax.jit(pot.energy_force)(squeezed, overflowed)
    assert np.isnan(float(energy)) and np.isnan(np.asarray(forces)).all()
    assert np.isnan(np.asarray(jax.jit(pot.outputs)(squeezed, overflowed)["charges"])).all()
    energy, forces = jax.jit(pot.energy_force)(squeezed, pot.allocate(squeezed))
    atoms = ase.Atoms(numbers=z, positions=squeezed, calculator=PhysNetCalculator(model, params, dtype="float64"))
    np.testing.assert_allclose(float(energy), atoms.get_potential_energy(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(forces), atoms.get_forces(), atol=1e-10)


@pytest.mark.parametrize("method", ["dense", "cell"])
def test_nan_position_is_flagged_not_a_stale_energy(setup, method):
    """One NaN atom made needs_update False (NaN > x is False): the list stayed stale, missing the pair an atom had
    moved into, and the energy was finite and wrong. Now the rebuild flags the state and the energy is NaN."""
    model, params, _, _ = setup
    z = np.array([8, 1, 6, 1])
    start = np.array([[1.0, 1.0, 1.0], [1.95, 1.2, 1.0], [8.0, 1.0, 1.0], [8.0, 8.0, 8.0]])
    pot = physnet_potential(model.clone(coulomb_lr_cutoff=4.5), params, z, cell=np.eye(3) * 14.0, method=method,
                            capacity_multiplier=10.0)
    nbrs = pot.allocate(start)
    moved = start.copy()
    moved[2] = [3.0, 1.0, 1.0]  # 2 Å from atom 0, 7 Å (not listed) at allocation
    moved[3] = np.nan
    updated = jax.jit(pot.update)(moved, nbrs)
    assert bool(updated.did_overflow)
    energy, forces = jax.jit(pot.energy_force)(moved, updated)
    assert np.isnan(float(energy)) and np.isnan(np.asarray(forces)).all()


@pytest.mark.parametrize("method", ["all_pairs", "dense"])
def test_potential_refuses_bad_positions_by_name(setup, method):
    """Overlapping atoms gave a NaN energy with no message; 4 positions for 3 atoms a JAX broadcasting error."""
    from physnetjax.errors import PhysNetInputError

    model, params, _, _ = setup
    z = np.array([8, 1, 1])
    water = np.array([[0.0, 0.0, 0.0], [0.97, 0.0, 0.0], [-0.2, 0.95, 0.1]]) + [1.3, -0.7, 2.1]
    pot = physnet_potential(model, params, z, method=method)
    overlapping = np.vstack([water[:2], water[:1] + [0.05, 0.0, 0.0]])
    with pytest.raises(PhysNetInputError, match=r"atoms overlap: atoms 0-2 at 0\.05 Å \(below 0\.1 Å\)"):
        pot.allocate(overlapping)
    shape = re.escape("positions must have shape (n, 3) = (3, 3) to match atomic_numbers, received shape (4, 3)")
    four = np.vstack([water, [3.0, 3.0, 3.0]])
    with pytest.raises(PhysNetInputError, match=shape):
        pot.allocate(four)
    nbrs = pot.allocate(water)
    with pytest.raises(PhysNetInputError, match=shape):
        jax.jit(pot.energy_force)(four, nbrs)


@pytest.mark.parametrize("method", ["dense", "cell"])
def test_periodic_potential_refuses_atoms_on_each_others_images(setup, method):
    """Atoms 0.03 Å apart only across the cell's face (9.97 Å apart in the cell): refused by name, the image shift
    counted with its sign."""
    from physnetjax.errors import PhysNetInputError

    model, params, _, _ = setup
    cell = np.eye(3) * 10.0
    positions = np.array([[0.02, 5.0, 5.0], [9.99, 5.0, 5.0], [5.0, 5.0, 5.0]])
    pot = physnet_potential(model.clone(coulomb_lr_cutoff=4.0), params, [8, 1, 1], cell=cell, method=method)
    with pytest.raises(PhysNetInputError, match=r"atoms overlap: atoms 0-1 at 0\.03 Å"):
        pot.allocate(positions)
    positions[1, 0] = 9.5
    pot.allocate(positions)
