"""Time-correlation functions and their spectra, as pure NumPy functions (float64, host side).

The pipeline from a sampled signal x(t_n), t_n = n Δt, n = 0 … T−1, to a spectrum:

1. :func:`autocorrelation` — C_k = ⟨x(t)·x(t + kΔt)⟩ for lags k = 0 … M−1 by a
   zero-padded FFT (no circular wrap-around), normalised by the number of pairs
   (unbiased, the default) or by T (biased).
2. A lag window w_k, k = 0 … M−1, with w_0 = 1 and w → 0 at the end of the window, so
   the spectrum has no truncation ripples: :func:`hann_lag_window`
   w_k = ½ (1 + cos(π k / M)) or :func:`parzen_lag_window`.
3. :func:`spectrum_from_correlation` — the one-sided spectral density in wavenumbers,

       S(ν̃) = 2 c Δt [ C_0 + 2 Σ_{k=1}^{M−1} w_k C_k cos(2π c ν̃ k Δt) ],

   the Fourier transform of the even, windowed correlation function, with c in cm/fs.
   It is normalised so that ∫_0^∞ S(ν̃) dν̃ = C_0 (exactly, on the discrete grid with
   trapezoid end weights): a spectrum integrates to the mean square of the signal.
4. :func:`resolution_cm1` — Δν̃ = 1 / (c · M Δt): the frequency resolution of a
   correlation window of length M Δt. A line's full width at half maximum is
   1.00 Δν̃ with the Hann window and 1.28 Δν̃ with the Parzen window (1.37 Δν̃ on the
   biased estimator of a signal T = 2M samples long).

Non-negativity: the biased C_k over all lags |k| < T is the Fourier transform of the
periodogram |Σ_t x_t e^{−2πi f t}|² / T ≥ 0, so with a lag window whose transform W is
non-negative, S = periodogram ⊛ W ≥ 0 at every ν̃ for any signal. The Parzen window has
W ≥ 0. The Hann window's W has negative side lobes (down to −2.7 % of its peak) and the
unbiased C_k is not the transform of a periodogram, so with either S can come out
slightly negative where the spectrum is small (a short, noisy run). The biased
estimator with the Parzen window gives a non-negative spectrum at the cost of broader
lines; its expectation is the true spectrum smoothed by the non-negative transform of
w_k (1 − k/T).

Units: Δt in fs, wavenumbers in cm⁻¹, c = :data:`physnetjax.units.SPEED_OF_LIGHT_CM_PER_FS`.
"""

from __future__ import annotations

import numpy as np

from physnetjax.units import SPEED_OF_LIGHT_CM_PER_FS
from physnetjax.validation import check_count, check_range

NORMALIZATIONS = ("unbiased", "biased")


def autocorrelation(signal, max_lag: int | None = None, normalization: str = "unbiased") -> np.ndarray:
    """Autocorrelation of each component of ``signal`` along its first (time) axis.

    C_k[...] = (1 / n_k) Σ_{t=0}^{T−1−k} x_t[...] x_{t+k}[...], k = 0 … M−1, with
    n_k = T − k (``"unbiased"``: each lag is a plain mean over its T − k pairs) or
    n_k = T (``"biased"``: the estimator whose Fourier transform is the periodogram,
    damped towards large lags). Computed by an FFT of the signal zero-padded to at
    least 2T − 1 points, which removes the circular wrap-around exactly. The mean is
    *not* subtracted. Sum over trailing axes yourself (e.g. over atoms and x, y, z).

    Args:
      signal: (T, ...) real samples, any trailing shape.
      max_lag: number of lags M (1 ≤ M ≤ T); default T.
      normalization: ``"unbiased"`` or ``"biased"``.

    Returns:
      (M, ...) float64 correlation, C_0 = mean of x² per component.

    Raises:
      ValueError: empty signal, M not an integer in range, unknown normalization, complex or non-finite samples.
    """
    x = _real_samples(signal, "signal")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"signal must have at least one sample along axis 0, received shape {x.shape}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, received {normalization!r}")
    if not np.all(np.isfinite(x)):
        raise ValueError("signal contains NaN or Inf")
    num_samples = x.shape[0]
    max_lag = num_samples if max_lag is None else check_count("max_lag", max_lag, what="number of lags")
    if not 1 <= max_lag <= num_samples:
        raise ValueError(f"max_lag must be in [1, {num_samples}] (the number of samples), received {max_lag}")
    size = _fast_length(2 * num_samples - 1)
    transform = np.fft.rfft(x, n=size, axis=0)
    correlation = np.fft.irfft(transform * np.conj(transform), n=size, axis=0)[:max_lag]
    lags = np.arange(max_lag)
    pairs = num_samples - lags if normalization == "unbiased" else np.full(max_lag, num_samples)
    return correlation / pairs.reshape((max_lag,) + (1,) * (x.ndim - 1))


def hann_lag_window(num_lags: int) -> np.ndarray:
    """One-sided Hann window over the correlation lag: w_k = ½ (1 + cos(π k / M)), k = 0 … M−1.

    w_0 = 1 (the spectrum keeps ∫ S dν̃ = C_0), w decreases monotonically and would reach
    0 at k = M, one lag past the window. Applied to the even extension C_{−k} = C_k it is
    the symmetric Hann window of length 2M.

    Raises:
      ValueError: ``num_lags`` < 1.
    """
    if num_lags < 1:
        raise ValueError(f"num_lags must be >= 1, received {num_lags}")
    return 0.5 * (1.0 + np.cos(np.pi * np.arange(num_lags) / num_lags))


def parzen_lag_window(num_lags: int) -> np.ndarray:
    """One-sided Parzen window over the correlation lag, w_k = P(k / M), k = 0 … M−1, with

        P(u) = 1 − 6u² + 6u³ for u ≤ ½,   P(u) = 2 (1 − u)³ for ½ ≤ u ≤ 1.

    P is the four-fold convolution of a box of width ½ with itself, so its Fourier
    transform (3M/4) [sin(π f M/2) / (π f M/2)]⁴ (f in cycles per lag) is non-negative,
    and so is that of the sampled window (the sum of its shifts by whole cycles). w_0 = 1,
    w decreases monotonically and would reach 0 at k = M.

    Raises:
      ValueError: ``num_lags`` < 1.
    """
    if num_lags < 1:
        raise ValueError(f"num_lags must be >= 1, received {num_lags}")
    u = np.arange(num_lags) / num_lags
    return np.where(u <= 0.5, 1.0 - 6.0 * u**2 + 6.0 * u**3, 2.0 * (1.0 - u) ** 3)


WINDOWS = {"hann": hann_lag_window, "parzen": parzen_lag_window, "none": np.ones}


def spectrum_from_correlation(correlation, timestep_fs: float, window: str = "hann", padding: int = 4
                              ) -> tuple[np.ndarray, np.ndarray]:
    """One-sided spectral density S(ν̃) of an even correlation function, in wavenumbers.

    S(ν̃_j) = 2 c Δt [2 Re Σ_{k=0}^{M−1} w_k C_k e^{−2πi jk/L} − C_0] on the grid
    ν̃_j = j / (c L Δt), j = 0 … L/2, where L ≥ ``padding`` · 2M (a fast FFT length) is
    the zero-padded transform length; this equals the formula in the module docstring
    at each ν̃_j. Zero padding only interpolates the spectrum; the resolution is set by
    the window length M Δt (:func:`resolution_cm1`). ∫_0^∞ S dν̃ = C_0 holds exactly
    with trapezoid weights ½ at j = 0 and j = L/2. S ≥ 0 (to rounding) for a biased
    autocorrelation with ``window="parzen"`` (module docstring).

    Args:
      correlation: (M, ...) correlation C_k, lag along axis 0 (units U).
      timestep_fs: lag spacing Δt in fs.
      window: ``"hann"`` (:func:`hann_lag_window`), ``"parzen"``
        (:func:`parzen_lag_window`) or ``"none"`` (rectangular; ripples).
      padding: zero-padding factor (≥ 1).

    Returns:
      (wavenumbers (L/2 + 1,) cm⁻¹, spectrum (L/2 + 1, ...) in U per cm⁻¹).

    Raises:
      ValueError: a timestep that is not finite and > 0, a padding that is not an integer >= 1, an unknown
        window, a complex or non-finite correlation.
    """
    c = _real_samples(correlation, "correlation")
    check_range("timestep_fs", timestep_fs, "fs", 0.0, strict=True)
    padding = check_count("padding", padding, what="zero-padding factor")
    if c.ndim < 1 or c.shape[0] < 1:
        raise ValueError(f"correlation must have at least one lag along axis 0, received shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("correlation contains NaN or Inf")
    num_lags = c.shape[0]
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {tuple(WINDOWS)}, received {window!r}")
    weights = WINDOWS[window](num_lags)
    size = _fast_length(2 * num_lags * padding)
    if size % 2:
        size += 1
    windowed = c * weights.reshape((num_lags,) + (1,) * (c.ndim - 1))
    transform = np.fft.rfft(windowed, n=size, axis=0).real
    spectrum = 2.0 * SPEED_OF_LIGHT_CM_PER_FS * timestep_fs * (2.0 * transform - c[:1])
    wavenumbers = np.arange(size // 2 + 1) / (SPEED_OF_LIGHT_CM_PER_FS * size * timestep_fs)
    return wavenumbers, spectrum


def resolution_cm1(window_fs: float) -> float:
    """Frequency resolution Δν̃ = 1 / (c T) in cm⁻¹ of a correlation window of T fs (finite, > 0)."""
    check_range("correlation window", window_fs, "fs", 0.0, strict=True)
    return 1.0 / (SPEED_OF_LIGHT_CM_PER_FS * window_fs)


def _real_samples(values, name: str) -> np.ndarray:
    """``values`` as float64; ValueError for complex values (their imaginary part would be dropped)."""
    array = np.asarray(values)
    if np.iscomplexobj(array):
        raise ValueError(f"{name} must be real, received complex values (dtype {array.dtype}); pass the real part, "
                         "or the real and imaginary parts as separate components")
    try:
        return array.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be real numbers, received dtype {array.dtype} ({error})") from None


def _fast_length(minimum: int) -> int:
    """Smallest 2^a 3^b 5^c ≥ ``minimum`` (an efficient FFT length)."""
    best = 1 << max(0, int(minimum - 1).bit_length())
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            length = power35
            while length < minimum:
                length *= 2
            best = min(best, length)
            power35 *= 3
        power5 *= 5
    return best
