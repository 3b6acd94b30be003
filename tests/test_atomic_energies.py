"""Per-atom energies (the model's ``energies``, ``predict``'s and the calculator's "energies").

E_i = E_i^NN + E0[Z_i] + ½ Σ_j (Coulomb + ZBL + D3 pair energies) + ⅓ of each ATM triangle.
Oracles: the total energy (Σ_i E_i = E in float64, on molecules and on a periodic cell
whose atoms see their own images), a Python double loop over the pair functions of
:mod:`physnetjax.physics` (ZBL and Coulomb halves), and the reference ``dftd3``
package's pairwise energies (two-body and ATM) for a fresh D3 model.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from ase.build import bulk, molecule
from conftest import ATM_MODEL_SHORT_CUTOFF, cast_params, perturbed_params

from physnetjax import PhysNet, PhysNetCalculator, apply_batch, batch_molecules, init_params, predict, predict_periodic
from physnetjax.ensemble import PhysNetEnsemble, stack_members
from physnetjax.physics.coulomb import coulomb_pair_energy
from physnetjax.physics.zbl import zbl_pair_energy
from physnetjax.units import BOHR, HARTREE

pytestmark = ATM_MODEL_SHORT_CUTOFF

SMALL = dict(features=8, max_degree=1, num_iterations=1, num_basis_functions=4, cutoff=4.0, n_res=1,
             max_atomic_number=9, param_dtype=jnp.float64)
# A few ulps of energies of ~1-100 eV summed over ≤ 20 atoms.
SUM_TOLERANCE = 1e-12


def fitted(model, seed: int):
    return model, cast_params(perturbed_params(init_params(model, 0), 0.2, seed=seed), np.float64)


@pytest.fixture(scope="module")
def full_model():
    """Charges (force-shifted Coulomb), ZBL reaching 4 Å, D3(BJ) with ATM: every term of the split."""
    return fitted(PhysNet(charges=True, coulomb_lr_cutoff=6.0, zbl=True, zbl_cutoff=4.0, dispersion="d3bj",
                          dispersion_three_body=True, dispersion_cutoff=6.0, **SMALL), seed=3)


@pytest.fixture(scope="module")
def neutral_model():
    """No charges (whose total-charge correction couples every atom of a structure), ZBL and D3 with ATM."""
    return fitted(PhysNet(charges=False, zbl=True, zbl_cutoff=3.0, dispersion="d3bj", dispersion_three_body=True,
                          dispersion_cutoff=6.0, **SMALL), seed=4)


def ethanol():
    atoms = molecule("CH3CH2OH")
    return atoms.numbers, atoms.positions


def test_energies_sum_to_the_energy_of_a_molecule_with_every_term(full_model):
    model, params = full_model
    z, r = ethanol()
    out = predict(model, params, z, r, dtype=np.float64)
    assert out["energies"].shape == (len(z),) and out["energies"].dtype == np.float64
    for term in ("electrostatics", "repulsion", "dispersion"):
        assert abs(out[term]) > 1e-4, term  # each pair term is there to be split
    assert abs(out["energies"].sum() - out["energy"]) < SUM_TOLERANCE
    assert np.ptp(out["energies"]) > 1e-3


def test_energies_sum_to_the_energy_of_a_cell_whose_atoms_see_their_images(full_model):
    """A 2.9 Å cell: each atom pairs with its own images for ZBL (4 Å), Coulomb and D3 (6 Å), triangles
    included; a one-atom cell holds nothing but such pairs."""
    model, params = full_model
    cell = np.array([[2.9, 0.1, 0.0], [0.0, 3.0, 0.2], [0.1, 0.0, 3.1]])
    for z, r in ((np.array([6, 8, 1]), np.array([[0.1, 0.2, 0.0], [1.3, 1.4, 1.2], [2.0, 0.3, 2.2]])),
                 (np.array([6]), np.array([[0.5, 0.5, 0.5]]))):
        out = predict_periodic(model, params, z, r, cell, dtype=np.float64)
        assert out["energies"].shape == (len(z),)
        assert abs(out["repulsion"]) > 1e-4 and abs(out["dispersion"]) > 1e-4
        assert abs(out["energies"].sum() - out["energy"]) < SUM_TOLERANCE


def test_element_energies_go_to_their_atoms(full_model):
    model, params = full_model
    reference = tuple(float(-10.0 * k) for k in range(model.max_atomic_number + 1))
    z, r = ethanol()
    plain = predict(model, params, z, r, dtype=np.float64)
    shifted = predict(model.clone(element_energies=reference), params, z, r, dtype=np.float64)
    np.testing.assert_allclose(shifted["energies"] - plain["energies"], np.asarray(reference)[z], rtol=0, atol=1e-12)
    assert abs(shifted["energies"].sum() - shifted["energy"]) < 1e-10


def test_energies_follow_a_permutation_of_the_atoms(full_model):
    model, params = full_model
    z, r = ethanol()
    order = np.random.default_rng(0).permutation(len(z))
    out = predict(model, params, z, r, dtype=np.float64)
    permuted = predict(model, params, z[order], r[order], dtype=np.float64)
    np.testing.assert_allclose(permuted["energies"], out["energies"][order], rtol=0, atol=1e-12)


def test_a_distant_molecule_changes_no_per_atom_energy(neutral_model):
    """Ethanol and water 40 Å apart (beyond every cutoff) in one structure: each atom's energy is that of its
    molecule alone."""
    model, params = neutral_model
    z1, r1 = ethanol()
    water = molecule("H2O")
    z2, r2 = water.numbers, water.positions + np.array([40.0, 0.0, 0.0])
    both = predict(model, params, np.concatenate([z1, z2]), np.concatenate([r1, r2]), dtype=np.float64)
    alone = [predict(model, params, z, r, dtype=np.float64)["energies"] for z, r in ((z1, r1), (z2, r2))]
    np.testing.assert_allclose(both["energies"], np.concatenate(alone), rtol=0, atol=1e-12)


@pytest.mark.parametrize("three_body", [True, False])
def test_a_jitted_function_closing_over_a_host_batch_takes_dispersion(neutral_model, three_body):
    """A jitted function of the parameters alone that closes over a host batch (NumPy index arrays, as
    ``jax.jit(lambda p: apply_batch(model, p, batch))``): the D3 energy and its per-atom split index those arrays
    with halves traced from the pair vectors (a TracerArrayConversionError before)."""
    import jax

    model, params = neutral_model if three_body else fitted(neutral_model[0].clone(dispersion_three_body=False), 4)
    z, r = ethanol()
    batch = batch_molecules([z], [r], model.cutoff, pair_cutoff=model.dispersion_cutoff,
                            three_body_cutoff=model.dispersion_cutoff, dtype=np.float64)
    out = jax.jit(lambda p: apply_batch(model, p, batch))(params)
    assert float(out["dispersion"][0]) != 0.0
    np.testing.assert_allclose(float(np.sum(out["energies"])), float(out["energy"][0]), rtol=0, atol=SUM_TOLERANCE)


def test_pair_halves_match_a_double_loop_over_the_pair_functions():
    """Water, ZBL and bare Coulomb: E_i − E_i^NN = ½ Σ_{j≠i} (e^ZBL_ij + e^elec_ij), summed pair by pair."""
    model, params = fitted(PhysNet(charges=True, zbl=True, zbl_cutoff=3.0, **SMALL), seed=5)
    water = molecule("H2O")
    z, r = water.numbers, water.positions
    out = predict(model, params, z, r, dtype=np.float64)
    batch = batch_molecules([z], [r - r.mean(axis=0)], model.cutoff, dtype=np.float64)
    nn = np.asarray(apply_batch(model, params, batch)["atomic_energies"])[: len(z)]
    q = out["charges"]
    assert np.abs(q).max() > 1e-3
    expected = nn.copy()
    for i in range(len(z)):
        for j in range(len(z)):
            if i == j:
                continue
            d = jnp.asarray([np.linalg.norm(r[j] - r[i])])
            real = jnp.asarray([True])
            zbl = zbl_pair_energy(jnp.asarray([z[i]]), jnp.asarray([z[j]]), d, real, 3.0)
            elec = coulomb_pair_energy(jnp.asarray([q[i]]), jnp.asarray([q[j]]), d, real, model.sr_cutoff)
            expected[i] += 0.5 * float(zbl[0] + elec[0])
    assert out["repulsion"] > 1e-3
    np.testing.assert_allclose(out["energies"], expected, rtol=0, atol=1e-10)


def test_dispersion_energies_are_dftd3_pairwise_row_sums(atm_model):
    """A fresh D3+ATM model (NN heads 0) on ethanol, inside the switch: E_i = Σ_j of dftd3's pairwise
    energies (two-body split in halves, each ATM triangle in thirds)."""
    interface = pytest.importorskip("dftd3.interface")
    model, params = atm_model
    z, r = ethanol()
    out = predict(model, params, z, r, dtype=np.float64)
    reference = interface.DispersionModel(z, r / BOHR).get_pairwise_dispersion(
        interface.RationalDampingParam(method="pbe0", atm=True))
    additive = np.asarray(reference["additive pairwise energy"]).sum(axis=1) * HARTREE
    three_body = np.asarray(reference["non-additive pairwise energy"]).sum(axis=1) * HARTREE
    assert np.abs(three_body).max() > 1e-7
    np.testing.assert_allclose(out["energies"], additive + three_body, rtol=0, atol=1e-10)


@pytest.mark.parametrize("periodic", [False, True])
def test_ase_potential_energies_sum_to_the_potential_energy(full_model, periodic):
    model, params = full_model
    if periodic:
        atoms = bulk("C", "diamond", a=3.57)
    else:
        atoms = molecule("CH3CH2OH")
    atoms.calc = PhysNetCalculator(model, params, dtype="float64")
    energies = atoms.get_potential_energies()
    assert energies.shape == (len(atoms),)
    assert abs(energies.sum() - atoms.get_potential_energy()) < 1e-10
    assert "energies" in atoms.calc.implemented_properties



def test_an_ensemble_gives_the_member_mean_and_its_spread(neutral_model):
    model, params = neutral_model
    other = cast_params(perturbed_params(params, 0.1, seed=6), np.float64)
    ensemble = PhysNetEnsemble(member=model, size=2)
    z, r = ethanol()
    out = predict(ensemble, stack_members([params, other]), z, r, dtype=np.float64)
    members = np.stack([predict(model, p, z, r, dtype=np.float64)["energies"] for p in (params, other)])
    np.testing.assert_allclose(out["energies"], members.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["energies_std"], np.abs(members[0] - members[1]) / 2, rtol=0, atol=1e-12)
    assert out["energies_std"].max() > 1e-3
    assert abs(out["energies"].sum() - out["energy"]) < SUM_TOLERANCE
