"""Vibrational spectroscopy from a trained model: geometry optimisation and harmonic analysis."""

from physnetjax.spectra.harmonic import (
    HarmonicResult,
    NonMinimumWarning,
    harmonic,
    harmonic_analysis,
    modes_from_hessian,
)
from physnetjax.spectra.optimize import OptimizationError, OptimizationResult, minimize, optimize_geometry

__all__ = [
    "HarmonicResult",
    "NonMinimumWarning",
    "OptimizationError",
    "OptimizationResult",
    "harmonic",
    "harmonic_analysis",
    "minimize",
    "modes_from_hessian",
    "optimize_geometry",
]
