"""The optional radial perceptron in the message-pass filter (``radial_mlp=H``).

Checked against its formula (float64, by hand), and the model with it against finite
differences, rotations, reflections, permutations and a neighbour crossing the cutoff;
off (None), the model is PhysNet as published with e3x's parameter tree.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax import PhysNet, init_params
from physnetjax.message_pass import RadialFilter, _degree_of_component

from test_model import (assert_checkpoint_round_trip, assert_forces_equal_finite_differences,
                        assert_rotation_and_permutation_invariant, scan_energy_forces, setup_for)


def test_radial_filter_with_perceptron_equals_its_formula():
    """f[p, c, :] = Y_c(p) · (silu(silu(g W₀) W₁) W_{deg c}), and 0 where g = 0."""
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    angular = jax.random.normal(keys[0], (6, 4), jnp.float64)
    radial = jax.random.normal(keys[1], (6, 5), jnp.float64).at[5].set(0.0)
    layer = RadialFilter(features=3, hidden_features=7, param_dtype=jnp.float64)
    params = layer.init(jax.random.PRNGKey(0), angular, radial)["params"]
    assert params["radial_mlp_0"]["kernel"].shape == (5, 7) and params["radial_mlp_1"]["kernel"].shape == (7, 7)
    assert params["0+"]["kernel"].shape == (7, 3) and params["1-"]["kernel"].shape == (7, 3)
    received = np.asarray(layer.apply({"params": params}, angular, radial))[:, 0]

    def silu(x):
        return x / (1.0 + np.exp(-x))

    hidden = silu(silu(np.asarray(radial) @ np.asarray(params["radial_mlp_0"]["kernel"]))
                  @ np.asarray(params["radial_mlp_1"]["kernel"]))
    kernels = {0: params["0+"]["kernel"], 1: params["1-"]["kernel"]}
    expected = np.stack([np.asarray(angular)[:, c, None] * (hidden @ np.asarray(kernels[degree]))
                         for c, degree in enumerate(_degree_of_component(4))], axis=1)
    np.testing.assert_allclose(received, expected, rtol=1e-12, atol=1e-14)
    assert np.all(received[5] == 0.0) and np.max(np.abs(received[:5])) > 1e-2


def test_radial_mlp_adds_only_its_kernels_and_off_is_physnet():
    kwargs = dict(features=4, max_degree=1, num_iterations=2, n_res=1, num_basis_functions=5, cutoff=4.0)
    plain = init_params(PhysNet(**kwargs), 0)
    assert jax.tree_util.tree_structure(init_params(PhysNet(radial_mlp=None, **kwargs), 0)) == \
        jax.tree_util.tree_structure(plain)
    with_mlp = init_params(PhysNet(radial_mlp=6, **kwargs), 0)
    assert set(with_mlp["params"]) == set(plain["params"])
    for name in ("MessagePass_0", "MessagePass_1"):
        added = set(with_mlp["params"][name]["filter"]) - set(plain["params"][name]["filter"])
        assert added == {"radial_mlp_0", "radial_mlp_1"}
        assert with_mlp["params"][name]["filter"]["radial_mlp_0"]["kernel"].shape == (5, 6)
        assert with_mlp["params"][name]["filter"]["0+"]["kernel"].shape == (6, 4)
    with pytest.raises(ValueError, match="radial_mlp must be at least 1 when given, received 0"):
        init_params(PhysNet(radial_mlp=0, **kwargs))


@pytest.mark.parametrize("correlation", [pytest.param(1, marks=pytest.mark.slow), 3])  # 3 runs the same MLP
def test_forces_with_radial_mlp_equal_finite_differences(molecules, correlation):
    assert_forces_equal_finite_differences(setup_for(True, True, correlation=correlation, radial_mlp=6),
                                           *molecules["base_a"])


@pytest.mark.parametrize("reflect", [False, True])
def test_radial_mlp_keeps_rotation_reflection_and_permutation_invariance(molecules, reflect):
    assert_rotation_and_permutation_invariant(setup_for(True, True, radial_mlp=6), *molecules["base_a"], 11, reflect)


def test_radial_mlp_is_continuous_across_the_cutoff():
    """A neighbour moved through the message-pass cutoff: E and F change by O(delta), and the slope is the force."""
    setup = setup_for(False, False, radial_mlp=6)
    z = np.array([8, 1, 6], dtype=np.int32)
    r = np.array([[0.0, 0.0, 0.0], [0.0, 0.96, 0.0], [0.0, 0.0, 0.0]])
    delta = 1e-7
    energies, forces = scan_energy_forces(setup, z, r, 2, np.array([1.0, 0.0, 0.0]),
                                          [setup.model.cutoff - delta, setup.model.cutoff + delta], 0)
    assert abs(energies[1] - energies[0]) < 1e-5
    assert np.max(np.abs(forces[1] - forces[0])) < 1e-4
    assert -(energies[1] - energies[0]) / (2 * delta) == pytest.approx(forces.mean(axis=0)[0], abs=1e-5)
    inside, _ = scan_energy_forces(setup, z, r, 2, np.array([1.0, 0.0, 0.0]), [2.0, 2.5], 0)
    assert abs(inside[1] - inside[0]) > 1e-4  # the neighbour does interact inside the cutoff


def test_checkpoint_keeps_the_radial_mlp(tmp_path, molecules):
    setup = setup_for(True, True, radial_mlp=6)
    assert assert_checkpoint_round_trip(setup, tmp_path / "model", *molecules["co2"]).radial_mlp == 6
    config = setup.model.config()
    del config["radial_mlp"]  # written before the option
    assert PhysNet.from_config(config).radial_mlp is None
