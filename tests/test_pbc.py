"""Periodic cells: builders agree on E/F/stress, stress equals the strain derivative of E, sign convention."""

import jax
import numpy as np
import pytest
from conftest import cast_params, perturbed_params

from physnetjax import PhysNet, TrainingRecord, init_params, predict_periodic
from physnetjax.distance_domain import DistanceDomain
from physnetjax.errors import PhysNetInputWarning
from physnetjax.neighbors import (
    apply_batch,
    batch_from_neighbors,
    batch_periodic,
    model_pair_cutoff,
    neighbor_list,
)

CELL = np.array([[6.0, 0.0, 0.0], [1.5, 5.6, 0.0], [0.8, 1.2, 5.3]])  # triclinic, narrower than 2 × 5 Å
TOL = dict(rtol=0.0, atol=1e-10)


@pytest.fixture(scope="module")
def setup():
    """Tiny model, cutoff 3.5 Å, charges with force-shifted Coulomb to 5 Å and ZBL; float64 noisy params."""
    model = PhysNet(features=8, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=3.5,
                    max_atomic_number=9, charges=True, zbl=True, n_res=1, coulomb_lr_cutoff=5.0)
    params = cast_params(perturbed_params(init_params(model, 0), scale=0.2, seed=2), np.float64)
    return model, params, jax.jit(lambda p, b: apply_batch(model, p, b))


@pytest.fixture(scope="module")
def crystal():
    """12 atoms (H, C, O) in CELL, at least 1 Å apart (all images)."""
    rng = np.random.default_rng(5)
    positions = []
    while len(positions) < 12:
        trial = rng.uniform(0, 1, 3) @ CELL
        images = np.array([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]) @ CELL
        if all(np.min(np.linalg.norm(trial - p + images, axis=-1)) > 1.0 for p in positions):
            positions.append(trial)
    return rng.choice([1, 6, 8], size=12), np.asarray(positions)


@pytest.fixture(scope="module")
def lists(setup, crystal):
    """In-jit (message-passing, pair) lists per method; all host batches are padded to their sizes."""
    model, _, _ = setup
    _, r = crystal
    return {
        method: (neighbor_list(model.cutoff, skin=0.3, method=method, cell=CELL)[0](r),
                 neighbor_list(model.coulomb_lr_cutoff, skin=0.3, method=method, cell=CELL)[0](r))
        for method in ("dense", "cell")
    }


def host_output(setup, lists, z, r, cell):
    """Model output on a host-built (vesin) graph padded to the in-jit list sizes (one compiled shape)."""
    model, params, apply = setup
    nbrs, pairs = lists["cell"]
    batch = batch_periodic([z], [r], [cell], model.cutoff, pair_cutoff=model_pair_cutoff(model),
                           num_edges=nbrs.capacity, num_pairs=pairs.capacity, dtype=np.float64)
    return apply(params, batch)


def test_builders_agree_on_energy_forces_stress(setup, crystal, lists):
    model, params, apply = setup
    z, r = crystal
    ref = host_output(setup, lists, z, r, CELL)
    assert abs(float(ref["electrostatics"][0])) > 1e-6 and abs(float(ref["nn_energy"][0])) > 1e-6
    for method, (nbrs, pairs) in lists.items():
        assert nbrs.capacity == lists["cell"][0].capacity and pairs.capacity == lists["cell"][1].capacity
        out = apply(params, batch_from_neighbors(z, r, nbrs, pairs, cell=CELL))
        for key in ("energy", "forces", "stress"):
            np.testing.assert_allclose(out[key], ref[key], **TOL, err_msg=f"{method} {key}")


def test_energy_is_periodic_and_predict_periodic(setup, crystal, lists):
    """Moving atoms by lattice vectors (unwrapping) changes nothing; predict_periodic gives the same."""
    model, params, _ = setup
    z, r = crystal
    ref = host_output(setup, lists, z, r, CELL)
    images = np.random.default_rng(1).integers(-2, 3, size=(len(z), 3))
    out = host_output(setup, lists, z, r + images @ CELL, CELL)
    for key in ("energy", "forces", "stress"):
        np.testing.assert_allclose(out[key], ref[key], **TOL)
    single = predict_periodic(model, params, z, r, CELL)
    np.testing.assert_allclose(single["energy"], ref["energy"][0], **TOL)
    np.testing.assert_allclose(single["stress"], ref["stress"][0], **TOL)
    np.testing.assert_allclose(single["forces"].sum(axis=0), 0.0, atol=1e-10)


def test_stress_is_strain_derivative_of_energy(setup, crystal, lists):
    """σ_ab = (1/V) ∂E/∂ε_ab: central differences of E under (I + ε) applied to positions and cell."""
    z, r = crystal
    ref = host_output(setup, lists, z, r, CELL)
    volume = abs(np.linalg.det(CELL))
    h = 1e-5
    numeric = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            strain = np.zeros((3, 3))
            strain[a, b] += 0.5 * h
            strain[b, a] += 0.5 * h
            energies = []
            for sign in (1.0, -1.0):
                deformation = np.eye(3) + sign * strain
                energies.append(float(host_output(setup, lists, z, r @ deformation, CELL @ deformation)["energy"][0]))
            numeric[a, b] = (energies[0] - energies[1]) / (2 * h) / volume
    stress = np.asarray(ref["stress"][0])
    assert np.max(np.abs(stress)) > 1e-4
    np.testing.assert_allclose(stress, numeric, rtol=0.0, atol=1e-8 * max(1.0, np.max(np.abs(stress))))
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)
    np.testing.assert_allclose(ref["virial"][0], -volume * stress, atol=1e-10)


def test_stress_sign_compressed_repulsive_lattice_has_positive_pressure():
    """Pure ZBL (fresh model: zero network energy) in a compressed simple-cubic lattice: σ < 0, P > 0.

    E(a) = ½ Σ_{n≠0} e_ZBL(|n| a) decreases as the lattice expands, so ∂E/∂ε_aa < 0.
    """
    model = PhysNet(features=8, max_degree=1, num_iterations=2, num_basis_functions=8, cutoff=3.0,
                    max_atomic_number=9, charges=False, zbl=True, n_res=1)
    params = cast_params(init_params(model, 0), np.float64)
    cell = np.eye(3) * 1.2
    out = predict_periodic(model, params, [6], np.zeros((1, 3)), cell)
    assert out["repulsion"] > 0 and out["energy"] == pytest.approx(out["repulsion"], abs=1e-12)
    pressure = -np.trace(out["stress"]) / 3
    assert np.all(np.diag(out["stress"]) < 0) and pressure > 0
    expanded = predict_periodic(model, params, [6], np.zeros((1, 3)), cell * 1.001)
    assert expanded["energy"] < out["energy"]


def test_predict_periodic_judges_the_distances_to_periodic_images(setup):
    """Methanol in a cell that puts an image of its hydroxyl H 0.8 Å from its C: a C-H pair shorter than any in the
    (hand-made) training record, which exists only with the cell."""
    model, params, _ = setup
    z = np.array([6, 8, 1, 1, 1, 1])
    r = np.array([[0.0, 0.0, 0.0], [1.43, 0.0, 0.0], [-0.36, 1.03, 0.0], [-0.36, -0.51, 0.89],
                  [-0.36, -0.51, -0.89], [1.75, 0.0, 0.9]])
    cell = np.array([[2.55, 0.0, 0.9], [0.0, 20.0, 0.0], [0.0, 0.0, 20.0]])
    record = TrainingRecord(distances=DistanceDomain(5.0, {(1, 6): 1.0}, {}))
    with pytest.warns(PhysNetInputWarning, match=r"atoms 0 \(C\) and 5 \(H\) are 0.8 Å apart; the training data's "
                                                 r"shortest C-H distance was 1 Å"):
        predict_periodic(model, params, z, r, cell, training_record=record)
