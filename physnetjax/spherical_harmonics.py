"""Real spherical harmonics of unit vectors as explicit polynomials (Racah normalisation, e3x order).

On the unit sphere the real spherical harmonic Y_l^m is a polynomial of degree l in the
components (x, y, z) of the unit vector (Racah / Schmidt semi-normalisation, no
Condon–Shortley phase, as e3x)::

    Y_l^m  = √2 · Π_l^|m|(z) · A_|m|(x, y)      m < 0
    Y_l^0  =      Π_l^0(z)
    Y_l^m  = √2 · Π_l^m(z)  · B_m(x, y)         m > 0

    A_m(x, y) = Σ_{j=0}^{m} C(m, j) x^j y^{m−j} sin(π (m − j) / 2)
    B_m(x, y) = Σ_{j=0}^{m} C(m, j) x^j y^{m−j} cos(π (m − j) / 2)
    Π_l^m(z)  = √((l − m)! / (l + m)!) Σ_{k=0}^{⌊(l−m)/2⌋} (−1)^k 2^{−l} C(l, k) C(2l − 2k, l)
                · (l − 2k)! / (l − 2k − m)! · z^{l − 2k − m}          (r = 1)

:func:`spherical_harmonic_terms` expands these into (coefficient, monomial) terms once per
degree (float64, exact up to rounding of the square roots); :func:`spherical_harmonics`
evaluates them as a sum of products of powers of x, y and z. The result equals
``e3x.so3.spherical_harmonics(unit, max_degree, r_is_normalized=True,
cartesian_order=True, normalization="racah")`` to float rounding (tested up to degree 6),
but is plain elementwise arithmetic: XLA fuses it into one kernel, where e3x's
gather-and-matmul form costs about twenty small kernels (forward and backward) per call,
which dominates the step of MD on a small molecule.

Components come in e3x's Cartesian order: for each degree l, m = l, −l, l−1, −(l−1), …, 1,
−1, 0 (so degree 1 is (x, y, z)).
"""

from __future__ import annotations

import functools
from math import comb, factorial, sqrt

import jax.numpy as jnp


def cartesian_order(degree: int) -> list[int]:
    """The orders m of degree ``degree`` in e3x's Cartesian order: l, −l, l−1, −(l−1), …, 1, −1, 0."""
    order = []
    for m in range(degree, 0, -1):
        order += [m, -m]
    return order + [0]


@functools.lru_cache(maxsize=None)
def spherical_harmonic_terms(max_degree: int) -> tuple[tuple[tuple[float, tuple[int, int, int]], ...], ...]:
    """Polynomial terms of Y_l^m on the unit sphere, for all components up to ``max_degree``.

    Returns one tuple per component ((L+1)² of them, Cartesian order), each a tuple of
    (coefficient, (a, b, c)) meaning Y = Σ coefficient · x^a y^b z^c; terms with a zero
    coefficient are left out.
    """
    if max_degree < 0:
        raise ValueError(f"max_degree must be >= 0, received {max_degree}")
    components = []
    for degree in range(max_degree + 1):
        for m in cartesian_order(degree):
            order = abs(m)
            scale = sqrt((2 if m else 1) * factorial(degree - order) / factorial(degree + order))
            terms: dict[tuple[int, int, int], float] = {}
            for k in range((degree - order) // 2 + 1):
                z_power = degree - 2 * k - order
                z_coefficient = ((-1) ** k * comb(degree, k) * comb(2 * degree - 2 * k, degree)
                                 * factorial(degree - 2 * k) / factorial(z_power) / 2 ** degree)
                for j in range(order + 1):
                    # sin / cos of π (order − j) / 2 for A (m < 0) / B (m ≥ 0): 0 or ±1, exactly.
                    quarter = (order - j) % 4
                    phase = (0, 1, 0, -1)[quarter] if m < 0 else (1, 0, -1, 0)[quarter]
                    if phase == 0:
                        continue
                    key = (j, order - j, z_power)
                    terms[key] = terms.get(key, 0.0) + scale * z_coefficient * comb(order, j) * phase
            components.append(tuple((value, key) for key, value in sorted(terms.items()) if value != 0.0))
    return tuple(components)


def spherical_harmonics(unit, max_degree: int):
    """Y_l^m(û) for l = 0 … ``max_degree``: shape unit.shape[:-1] + ((L+1)²,), dtype of ``unit``.

    ``unit``: (..., 3) unit vectors (not normalised here; the formula is only the spherical
    harmonic on the unit sphere). Racah normalisation (Y_0^0 = 1, Y_1 = (x, y, z)), e3x's
    Cartesian component order.
    """
    if unit.shape[-1] != 3:
        raise ValueError(f"unit vectors must have shape (..., 3), received {unit.shape}")
    one = jnp.ones_like(unit[..., 0])
    powers = []  # powers[axis][e] = (component axis of unit) ** e
    for axis in range(3):
        axis_powers = [one]
        for _ in range(max_degree):
            axis_powers.append(axis_powers[-1] * unit[..., axis])
        powers.append(axis_powers)
    values = [sum(coefficient * powers[0][a] * powers[1][b] * powers[2][c] for coefficient, (a, b, c) in terms)
              for terms in spherical_harmonic_terms(max_degree)]
    return jnp.stack(values, axis=-1)
