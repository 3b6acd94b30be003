"""SparseMessagePass / SparseTensor / edge_basis_factors against e3x's MessagePass / Tensor / basis.

The factored filter and the sparse Clebsch–Gordan tensor product must be a drop-in replacement for every
layer PhysNet builds (input degree 0 or L, basis degree L, output degree L or 0):
identical parameter trees and initial values (same names, shapes, initialisers), and
the same output and gradients up to float rounding.
"""

import functools

import e3x
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.message_pass import (
    SparseMessagePass,
    SparseTensor,
    chebyshev_polynomials,
    edge_basis_factors,
    sparse_coupling_paths,
)

# (input degree, basis degree, output degree or None = e3x's default max of the two)
CASES = [pytest.param(0, 1, None, marks=pytest.mark.slow), (0, 3, None), (1, 1, None), (2, 2, None),
         pytest.param(3, 3, None, marks=pytest.mark.slow), pytest.param(1, 1, 0, marks=pytest.mark.slow), (3, 3, 0),
         (1, 2, 2)]
"""(input degree, basis degree, max degree): the slow ones repeat a default case's path at another size
((0, 1) as (0, 3), (3, 3) as (2, 2), the truncation (1, 1, 0) as (3, 3, 0))."""


def layers_and_inputs(degree, basis_degree, max_degree, dtype):
    keys = jax.random.split(jax.random.PRNGKey(10 * degree + basis_degree), 4)
    num_atoms, num_edges, features = 7, 30, 5
    x = jax.random.normal(keys[0], (num_atoms, 1, (degree + 1) ** 2, features), dtype)
    angular = jax.random.normal(keys[1], (num_edges, (basis_degree + 1) ** 2), dtype)
    radial = jax.random.normal(jax.random.fold_in(keys[1], 1), (num_edges, 6), dtype)
    basis = angular[:, None, :, None] * radial[:, None, None, :]  # e3x's basis is this outer product
    src = jax.random.randint(keys[2], (num_edges,), 0, num_atoms)
    dst = jax.random.randint(keys[3], (num_edges,), 0, num_atoms)
    kwargs = dict(dst_idx=dst, src_idx=src, num_segments=num_atoms)
    reference = e3x.nn.MessagePass(max_degree=max_degree, include_pseudotensors=False, dtype=dtype,
                                   param_dtype=dtype)
    fast = SparseMessagePass(max_degree=max_degree, dtype=dtype, param_dtype=dtype)
    return reference, fast, x, (basis, (angular, radial)), kwargs


@pytest.mark.parametrize("degree,basis_degree,max_degree", CASES)
def test_same_parameters_outputs_and_gradients_as_e3x(degree, basis_degree, max_degree):
    reference, fast, x, (basis, factors), kwargs = layers_and_inputs(degree, basis_degree, max_degree, jnp.float64)
    init = jax.jit(lambda layer, key, b: layer.init(key, x, b, **kwargs), static_argnums=0)
    params = init(reference, jax.random.PRNGKey(3), basis)
    received_params = init(fast, jax.random.PRNGKey(3), factors)
    assert jax.tree_util.tree_structure(received_params) == jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(received_params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    def summed(layer):
        return lambda p, x, b: jnp.sum(jnp.sin(layer.apply(p, x, b, **kwargs)))

    apply = jax.jit(lambda layer, p, b: layer.apply(p, x, b, **kwargs), static_argnums=0)
    expected = apply(reference, params, basis)
    received = apply(fast, params, factors)
    assert received.shape == expected.shape
    assert np.max(np.abs(expected)) > 0.1
    np.testing.assert_allclose(received, expected, rtol=1e-12, atol=1e-12)
    # Gradients w.r.t. parameters, features and the basis factors (through the outer product for e3x).
    def outer(factors):
        return factors[0][:, None, :, None] * factors[1][:, None, None, :]

    gradients = jax.jit(lambda layer, p, f, to_basis: jax.grad(
        lambda p, x, f: summed(layer)(p, x, to_basis(f)), argnums=(0, 1, 2))(p, x, f), static_argnums=(0, 3))
    for a, b in zip(jax.tree_util.tree_leaves(gradients(fast, params, factors, lambda f: f)),
                    jax.tree_util.tree_leaves(gradients(reference, params, factors, outer))):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-12)


def brute_force_tensor(kernel, a, b, max_degree3):
    """Textbook double loop: y[n, f] = Σ_{l, m} C[i, j, n] K[deg i, deg j, deg n, f] a[i, f] b[j, f],
    parity-forbidden paths (deg i + deg j + deg n odd) left out."""
    cg = np.asarray(e3x.so3.clebsch_gordan(round(a.shape[0] ** 0.5) - 1, round(b.shape[0] ** 0.5) - 1, max_degree3))

    def deg(k):
        return int(np.floor(np.sqrt(k) + 1e-9))

    y = np.zeros((cg.shape[2], a.shape[1]))
    for n in range(cg.shape[2]):
        for i in range(cg.shape[0]):
            for j in range(cg.shape[1]):
                if (deg(i) + deg(j) + deg(n)) % 2 == 0:
                    y[n] += cg[i, j, n] * kernel[0, deg(i), 0, deg(j), 0, deg(n)] * a[i] * b[j]
    return y


@pytest.mark.parametrize("degrees", [(2, 2, 2), (3, 0, 3), (1, 2, 3), (1, 1, 1), (2, 1, 2)])
def test_sparse_tensor_matches_brute_force_sum(degrees):
    l1, l2, l3 = degrees
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    a = np.asarray(jax.random.normal(keys[0], (1, (l1 + 1) ** 2, 4), jnp.float64))
    b = np.asarray(jax.random.normal(keys[1], (1, (l2 + 1) ** 2, 4), jnp.float64))
    layer = SparseTensor(max_degree=l3, param_dtype=jnp.float64)
    params = layer.init(jax.random.PRNGKey(0), a, b)
    received = layer.apply(params, a, b)[0]
    expected = brute_force_tensor(np.asarray(params["params"]["kernel"]), a[0], b[0], l3)
    np.testing.assert_allclose(received, expected, rtol=1e-12, atol=1e-13)


def test_sparse_paths_drop_zero_and_parity_forbidden_terms():
    first, _, coefficient, _ = sparse_coupling_paths(3, 0, 3)
    assert first.shape == (16, 1)  # one path per output component: a scalar times each input component
    np.testing.assert_array_equal(first[:, 0], np.arange(16))
    _, _, coefficient, _ = sparse_coupling_paths(1, 1, 1)
    assert np.count_nonzero(coefficient) < 16  # parity removes the 1 ⊗ 1 → 1 paths (the cross product)


def test_rejects_pseudotensor_inputs():
    _, fast, x, (_, factors), kwargs = layers_and_inputs(1, 1, 0, jnp.float32)
    with pytest.raises(ValueError, match="pseudotensors"):
        fast.init(jax.random.PRNGKey(0), jnp.concatenate([x, x], axis=1), factors, **kwargs)


@pytest.mark.parametrize("max_degree", [0, 2, 3])
def test_basis_factors_multiply_to_e3x_basis(max_degree):
    displacements = jax.random.normal(jax.random.PRNGKey(4), (40, 3), jnp.float64) * 2.5
    mask = jnp.arange(40) % 7 != 3
    angular, radial = edge_basis_factors(displacements, mask, num=8, max_degree=max_degree, cutoff=4.0)
    expected = e3x.nn.basis(displacements, num=8, max_degree=max_degree, radial_fn=e3x.nn.exponential_chebyshev,
                            cutoff_fn=functools.partial(e3x.nn.smooth_cutoff, cutoff=4.0))
    expected = jnp.where(mask[:, None, None, None], expected, 0.0)
    assert float(jnp.max(jnp.abs(expected))) > 0.1 and bool(jnp.any(jnp.linalg.norm(displacements, axis=-1) > 4.0))
    # The Chebyshev recurrence's forward error is ≲ k² ε ≈ 64 × 2.2e-16 for k ≤ 7.
    np.testing.assert_allclose(angular[:, None, :, None] * radial[:, None, None, :], expected, rtol=0, atol=2e-14)


def test_chebyshev_recurrence_equals_trigonometric_definition():
    x = jnp.linspace(-1.0, 1.0, 201, dtype=jnp.float64)
    received = chebyshev_polynomials(x, 16)
    expected = jnp.cos(jnp.arange(16) * jnp.arccos(x)[:, None])
    np.testing.assert_allclose(received, expected, rtol=0, atol=16**2 * 2.3e-16)
    # T_k'(x) = k U_{k-1}(x); at x = 1 this is k², where arccos-based derivatives are singular.
    slopes = jax.vmap(jax.jacfwd(lambda x: chebyshev_polynomials(x, 16)))(jnp.array([1.0, -1.0]))
    np.testing.assert_allclose(slopes[0], np.arange(16) ** 2, rtol=1e-13)
    np.testing.assert_allclose(slopes[1], (-1.0) ** (np.arange(16) + 1) * np.arange(16) ** 2, rtol=1e-13)
