"""MD spectra: autocorrelation/spectrum functions against brute force and closed forms; md_spectrum physics.

Goldens are independent of the code under test: float64 double loops for the
correlation, the cosine-transform sum written out for the spectrum, closed forms of
the Hann window and of a cosine's spectrum, and harmonic frequencies and IR
intensities of the shipped CO2 model computed here from its float64 autodiff
Hessian and dipole Jacobian (md_spectrum never forms a Hessian).
"""

import json
import time
import warnings

import ase.io
import jax
import numpy as np
import pytest

from physnetjax import load_checkpoint
from physnetjax.calculator import cast_params
from physnetjax.md.potential import physnet_potential
from physnetjax.pretrained import co2_geometry_path, co2_model_path
from physnetjax.spectra import EnergyConservationError, md_spectrum
from physnetjax.distance_domain import DOMAIN_MARGIN, DistanceDomain, TrainingDistancesWarning
from physnetjax.training_record import TrainingRecord
from physnetjax.spectra.md_spectrum import (
    DissociationError,
    check_timestep_for_lines,
    fragment_count,
    short_equilibration,
    spectra_of_trajectory,
    verlet_wavenumber_cm1,
)
from physnetjax.spectra.autocorrelation import (
    autocorrelation,
    hann_lag_window,
    parzen_lag_window,
    resolution_cm1,
    spectrum_from_correlation,
)

C_CM_PER_FS = 2.99792458e-5  # speed of light, typed in independently
KB_EV = 1.380649e-23 / 1.602176634e-19
HC_EV_CM = 6.62607015e-34 * 2.99792458e10 / 1.602176634e-19
AMU_A2_FS2_EV = 1.66053906660e-27 * 1e10 / 1.602176634e-19
IR_KM_MOL = 6.02214076e23 * 1.602176634e-19**2 / (12 * 8.8541878128e-12 * 299792458.0**2 * 1.66053906660e-27) / 1e3


# -- autocorrelation ------------------------------------------------------------------------


@pytest.mark.parametrize("normalization", ["unbiased", "biased"])
def test_autocorrelation_equals_brute_force_loop(normalization):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 2, 3))
    lags = 20
    got = autocorrelation(x, lags, normalization)
    expected = np.zeros((lags, 2, 3))
    for k in range(lags):
        for t in range(37 - k):
            expected[k] += x[t] * x[t + k]
        expected[k] /= (37 - k) if normalization == "unbiased" else 37
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-13)


def test_autocorrelation_of_a_constant_is_flat_only_when_unbiased():
    x = np.full((10,), 2.0)
    np.testing.assert_allclose(autocorrelation(x), 4.0, rtol=1e-13)
    np.testing.assert_allclose(autocorrelation(x, normalization="biased"), 4.0 * (10 - np.arange(10)) / 10, rtol=1e-13)


def test_hann_window_closed_form():
    w = hann_lag_window(8)
    assert w[0] == 1.0
    np.testing.assert_allclose(w, np.cos(np.pi * np.arange(8) / 16) ** 2, rtol=1e-14)
    assert np.all(np.diff(w) < 0) and w[-1] > 0


def test_spectrum_equals_written_out_cosine_sum_and_integrates_to_c0():
    rng = np.random.default_rng(1)
    corr = rng.normal(size=25)
    dt = 0.7
    nu, s = spectrum_from_correlation(corr, dt, padding=3)
    w = np.cos(np.pi * np.arange(25) / 50) ** 2
    for j in (0, 5, 17, len(nu) - 1):
        t = np.arange(25) * dt
        direct = corr[0] + 2 * np.sum((w * corr)[1:] * np.cos(2 * np.pi * C_CM_PER_FS * nu[j] * t[1:]))
        assert s[j] == pytest.approx(2 * C_CM_PER_FS * dt * direct, rel=1e-10, abs=1e-12)
    spacing = nu[1] - nu[0]
    assert spacing == pytest.approx(1.0 / (C_CM_PER_FS * dt * 2 * (len(nu) - 1)), rel=1e-12)
    assert spacing * (s.sum() - 0.5 * s[0] - 0.5 * s[-1]) == pytest.approx(corr[0], rel=1e-12)


def test_cosine_signal_peaks_at_its_frequency_within_the_resolution():
    dt, nu0 = 1.0, 1234.5
    t = np.arange(6000) * dt
    x = np.cos(2 * np.pi * C_CM_PER_FS * nu0 * t + 0.3)
    lags = 1500
    nu, s = spectrum_from_correlation(autocorrelation(x, lags), dt)
    resolution = resolution_cm1(lags * dt)
    assert resolution == pytest.approx(1.0 / (C_CM_PER_FS * 1500.0), rel=1e-12)
    assert abs(nu[np.argmax(s)] - nu0) < resolution
    # Half the power of cos² sits in the positive-frequency line (mean x² = 1/2).
    line = np.abs(nu - nu0) < 3 * resolution
    assert np.trapezoid(s[line], nu[line]) == pytest.approx(0.5, rel=2e-3)
    # Hann window: no truncation ripple far from the line (rectangular lag window has them).
    far = np.abs(nu - nu0) > 10 * resolution
    _, s_rect = spectrum_from_correlation(autocorrelation(x, lags), dt, window="none")
    assert np.abs(s[far]).max() < 1e-3 * s.max() < np.abs(s_rect[far]).max()


def _even_transform(weights, size=1 << 14):
    """DTFT of the even extension w_{−k} = w_k on a fine grid (real, f in cycles per lag)."""
    return 2 * np.fft.rfft(weights, n=size).real - weights[0]


def test_parzen_window_closed_form_and_non_negative_transform():
    w = parzen_lag_window(8)
    u = np.arange(8) / 8
    np.testing.assert_allclose(w[:5], 1 - 6 * u[:5] ** 2 + 6 * u[:5] ** 3, rtol=1e-14)
    np.testing.assert_allclose(w[4:], 2 * (1 - u[4:]) ** 3, rtol=1e-14)
    assert w[0] == 1.0 and np.all(np.diff(w) < 0) and w[-1] > 0
    # Transform of the sampled window: ≥ 0 (Parzen), while Hann's has side lobes of −2.7 %.
    for lags in (8, 33, 500):
        parzen = _even_transform(parzen_lag_window(lags))
        assert parzen.min() >= -1e-12 * parzen.max()
    hann = _even_transform(hann_lag_window(500))
    assert hann.min() == pytest.approx(-0.0267 * hann.max(), rel=0.01)


def test_biased_parzen_spectrum_of_a_noisy_signal_is_non_negative():
    # Short records of a line in noise: the periodogram smoothed by a non-negative kernel
    # stays ≥ 0 everywhere; the unbiased estimator with the Hann window dips below 0.
    rng = np.random.default_rng(2)
    dt, lags = 2.0, 50
    t = np.arange(100) * dt
    lowest_hann = 0.0
    for _ in range(20):
        x = np.cos(2 * np.pi * C_CM_PER_FS * 2349.0 * t + rng.uniform(0, 2 * np.pi)) + 0.3 * rng.normal(size=100)
        _, s = spectrum_from_correlation(autocorrelation(x, lags, "biased"), dt, window="parzen")
        assert s.min() >= -1e-12 * s.max()
        _, s_hann = spectrum_from_correlation(autocorrelation(x, lags), dt)
        lowest_hann = min(lowest_hann, s_hann.min() / s_hann.max())
    assert lowest_hann < -1e-3


@pytest.mark.parametrize("call, message", [
    (lambda: autocorrelation(np.zeros(5), 6), "max_lag must be in"),
    (lambda: autocorrelation(np.zeros(5), normalization="x"), "normalization must be"),
    (lambda: autocorrelation(np.array([1.0, np.nan])), "NaN"),
    (lambda: spectrum_from_correlation(np.ones(4), 0.0), "timestep_fs must be finite and > 0 fs, received 0.0"),
    (lambda: spectrum_from_correlation(np.ones(4), 1.0, window="kaiser"), "window must be"),
    # main: an all-inf spectrum, 2 lags, padding 1, a raw TypeError, numpy's ComplexWarning and the real part only
    (lambda: spectrum_from_correlation(np.ones(4), np.inf), "timestep_fs must be finite and > 0 fs, received inf"),
    (lambda: autocorrelation(np.zeros(5), 2.5), r"max_lag must be an integer >= 1 \(number of lags\), received 2.5"),
    (lambda: spectrum_from_correlation(np.ones(4), 1.0, padding=1.9), "padding must be an integer >= 1"),
    (lambda: spectrum_from_correlation(np.ones(4), "1"), r"timestep_fs must be a number of fs, received '1' \(str\)"),
    (lambda: autocorrelation(np.exp(1j * np.arange(5.0))), "signal must be real, received complex values"),
    (lambda: spectrum_from_correlation(np.ones(4, complex), 1.0), "correlation must be real, received complex"),
    (lambda: resolution_cm1(np.inf), "correlation window must be finite and > 0 fs, received inf"),
    (lambda: hann_lag_window(0), "num_lags must be >= 1"),
])
def test_bad_inputs_of_the_functions(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_verlet_moves_a_line_where_its_recurrence_and_a_simulation_put_it():
    """x_{n+1} = 2x_n − x_{n−1} − (ωh)² x_n oscillates as cos(Ωnh), 2 cos(Ωh) = 2 − (ωh)²."""
    for nu, h in [(600.0, 0.5), (2593.5, 0.5), (2593.5, 3.0), (3700.0, 1.0), (3700.0, 2.8)]:
        omega = 2 * np.pi * C_CM_PER_FS * nu
        recurrence = np.arccos(1 - (omega * h) ** 2 / 2) / h / (2 * np.pi * C_CM_PER_FS)
        assert verlet_wavenumber_cm1(nu, h) == pytest.approx(recurrence, rel=1e-12)
    nu, h = 2593.5, 3.0  # the CO2 asymmetric stretch at the probe's timestep, by velocity Verlet itself
    omega, x, v, xs = 2 * np.pi * C_CM_PER_FS * nu, 1.0, 0.0, []
    for _ in range(1 << 16):
        v_half = v - 0.5 * h * omega**2 * x
        x = x + h * v_half
        v = v_half - 0.5 * h * omega**2 * x
        xs.append(x)
    spectrum = np.abs(np.fft.rfft(np.asarray(xs) * np.hanning(len(xs))))
    peak = np.fft.rfftfreq(len(xs), h)[np.argmax(spectrum)] / C_CM_PER_FS
    assert peak == pytest.approx(verlet_wavenumber_cm1(nu, h), abs=1 / (C_CM_PER_FS * h * len(xs)))
    assert verlet_wavenumber_cm1(nu, h) == pytest.approx(2910.69, abs=0.01)  # +12 %, as the probe found
    assert np.isnan(verlet_wavenumber_cm1(3700.0, 1 / (np.pi * C_CM_PER_FS * 3700.0) * 1.0001))


def test_a_timestep_that_moves_or_destabilises_the_fastest_line_is_named():
    co2 = [600.9, 1424.7, 2593.5]
    assert check_timestep_for_lines(co2, 0.5) is None and check_timestep_for_lines([], 3.0) is None
    said = check_timestep_for_lines(co2, 3.0, {"timestep_fs": "--timestep"})
    assert said.startswith("--timestep 3 fs moves the 2593.5 cm^-1 line to 2910.7 cm^-1 (+12.2%; velocity Verlet")
    assert said.endswith("use at most 0.5 fs for about 0.25 %")
    assert check_timestep_for_lines(co2, 0.98) is None and check_timestep_for_lines(co2, 1.02) is not None  # 1 % edge
    with pytest.raises(ValueError, match=r"timestep_fs 4.1 fs is too long for the 2593.5 cm\^-1 vibration: velocity "
                                         r"Verlet is unstable from 4.09 fs"):
        check_timestep_for_lines(co2, 4.1)


@pytest.mark.parametrize("equilibration_ps, friction, share", [(0.0, 0.01, "50%"), (0.1, 0.01, "82%"),
                                                                (0.4, 0.01, "99%"), (0.5, 0.01, None),
                                                                (2.0, 0.01, None), (0.1, 0.1, None)])
def test_an_equilibration_shorter_than_five_relaxation_times_is_named(equilibration_ps, friction, share):
    said = short_equilibration(equilibration_ps, friction, {"equilibration_ps": "--equilibration-ps"})
    if share is None:
        assert said is None
    else:
        assert said.startswith(f"--equilibration-ps {equilibration_ps:g} ps is ")
        assert f"enter NVE with about {share} of the thermal energy" in said
        assert said.endswith(f"equilibrate for at least {5e-3 / friction:g} ps")


def test_spectra_of_one_harmonic_mode_have_its_intensity_and_unit_area():
    # One mode Q of wavenumber 1500 cm⁻¹ with ⟨Q̇²⟩ = k_B T/C (its canonical mean): the mass-scaled
    # velocities are u = e Q̇ (e a unit vector over 3N components), μ̇ = (∂μ/∂Q) Q̇. The power
    # spectrum's area is the biased C_0 over k_B T/C (≈ 1, one degree of freedom), and the IR
    # spectrum is A |∂μ/∂Q|² times it at every wavenumber: the band integrates to the harmonic intensity.
    rng = np.random.default_rng(2)
    temperature, interval, nu0 = 300.0, 1.0, 1500.0
    kt_amu = KB_EV * temperature / AMU_A2_FS2_EV
    t = interval * np.arange(4000)
    q_dot = np.sqrt(2 * kt_amu) * np.cos(2 * np.pi * C_CM_PER_FS * nu0 * t + 0.3)
    mode = rng.normal(size=(3, 3))
    mode /= np.linalg.norm(mode)
    dmu_dq = np.array([0.12, -0.05, 0.3])  # e/√amu
    nu, power, ir = spectra_of_trajectory(q_dot[:, None, None] * mode, q_dot[:, None] * dmu_dq, interval,
                                          temperature, 1000)
    spacing = nu[1] - nu[0]
    area = spacing * (power.sum() - 0.5 * power[0] - 0.5 * power[-1])
    assert area == pytest.approx(np.mean(q_dot**2) / kt_amu, rel=1e-10)
    assert area == pytest.approx(1.0, rel=1e-3)
    np.testing.assert_allclose(ir, IR_KM_MOL * np.sum(dmu_dq**2) * power, rtol=1e-10, atol=1e-12 * ir.max())
    assert abs(nu[np.argmax(power)] - nu0) < resolution_cm1(1000 * interval)
    _, no_charge_power, no_ir = spectra_of_trajectory(q_dot[:, None, None] * mode, None, interval, temperature, 1000)
    assert no_ir is None and np.array_equal(no_charge_power, power)


# -- md_spectrum on the shipped CO2 model -----------------------------------------------------


@pytest.fixture(scope="module")
def co2():
    model, params = load_checkpoint(co2_model_path())
    atoms = ase.io.read(co2_geometry_path())
    return model, params, atoms.numbers, atoms.positions, atoms.get_masses()


@pytest.fixture(scope="module")
def co2_harmonic(co2):
    """Harmonic wavenumbers (cm⁻¹) and IR intensities (km/mol) of the 4 vibrations, from autodiff here."""
    model, params, z, r, masses = co2
    potential = physnet_potential(model, cast_params(params, np.float64), z, method="all_pairs")
    nbrs = potential.allocate(r)
    hessian = np.asarray(jax.jit(jax.hessian(lambda x: potential.energy_force(x.reshape(3, 3), nbrs)[0]))(r.ravel()))
    dipole_jac = np.asarray(
        jax.jit(jax.jacobian(lambda x: potential.outputs(x.reshape(3, 3), nbrs)["dipoles"][0]))(r.ravel()))
    m = np.repeat(masses, 3)
    eigenvalues, vectors = np.linalg.eigh(hessian / np.sqrt(np.outer(m, m)))
    wavenumbers = np.sqrt(np.abs(eigenvalues) / AMU_A2_FS2_EV) / (2 * np.pi * C_CM_PER_FS)
    intensities = IR_KM_MOL * np.sum((dipole_jac @ (vectors / np.sqrt(m)[:, None])) ** 2, axis=0)
    assert np.all(wavenumbers[:5] < 1.0)  # 5 rigid-body modes of a linear molecule at its minimum
    return wavenumbers[5:], intensities[5:]


SETTINGS = dict(temperature_K=20.0, time_ps=3.0, equilibration_ps=0.5, timestep_fs=0.5, record_every=2,
                max_correlation_ps=1.5, dtype="float64", seed=3)


@pytest.fixture(scope="module")
def co2_spectrum(co2):
    model, params, z, r, _ = co2
    return md_spectrum(model, params, z, r, replicas=3, **SETTINGS)


def _verlet(nu, timestep_fs):
    """Wavenumber of a harmonic oscillator under velocity Verlet: (2/h) arcsin(ωh/2) / (2πc)."""
    omega_h = 2 * np.pi * C_CM_PER_FS * nu * timestep_fs
    return nu * np.arcsin(omega_h / 2) / (omega_h / 2)


@pytest.mark.slow
def test_low_temperature_spectra_peak_at_the_harmonic_frequencies(co2_spectrum, co2_harmonic):
    res = co2_spectrum
    nu, power, ir = res.frequencies_cm1, res.power_spectrum, res.ir_spectrum
    assert res.resolution_cm1 == pytest.approx(1.0 / (C_CM_PER_FS * 1500.0), rel=1e-12)
    harmonic, intensity = co2_harmonic
    for k, nu_k in enumerate(harmonic):
        window = np.abs(nu - nu_k) < 150
        assert abs(nu[window][np.argmax(power[window])] - nu_k) < res.resolution_cm1
        if intensity[k] > 1.0:
            assert abs(nu[window][np.argmax(ir[window])] - nu_k) < res.resolution_cm1
    # Velocity Verlet's frequency shift (+6.5 cm⁻¹ at 2594 cm⁻¹ for 0.5 fs) is what remains at 20 K.
    asym = np.abs(nu - harmonic[-1]) < 150
    assert nu[asym][np.argmax(power[asym])] == pytest.approx(_verlet(harmonic[-1], 0.5), abs=3.0)


@pytest.mark.slow
def test_ir_band_over_power_band_is_the_harmonic_intensity(co2_spectrum, co2_harmonic):
    # Per mode: IR band = A |dμ/dQ|² ⟨Q̇²⟩/(k_B T/C), power band = ⟨Q̇²⟩/(k_B T/C).
    res = co2_spectrum
    nu = res.frequencies_cm1
    harmonic, intensity = co2_harmonic
    for lo, hi, mode in ((450, 750, 0), (2400, 2800, 3)):
        band = (nu > lo) & (nu < hi)
        ratio = np.trapezoid(res.ir_spectrum[band], nu[band]) / np.trapezoid(res.power_spectrum[band], nu[band])
        assert ratio == pytest.approx(intensity[mode], rel=0.03)
    sym = (nu > 1300) & (nu < 1550)
    assert abs(np.trapezoid(res.ir_spectrum[sym], nu[sym])) < 1e-3 * intensity[3]
    assert intensity[2] < 1e-6  # symmetric stretch of CO2 is IR-inactive


@pytest.mark.slow
def test_power_spectrum_integrates_to_the_degrees_of_freedom(co2_spectrum):
    # ∫ S dν̃ = C_v(0) / (k_B T) = 2⟨K⟩_r / (k_B T) = n_dof T_r / T for each replica.
    res = co2_spectrum
    spacing = res.frequencies_cm1[1] - res.frequencies_cm1[0]
    for spectrum, replica_temperature in zip(res.replica_power_spectra, res.temperatures_K):
        integral = spacing * (spectrum.sum() - 0.5 * spectrum[0] - 0.5 * spectrum[-1])
        assert integral == pytest.approx(6 * replica_temperature / SETTINGS["temperature_K"], rel=1e-10)
    assert res.settings["degrees_of_freedom"] == 6
    assert np.all(res.energy_errors < 0.02)
    assert np.all((res.temperatures_K > 2) & (res.temperatures_K < 80))


@pytest.mark.slow
def test_replicas_differ_and_one_replica_run_equals_replica_zero(co2, co2_spectrum):
    model, params, z, r, _ = co2
    spectra = co2_spectrum.replica_power_spectra
    assert not np.allclose(spectra[0], spectra[1], rtol=1e-3)
    assert not np.allclose(spectra[1], spectra[2], rtol=1e-3)
    # Same key for replica 0 whatever the number of replicas.
    single = md_spectrum(model, params, z, r, replicas=1, **SETTINGS)
    np.testing.assert_allclose(single.replica_power_spectra[0], spectra[0], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(single.replica_ir_spectra[0], co2_spectrum.replica_ir_spectra[0], rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(single.temperatures_K[0], co2_spectrum.temperatures_K[0], rtol=1e-10)


def test_zero_charges_give_a_zero_ir_spectrum(co2):
    """Also: the reported compile and MD seconds are positive and together within the call's wall time, and given no
    dtype a float64 model's MD runs in float64 (it ran in float32)."""
    model, params, z, r, _ = co2
    # Zero the charge head's last layer and the per-element charge bias: q̃ = 0, so q = 0 and μ = 0.
    inner = dict(params["params"])
    inner["Dense_7"] = {"kernel": params["params"]["Dense_7"]["kernel"] * 0}
    inner["charge_bias"] = params["params"]["charge_bias"] * 0
    zeroed = {"params": inner}
    potential = physnet_potential(model, zeroed, z, method="all_pairs")
    assert np.all(np.asarray(potential.outputs(r, potential.allocate(r))["charges"]) == 0.0)
    start = time.perf_counter()
    res = md_spectrum(model.clone(param_dtype=np.float64), zeroed, z, r, temperature_K=20.0, time_ps=0.2,
                      equilibration_ps=0.0, replicas=1, max_correlation_ps=0.1)  # no dtype: the model's, float64
    wall = time.perf_counter() - start
    assert 0.0 < res.compile_seconds and 0.0 < res.md_seconds and res.compile_seconds + res.md_seconds <= wall
    assert np.all(res.ir_spectrum == 0.0)
    assert res.power_spectrum.max() > 0 and res.settings["dtype"] == "float64"


def test_element_energies_of_dft_size_do_not_cost_float32_md_its_energy_resolution(co2):
    """The shipped CO2 model with DFT-sized element energies (Σ E0 = −5112 eV, whose float32 grid is 0.5 meV):
    the MD energies held Σ E0 in float32, and at 20 K (n_dof k_B T / 2 = 3.4 meV) their rounding alone stopped a
    float32 run that conserves energy ("NVE energy not conserved", 0.19 > 0.1). The forces do not depend on E0;
    the MD evaluates the network without it, so the run is the shipped model's, as well conserved."""
    model, params, z, r, _ = co2
    energies = np.zeros(model.max_atomic_number + 1)
    energies[[6, 8]] = -1030.0, -2041.0
    dft_sized = model.clone(element_energies=tuple(float(e) for e in energies))
    res = md_spectrum(dft_sized, params, z, r, temperature_K=20.0, time_ps=0.3, equilibration_ps=0.0, replicas=1,
                      max_correlation_ps=0.1, dtype="float32")
    assert res.energy_errors.max() < 0.05, res.energy_errors  # the shipped model's E0 (−280 eV): 0.02


def test_energy_errors_are_the_largest_total_energy_change_over_n_dof_kT_over_2(co2):
    """energy_errors of one replica without equilibration against a float64 velocity-Verlet loop written out here
    (forces and energies from ``predict``), started from the same Maxwell–Boltzmann draw: max over the recorded
    frames of |E(t) − E(0)| / ((3N − 3) k_B T / 2). 100 frames of 2 fs (5 per chunk, no frame past the run)."""
    from physnetjax import predict
    from physnetjax.errors import PhysNetInputWarning
    from physnetjax.md.integrators import centre_of_mass_at_rest, maxwell_boltzmann_momenta

    model, params, z, r, masses = co2
    temperature, timestep, stride, seed = 300.0, 1.0, 2, 5
    with pytest.warns(PhysNetInputWarning, match="0 Langevin relaxation times"):
        res = md_spectrum(model, params, z, r, temperature_K=temperature, time_ps=0.2, timestep_fs=timestep,
                          equilibration_ps=0.0, replicas=1, record_every=stride, max_correlation_ps=0.1,
                          dtype="float64", seed=seed)
    key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 0))[0]
    momenta = np.asarray(centre_of_mass_at_rest(maxwell_boltzmann_momenta(key, masses, temperature), masses))
    positions = r - masses @ r / masses.sum()

    def energy_forces(x):
        out = predict(model, params, z, x)
        return float(out["energy"]), np.asarray(out["forces"], np.float64)

    def total(potential, p):
        return potential + 0.5 * np.sum(p**2 / masses[:, None]) * AMU_A2_FS2_EV

    potential, forces = energy_forces(positions)
    start, largest = total(potential, momenta), 0.0
    for step in range(1, 201):
        momenta = momenta + 0.5 * timestep * forces / AMU_A2_FS2_EV
        positions = positions + timestep * momenta / masses[:, None]
        potential, forces = energy_forces(positions)
        momenta = momenta + 0.5 * timestep * forces / AMU_A2_FS2_EV
        if step % stride == 0:
            largest = max(largest, abs(total(potential, momenta) - start))
    thermal = (3 * len(z) - 3) * KB_EV * temperature / 2
    assert largest / thermal > 1e-4  # a 1 fs step leaves an error to compare
    assert res.energy_errors[0] == pytest.approx(largest / thermal, rel=1e-6)


def test_result_to_dict_is_json_ready(co2_spectrum):
    data = json.loads(json.dumps(co2_spectrum.to_dict()))
    assert data["resolution_cm1"] == co2_spectrum.resolution_cm1
    assert len(data["frequencies_cm1"]) == len(data["ir_spectrum"]) == len(co2_spectrum.frequencies_cm1)
    assert data["settings"]["replicas"] == 3 and data["settings"]["window"] == "parzen"
    assert data["settings"]["normalization"] == "biased"
    # the times the run records, in ps, are those asked for (SETTINGS: whole frames and chunks at 1 fs per frame)
    for key in ("time_ps", "equilibration_ps", "max_correlation_ps", "timestep_fs", "temperature_K"):
        assert data["settings"][key] == pytest.approx(SETTINGS[key], rel=1e-12), key


def test_short_noisy_run_has_non_negative_spectra_and_band_integrals(co2):
    # 2 × 0.4 ps at 300 K: with the unbiased Hann estimator this run's IR spectrum dipped to
    # −0.12 km/mol per cm⁻¹ and the IR-inactive symmetric stretch integrated to −0.27 km/mol.
    model, params, z, r, _ = co2
    res = md_spectrum(model, params, z, r, temperature_K=300.0, time_ps=0.4, equilibration_ps=0.1, replicas=2,
                      seed=1, dtype="float64")
    for spectra in (res.replica_ir_spectra, res.replica_power_spectra):
        assert np.all(spectra >= -1e-12 * spectra.max())
    nu = res.frequencies_cm1
    for line in (600.9, 1424.7, 2593.5):  # the model's harmonic lines (README), bands as in `spectra ir`
        band = np.abs(nu - line) <= 150.0
        assert np.trapezoid(res.ir_spectrum[band], nu[band]) > 0
        assert np.trapezoid(res.power_spectrum[band], nu[band]) > 0
    # ∫ S dν̃ = C_v(0)/(k_B T) still holds exactly for the biased estimator (same C_0).
    spacing = nu[1] - nu[0]
    for spectrum, temperature in zip(res.replica_power_spectra, res.temperatures_K):
        integral = spacing * (spectrum.sum() - 0.5 * spectrum[0] - 0.5 * spectrum[-1])
        assert integral == pytest.approx(6 * temperature / 300.0, rel=1e-10)


def test_replicas_are_independent(co2_spectrum):
    spectra = co2_spectrum.replica_power_spectra
    assert not np.allclose(spectra[0], spectra[1], rtol=1e-3)
    assert not np.allclose(spectra[1], spectra[2], rtol=1e-3)
    assert len(set(np.round(co2_spectrum.temperatures_K, 6))) == 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature_K=0.0), "temperature_K must be a finite number > 0"),
    (dict(temperature_K=float("nan")), "temperature_K must be a finite number > 0"),
    (dict(temperature_K=1e7), r"temperature_K must be at most 1e\+06 K \(k_B T = 86 eV"),
    (dict(time_ps=-1.0), "time_ps must be a finite number > 0"),
    (dict(timestep_fs=0.0), "timestep_fs must be a finite number > 0"),
    # main: an OverflowError (1e-310 fs), a ZeroDivisionError (5e-324 fs), 10³⁰⁰ frames in digits (1e-300 fs)
    (dict(timestep_fs=1e-310), r"timestep_fs must be at least 0.001 fs, received 1e-310: a spectrum needs "
                               r"picoseconds of MD, 1e\+06 steps per ps at the limit"),
    (dict(timestep_fs=5e-324), "timestep_fs must be at least 0.001 fs, received 5e-324"),
    (dict(time_ps=1e300), r"the run would record 2.4e\+304 values \(5e\+302 frames × 4 replicas × 12 per frame\)"),
    (dict(replicas=0), "replicas must be an integer >= 1"),
    (dict(record_every=20), "resolves only up to"),
    (dict(max_correlation_ps=5.0), "shorter than the correlation window"),
    (dict(time_ps=0.005, record_every=2), "holds 2 recorded frames"),
    (dict(equilibration_ps=-1.0), "equilibration_ps must be finite and >= 0"),
    (dict(masses=[1.0, 2.0]), "masses must have shape"),
    (dict(masses=[12.0, -16.0, 16.0]), "masses must be finite and > 0"),
])
def test_bad_inputs_of_md_spectrum(co2, kwargs, message):
    model, params, z, r, _ = co2
    settings = dict(temperature_K=20.0, time_ps=1.0) | kwargs
    with pytest.raises(ValueError, match=message):
        md_spectrum(model, params, z, r, **settings)


def test_bad_geometry_is_rejected(co2):
    model, params, z, r, _ = co2
    bad = r.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"positions contain NaN or Inf at atom\(s\) 1 "):
        md_spectrum(model, params, z, bad, temperature_K=20.0, time_ps=1.0)
    with pytest.raises(ValueError, match="positions must have shape"):
        md_spectrum(model, params, z, r[:2], temperature_K=20.0, time_ps=1.0)
    with pytest.raises(ValueError, match="of 2 to 256 atoms"):
        md_spectrum(model, params, z[:1], r[:1], temperature_K=20.0, time_ps=1.0)


def test_float32_round_off_at_a_low_temperature_is_named_not_the_timestep(co2):
    """CO2 at 0.001 K in float32: 'NVE energy not conserved ... reduce timestep_fs', and a smaller timestep made it
    worse (5.85 -> 11.3 x n_dof k_B T / 2); float64 conserves it to 0.005."""
    from physnetjax.spectra.md_spectrum import round_off_hint

    model, params, z, r, _ = co2
    with pytest.raises(EnergyConservationError, match=r"float32 resolves the energy only to .* eV, .* at this "
                                                      r"temperature: run in float64 \(dtype float64\), not with a "
                                                      r"smaller timestep$"):
        md_spectrum(model, params, z, r, temperature_K=0.001, time_ps=1.0, equilibration_ps=0.5, replicas=2)
    thermal_20K = 0.5 * 6 * 8.617333262e-5 * 20.0  # n_dof k_B T / 2, eV
    assert round_off_hint(np.array([-0.06]), thermal_20K, np.float32) == ""  # 20 K: the timestep's business
    assert round_off_hint(np.array([-0.06]), thermal_20K / 2e4, np.float64) == ""
    assert "--dtype float64" in round_off_hint(np.array([-0.06]), thermal_20K / 2e4, np.float32, {"dtype": "--dtype"})


def test_a_molecule_that_comes_apart_is_refused_not_given_the_spectrum_of_its_fragments(co2):
    """CO2 at 10000 K loses an oxygen within 0.2 ps: the run stops (the probe got exit 0 and bands of 0.03 degrees of
    freedom where 2 belong); at 300 K nothing comes apart (test_low_temperature_spectra_...)."""
    model, params, z, r, _ = co2
    with pytest.raises(DissociationError, match=r"replica \d came apart during the Langevin equilibration \(by "
                                                r"[\d.]+ ps\): its atoms form 2 groups more than 5 Å \(the model's "
                                                r"cutoff\) apart .*1 at the start; .*lower --temperature \(now 10000 K\)"):
        md_spectrum(model, params, z, r, temperature_K=1e4, time_ps=0.5, equilibration_ps=0.2, replicas=2,
                    names={"temperature_K": "--temperature"})
    assert fragment_count(r, 5.0) == 1 and fragment_count(np.array([[0, 0, 0], [0, 0, 5.1], [0, 0, 9.0]]), 5.0) == 2


def test_replicas_leaving_the_training_distances_warn_once_and_the_result_keeps_the_excursion(co2):
    """A record holding the distances of the start geometry shrunk by 20 %: the molecule lies outside it from the
    start (said once for the start geometry, once for the MD)."""
    model, params, z, r, _ = co2
    record = TrainingRecord(distances=DistanceDomain.of_frames(z[None], 0.8 * r[None], [len(z)], float(model.cutoff)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = md_spectrum(model, params, z, r, temperature_K=300.0, time_ps=0.5, equilibration_ps=0.2,
                             replicas=2, training_record=record)
    left = [str(w.message) for w in caught if issubclass(w.category, TrainingDistancesWarning)
            and "MD of the spectrum left" in str(w.message)]
    assert len(left) == 1 and "left its training data's interatomic distances during the Langevin equilibration" \
                              in left[0]
    assert result.settings["largest_distance_excursion"] > DOMAIN_MARGIN
    plain = md_spectrum(model, params, z, r, temperature_K=300.0, time_ps=0.5, equilibration_ps=0.2, replicas=2)
    assert plain.settings["largest_distance_excursion"] is None


@pytest.mark.slow
def test_broken_energy_conservation_raises(co2):
    model, params, z, r, _ = co2
    # 4 fs is stable (ω h < 2) but far too long for the 13 fs asymmetric-stretch period.
    with pytest.raises(EnergyConservationError, match=r"> 0\.05 allowed; reduce timestep_fs \(now 4 fs\)"):
        md_spectrum(model, params, z, r, temperature_K=300.0, time_ps=0.4, timestep_fs=4.0, record_every=1,
                    equilibration_ps=0.0, replicas=1, dtype="float64", max_energy_error=0.05)
    # `spectra ir` names its option (it said 'max_energy_error = 0.1; reduce timestep_fs', neither an option)
    with pytest.raises(EnergyConservationError, match=r"> 0\.05 allowed; reduce --timestep \(now 4 fs\)"):
        md_spectrum(model, params, z, r, temperature_K=300.0, time_ps=0.4, timestep_fs=4.0, record_every=1,
                    equilibration_ps=0.0, replicas=1, dtype="float64", max_energy_error=0.05,
                    names={"timestep_fs": "--timestep"})


# -- command line -------------------------------------------------------------------------------


def _cli(argv):
    from physnetjax.spectra.__main__ import main

    return main(argv)


def _ir_args(out, **changes):
    options = {"--checkpoint": str(co2_model_path()), "--geometry": str(co2_geometry_path()),
               "--temperature": "20", "--time-ps": "0.4", "--replicas": "2", "--out": str(out),
               "--equilibration-ps": "0.1"} | changes
    return ["ir"] + [item for pair in options.items() for item in pair if item is not None]


@pytest.mark.parametrize("changes, message", [
    # main named md_spectrum's keywords: temperature_K, time_ps, timestep_fs, max_correlation_ps, ...
    ({"--temperature": "-5"}, "error: --temperature must be a finite number > 0 K, received -5.0"),
    ({"--time-ps": "0"}, "error: --time-ps must be a finite number > 0 ps, received 0.0"),
    ({"--replicas": "0"}, "error: --replicas must be an integer >= 1, received 0"),
    ({"--timestep": "0"}, "error: --timestep must be a finite number > 0 fs, received 0.0"),
    ({"--equilibration-ps": "-1"}, "error: --equilibration-ps must be finite and >= 0 ps, received -1.0"),
    ({"--friction": "0"}, "error: --friction must be a finite number > 0 fs^-1, received 0.0"),
    ({"--record-every": "20"}, "error: record interval 10 fs (--timestep × --record-every) resolves only up to 1668 "
                               "cm^-1 (the Nyquist wavenumber) < 4000 cm^-1, the fastest molecular vibrations"),
    ({"--record-every": "20", "--max-wavenumber": "800"}, "would fold back into the spectrum at lower wavenumbers "
                                                          "whatever part of it is shown; lower --record-every"),
    ({"--correlation-ps": "1.0"}, "error: --time-ps = 0.4 ps is shorter than the correlation window --correlation-ps = "
                                  "1 ps (resolution 33.4 cm^-1); increase --time-ps or lower --correlation-ps"),
    ({"--correlation-ps": "0.005"}, "need at least 8: increase --time-ps/--correlation-ps"),
    ({"--masses": "12"}, "error: --masses must have shape (3,), one mass per atom, received shape (1,)"),
    ({"--total-charge": "nan"}, "error: --total-charge must be finite, received nan"),  # main: total_charge
    # main: no --fmax / --max-steps; the harmonic analysis' messages named fmax and max_steps
    ({"--fmax": "0"}, "error: --fmax must be finite and > 0 eV/Å, received 0.0"),
    ({"--max-steps": "0"}, "error: --max-steps must be an integer >= 1, received 0"),
    ({"--max-step": "nan"}, "error: --max-step must be finite and > 0 Å, received nan"),
    ({"--checkpoint": "/nonexistent/ckpt"}, "--checkpoint /nonexistent/ckpt does not exist"),
    ({"--geometry": "/nonexistent.xyz"}, "--geometry /nonexistent.xyz does not exist"),
    # main: after the optimisation and the harmonic analysis had run and --out/config.toml was written
    ({"--seed": "-1"}, "error: --seed must be an integer from 0 to"),
    ({"--checkpoint": str(co2_model_path().parent)}, "is not a checkpoint"),
    # main: ran, and grew to 6 GB of memory within 20 s
    ({"--time-ps": "1e6"}, "error: the run would record 1.2e+10 values (500000000 frames × 2 replicas × 12 per "
                           "frame), 89.4 GiB in float64, more than the 2e+08 allowed: lower --time-ps or --replicas"),
])
def test_cli_bad_input_is_one_line_and_nonzero_before_any_md(tmp_path, capsys, changes, message):
    status = _cli(_ir_args(tmp_path / "out", **changes))
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err.startswith("python -m physnetjax.spectra: error: ") and "\n" not in err and message in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_names_the_optimisation_options_of_its_harmonic_analysis(tmp_path, capsys):
    """On main the ir command had no --max-steps, and its unconverged optimisation said 'raise max_steps'; at a
    geometry that is not a minimum with --no-optimize it said 'fmax = ...' and '(use optimize=True)'."""
    assert _cli(_ir_args(tmp_path / "a", **{"--max-steps": "1", "--fmax": "1e-9", "--no-plot": None})) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("python -m physnetjax.spectra: error: geometry optimisation did not reach max |F| <= "
                          "1.0e-09 eV/Å: max |F| = ") and "after --max-steps 1; raise --max-steps" in err
    last = tmp_path / "a" / "unconverged.xyz"
    assert err.endswith(f"the last geometry is kept in {last}: continue from it with --geometry {last}")
    assert ase.io.read(last).get_chemical_formula() == "CO2" and not (tmp_path / "a" / "spectrum.csv").exists()
    argv = _ir_args(tmp_path / "b", **{"--no-optimize": None, "--fmax": "1e-9", "--time-ps": "0.05", "--replicas": "1",
                                       "--equilibration-ps": "0", "--no-plot": None})
    assert _cli(argv) == 0
    assert ("eV/Å > --fmax 1.0e-09 eV/Å; frequencies at a non-stationary point are not those of the molecule (leave "
            "out --no-optimize to optimise first)") in capsys.readouterr().err


def test_cli_warns_of_a_timestep_that_moves_the_lines_and_refuses_one_that_is_unstable(tmp_path, capsys):
    """main: --timestep 3 put CO2's 2593.5 cm^-1 line at 2891 cm^-1 with only a 'marginal' energy warning, and the
    band table's ±150 cm^-1 window reported its edge; 4.1 fs (unstable from 4.09) ran into an energy error."""
    fast = {"--record-every": "1", "--time-ps": "0.2", "--replicas": "1", "--no-plot": None, "--equilibration-ps": "1",
            "--temperature": "300"}
    assert _cli(_ir_args(tmp_path / "a", **fast, **{"--timestep": "3"})) == 0
    err = capsys.readouterr().err
    assert err.count("python -m physnetjax.spectra: warning: --timestep 3 fs moves the 2593.") == 1, err
    assert "--equilibration-ps" not in err  # 1 ps = 10 relaxation times
    assert _cli(_ir_args(tmp_path / "b", **fast, **{"--timestep": "4.1"})) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m physnetjax.spectra: error: --timestep 4.1 fs is too long for the 2593.")
    assert "velocity Verlet is unstable from 4.09 fs" in err and err.count("\n") == 1
    assert _cli(_ir_args(tmp_path / "c", **{"--equilibration-ps": "0", "--time-ps": "0.05", "--replicas": "1",
                                            "--no-plot": None})) == 0
    assert ("python -m physnetjax.spectra: warning: --equilibration-ps 0 ps is 0 Langevin relaxation times (1/--friction"
            " = 0.1 ps)") in capsys.readouterr().err


def test_cli_has_no_quantum_correction_that_counted_the_factor_twice(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _cli(_ir_args(tmp_path / "out", **{"--quantum-correction": None}))
    assert stop.value.code == 2 and "unrecognized arguments: --quantum-correction" in capsys.readouterr().err


def test_cli_output_path_that_is_a_file_is_rejected(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _cli(_ir_args(blocker)) == 3
    assert capsys.readouterr().err == (f"python -m physnetjax.spectra: error: --out {blocker} exists and is not a "
                                       "directory\n")


@pytest.mark.slow
def test_cli_writes_csv_json_png_with_harmonic_lines(tmp_path, capsys):
    out = tmp_path / "ir"
    with pytest.warns(UserWarning, match="MD lines are ~228 cm.-1 wide"):  # a short 0.2 ps window
        assert _cli(_ir_args(out, **{"--dtype": "float64"})) == 0
    printed = capsys.readouterr().out
    assert "harmonic analysis of CO2" in printed and "resolution:" in printed
    header = (out / "spectrum.csv").read_text().splitlines()[0]
    assert header == "wavenumber_cm1,power_per_cm1,ir_km_mol_per_cm1"
    rows = np.loadtxt(out / "spectrum.csv", delimiter=",", skiprows=1)
    assert rows[-1, 0] <= 4000.0 and rows.shape[1] == 3
    document = json.loads((out / "spectrum.json").read_text())
    assert len(document["harmonic"]["frequencies_cm1"]) == 4
    assert [band["degeneracy"] for band in document["bands"]] == [2, 1, 1]
    assert [band["half_width_cm1"] for band in document["bands"]] == [150.0, 150.0, 150.0]
    assert document["settings"]["replicas"] == 2 and len(document["temperatures_K"]) == 2
    assert document["model"] == {"ensemble_members": 1, "analysed": "the model's energy and dipole"}
    assert document["resolution_cm1"] == pytest.approx(1.0 / (C_CM_PER_FS * 200.0), rel=1e-12)
    assert document["units"]["resolution_cm1"] == "cm^-1" and "km/mol" in document["units"]["bands"]
    assert {key for key in document if key not in ("checkpoint", "geometry", "model", "units")} <= set(
        document["units"])  # every number has its unit (spectrum.json had no units table)
    assert (out / "spectrum.png").stat().st_size > 10_000


def test_cli_runs_a_float64_checkpoint_in_float64_unless_told_float32(tmp_path, capsys, monkeypatch):
    """--dtype defaults to the checkpoint's precision (float64 for a model trained with train --float64), as the
    resolved settings in config.toml, written before the harmonic analysis, record (the run is stopped there)."""
    import importlib
    import tomllib

    from physnetjax.checkpoint import save_checkpoint
    from physnetjax.errors import PhysNetInputError

    model, params = load_checkpoint(co2_model_path())
    double = save_checkpoint(tmp_path / "co2-float64", model.clone(param_dtype=np.float64),
                             cast_params(params, np.float64))

    def stop(*args, **kwargs):
        raise PhysNetInputError("stopped once the settings were written")

    monkeypatch.setattr(importlib.import_module("physnetjax.spectra.harmonic"), "harmonic", stop)
    for checkpoint, option, dtype in ((double, {}, "float64"), (double, {"--dtype": "float32"}, "float32"),
                                      (co2_model_path(), {}, "float32")):
        out = tmp_path / f"ir-{len(option)}-{checkpoint.name}"
        assert _cli(_ir_args(out, **{"--checkpoint": str(checkpoint)}, **option)) == 2
        assert "stopped once the settings were written" in capsys.readouterr().err
        assert tomllib.loads((out / "config.toml").read_text())["dtype"] == dtype


def test_bands_narrower_than_the_md_lines_are_warned_about():
    """CO2's lines (601, 1425, 2594 cm⁻¹) in a 0.2 ps window (167 cm⁻¹ resolution): the ±150 cm⁻¹ bands hold
    the neighbours' tails, which the table would not say; a 3 ps window (11 cm⁻¹) is fine."""
    from types import SimpleNamespace

    from physnetjax.spectra.autocorrelation import resolution_cm1
    from physnetjax.spectra.cli_ir import bands, resolution_warning

    lines = SimpleNamespace(frequencies_cm1=np.array([0.0, 0.0, 600.9, 600.9, 1424.7, 2593.5]),
                            intensities_km_mol=np.array([0.0, 0.0, 50.0, 50.0, 0.0, 500.0]),
                            imaginary=np.zeros(6, bool), zero_modes=np.array([True, True, False, False, False, False]))
    nu = np.linspace(0.0, 4000.0, 4001)
    for window_ps, warned in ((0.2, True), (3.0, False)):
        result = SimpleNamespace(frequencies_cm1=nu, power_spectrum=np.ones_like(nu), ir_spectrum=np.ones_like(nu),
                                 resolution_cm1=resolution_cm1(window_ps * 1e3),
                                 settings={"max_correlation_ps": window_ps})
        found = bands(result, lines)
        assert [band["half_width_cm1"] for band in found] == [150.0, 150.0, 150.0]
        message = resolution_warning(result, found)
        assert (message is not None) == warned
    assert "MD lines are ~228 cm^-1 wide at half maximum (correlation window 0.2 ps, resolution 167 cm^-1)" in \
        resolution_warning(SimpleNamespace(resolution_cm1=resolution_cm1(200.0), settings={"max_correlation_ps": 0.2}),
                           found)


def test_bands_locate_each_spectrum_s_own_peak_and_sum_a_degenerate_band():
    """Synthetic spectra on a 1 cm⁻¹ grid: a power band (a Gaussian of area 2, σ = 10 cm⁻¹) at 612 cm⁻¹ and an
    IR band (area 80 km/mol) at 590 cm⁻¹ around CO2's degenerate bend (600.9 and 601.4 cm⁻¹: one band of
    degeneracy 2 centred at their mean, harmonic intensity 50 + 50 km/mol), and a line at 2593.5 cm⁻¹."""
    from types import SimpleNamespace

    from physnetjax.spectra.cli_ir import bands

    def gaussian(nu, centre, area, sigma=10.0):
        return area * np.exp(-0.5 * ((nu - centre) / sigma) ** 2) / (sigma * np.sqrt(2.0 * np.pi))

    lines = SimpleNamespace(frequencies_cm1=np.array([0.0, 2593.5, 601.4, 600.9]),
                            intensities_km_mol=np.array([0.0, 500.0, 50.0, 50.0]),
                            imaginary=np.zeros(4, bool), zero_modes=np.array([True, False, False, False]))
    nu = np.linspace(0.0, 4000.0, 4001)
    result = SimpleNamespace(frequencies_cm1=nu, power_spectrum=gaussian(nu, 612.0, 2.0) + gaussian(nu, 2600.0, 1.0),
                             ir_spectrum=gaussian(nu, 590.0, 80.0) + gaussian(nu, 2590.0, 400.0))
    bend, stretch = bands(result, lines)
    assert bend["degeneracy"] == 2 and bend["harmonic_cm1"] == pytest.approx(601.15, abs=1e-12)
    assert bend["harmonic_km_mol"] == pytest.approx(100.0, abs=1e-12)
    assert bend["power_peak_cm1"] == 612.0 and bend["ir_peak_cm1"] == 590.0
    assert bend["power_band_dof"] == pytest.approx(2.0, rel=1e-6)
    assert bend["ir_band_km_mol"] == pytest.approx(80.0, rel=1e-6)
    assert stretch["degeneracy"] == 1 and stretch["harmonic_km_mol"] == 500.0
    assert stretch["power_peak_cm1"] == 2600.0 and stretch["ir_peak_cm1"] == 2590.0


def test_bands_follow_their_lines_where_the_timestep_moves_them():
    """CO2's 2593.5 cm⁻¹ line at a 3 fs step lies at (2/h) arcsin(ωh/2) = 2911.8 cm⁻¹: its band, looked for at
    2593.5 ± 150, held 2.4 km/mol of 1069 (the probe's table); it is looked for where the run puts it."""
    from types import SimpleNamespace

    from physnetjax.spectra.cli_ir import bands

    omega_h = 2 * np.pi * C_CM_PER_FS * 2593.5 * 3.0
    moved = 2 * np.arcsin(omega_h / 2) / (2 * np.pi * C_CM_PER_FS * 3.0)
    assert 2905 < moved < 2915
    lines = SimpleNamespace(frequencies_cm1=np.array([2593.5]), intensities_km_mol=np.array([1069.0]),
                            imaginary=np.zeros(1, bool), zero_modes=np.zeros(1, bool))
    nu = np.linspace(0.0, 4000.0, 4001)
    ir = 400.0 * np.exp(-0.5 * ((nu - moved) / 10.0) ** 2) / (10.0 * np.sqrt(2.0 * np.pi))
    result = SimpleNamespace(frequencies_cm1=nu, power_spectrum=ir / 400.0, ir_spectrum=ir,
                             settings={"timestep_fs": 3.0})
    (band,) = bands(result, lines)
    assert band["harmonic_cm1"] == 2593.5 and band["md_line_cm1"] == pytest.approx(moved, rel=1e-12)
    assert band["ir_band_km_mol"] == pytest.approx(400.0, rel=1e-6)


def test_each_band_reaches_half_way_to_its_neighbours_at_most_the_isolated_half_width():
    """Lines at 1000, 1200 and 1260 cm⁻¹: the bands' half-widths are min(150, half the distance to each neighbour),
    100, 30 and 30 cm⁻¹ (the middle band is cut by its upper neighbour, the first by its only one)."""
    from types import SimpleNamespace

    from physnetjax.spectra.cli_ir import bands

    lines = SimpleNamespace(frequencies_cm1=np.array([1260.0, 1000.0, 1200.0]), intensities_km_mol=np.ones(3),
                            imaginary=np.zeros(3, bool), zero_modes=np.zeros(3, bool))
    nu = np.linspace(0.0, 4000.0, 4001)
    result = SimpleNamespace(frequencies_cm1=nu, power_spectrum=np.ones_like(nu), ir_spectrum=np.ones_like(nu))
    found = bands(result, lines)
    assert [band["harmonic_cm1"] for band in found] == [1000.0, 1200.0, 1260.0]
    assert [band["half_width_cm1"] for band in found] == [100.0, 30.0, 30.0]
    assert [band["power_band_dof"] for band in found] == pytest.approx([200.0, 60.0, 60.0], rel=1e-12)


def test_a_band_of_two_grid_points_is_integrated_and_a_zero_spectrum_has_no_centre():
    """Lines at 1000 and 1016 cm⁻¹ on a 10 cm⁻¹ grid offset by 2.5: each ±8 cm⁻¹ band holds two grid points, enough
    for a trapezoid (10 cm⁻¹ × the value); an IR spectrum of zeros (no charges) integrates to 0 km/mol, and its
    centre ∫ν̃S/∫S is None, not a division by zero."""
    from types import SimpleNamespace

    from physnetjax.spectra.cli_ir import bands

    lines = SimpleNamespace(frequencies_cm1=np.array([1000.0, 1016.0]), intensities_km_mol=None,
                            imaginary=np.zeros(2, bool), zero_modes=np.zeros(2, bool))
    nu = np.arange(0.0, 4000.0, 10.0) + 2.5
    result = SimpleNamespace(frequencies_cm1=nu, power_spectrum=np.full_like(nu, 0.5), ir_spectrum=np.zeros_like(nu))
    for band, points in zip(bands(result, lines), ([992.5, 1002.5], [1012.5, 1022.5]), strict=True):
        assert band["half_width_cm1"] == 8.0 and band["harmonic_km_mol"] is None
        assert band["power_band_dof"] == pytest.approx(5.0, rel=1e-12)
        assert band["power_centre_cm1"] == pytest.approx(np.mean(points), rel=1e-12)
        assert band["ir_band_km_mol"] == 0.0 and band["ir_centre_cm1"] is None


def test_bands_of_lines_closer_than_the_grid_spacing_are_none_not_a_crash():
    """Ethanol's lines at 1482.8 and 1503.3 cm⁻¹ on the 42 cm⁻¹ grid of a 0.1 ps window: their ±10 cm⁻¹ bands
    hold no grid point (the table crashed with 'argmax of an empty sequence' after the whole MD) or one (a band
    integral of 0); they are None and the resolution warning says to run longer. The isolated line is kept."""
    from types import SimpleNamespace

    from physnetjax.spectra.autocorrelation import resolution_cm1
    from physnetjax.spectra.cli_ir import bands, resolution_warning

    lines = SimpleNamespace(frequencies_cm1=np.array([1482.8, 1503.3, 3551.7]),
                            intensities_km_mol=np.array([11.3, 18.3, 41.9]),
                            imaginary=np.zeros(3, bool), zero_modes=np.zeros(3, bool))
    for offset in (0.0, 17.0):  # no grid point, then one grid point within ±10.25 cm^-1 of 1482.8
        nu = np.arange(0.0, 8000.0, 41.7) + offset
        result = SimpleNamespace(frequencies_cm1=nu, power_spectrum=np.ones_like(nu), ir_spectrum=np.ones_like(nu),
                                 resolution_cm1=resolution_cm1(100.0), settings={"max_correlation_ps": 0.1})
        found = bands(result, lines)
        for band in found[:2]:
            assert band["power_peak_cm1"] is band["power_band_dof"] is None
            assert band["ir_peak_cm1"] is band["ir_band_km_mol"] is None
        assert found[2]["ir_band_km_mol"] > 200.0  # ±150 cm^-1 of ones: 250 or 292 on this grid
        assert "run longer" in resolution_warning(result, found)


@pytest.mark.parametrize("metadata, said", [
    (None, "total charge 1 e given to a model without charges"),
    ({"trained_charges": [0.0]}, "total charge +1 e never occurred in this model's training data (trained on total "
                                 "charge 0 e); a model without charges"),
])
def test_cli_says_an_input_warning_of_the_molecule_and_its_md_once(tmp_path, capsys, metadata, said):
    """A model without charges and --total-charge 1: the harmonic analysis and the MD from its geometry each
    warned the same line (a fresh model: zero output head, so no forces and nothing else to warn about MD).
    With the training's charge states recorded, the warning names them."""
    from physnetjax import PhysNet, init_params, save_checkpoint

    model = PhysNet(features=4, max_degree=0, num_iterations=1, num_basis_functions=4, cutoff=4.0, max_atomic_number=8,
                    zbl=False)
    save_checkpoint(tmp_path / "model", model, init_params(model, 0), metadata)
    argv = _ir_args(tmp_path / "out", **{"--checkpoint": str(tmp_path / "model"), "--total-charge": "1",
                                         "--time-ps": "0.05", "--equilibration-ps": "0", "--replicas": "1",
                                         "--no-optimize": None, "--no-plot": None})
    assert _cli(argv) == 0
    err = capsys.readouterr().err
    assert err.count(f"python -m physnetjax.spectra: warning: {said}") == 1 and err.count("charges=False") == 1
    assert json.loads((tmp_path / "out" / "spectrum.json").read_text())["model"] == {
        "ensemble_members": 1, "analysed": "the model's energy"}  # charges=False: no dipole


def test_cli_warns_once_that_the_ir_intensities_of_a_model_with_a_low_recorded_dipole_r2_are_unreliable(
        tmp_path, capsys):
    """The trainer records the dipole R² in the molecular frame; ir printed harmonic intensities and an IR spectrum
    of a model that got it 0.1 without a word. A fresh charge model (zero output heads: no forces, cheap MD)."""
    from physnetjax import PhysNet, init_params, save_checkpoint
    from physnetjax.dipole_surface import DIPOLE_SURFACE_KEY

    model = PhysNet(features=4, max_degree=0, num_iterations=1, num_basis_functions=4, cutoff=4.0, max_atomic_number=8,
                    zbl=False, charges=True)
    fit = {"r2": 0.1, "frames": 40, "compositions": 1, "spread_rms": 0.014, "error_rms": 0.013}
    save_checkpoint(tmp_path / "model", model, init_params(model, 0), {DIPOLE_SURFACE_KEY: {"valid": fit,
                                                                                           "test": None}})
    argv = _ir_args(tmp_path / "out", **{"--checkpoint": str(tmp_path / "model"), "--time-ps": "0.05",
                                         "--equilibration-ps": "0", "--replicas": "1", "--no-optimize": None,
                                         "--no-plot": None})
    assert _cli(argv) == 0
    err = capsys.readouterr().err
    assert err.count("python -m physnetjax.spectra: warning: the model's dipole follows the geometry poorly: dipole "
                     "R² in the molecular frame 0.10 on the valid split") == 1
    assert "IR intensities (which depend only on dipole derivatives) are unreliable" in err


def test_cli_json_says_an_ensemble_runs_on_its_mean_energy(tmp_path, capsys):
    """An ensemble checkpoint: the MD runs on the members' mean energy (and a charge model's IR spectrum is of their
    mean dipole), which the CLI printed but spectrum.json did not record: a file of an ensemble read as one of a
    single model. (A fresh model without charges, as above: no forces, cheap MD.)"""
    from physnetjax import PhysNet, init_params, save_checkpoint
    from physnetjax.ensemble import PhysNetEnsemble, stack_members

    model = PhysNet(features=4, max_degree=0, num_iterations=1, num_basis_functions=4, cutoff=4.0, max_atomic_number=8,
                    zbl=False)
    save_checkpoint(tmp_path / "ensemble", PhysNetEnsemble(member=model, size=2),
                    stack_members([init_params(model, 0), init_params(model, 1)]))
    argv = _ir_args(tmp_path / "out", **{"--checkpoint": str(tmp_path / "ensemble"), "--time-ps": "0.05",
                                         "--equilibration-ps": "0", "--replicas": "1", "--no-optimize": None,
                                         "--no-plot": None})
    assert _cli(argv) == 0
    assert capsys.readouterr().out.startswith(
        "ensemble of 2 members: the analysis is of their mean energy (one Hessian")
    assert json.loads((tmp_path / "out" / "spectrum.json").read_text())["model"] == {
        "ensemble_members": 2, "analysed": "the members' mean energy"}


def test_cli_refuses_a_molecule_too_large_for_md_before_the_harmonic_analysis(tmp_path, capsys):
    """257 atoms: md_spectrum refuses them, but only after the harmonic analysis (a 771 × 771 Hessian) had run."""
    grid = np.stack(np.meshgrid(*[np.arange(7.0)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)[:257]
    ase.io.write(tmp_path / "big.xyz", ase.Atoms(["H"] * 257, positions=1.5 * grid))
    status = _cli(_ir_args(tmp_path / "out", **{"--geometry": str(tmp_path / "big.xyz")}))
    assert status == 2
    assert capsys.readouterr().err == ("python -m physnetjax.spectra: error: md_spectrum is for isolated molecules of "
                                       "2 to 256 atoms, received 257\n")
    assert not (tmp_path / "out").exists()


def test_float32_md_does_not_depend_on_where_the_molecule_sits(co2):
    """CO2 3000 Å from the origin: float32 positions resolved it to ~2e-4 Å, and 1 ps at 300 K stopped with
    'NVE energy not conserved ... reduce timestep_fs'. The start is moved to its centre of mass: same spectra."""
    model, params, z, r, masses = co2
    settings = dict(temperature_K=300.0, time_ps=1.0, equilibration_ps=0.2, replicas=2, dtype="float32")
    at_origin = md_spectrum(model, params, z, r - masses @ r / masses.sum(), **settings)
    far = md_spectrum(model, params, z, r + 3000.0, **settings)
    np.testing.assert_allclose(far.energy_errors, at_origin.energy_errors, rtol=1e-5)
    np.testing.assert_allclose(far.ir_spectrum, at_origin.ir_spectrum, rtol=1e-4,
                               atol=1e-6 * at_origin.ir_spectrum.max())
    np.testing.assert_allclose(far.power_spectrum, at_origin.power_spectrum, rtol=1e-4,
                               atol=1e-6 * at_origin.power_spectrum.max())


@pytest.mark.slow
def test_cli_does_not_call_a_stretched_optimised_geometry_a_unit_slip(tmp_path, capsys):
    """CO2⁺ with the neutral CO2 model, started at C–O 2.0 / 3.0 Å (not stretched as by bohr), optimises to a spurious
    stretched minimum (C–O 3.0 Å, 2.1× the covalent bond length): the harmonic analysis says so; md_spectrum,
    started there, added 'are they in bohr?' about a geometry the user never gave."""
    cation = ase.io.read(co2_geometry_path())
    cation.positions = [[0.0, 0.0, 0.0], [0.0, 0.0, -2.0], [0.0, 0.0, 3.0]]
    cation.info["charge"] = 1
    ase.io.write(tmp_path / "cation.extxyz", cation)
    argv = _ir_args(tmp_path / "out", **{"--geometry": str(tmp_path / "cation.extxyz"), "--temperature": "100",
                                         "--time-ps": "0.1", "--equilibration-ps": "0", "--replicas": "1",
                                         "--no-plot": None})
    with pytest.warns(UserWarning, match="MD lines are"):  # 0.1 ps: the soft lines (below 300 cm^-1) overlap
        assert _cli(argv) == 0
    err = capsys.readouterr().err
    assert err.count("warning: the optimised geometry has its atoms 2.1") == 1 and "bohr" not in err, err


def test_cli_says_a_bohr_geometry_once_and_md_spectrum_warns_with_its_own_class(tmp_path, capsys):
    """The ir command dropped md_spectrum's 'are they in bohr?' (harmonic() said it already) by matching the
    words 'the covalent bond length' in any warning; the check now has its own class, LengthUnitWarning, which
    the command leaves out of the MD's warnings and callers can filter."""
    from physnetjax import PhysNet, init_params, save_checkpoint
    from physnetjax.errors import LengthUnitWarning, PhysNetInputWarning

    assert issubclass(LengthUnitWarning, PhysNetInputWarning)
    model = PhysNet(features=4, max_degree=0, num_iterations=1, num_basis_functions=4, cutoff=4.0, max_atomic_number=8,
                    zbl=False)
    params = init_params(model, 0)
    save_checkpoint(tmp_path / "model", model, params)
    in_bohr = ase.io.read(co2_geometry_path())
    in_bohr.positions *= 1.8897
    with pytest.warns(LengthUnitWarning, match="are they in bohr"), pytest.raises(ValueError, match="temperature_K"):
        md_spectrum(model, params, in_bohr.numbers, in_bohr.positions, temperature_K=-1.0, time_ps=0.1)
    ase.io.write(tmp_path / "bohr.xyz", in_bohr)
    argv = _ir_args(tmp_path / "out", **{"--checkpoint": str(tmp_path / "model"),
                                         "--geometry": str(tmp_path / "bohr.xyz"), "--time-ps": "0.05",
                                         "--equilibration-ps": "0", "--replicas": "1", "--no-optimize": None,
                                         "--no-plot": None})
    assert _cli(argv) == 0
    assert capsys.readouterr().err.count("are they in bohr") == 1


def test_the_ir_command_leaves_out_the_mds_length_unit_warning_by_class_not_by_words(capsys):
    """_tell(skip=...) dropped every MD warning containing 'the covalent bond length', whatever it said."""
    from physnetjax.errors import LengthUnitWarning, PhysNetInputWarning
    from physnetjax.spectra.cli_ir import _tell

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("atoms sit 1.93× the covalent bond length from their nearest neighbours", LengthUnitWarning)
        warnings.warn("a geometry 2.10× the covalent bond length apart", PhysNetInputWarning)
    _tell(caught, set(), skip=LengthUnitWarning)
    err = capsys.readouterr().err
    assert "1.93×" not in err and err.count("PhysNetInputWarning: a geometry 2.10× the covalent bond length") == 1


def test_plan_run_takes_numpy_numbers():
    """equilibration_ps=np.float32(1.0) was refused as "must be >= 0 ps, received np.float32(1.0)"."""
    from physnetjax.spectra.md_spectrum import plan_run

    settings = dict(temperature_K=300.0, time_ps=np.float64(2.0), timestep_fs=0.5, replicas=np.int64(2),
                    friction=0.01, record_every=4, max_correlation_ps=None, max_energy_error=0.1)
    for equilibration in (np.float32(1.0), np.int64(1), 1.0):
        assert plan_run(equilibration_ps=equilibration, **settings).num_frames == 1000


def test_rotational_contour_against_si_units_and_linear_molecules():
    """σ_rot = √(k_B T / I_min) / (2π c): the moments from a brute-force loop over atoms (inertia tensor
    Σ m (r² 1 − r rᵀ)) and SI constants (CODATA k_B, amu, c) for bent water; CO2's zero moment about its axis is
    not a rotation, a single atom has none."""
    from physnetjax.spectra.rotational_contour import rotational_contour_cm1, rotational_sigma_cm1

    masses = np.array([15.999, 1.008, 1.008])
    positions = np.array([[0.0, 0.0, 0.1193], [0.0, 0.7632, -0.4770], [0.0, -0.7632, -0.4770]])
    centre = sum(m * r for m, r in zip(masses, positions)) / masses.sum()
    tensor = np.zeros((3, 3))
    for m, r in zip(masses, positions):
        d = r - centre
        tensor += m * (np.dot(d, d) * np.eye(3) - np.outer(d, d))
    smallest = min(np.linalg.eigvalsh(tensor)) * 1.66053906660e-27 * 1e-20  # kg m²
    expected = np.sqrt(1.380649e-23 * 300.0 / smallest) / (2.0 * np.pi * 2.99792458e10)
    assert rotational_sigma_cm1(masses, positions, 300.0) == pytest.approx(expected, rel=1e-6)
    assert rotational_contour_cm1(masses, positions, 300.0) == pytest.approx(3.0 * expected, rel=1e-6)
    assert 100.0 < expected < 110.0

    co2 = np.array([[0.0, 0.0, -1.16], [0.0, 0.0, 0.0], [0.0, 0.0, 1.16]])
    moment = 2 * 15.999 * 1.16 ** 2 * 1.66053906660e-27 * 1e-20
    assert rotational_sigma_cm1([15.999, 12.011, 15.999], co2, 300.0) == pytest.approx(
        np.sqrt(1.380649e-23 * 300.0 / moment) / (2.0 * np.pi * 2.99792458e10), rel=1e-6)
    assert rotational_sigma_cm1([4.0026], [[0.0, 0.0, 0.0]], 300.0) == 0.0


def test_bands_of_a_rotating_molecule_are_centred_and_span_its_rotational_contour():
    """Water's bend (1539 cm⁻¹) at 300 K as classical MD gives it: a rotational contour ∝ |x| e^{−x²/2σ²}
    around the line (σ = 105 cm⁻¹), P branch weaker than R (weights 0.8 and 1.2), IR area 133 km/mol. The band
    centre is the line's (the maxima sit ±σ away: 51 cm⁻¹ off, as a user found), the band holds the contour
    (±150 cm⁻¹ held 64 % of it) and the table shows centres; for CO2 the half-width stays 150 cm⁻¹."""
    from types import SimpleNamespace

    from physnetjax.spectra.cli_ir import bands, isolated_half_width_cm1, resolution_warning, summary

    sigma, line, area = 105.0, 1539.0, 133.0
    nu = np.arange(0.0, 5000.0, 1.0)
    x = nu - line
    contour = np.abs(x) * np.exp(-0.5 * (x / sigma) ** 2) * np.where(x < 0, 0.8, 1.2)
    contour *= area / np.trapezoid(contour, nu)
    masses = [15.999, 1.008, 1.008]
    water = np.array([[0.0, 0.0, 0.1193], [0.0, 0.7632, -0.4770], [0.0, -0.7632, -0.4770]])
    lines = SimpleNamespace(frequencies_cm1=np.array([line, 3643.0, 3651.0]), intensities_km_mol=np.array(
        [133.0, 7.0, 16.0]), imaginary=np.zeros(3, bool), zero_modes=np.zeros(3, bool), positions=water)
    result = SimpleNamespace(frequencies_cm1=nu, power_spectrum=contour / area, ir_spectrum=contour,
                             resolution_cm1=3.3, settings={"masses_amu": masses, "temperature_K": 300.0,
                                                           "max_correlation_ps": 10.0, "replicas": 1, "time_ps": 20.0,
                                                           "equilibration_ps": 2.0, "timestep_fs": 0.5,
                                                           "window": "parzen"},
                             md_seconds=1.0, compile_seconds=1.0, temperatures_K=np.array([300.0]),
                             energy_errors=np.array([0.01]))
    half = isolated_half_width_cm1(result, lines)
    assert 3.0 * 100.0 < half < 3.0 * 110.0
    bend = bands(result, lines, half)[0]
    assert bend["half_width_cm1"] == pytest.approx(half)
    expected_centre = line + np.trapezoid(x * contour, nu) / area  # the asymmetry's own shift, ~+17 cm^-1
    assert bend["ir_centre_cm1"] == pytest.approx(expected_centre, abs=0.5)
    assert bend["power_centre_cm1"] == pytest.approx(expected_centre, abs=0.5)
    assert abs(bend["ir_peak_cm1"] - line) > 0.9 * sigma  # the R-branch maximum
    assert bend["ir_band_km_mol"] == pytest.approx(area, rel=0.02)
    assert bands(result, lines)[0]["ir_band_km_mol"] < 0.7 * area  # the former ±150 cm^-1 window: 1 - e^(-1.02)
    table = summary(result, bands(result, lines, half))
    assert "MD IR centre" in table and f"{bend['ir_centre_cm1']:.1f}" in table
    assert "rotational contour" in resolution_warning(result, bands(result, lines, half), half)

    co2 = SimpleNamespace(positions=np.array([[0.0, 0.0, -1.16], [0.0, 0.0, 0.0], [0.0, 0.0, 1.16]]))
    cold = SimpleNamespace(settings={"masses_amu": [15.999, 12.011, 15.999], "temperature_K": 300.0})
    assert isolated_half_width_cm1(cold, co2) == 150.0


@pytest.mark.slow  # two float64 CO2 runs: 5-12 s
def test_an_energy_error_above_a_quarter_of_the_allowed_one_is_warned_about():
    """The same short, seeded float64 run twice: its max |E(t) − E(0)| / (n_dof k_B T/2) = e is the same each time
    (same seed, same program). With max_energy_error = 2e the error is above a quarter of the allowed one
    (0.5 e < e) and below it: a warning, no error; under the default 0.1 > 4 e (the first run) nothing is said."""
    model, params = load_checkpoint(co2_model_path())
    atoms = ase.io.read(co2_geometry_path())
    settings = dict(temperature_K=300.0, time_ps=0.06, equilibration_ps=0.0, replicas=1, seed=3, dtype="float64",
                    timestep_fs=1.0, max_correlation_ps=0.04)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        error = float(md_spectrum(model, params, atoms.numbers, atoms.positions, max_energy_error=0.1,
                                  **settings).energy_errors.max())
    assert 0.0 < error < 0.025  # so that 0.1 allowed is more than 4 e: no warning
    assert not [w for w in caught if "marginal" in str(w.message)]
    with pytest.warns(UserWarning, match=r"NVE energy conservation is marginal: max \|E\(t\) - E\(0\)\| = "):
        again = md_spectrum(model, params, atoms.numbers, atoms.positions, max_energy_error=2.0 * error, **settings)
    assert float(again.energy_errors.max()) == error
