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

from physnetjax import PhysNet, init_params
from physnetjax.product_basis import ProductBasis

from test_message_pass import brute_force_tensor
from test_model import (assert_checkpoint_round_trip, assert_forces_equal_finite_differences,
                        assert_rotation_and_permutation_invariant, setup_for)


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


@pytest.mark.parametrize("correlation,molecule", [(2, "base_a"), (3, "base_a"), (3, "ethanol"),
                                                  pytest.param(2, "ethanol", marks=pytest.mark.slow)])
def test_forces_with_products_equal_finite_differences(molecules, correlation, molecule):
    assert_forces_equal_finite_differences(setup_for(True, True, correlation=correlation), *molecules[molecule])


@pytest.mark.parametrize("reflect", [False, True])
def test_products_keep_rotation_reflection_and_permutation_invariance(molecules, reflect):
    assert_rotation_and_permutation_invariant(setup_for(True, True, correlation=3), *molecules["base_a"], 5, reflect)


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
    model = assert_checkpoint_round_trip(setup_for(True, True, correlation=2), tmp_path / "model", *molecules["co2"])
    assert model.correlation == 2
