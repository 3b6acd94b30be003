"""First-pass messages of a higher degree than the features (``message_degree`` L_A > ``max_degree``).

The first pass's edge harmonics and aggregated messages go up to L_A, the product basis
couples them, and the features handed to the refinement keep ``max_degree``. Checked:
the parameter tree (which layers grow, which keep their size), that the highest degree
reaches the energy, finite-difference forces, rotation/reflection/permutation invariance
(the degree-L_A harmonics must rotate correctly), edge chunking, and checkpoints.
"""

import jax
import numpy as np
import pytest

from physnetjax import PhysNet, init_params

from test_model import (assert_checkpoint_round_trip, assert_forces_equal_finite_differences,
                        assert_rotation_and_permutation_invariant, setup_for)

SETTINGS = dict(max_degree=1, message_degree=2, correlation=3)


def parameter_shapes(**settings):
    """The parameter tree's shapes of a small model (traced, not compiled)."""
    model = PhysNet(features=4, max_degree=1, num_iterations=2, n_res=1, num_basis_functions=5, cutoff=4.0,
                    **settings)
    return jax.tree_util.tree_map(np.shape, jax.eval_shape(lambda: init_params(model))["params"])


def test_higher_message_degree_grows_the_first_messages_not_the_features():
    plain = parameter_shapes(correlation=3)
    assert parameter_shapes(correlation=3, message_degree=1) == plain  # L_A = max_degree: PhysNet's tree
    grown = parameter_shapes(correlation=3, message_degree=2)
    # first pass: filter (harmonics of degree 2) ⊗ embedding (degree 0) → messages of degree 2, whose
    # products keep degree 2 until the last, truncated to the features' degree 1
    assert set(grown["MessagePass_0"]["filter"]) == {"0+", "1-", "2+"}
    assert grown["MessagePass_0"]["tensor"]["kernel"] == (1, 3, 1, 1, 1, 3, 4)
    assert grown["ProductBasis_0"]["product_2"]["kernel"] == (1, 3, 1, 3, 1, 3, 4)
    assert grown["ProductBasis_0"]["product_3"]["kernel"] == (1, 3, 1, 3, 1, 2, 4)
    # everything else (later passes, embedding, refinement, heads) keeps max_degree's size
    assert {name: value for name, value in grown.items() if name not in ("MessagePass_0", "ProductBasis_0")} == \
        {name: value for name, value in plain.items() if name not in ("MessagePass_0", "ProductBasis_0")}
    with pytest.raises(ValueError, match="message_degree must be at least max_degree = 1 when given, received 0"):
        parameter_shapes(message_degree=0, correlation=3)
    with pytest.raises(ValueError, match="message_degree 2 > max_degree 1 needs correlation >= 2"):
        parameter_shapes(message_degree=2)


def test_the_highest_message_degree_reaches_the_energy(molecules):
    """Zeroing the degree-2 filter kernels changes the energy: the l = 2 messages are used."""
    setup = setup_for(True, True, **SETTINGS)
    z, r = molecules["base_a"]
    params = jax.tree_util.tree_map(lambda x: x, setup.params)
    kernel = params["params"]["MessagePass_0"]["filter"]["2+"]["kernel"]
    params["params"]["MessagePass_0"]["filter"]["2+"]["kernel"] = 0.0 * kernel
    with_l2, without_l2 = setup.run(z, r), setup.apply(params, setup.batch(z, r))
    assert abs(float(with_l2["energy"][0]) - float(without_l2["energy"][0])) > 1e-3


@pytest.mark.parametrize("correlation", [2, 3])
def test_forces_with_higher_message_degree_equal_finite_differences(molecules, correlation):
    """ν = 3 shares the other tests' setup; ν = 2 truncates the degree-2 messages in its last product."""
    settings = {**SETTINGS, "correlation": correlation}
    assert_forces_equal_finite_differences(setup_for(True, True, **settings), *molecules["base_a"])


@pytest.mark.parametrize("reflect", [False, True])
def test_higher_message_degree_keeps_rotation_reflection_and_permutation_invariance(molecules, reflect):
    assert_rotation_and_permutation_invariant(setup_for(True, True, **SETTINGS), *molecules["base_a"], 5, reflect)


def test_edge_chunks_give_the_same_model_with_higher_message_degree(molecules):
    whole, chunked = setup_for(True, True, **SETTINGS), setup_for(True, True, edge_chunk_size=7, **SETTINGS)
    z, r = molecules["ethanol"]
    a, b = whole.run(z, r), chunked.apply(whole.params, chunked.batch(z, r))
    np.testing.assert_allclose(float(b["energy"][0]), float(a["energy"][0]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(b["forces"]), np.asarray(a["forces"]), atol=1e-11)


def test_checkpoint_keeps_the_message_degree(tmp_path, molecules):
    setup = setup_for(True, True, **SETTINGS)
    assert assert_checkpoint_round_trip(setup, tmp_path / "model", *molecules["co2"]).message_degree == 2
    config = setup.model.config()
    del config["message_degree"]  # written before the option
    assert PhysNet.from_config(config).message_degree is None
