"""Pair terms against textbook formulas evaluated with independent float64 loops."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physnetjax import PhysNet, apply_batch, batch_molecules, init_params
from physnetjax.neighbors import model_pair_cutoff
from physnetjax.physics import (
    corrected_charges,
    coulomb_pair_energy,
    cutoff_polynomial,
    pair_displacements,
    pair_energy_per_molecule,
    safe_pair_distances,
    shielded_coulomb_kernel,
    sum_per_molecule,
    zbl_pair_energy,
)
from physnetjax.physics.switch import cutoff_polynomial_slope

from conftest import perturbed_params

KE = 14.399645351950548  # eV*Angstrom/e^2 (PhysNet)
BOHR = 0.529177210903  # Angstrom (CODATA 2018)
ZBL_C = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_D = (3.19980, 0.94229, 0.40290, 0.20162)


def textbook_phi(x):
    return 1.0 - 6.0 * x**5 + 15.0 * x**4 - 10.0 * x**3 if x < 1.0 else 0.0


def textbook_chi(r, sr_cut, lr_cut=None):
    s = textbook_phi(2.0 * r / sr_cut)
    shielded = math.sqrt(r * r + 1.0)
    if lr_cut is None:
        return s / shielded + (1.0 - s) / r
    if r >= lr_cut:
        return 0.0
    shielded_part = 1.0 / shielded + shielded / lr_cut**2 - 2.0 / lr_cut
    bare_part = 1.0 / r + r / lr_cut**2 - 2.0 / lr_cut
    return s * shielded_part + (1.0 - s) * bare_part


def textbook_zbl(z1, z2, r, cutoff):
    a = 0.8854 * BOHR / (z1**0.23 + z2**0.23)
    screening = sum(c * math.exp(-d * r / a) for c, d in zip(ZBL_C, ZBL_D))
    return KE * z1 * z2 / r * screening * textbook_phi(r / cutoff)


def test_cutoff_polynomial_endpoints_and_derivatives():
    x = jnp.array([0.0, 1.0, 1.5])
    np.testing.assert_allclose(cutoff_polynomial(x), [1.0, 0.0, 0.0], atol=1e-15)
    d1 = jax.vmap(jax.grad(cutoff_polynomial))(x)
    d2 = jax.vmap(jax.grad(jax.grad(cutoff_polynomial)))(x)
    np.testing.assert_allclose(d1, 0.0, atol=1e-12)
    np.testing.assert_allclose(d2, 0.0, atol=1e-12)
    xs = jnp.linspace(0.0, 1.0, 101)
    assert np.all(np.diff(np.asarray(cutoff_polynomial(xs))) <= 0.0)


@pytest.mark.parametrize("lr_cut", [None, 7.0])
def test_shielded_kernel_matches_textbook(lr_cut):
    sr_cut = 4.0
    rs = np.array([0.05, 0.7, 1.3, 1.99, 2.0, 2.5, 5.0, 6.99, 7.5])
    got = np.asarray(shielded_coulomb_kernel(jnp.asarray(rs), sr_cut, lr_cut))
    want = np.array([textbook_chi(r, sr_cut, lr_cut) for r in rs])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)


def test_shifted_kernel_vanishes_with_zero_slope_at_lr_cut():
    lr_cut = 9.0
    value, slope = jax.value_and_grad(lambda r: shielded_coulomb_kernel(r, 6.0, lr_cut))(lr_cut - 1e-9)
    assert abs(value) < 1e-12 and abs(slope) < 1e-9


def test_coulomb_pair_energy_refuses_a_long_range_cutoff_at_or_below_half_the_short_range_one():
    """r_lr must exceed r_sr/2 (the shifted kernel would jump to 0 at r_lr while still shielded); just above is
    accepted, and the pair energy is k_e q_i q_j χ(r) there (textbook χ, brute force)."""
    q, r, mask = jnp.array([0.5, -0.3]), jnp.array([1.0, 2.0]), jnp.array([True, True])
    for lr_cut in (3.0, 2.0, 0.5):
        with pytest.raises(ValueError, match=rf"^lr_cutoff must exceed sr_cutoff/2 = 3\.0, received {lr_cut}$"):
            coulomb_pair_energy(q, q, r, mask, 6.0, lr_cut)
    energy = np.asarray(coulomb_pair_energy(q, q, r, mask, 6.0, 3.001))
    want = [KE * qi * qi * textbook_chi(ri, 6.0, 3.001) for qi, ri in zip([0.5, -0.3], [1.0, 2.0])]
    np.testing.assert_allclose(energy, want, rtol=1e-13)


def test_zbl_two_atoms_matches_universal_formula():
    z = jnp.array([6]), jnp.array([8])
    cutoff = 5.0
    for r in (0.3, 0.8, 1.2, 2.5, 4.9):
        got = zbl_pair_energy(z[0], z[1], jnp.array([r]), jnp.array([True]), cutoff)[0]
        assert float(got) == pytest.approx(textbook_zbl(6, 8, r, cutoff), rel=1e-12)
    beyond = zbl_pair_energy(z[0], z[1], jnp.array([5.1]), jnp.array([True]), cutoff)
    assert float(beyond[0]) == 0.0


def test_zbl_with_float32_parameters_computes_in_the_distances_float64():
    """A loaded checkpoint's float32 screening parameters under float64 distances (``predict(dtype=float64)``): the
    energy is the formula at those parameter values in float64. a·a0 stayed float32 (a float32 times a Python float)
    and moved a CO pair's energy by ~1e-8 relative."""
    a, p = np.float32(0.8854), np.float32(0.23)
    c, d = np.asarray(ZBL_C, np.float32), np.asarray(ZBL_D, np.float32)
    cutoff = 5.0
    for r in (0.3, 0.8, 1.2, 2.5):
        got = zbl_pair_energy(jnp.array([6]), jnp.array([8]), jnp.array([r]), jnp.array([True]), cutoff,
                              jnp.asarray(a), jnp.asarray(p), jnp.asarray(c), jnp.asarray(d))[0]
        length = float(a) * BOHR / (6 ** float(p) + 8 ** float(p))
        screening = sum(float(ck) * math.exp(-float(dk) * r / length) for ck, dk in zip(c, d))
        want = KE * 6 * 8 / r * screening * textbook_phi(r / cutoff)
        assert got.dtype == np.float64 and float(got) == pytest.approx(want, rel=1e-13), r


def test_padded_pairs_contribute_zero_with_finite_gradient():
    displacements = jnp.array([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    mask = jnp.array([True, False])

    def energy(d):
        r = safe_pair_distances(d, mask)
        q = jnp.array([0.3, 0.7])
        zi = jnp.array([6, 0])
        e = coulomb_pair_energy(q, q, r, mask, 6.0) + zbl_pair_energy(zi, zi, r, mask, 6.0)
        return jnp.sum(e), e

    (_, per_pair), grad = jax.value_and_grad(energy, has_aux=True)(displacements)
    np.testing.assert_array_equal(safe_pair_distances(displacements, mask), [np.sqrt(1.25), 1.0])  # as documented
    assert float(per_pair[1]) == 0.0
    assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_array_equal(np.asarray(grad[1]), 0.0)


def test_half_sum_counts_each_pair_once():
    # A full directed list of 3 atoms with e_ij = i + j + 1: sum over i<j is 1+2 + 1+3 + 2+3 + 3.
    dst = jnp.array([0, 0, 1, 1, 2, 2])
    src = jnp.array([1, 2, 0, 2, 0, 1])
    e = (dst + src + 1).astype(jnp.float64)
    total = pair_energy_per_molecule(e, dst, jnp.zeros(3, dtype=jnp.int32), 1)
    assert float(total[0]) == 2.0 + 3.0 + 4.0


@pytest.mark.parametrize("total_charge", [-1.0, 0.0, 1.0])
def test_charge_correction_sums_to_total(total_charge):
    raw = jnp.array([0.3, -0.1, 0.25, 0.9, 0.0])
    mask = jnp.array([True, True, True, True, False])
    seg = jnp.array([0, 0, 1, 1, 1])
    q = corrected_charges(raw, mask, seg, 2, jnp.array([total_charge, -total_charge]))
    assert float(q[0] + q[1]) == pytest.approx(total_charge, abs=1e-14)
    assert float(q[2] + q[3]) == pytest.approx(-total_charge, abs=1e-14)
    assert float(q[4]) == 0.0
    # PhysNet's correction: q_i = raw_i + (Q - sum raw)/N.
    assert float(q[0]) == pytest.approx(0.3 + (total_charge - 0.2) / 2, abs=1e-14)


@pytest.fixture(scope="module")
def charged_model_outputs(molecules):
    """A random-weight model with charges + ZBL on base_a (15 atoms), float64, all pairs."""
    model = PhysNet(features=8, max_degree=1, num_iterations=2, n_res=1, num_basis_functions=8,
                    cutoff=4.0, charges=True, zbl=True, zbl_cutoff=3.0, param_dtype=jnp.float64)
    params = perturbed_params(init_params(model, 0), scale=0.3, seed=1)
    z, r = molecules["base_a"]
    batch = batch_molecules([z], [r], model.cutoff, total_charges=[1.0],
                            pair_cutoff=model_pair_cutoff(model), dtype=np.float64)
    out = jax.jit(lambda p, b: apply_batch(model, p, b))(params, batch)
    return model, params, z, r, out


def test_model_electrostatics_equals_double_loop(charged_model_outputs):
    model, _, z, r, out = charged_model_outputs
    q = np.asarray(out["charges"])
    assert abs(q.sum() - 1.0) < 1e-12
    assert np.std(q) > 1e-3  # the charges are genuinely non-trivial
    n = len(z)
    expected = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            rij = float(np.linalg.norm(r[i] - r[j]))
            expected += KE * q[i] * q[j] * textbook_chi(rij, model.cutoff)
    assert float(out["electrostatics"][0]) == pytest.approx(expected, rel=1e-10)


def test_model_repulsion_equals_double_loop(charged_model_outputs):
    model, params, z, r, out = charged_model_outputs
    rep = params["params"]["repulsion"]
    a_coef, a_exp = float(rep["a_coefficient"]), float(rep["a_exponent"])
    cs, ds = np.asarray(rep["phi_coefficients"]), np.asarray(rep["phi_exponents"])
    n = len(z)
    expected = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            rij = float(np.linalg.norm(r[i] - r[j]))
            a = a_coef * BOHR / (z[i] ** a_exp + z[j] ** a_exp)
            screening = sum(c * math.exp(-d * rij / a) for c, d in zip(cs, ds))
            expected += KE * z[i] * z[j] / rij * screening * textbook_phi(rij / 3.0)
    assert expected > 0.0
    assert float(out["repulsion"][0]) == pytest.approx(expected, rel=1e-10)


def test_zbl_parameter_gradients_are_finite_with_padded_z0_atoms():
    """Padded pairs join Z = 0 ghost atoms: d(Z^a)/da = Z^a ln Z must not turn into NaN."""
    z_i, z_j = jnp.array([6, 0]), jnp.array([8, 0])
    r = jnp.array([1.2, 1.0])
    mask = jnp.array([True, False])

    def energy(a_coefficient, a_exponent, coefficients, exponents):
        return jnp.sum(zbl_pair_energy(z_i, z_j, r, mask, 3.0, a_coefficient, a_exponent, coefficients, exponents))

    from physnetjax.physics.zbl import ZBL_COEFFICIENTS, ZBL_EXPONENTS
    grads = jax.grad(energy, argnums=(0, 1, 2, 3))(0.8854, 0.23, jnp.asarray(ZBL_COEFFICIENTS), jnp.asarray(ZBL_EXPONENTS))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    assert float(grads[1]) != 0.0


@pytest.mark.parametrize("num_molecules", [1, 3])
def test_sum_per_molecule_equals_a_loop(num_molecules):
    rng = np.random.default_rng(7)
    segments = np.sort(rng.integers(0, num_molecules, size=11))
    values = rng.normal(size=(11, 3))
    expected = np.zeros((num_molecules, 3))
    for value, segment in zip(values, segments):
        expected[segment] += value
    received = sum_per_molecule(jnp.asarray(values), jnp.asarray(segments), num_molecules)
    assert received.shape == (num_molecules, 3)
    np.testing.assert_allclose(received, expected, rtol=0, atol=1e-14)


def test_pair_displacements_and_their_gradient():
    rng = np.random.default_rng(8)
    positions = jnp.asarray(rng.normal(size=(5, 3)))
    dst, src = jnp.asarray([0, 0, 1, 3, 4, 2]), jnp.asarray([1, 2, 0, 4, 3, 2])
    np.testing.assert_array_equal(pair_displacements(positions, dst, src), positions[src] - positions[dst])
    weights = jnp.asarray(rng.normal(size=(6, 3)))
    grad = jax.grad(lambda r: jnp.sum(weights * pair_displacements(r, dst, src)))(positions)
    expected = np.zeros((5, 3))  # ∂/∂r_k of Σ_p w_p·(r_src(p) − r_dst(p)), by hand
    for p in range(6):
        expected[int(src[p])] += np.asarray(weights[p])
        expected[int(dst[p])] -= np.asarray(weights[p])
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-14)


def test_cutoff_polynomial_slope_is_the_derivative_of_the_polynomial():
    """D3's analytic distance gradient uses this slope; it was checked only through that gradient, where the switch
    acts in a thin shell near the cutoff. dφ/dx = −30 x² (1 − x)² on [0, 1) (differentiating 1 − 6x⁵ + 15x⁴ − 10x³ by hand), 0 outside; equal to
    autodiff of :func:`cutoff_polynomial` inside (float64: both are a few roundings of numbers below 30)."""
    x = np.array([-0.2, 0.0, 0.05, 0.1, 0.25, 0.5, 0.73, 0.9, 0.999, 1.0, 1.05, 1.3])  # 0.05, 1.05: next to the ends
    inside = (x >= 0.0) & (x < 1.0)
    expected = np.where(inside, -30.0 * x**2 * (1.0 - x) ** 2, 0.0)
    received = np.asarray(cutoff_polynomial_slope(jnp.asarray(x)))
    np.testing.assert_allclose(received, expected, rtol=1e-14, atol=1e-15)
    autodiff = np.asarray(jax.vmap(jax.grad(cutoff_polynomial))(jnp.asarray(x[inside])))
    np.testing.assert_allclose(received[inside], autodiff, rtol=1e-12, atol=1e-14)
    assert received[5] == -30.0 / 16.0  # x = ½: exact in binary
