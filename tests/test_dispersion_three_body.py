"""The ATM three-body dispersion term inside PhysNet (``dispersion_three_body=True``) and its triplet lists.

Oracles: the ``dftd3`` package with ``atm=True`` for molecules smaller than the switch
region (so the model's smooth cutoff never acts), float64 finite differences where the
switch does act, and the pure function :func:`d3_dispersion_energy` on an independently
built list of every pair-of-pairs (itself checked against dftd3 in test_dispersion.py)
for a periodic cell.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule

from physnetjax import PhysNet, PhysNetCalculator, apply_batch, batch_molecules, batch_periodic, predict
from physnetjax.predict import jitted_apply
from physnetjax.check import CheckSettings, Structure, check_model
from physnetjax.neighbors import model_pair_cutoff, model_triplet_cutoff, padded_triplets, pair_triplets
from physnetjax.neighbors.periodic import periodic_pairs
from physnetjax.physics.dispersion import d3_bj_parameters, d3_dispersion_energy
from conftest import ATM_MODEL_SHORT_CUTOFF, dftd3_reference

pytestmark = ATM_MODEL_SHORT_CUTOFF

SMALL = dict(features=8, max_degree=1, num_iterations=1, num_basis_functions=4, cutoff=4.0, charges=False,
             zbl=False, param_dtype=jnp.float64)


def test_fresh_model_energy_is_exactly_d3_with_atm(atm_model):
    model, params = atm_model
    atoms = molecule("CH3CH2OH")
    out = predict(model, params, atoms.numbers, atoms.positions)
    energy, forces = dftd3_reference(atoms.numbers, atoms.positions)
    two_body, _ = dftd3_reference(atoms.numbers, atoms.positions, atm=False)
    assert out["energy"] == out["dispersion"]
    # Measured |ΔE| ~ 1e-15 eV, |ΔF| ~ 1e-14 eV/Å (float64 round-off).
    assert abs(out["energy"] - energy) < 1e-10
    np.testing.assert_allclose(out["forces"], forces, rtol=0, atol=1e-10)
    assert abs(energy - two_body) > 1e-6  # the three-body term is there to be checked
    assert model_triplet_cutoff(model) == model.dispersion_cutoff == model_pair_cutoff(model)


def test_padding_and_batching_change_nothing(atm_model):
    model, params = atm_model
    ethanol, water = molecule("CH3CH2OH"), molecule("H2O")
    rotation, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    moved = ethanol.positions @ rotation.T + np.array([20.0, -3.0, 7.0])
    zs = [ethanol.numbers, water.numbers, ethanol.numbers]
    rs = [ethanol.positions, water.positions, moved]
    kwargs = dict(pair_cutoff=model_pair_cutoff(model), three_body_cutoff=model_triplet_cutoff(model),
                  dtype=np.float64)
    needed = batch_molecules(zs, rs, model.cutoff, **kwargs).triplets.shape[0]
    batch = batch_molecules(zs, rs, model.cutoff, num_atoms=40, num_edges=300, num_pairs=200,
                            num_triplets=needed + 37, num_molecules=5, **kwargs)
    out = jitted_apply(model)(params, batch)
    start = 0
    for b, (z, r) in enumerate(zip(zs, rs)):
        energy, forces = dftd3_reference(z, r)
        n = len(z)
        assert abs(float(out["energy"][b]) - energy) < 1e-10
        np.testing.assert_allclose(np.asarray(out["forces"][start:start + n]), forces, rtol=0, atol=1e-10)
        start += n
    assert np.all(np.asarray(out["forces"][start:]) == 0.0)
    assert np.all(np.asarray(out["energy"][len(zs):]) == 0.0)


def test_forces_match_finite_differences_inside_the_switch(atm_model):
    """An Ar–Kr–Ar triangle with sides in the switch region [4.8, 6] Å of the 6 Å dispersion cutoff."""
    model, params = atm_model
    numbers = [18, 36, 18]
    positions = np.array([[0.0, 0.0, 0.0], [5.1, 0.3, 0.0], [2.4, 4.7, 0.2]])
    out = predict(model, params, numbers, positions)
    h = 1e-4
    fd = np.zeros_like(positions)
    for a in range(3):
        for c in range(3):
            plus, minus = positions.copy(), positions.copy()
            plus[a, c] += h
            minus[a, c] -= h
            fd[a, c] = -(predict(model, params, numbers, plus)["energy"]
                         - predict(model, params, numbers, minus)["energy"]) / (2 * h)
    assert np.abs(fd).max() > 1e-4
    np.testing.assert_allclose(out["forces"], fd, rtol=1e-6, atol=1e-11)


def test_periodic_cell_energy_forces_and_virial(atm_model):
    """Model vs the pure function on every pair-of-pairs of the full 6 Å list (no cutoff filter)."""
    model, params = atm_model
    cell = np.array([[3.1, 0.2, 0.0], [0.1, 2.9, 0.3], [0.0, 0.2, 3.3]])
    positions = np.array([[0.1, 0.0, 0.2], [1.5, 1.6, 1.4]])
    numbers = np.array([6, 8])
    batch = batch_periodic([numbers], [positions], [cell], model.cutoff, pair_cutoff=6.0, three_body_cutoff=6.0,
                           dtype=np.float64)
    out = jitted_apply(model)(params, batch)

    dst, src, shifts = periodic_pairs(positions, cell, 6.0)
    dst, src = jnp.asarray(dst), jnp.asarray(src)
    triplets = pair_triplets(dst, np.ones(len(dst), bool))
    assert int(np.sum(batch.triplet_mask)) == len(triplets) > 0
    parameters = dataclasses.asdict(d3_bj_parameters("pbe0"))

    def energy(pos, strain, triplet_mask):
        deformation = jnp.eye(3) + strain
        vectors = (pos[src] - pos[dst] + shifts) @ deformation
        return d3_dispersion_energy(jnp.asarray(numbers), vectors, dst, src, jnp.ones(len(dst), bool),
                                    jnp.zeros(2, jnp.int32), 1, parameters, cutoff=6.0, switch_width=1.2,
                                    triplets=jnp.asarray(triplets), triplet_mask=triplet_mask,
                                    three_body_cutoff=6.0)[0]

    reference = jax.jit(jax.value_and_grad(energy, argnums=(0, 1)))
    value, (grad, grad_strain) = reference(jnp.asarray(positions), jnp.zeros((3, 3)), jnp.ones(len(triplets), bool))
    assert float(out["energy"][0]) == pytest.approx(float(value), abs=1e-12)
    np.testing.assert_allclose(np.asarray(out["forces"]), -np.asarray(grad), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out["virial"][0]), -np.asarray(grad_strain), rtol=0, atol=1e-11)
    two_body, _ = reference(jnp.asarray(positions), jnp.zeros((3, 3)), jnp.zeros(len(triplets), bool))
    assert abs(float(value - two_body)) > 1e-6


def test_calculator_covers_the_three_body_term(atm_model):
    model, params = atm_model
    atoms = molecule("CH3OH")
    atoms.calc = PhysNetCalculator(model, params, dtype="float64")
    energy, forces = dftd3_reference(atoms.numbers, atoms.positions)
    assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), forces, rtol=0, atol=1e-10)


def test_md_potential_with_all_pairs_carries_the_three_body_term(atm_model):
    """JAX-native MD of a small molecule (method=None picks the all-pairs edge set): it carries every pair-of-pairs,
    E and F equal dftd3 (ATM on). The in-jit lists' TripletList: test_md_triplets.py."""
    from physnetjax.md.potential import AllPairs, physnet_potential

    model, params = atm_model
    atoms = molecule("H2O")
    potential = physnet_potential(model, params, atoms.numbers)
    positions = jnp.asarray(atoms.positions)
    nbrs = potential.allocate(positions)
    assert isinstance(nbrs, AllPairs)
    energy, forces = jax.jit(potential.energy_force)(positions, nbrs)
    ref_energy, ref_forces = dftd3_reference(atoms.numbers, atoms.positions)
    # Measured |ΔE| ~ 4e-16 eV, |ΔF| ~ 5e-15 eV/Å (float64 round-off).
    assert abs(float(energy) - ref_energy) < 1e-10
    np.testing.assert_allclose(np.asarray(forces), ref_forces, rtol=0, atol=1e-10)


def test_calculator_covers_the_three_body_term_in_a_cell(atm_model):
    """Periodic: the calculator sizes its triplet list from the 6 Å pair vectors (the finite three-body cutoff
    filters them there) and gives the batch route's energy, forces and stress (that route is checked against the pure
    function above). The atoms sit away from the origin, so vectors built from absolute positions would differ."""
    model, params = atm_model
    cell = np.array([[3.1, 0.2, 0.0], [0.1, 2.9, 0.3], [0.0, 0.2, 3.3]])
    positions = np.array([[0.1, 0.0, 0.2], [1.5, 1.6, 1.4], [2.2, 0.4, 2.9]]) + np.array([4.0, 5.0, 6.0])
    numbers = np.array([6, 8, 1])
    batch = batch_periodic([numbers], [positions], [cell], model.cutoff, pair_cutoff=6.0, three_body_cutoff=6.0,
                           dtype=np.float64)
    expected = jitted_apply(model)(params, batch)
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True)
    atoms.calc = PhysNetCalculator(model, params, dtype="float64")
    assert atoms.get_potential_energy() == pytest.approx(float(expected["energy"][0]), abs=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), np.asarray(expected["forces"][:3]), rtol=0, atol=1e-12)
    stress = -np.asarray(expected["virial"][0]) / atoms.get_volume()
    np.testing.assert_allclose(atoms.get_stress(voigt=False), stress, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_check_covers_the_three_body_term(atm_model):
    model, params = atm_model
    atoms = molecule("CH3OH")
    report = check_model(model, params, [Structure(atoms.numbers, atoms.positions, 0.0, "methanol")],
                         groups=("forces",), settings=CheckSettings.quick())
    assert report.by_id("forces.fd.dispersion").status == "pass"


def test_missing_or_short_triplet_lists_are_refused(atm_model):
    model, params = atm_model
    atoms = molecule("H2O")
    batch = batch_molecules([atoms.numbers], [atoms.positions], model.cutoff, pair_cutoff=model_pair_cutoff(model),
                            dtype=np.float64)
    with pytest.raises(ValueError, match="dispersion_three_body=True needs a triplet list"):
        apply_batch(model, params, batch)
    dst = np.array([0, 0, 0, 1, 1, 2, 2, 1])
    vectors = np.array([[1.0, 0, 0], [2.0, 0, 0], [9.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0], [1.0, 0, 0],
                        [1.0, 0, 0], [1.0, 0, 0]])
    mask = np.array([True] * 7 + [False])
    # Atom 0 keeps pairs 0, 1 (pair 2 is beyond 5 Å): one triplet; atom 1: pairs 3, 4; atom 2: pairs 5, 6.
    triplets, triplet_mask = padded_triplets(dst, mask, vectors, 5.0, num_triplets=4)
    assert triplets[triplet_mask].tolist() == [[0, 1], [3, 4], [5, 6]]
    assert triplets[~triplet_mask].tolist() == [[7, 7]]
    assert len(padded_triplets(dst, mask, vectors, np.inf)[0]) == 5
    with pytest.raises(ValueError, match="num_triplets=2 is smaller than the 3 required"):
        padded_triplets(dst, mask, vectors, 5.0, num_triplets=2)


def test_trainer_batches_carry_every_triplet():
    """Host side only: the trainer's fixed-shape batches hold all 252 triplets of each ethanol frame."""
    from physnetjax.data.dataset import bundled_dataset_path, load_npz
    from physnetjax.train.batching import batch_shapes, iterate_batches

    model = PhysNet(dispersion="d3bj", dispersion_three_body=True, dispersion_cutoff=6.0, **SMALL)
    dataset = load_npz(bundled_dataset_path())
    shapes = batch_shapes(dataset, model, batch_size=3)
    assert shapes.triplets >= 3 * 252
    batch, _ = next(iterate_batches(dataset, np.arange(3), dataset.E, model, 3, shapes))
    assert batch.triplets.shape[1:] == (shapes.triplets, 2)
    assert int(np.sum(batch.triplet_mask)) == 3 * 9 * 8 * 7 // 2  # 9 atoms, 8 neighbours each: C(8, 2) per atom
    assert model_triplet_cutoff(PhysNet(**SMALL)) is None and batch_shapes(dataset, PhysNet(**SMALL), 3).triplets is None
