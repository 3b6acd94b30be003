"""The PhysNet cutoff polynomial (a C² switch from 1 to 0)."""

from __future__ import annotations

import jax.numpy as jnp


def cutoff_polynomial(x):
    r"""PhysNet's cutoff polynomial φ(x), a C² switch from 1 (x = 0) to 0 (x ≥ 1).

    .. math::
        φ(x) = 1 - 6x^5 + 15x^4 - 10x^3 \quad (0 \le x < 1), \qquad φ(x) = 0 \quad (x \ge 1)

    φ(0) = 1 and φ'(0) = φ''(0) = 0; φ(1) = 0 and φ'(1) = φ''(1) = 0, so a term
    multiplied by φ(r/r_c) goes to zero with zero value, slope and curvature at r_c.

    Args:
      x: dimensionless argument, any shape (usually r / r_cut with r ≥ 0).

    Returns:
      φ(x), same shape and dtype as ``x``.
    """
    inside = x < 1.0
    xs = jnp.where(inside, x, 0.0)
    x3 = xs * xs * xs
    value = 1.0 - 6.0 * x3 * xs * xs + 15.0 * x3 * xs - 10.0 * x3
    return jnp.where(inside, value, 0.0)


def cutoff_polynomial_slope(x):
    r"""dφ/dx of :func:`cutoff_polynomial`: −30 x² (1 − x)² for 0 ≤ x < 1, else 0; same shape as ``x``."""
    inside = (x >= 0.0) & (x < 1.0)
    xs = jnp.where(inside, x, 0.0)
    return jnp.where(inside, -30.0 * xs * xs * (1.0 - xs) * (1.0 - xs), 0.0)
