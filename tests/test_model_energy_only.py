"""PhysNet(compute_forces=False): the energy-only call returns the default call's outputs exactly, without forces.

The reference is the default call itself (forces by ``value_and_grad``): the energy-only
path must give bit-identical energies, charges, dipoles and pair terms (same code, no
gradient), on a padded batch of two molecules with charges, ZBL and a net charge.
"""

import jax
import numpy as np
import pytest

from physnetjax import PhysNet
from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff
from physnetjax.spectra.molecule import molecule_functions

from conftest import perturbed_params

OUTPUTS = ("energy", "nn_energy", "atomic_energies", "charges", "raw_charges", "electrostatics", "repulsion",
           "dispersion", "dipoles", "sum_charges", "state")


@pytest.fixture(scope="module")
def charged_batch(molecules):
    """(model, float64 params, padded batch of methanol (Q = +1) and CO2)."""
    model = PhysNet(features=8, max_degree=1, num_iterations=1, num_basis_functions=8, cutoff=4.0,
                    max_atomic_number=8, charges=True, zbl=True)
    (z1, r1), (z2, r2) = molecules["methanol"], molecules["co2"]
    batch = batch_molecules([z1, z2], [r1, r2], model.cutoff, total_charges=[1.0, 0.0],
                            pair_cutoff=model_pair_cutoff(model), num_atoms=11, num_edges=48,
                            num_molecules=3, dtype=np.float64)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), z1, r1, *np.nonzero(~np.eye(len(z1), dtype=bool)))
    params = perturbed_params(jax.tree_util.tree_map(lambda p: p.astype(np.float64), params))
    return model, params, batch


def test_energy_only_outputs_equal_the_full_call_exactly(charged_batch):
    model, params, batch = charged_batch
    full = apply_batch(model, params, batch)
    energy_only = apply_batch(model, params, batch, compute_forces=False)
    assert energy_only["forces"] is None and "stress" not in energy_only
    assert full["forces"] is not None and np.abs(np.asarray(full["forces"])).max() > 0
    assert np.abs(np.asarray(full["charges"])).max() > 0 and np.abs(np.asarray(full["electrostatics"])).max() > 0
    for key in OUTPUTS:
        np.testing.assert_array_equal(np.asarray(energy_only[key]), np.asarray(full[key]), err_msg=key)
    assert set(energy_only) == set(full)


def test_spectra_functions_use_the_energy_only_call_and_match_the_model(charged_batch, molecules):
    model, params, _ = charged_batch
    z, r = molecules["methanol"]
    functions = molecule_functions(model, z, total_charge=1.0)
    dst, src = np.nonzero(~np.eye(len(z), dtype=bool))
    full = jax.jit(lambda p, x: model.apply(p, z, x, dst, src, total_charges=np.array([1.0])))(params, r)
    energy, dipole, gradient = jax.jit(lambda p, x: (functions.energy(x, p), functions.dipole(x, p),
                                                     jax.grad(functions.energy)(x, p)))(params, r)
    np.testing.assert_allclose(np.asarray(energy), np.asarray(full["energy"][0]), rtol=1e-13, atol=0)
    np.testing.assert_allclose(np.asarray(dipole), np.asarray(full["dipoles"][0]), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(gradient), -np.asarray(full["forces"]), rtol=1e-12, atol=1e-12)
