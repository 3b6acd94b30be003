"""ScalarMessagePass (PhysNet's last iteration) against e3x's MessagePass(max_degree=0).

The sparse tensor product must be a drop-in replacement: identical parameter trees and
initial values (same names, shapes, initialisers), and the same output and gradients
up to float rounding, for every input/basis degree.
"""

import e3x
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.model import ScalarMessagePass


def layers_and_inputs(degree: int, dtype):
    keys = jax.random.split(jax.random.PRNGKey(degree), 4)
    num_atoms, num_edges, features = 7, 30, 5
    x = jax.random.normal(keys[0], (num_atoms, 1, (degree + 1) ** 2, features), dtype)
    basis = jax.random.normal(keys[1], (num_edges, 1, (degree + 1) ** 2, 6), dtype)
    src = jax.random.randint(keys[2], (num_edges,), 0, num_atoms)
    dst = jnp.sort(jax.random.randint(keys[3], (num_edges,), 0, num_atoms))
    kwargs = dict(dst_idx=dst, src_idx=src, num_segments=num_atoms)
    reference = e3x.nn.MessagePass(max_degree=0, include_pseudotensors=False, dtype=dtype, param_dtype=dtype)
    fast = ScalarMessagePass(dtype=dtype, param_dtype=dtype)
    return reference, fast, x, basis, kwargs


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_same_parameters_as_e3x(degree):
    reference, fast, x, basis, kwargs = layers_and_inputs(degree, jnp.float32)
    expected = reference.init(jax.random.PRNGKey(3), x, basis, **kwargs)
    received = fast.init(jax.random.PRNGKey(3), x, basis, **kwargs)
    assert jax.tree_util.tree_structure(expected) == jax.tree_util.tree_structure(received)
    for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(received)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_same_output_and_gradients_as_e3x(degree):
    reference, fast, x, basis, kwargs = layers_and_inputs(degree, jnp.float64)
    params = reference.init(jax.random.PRNGKey(3), x, basis, **kwargs)

    def summed(layer):
        return lambda p, x, b: jnp.sum(jnp.sin(layer.apply(p, x, b, **kwargs)))

    np.testing.assert_allclose(fast.apply(params, x, basis, **kwargs), reference.apply(params, x, basis, **kwargs),
                               rtol=1e-12, atol=1e-12)
    grads = jax.grad(summed(fast), argnums=(0, 1, 2))(params, x, basis)
    expected = jax.grad(summed(reference), argnums=(0, 1, 2))(params, x, basis)
    for a, b in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def test_rejects_pseudotensor_inputs():
    reference, fast, x, basis, kwargs = layers_and_inputs(1, jnp.float32)
    with pytest.raises(ValueError, match="pseudotensors"):
        fast.init(jax.random.PRNGKey(0), jnp.concatenate([x, x], axis=1), basis, **kwargs)
