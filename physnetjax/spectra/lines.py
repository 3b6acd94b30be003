"""Degenerate spectral lines: modes whose wavenumbers lie within a tolerance are one line.

A degenerate line's intensity is the sum over its modes (CO2's two bends at 667 cm⁻¹
absorb as one line of twice a bend's intensity), which is what a spectrometer, a band
integral and a stick spectrum show.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

DEGENERACY_TOLERANCE_CM1 = 1.0
"""Modes closer than this (cm⁻¹) in wavenumber are one degenerate line."""


def degenerate_groups(frequencies_cm1, tolerance_cm1: float = DEGENERACY_TOLERANCE_CM1) -> list[list[int]]:
    """Indices into ``frequencies_cm1`` (M,) grouped into lines, in increasing wavenumber: sorted, a mode within
    ``tolerance_cm1`` of the previous one joins its line."""
    frequencies = np.asarray(frequencies_cm1, dtype=np.float64)
    groups: list[list[int]] = []
    for k in np.argsort(frequencies, kind="stable"):
        if groups and frequencies[k] - frequencies[groups[-1][-1]] < tolerance_cm1:
            groups[-1].append(int(k))
        else:
            groups.append([int(k)])
    return groups


def merged_lines(frequencies_cm1, intensities_km_mol: Optional[np.ndarray] = None,
                 tolerance_cm1: float = DEGENERACY_TOLERANCE_CM1) -> tuple[np.ndarray, np.ndarray]:
    """(L,) line wavenumbers (cm⁻¹, the mean of each line's modes) and (L,) heights: the summed intensities
    (km/mol), or without intensities the number of modes in each line."""
    frequencies = np.asarray(frequencies_cm1, dtype=np.float64)
    heights = np.ones_like(frequencies) if intensities_km_mol is None else np.asarray(intensities_km_mol, np.float64)
    groups = degenerate_groups(frequencies, tolerance_cm1)
    return (np.array([frequencies[g].mean() for g in groups]), np.array([heights[g].sum() for g in groups]))
