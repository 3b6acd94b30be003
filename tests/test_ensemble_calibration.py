"""Calibration of the ensemble spread (maximum-likelihood scale, Gaussian NLL) and Spearman's rank correlation."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import warnings_as_errors
from physnetjax.ensemble.calibrate_checkpoint import calibration_record
from physnetjax.ensemble.calibration import (
    average_ranks,
    fit_calibration_scale,
    gaussian_nll,
    spearman_rank_correlation,
    without_zero_spreads,
)
from physnetjax.errors import PhysNetInputWarning


@pytest.mark.parametrize("components", [1, 3])
def test_scale_of_synthetic_gaussian_errors_is_recovered(components):
    """Errors drawn with spread s·σ_i: the fitted scale is within 5 standard errors of s.

    s_hat² = s² · mean_i |ξ_i|²/d with ξ_i ~ N(0, I_d); Var(|ξ|²/d) = 2/d, so by the delta
    method the relative standard error of s_hat is sqrt(1 / (2 d M)).
    """
    rng = np.random.default_rng(11)
    m, true_scale = 20000, 2.5
    sigma = rng.uniform(0.05, 2.0, m)
    noise = rng.normal(size=(m, components)) * (true_scale * sigma / math.sqrt(components))[:, None]
    errors = noise[:, 0] if components == 1 else noise
    fitted = fit_calibration_scale(errors, sigma)
    assert abs(fitted / true_scale - 1) < 5 * math.sqrt(1 / (2 * components * m))
    uncalibrated = fit_calibration_scale(errors, sigma * true_scale)
    assert abs(uncalibrated - 1) < 5 * math.sqrt(1 / (2 * components * m))


def test_fitted_scale_minimises_the_gaussian_nll():
    rng = np.random.default_rng(3)
    sigma = rng.uniform(0.1, 1.0, 200)
    errors = rng.normal(size=200) * 0.7 * sigma
    fitted = fit_calibration_scale(errors, sigma)
    best = gaussian_nll(errors, sigma, fitted)
    for factor in (0.9, 0.99, 1.01, 1.1):
        assert gaussian_nll(errors, sigma, fitted * factor) > best
    # d = 1: the mean of -log N(e_i; 0, (sσ_i)²), written out independently.
    direct = np.mean(0.5 * np.log(2 * np.pi * (fitted * sigma) ** 2) + errors**2 / (2 * (fitted * sigma) ** 2))
    assert best == pytest.approx(direct, rel=1e-12)


def test_gaussian_nll_of_vector_errors_spreads_the_variance_over_the_components():
    # d = 3 (forces): each component has standard deviation sσ_i/√3, so that the RMS distance
    # of the error from zero is sσ_i; the NLL per sample is the sum of three 1-d NLLs (scipy).
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(5)
    sigma = rng.uniform(0.1, 1.0, 300)
    errors = rng.normal(size=(300, 3)) * (0.6 * sigma / math.sqrt(3))[:, None]
    fitted = fit_calibration_scale(errors, sigma)
    best = gaussian_nll(errors, sigma, fitted)
    direct = -np.mean(np.sum(scipy_stats.norm.logpdf(errors, scale=(fitted * sigma / math.sqrt(3))[:, None]), axis=1))
    assert best == pytest.approx(direct, rel=1e-12)
    for factor in (0.99, 1.01):
        assert gaussian_nll(errors, sigma, fitted * factor) > best


def test_calibrate_fits_on_the_real_atoms_of_frames_of_different_sizes():
    # Frames of 3 and 2 atoms padded to 3: the padded atom (zero force, zero spread, as the model gives it)
    # is left out, so s² is the mean of |e_i|²/σ_i² over the 5 real atoms.
    rng = np.random.default_rng(4)
    forces, reference = rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 3, 3))
    spreads = rng.uniform(0.2, 1.0, (2, 3))
    forces[1, 2], reference[1, 2], spreads[1, 2] = 0.0, 0.0, 0.0
    predictions = SimpleNamespace(forces=forces, forces_std=spreads, energy=np.array([0.1, -0.3]),
                                  energy_std=np.array([0.2, 0.5]))
    dataset = SimpleNamespace(has_F=np.array([True, True]), has_E=np.array([True, True]), N=np.array([3, 2]),
                              max_atoms=3, F=reference, E=np.array([0.0, 0.0]))
    real = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    ratios = [np.sum((forces[f, i] - reference[f, i]) ** 2) / spreads[f, i] ** 2 for f, i in real]
    with pytest.warns(PhysNetInputWarning, match="fitted on only 2 frame"):
        record = calibration_record(predictions, dataset)
    assert record["atoms"] == 5 and record["frames"] == 2
    assert record["calibration_scale"] == pytest.approx(math.sqrt(np.mean(ratios)), rel=1e-12)


def test_calibration_rejects_bad_input():
    with pytest.raises(ValueError, match="spreads must be finite and > 0; 1 of 3"):
        fit_calibration_scale([0.1, 0.2, 0.3], [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="errors must have shape"):
        fit_calibration_scale([0.1, 0.2], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        fit_calibration_scale([0.1, np.nan], [1.0, 1.0])
    with pytest.raises(ValueError, match="all errors are 0"):
        fit_calibration_scale([0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"spreads must be a non-empty 1-d array \(M,\), received shape \(0,\)"):
        fit_calibration_scale(np.zeros((0, 3)), [])
    with pytest.raises(ValueError, match="errors must have shape"):
        fit_calibration_scale(np.ones((2, 3, 1)), [1.0, 1.0])  # (M, d) at most
    for scale in (np.inf, np.nan, 0.0, -1.0):
        with pytest.raises(ValueError, match="scale must be finite and > 0"):
            gaussian_nll([0.1, 0.2], [1.0, 1.0], scale)


def brute_force_spearman(x, y) -> float:
    """ρ from ranks counted pairwise (rank_i = #{x_j < x_i} + (#{x_j = x_i} + 1)/2) and a loop Pearson."""
    n = len(x)

    def ranks(v):
        return [sum(v[j] < v[i] for j in range(n)) + (sum(v[j] == v[i] for j in range(n)) + 1) / 2 for i in range(n)]

    a, b = ranks(x), ranks(y)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((a[i] - ma) * (b[i] - mb) for i in range(n))
    return cov / math.sqrt(sum((v - ma) ** 2 for v in a) * sum((v - mb) ** 2 for v in b))


def test_spearman_without_ties_matches_the_textbook_formula():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=40), rng.normal(size=40)
    y = y + 0.8 * x
    rx = 1 + np.array([np.sum(x < v) for v in x])
    ry = 1 + np.array([np.sum(y < v) for v in y])
    textbook = 1 - 6 * np.sum((rx - ry) ** 2) / (40 * (40**2 - 1))
    assert spearman_rank_correlation(x, y) == pytest.approx(textbook, abs=1e-12)
    assert spearman_rank_correlation(x, np.exp(x)) == pytest.approx(1.0, abs=1e-15)
    assert spearman_rank_correlation(x, -x) == pytest.approx(-1.0, abs=1e-15)


def test_spearman_with_ties_matches_brute_force_and_scipy():
    rng = np.random.default_rng(8)
    x = rng.integers(0, 5, size=30).astype(float)
    y = rng.integers(0, 4, size=30) + 0.5 * x
    np.testing.assert_allclose(average_ranks([3.0, 1.0, 3.0, 2.0, 3.0]), [4.0, 1.0, 4.0, 2.0, 4.0])
    expected = brute_force_spearman(list(x), list(y))
    assert spearman_rank_correlation(x, y) == pytest.approx(expected, abs=1e-12)
    stats = pytest.importorskip("scipy.stats")
    assert spearman_rank_correlation(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_spearman_rejects_undefined_cases():
    with pytest.raises(ValueError, match="all spreads are equal"):
        spearman_rank_correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="equal length"):
        spearman_rank_correlation([1.0, 2.0], [1.0, 2.0, 3.0])
    for spreads, errors in (([1.0, np.nan, 3.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [np.inf, 2.0, 3.0])):
        with pytest.raises(ValueError, match="spreads and errors must be finite"):
            spearman_rank_correlation(spreads, errors)


def test_a_rank_correlation_without_labels_says_so(caplog):
    """Energy-only data printed 'no forces rank correlation: spreads and errors must be 1-d of equal length >= 2,
    received shapes (0,), (0,)', an internal message."""
    from physnetjax.ensemble.calibrate_checkpoint import _rank_correlation

    with caplog.at_level("WARNING", logger="physnetjax.ensemble.calibrate_checkpoint"):
        assert _rank_correlation([], [], "forces") is None
        assert _rank_correlation([0.1], [0.2], "energy") is None
    assert caplog.messages == ["no forces rank correlation: the data has no forces labels",
                               "no energy rank correlation: the data has only one frame with energy"]


def test_zero_spread_samples_without_error_are_left_out_silently_and_counted():
    """Two of five force samples have spread 0 and error 0 (an isolated atom): both are left out, the count is 2
    (not the fraction 0.4), and nothing is warned; the scale is then fitted on the other three alone."""
    errors = np.array([[0.1, 0.0, 0.0], [0.0, 0.0, 0.0], [0.2, -0.1, 0.0], [0.0, 0.0, 0.0], [0.0, 0.3, 0.4]])
    spreads = np.array([0.1, 0.0, 0.3, 0.0, 0.25])
    with warnings_as_errors():
        kept_errors, kept_spreads, left_out = without_zero_spreads(errors, spreads, "forces")
    assert left_out == 2
    np.testing.assert_array_equal(kept_errors, errors[[0, 2, 4]])
    np.testing.assert_array_equal(kept_spreads, spreads[[0, 2, 4]])
    expected = np.sqrt(np.mean([0.01 / 0.01, 0.05 / 0.09, 0.25 / 0.0625]))
    assert fit_calibration_scale(kept_errors, kept_spreads) == pytest.approx(expected, rel=1e-14)


def test_a_zero_spread_sample_with_an_error_is_warned_about_and_counted():
    """(M,) energies: one zero-spread sample with error 0.5 and one with error 0: the warning names 1 of the 2,
    both are left out."""
    errors, spreads = np.array([0.5, 0.1, 0.0, -0.2]), np.array([0.0, 0.2, 0.0, 0.4])
    with pytest.warns(PhysNetInputWarning, match=r"energies: 1 of the 2 sample\(s\) .* \(up to 0\.5\)"):
        kept_errors, kept_spreads, left_out = without_zero_spreads(errors, spreads, "energies")
    assert left_out == 2
    np.testing.assert_array_equal(kept_errors, [0.1, -0.2])
    np.testing.assert_array_equal(kept_spreads, [0.2, 0.4])


def test_calibration_record_reports_the_nll_and_rank_correlations_written_out():
    """Six frames of up to 3 atoms (the last with 2): the uncalibrated and calibrated force NLL per atom,
    (1/M) Σ_i [(3/2) log(2π s² σ_i² / 3) + 3 |e_i|² / (2 s² σ_i²)] at s = 1 and the fitted s, and Spearman's ρ of each
    frame's largest force spread against its force RMSE over its real atoms, and of energy_std against |ΔE| (scipy)."""
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(9)
    forces, reference = rng.normal(size=(6, 3, 3)), rng.normal(size=(6, 3, 3))
    spreads = rng.uniform(0.2, 1.0, (6, 3))
    forces[5, 2], reference[5, 2], spreads[5, 2] = 0.0, 0.0, 0.0
    energy, energy_std, energy_ref = rng.normal(size=6), rng.uniform(0.1, 1.0, 6), rng.normal(size=6)
    predictions = SimpleNamespace(forces=forces, forces_std=spreads, energy=energy, energy_std=energy_std)
    sizes = np.array([3, 3, 3, 3, 3, 2])
    dataset = SimpleNamespace(has_F=np.ones(6, bool), has_E=np.ones(6, bool), N=sizes, max_atoms=3, F=reference,
                              E=energy_ref)
    with pytest.warns(PhysNetInputWarning, match="fitted on only 6 frame"):
        record = calibration_record(predictions, dataset)
    real = [(f, i) for f in range(6) for i in range(sizes[f])]
    squared = np.array([np.sum((forces[f, i] - reference[f, i]) ** 2) for f, i in real])
    sigma = np.array([spreads[f, i] for f, i in real])
    for key, s in (("force_nll_per_atom_uncalibrated", 1.0), ("force_nll_per_atom_calibrated",
                                                               record["calibration_scale"])):
        direct = np.mean(1.5 * np.log(2 * np.pi * s**2 * sigma**2 / 3) + 3 * squared / (2 * s**2 * sigma**2))
        assert record[key] == pytest.approx(direct, rel=1e-12)
    rmse = [math.sqrt(sum(np.sum((forces[f, i] - reference[f, i]) ** 2) for i in range(sizes[f])) / sizes[f])
            for f in range(6)]
    largest = [max(spreads[f, i] for i in range(sizes[f])) for f in range(6)]
    assert record["spearman_max_forces_std_vs_force_rmse"] == pytest.approx(
        scipy_stats.spearmanr(largest, rmse).statistic, abs=1e-12)
    assert record["spearman_energy_std_vs_abs_energy_error"] == pytest.approx(
        scipy_stats.spearmanr(energy_std, np.abs(energy - energy_ref)).statistic, abs=1e-12)
