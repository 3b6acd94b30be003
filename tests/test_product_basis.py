"""The optional product basis (``correlation > 1``): its formula, and the model's physics with it.

The layer is checked against a brute-force Clebsch–Gordan double loop and e3x's own
``Dense``; the model with products against finite differences, rotations, reflections
and permutations (float64, as every physics check). ``correlation = 1`` must leave the
model exactly PhysNet: no new parameters, so old checkpoints load unchanged.
"""

import e3x
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax import PhysNet, init_params, load_checkpoint, save_checkpoint
from physnetjax.product_basis import ProductBasis

from test_message_pass import brute_force_tensor
from test_model import fd_error, random_rotation, setup_for


@pytest.mark.parametrize("correlation,input_degree,max_degree", [(2, 2, 2), (3, 2, 0), (3, 1, 1)])
def test_product_basis_equals_its_formula(correlation, input_degree, max_degree):
    """Σ_ν B^(ν) with B^(1) = A, B^(ν) = tensor(Dense(B^(ν−1)), A), summed and truncated, atom by atom."""
    features = 3
    a = jax.random.normal(jax.random.PRNGKey(2), (4, 1, (input_degree + 1) ** 2, features), jnp.float64)
    layer = ProductBasis(correlation, max_degree=max_degree, param_dtype=jnp.float64)
    params = layer.init(jax.random.PRNGKey(0), a)["params"]
    received = np.asarray(layer.apply({"params": params}, a))
    out_components = (max_degree + 1) ** 2
    assert received.shape == (4, 1, out_components, features)
    dense = e3x.nn.Dense(features, use_bias=False, param_dtype=jnp.float64)
    for atom in range(a.shape[0]):
        messages = np.asarray(a[atom, 0])
        expected = messages[:out_components].copy()
        product = messages
        for order in range(2, correlation + 1):
            degree = max_degree if order == correlation else input_degree
            mixed = np.asarray(dense.apply({"params": params[f"mix_{order}"]}, product[None])[0])
            product = brute_force_tensor(np.asarray(params[f"product_{order}"]["kernel"]), mixed, messages, degree)
            expected += product[:out_components]
        assert np.max(np.abs(expected - messages[:out_components])) > 1e-2  # the products contribute
        np.testing.assert_allclose(received[atom, 0], expected, rtol=1e-12, atol=1e-13)


def test_product_basis_rejects_bad_settings():
    a = jnp.ones((2, 1, 4, 3))
    with pytest.raises(ValueError, match="correlation >= 2"):
        ProductBasis(1, max_degree=0).init(jax.random.PRNGKey(0), a)
    with pytest.raises(ValueError, match="exceeds the input's 1"):
        ProductBasis(2, max_degree=2).init(jax.random.PRNGKey(0), a)
    with pytest.raises(ValueError, match="correlation must be at least 1"):
        init_params(PhysNet(features=4, max_degree=1, correlation=0))


@pytest.mark.parametrize("correlation", [2, 3])
@pytest.mark.parametrize("molecule", ["ethanol", "base_a"])
def test_forces_with_products_equal_finite_differences(molecules, correlation, molecule):
    setup = setup_for(True, True, correlation=correlation)
    z, r = molecules[molecule]
    out = setup.run(z, r)
    forces = np.asarray(out["forces"][: len(z)])
    assert np.max(np.abs(forces)) > 1e-2
    assert fd_error(setup, z, r, forces) <= 1e-6


@pytest.mark.parametrize("reflect", [False, True])
def test_products_keep_rotation_reflection_and_permutation_invariance(molecules, reflect):
    setup = setup_for(True, True, correlation=3)
    z, r = molecules["base_a"]
    rot = random_rotation(5, reflect)
    perm = np.random.default_rng(1).permutation(len(z))
    a, b = setup.run(z, r), setup.run(z[perm], (r @ rot.T)[perm])
    assert float(b["energy"][0]) == pytest.approx(float(a["energy"][0]), rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(np.asarray(b["forces"][: len(z)]),
                               (np.asarray(a["forces"][: len(z)]) @ rot.T)[perm], atol=1e-9)
    np.testing.assert_allclose(np.asarray(b["charges"][: len(z)]), np.asarray(a["charges"][: len(z)])[perm],
                               atol=1e-12)


def test_correlation_one_is_physnet_and_higher_orders_add_only_product_layers():
    kwargs = dict(features=4, max_degree=1, num_iterations=2, n_res=1, num_basis_functions=4, cutoff=4.0)
    plain = init_params(PhysNet(**kwargs), 0)
    default = init_params(PhysNet(correlation=1, **kwargs), 0)
    with_products = init_params(PhysNet(correlation=3, **kwargs), 0)
    assert jax.tree_util.tree_structure(default) == jax.tree_util.tree_structure(plain)
    assert not any("ProductBasis" in jax.tree_util.keystr(path)
                   for path, _ in jax.tree_util.tree_leaves_with_path(plain))
    added = set(with_products["params"]) - set(plain["params"])
    assert added == {"ProductBasis_0", "ProductBasis_1"}
    assert set(with_products["params"]["ProductBasis_1"]) == {"mix_2", "product_2", "mix_3", "product_3"}
    # Only the last message pass changes shape: it keeps its full degree for the products.
    for name in plain["params"]:
        same = jax.tree_util.tree_map(lambda x, y: x.shape == y.shape, plain["params"][name],
                                      with_products["params"][name])
        assert all(jax.tree_util.tree_leaves(same)) == (name != "MessagePass_1"), name


def test_checkpoint_keeps_the_correlation(tmp_path, molecules):
    setup = setup_for(True, True, correlation=2)
    path = save_checkpoint(tmp_path / "model", setup.model, setup.params, {})
    model, params, _ = load_checkpoint(path)
    assert model.correlation == 2 and model == setup.model
    z, r = molecules["co2"]
    before = setup.run(z, r)
    after = setup.apply(params, setup.batch(z, r))
    np.testing.assert_array_equal(np.asarray(after["energy"]), np.asarray(before["energy"]))
    np.testing.assert_array_equal(np.asarray(after["forces"]), np.asarray(before["forces"]))
