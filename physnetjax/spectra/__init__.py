"""Vibrational spectroscopy from a trained model: geometry optimisation, harmonic analysis, MD spectra."""

from physnetjax.spectra.harmonic import (
    HarmonicResult,
    NonMinimumWarning,
    ZeroModeWarning,
    harmonic,
    harmonic_analysis,
    modes_from_hessian,
)
from physnetjax.spectra.md_spectrum import EnergyConservationError, MDSpectrum, md_spectrum
from physnetjax.spectra.optimize import OptimizationError, OptimizationResult, minimize, optimize_geometry

__all__ = [
    "EnergyConservationError",
    "HarmonicResult",
    "MDSpectrum",
    "NonMinimumWarning",
    "OptimizationError",
    "OptimizationResult",
    "ZeroModeWarning",
    "harmonic",
    "harmonic_analysis",
    "md_spectrum",
    "minimize",
    "modes_from_hessian",
    "optimize_geometry",
]
