"""Explicit-polynomial spherical harmonics: orthogonality by quadrature, e3x's values and derivatives.

Float64 throughout (conftest turns x64 on for the suite).
"""

import e3x
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax.spherical_harmonics import cartesian_order, spherical_harmonic_terms, spherical_harmonics


def random_unit_vectors(count, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(count, 3))
    vectors = np.concatenate([vectors, np.eye(3), -np.eye(3)])
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def test_racah_orthogonality_by_exact_quadrature():
    """∫ Y_l^m Y_l'^m' dΩ = 4π/(2l+1) δ_ll' δ_mm' (Racah), with a quadrature exact for degree ≤ 13."""
    max_degree = 6
    z_nodes, z_weights = np.polynomial.legendre.leggauss(8)  # exact in z up to degree 15
    phi = 2 * np.pi * np.arange(16) / 16  # exact for trigonometric degree < 16
    z, phi = np.meshgrid(z_nodes, phi, indexing="ij")
    weights = np.repeat(z_weights[:, None], 16, axis=1) * (2 * np.pi / 16)
    s = np.sqrt(1 - z**2)
    points = np.stack([s * np.cos(phi), s * np.sin(phi), z], axis=-1).reshape(-1, 3)
    y = np.asarray(spherical_harmonics(jnp.asarray(points), max_degree))
    gram = np.einsum("pa,pb,p->ab", y, y, weights.reshape(-1))
    degrees = np.concatenate([[degree] * (2 * degree + 1) for degree in range(max_degree + 1)])
    np.testing.assert_allclose(gram, np.diag(4 * np.pi / (2 * degrees + 1)), atol=1e-12)


def test_low_degrees_are_the_textbook_polynomials():
    u = random_unit_vectors(20)
    x, y, z = u.T
    y2 = np.asarray(spherical_harmonics(jnp.asarray(u), 2))
    expected = np.stack([np.ones_like(x), x, y, z,  # l = 0, 1 (Cartesian order: m = 1, −1, 0)
                         np.sqrt(3) / 2 * (x**2 - y**2), np.sqrt(3) * x * y,  # l = 2: m = 2, −2
                         np.sqrt(3) * x * z, np.sqrt(3) * y * z, (3 * z**2 - 1) / 2], axis=-1)  # m = 1, −1, 0
    np.testing.assert_allclose(y2, expected, atol=1e-14)
    assert cartesian_order(2) == [2, -2, 1, -1, 0]


@pytest.mark.parametrize("max_degree", [0, *(pytest.param(d, marks=pytest.mark.slow) for d in (1, 3, 4)), 2, 6])
def test_equals_e3x_values_and_gradients(max_degree):
    displacements = jnp.asarray(random_unit_vectors(64) * np.random.default_rng(1).uniform(0.5, 3.0, size=(70, 1)))

    def ours(d):
        return spherical_harmonics(d / jnp.linalg.norm(d, axis=-1, keepdims=True), max_degree)

    def theirs(d):
        return e3x.so3.spherical_harmonics(d, max_degree, cartesian_order=True, normalization="racah")

    np.testing.assert_allclose(ours(displacements), theirs(displacements), atol=1e-13)
    weights = jnp.asarray(np.random.default_rng(2).normal(size=((max_degree + 1) ** 2,)))
    grad_ours = jax.grad(lambda d: jnp.sum(ours(d) @ weights))(displacements)
    grad_theirs = jax.grad(lambda d: jnp.sum(theirs(d) @ weights))(displacements)
    assert np.all(np.isfinite(grad_ours))
    np.testing.assert_allclose(grad_ours, grad_theirs, atol=1e-12)


def test_terms_are_cached_and_checked():
    assert spherical_harmonic_terms(3) is spherical_harmonic_terms(3)
    assert len(spherical_harmonic_terms(3)) == 16
    with pytest.raises(ValueError, match="max_degree must be >= 0, received -1"):
        spherical_harmonic_terms(-1)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\), received \(4, 2\)"):
        spherical_harmonics(jnp.zeros((4, 2)), 1)
