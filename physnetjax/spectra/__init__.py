"""Vibrational spectroscopy with a trained model: MD power and IR spectra (and harmonic analysis)."""

from physnetjax.spectra.md_spectrum import EnergyConservationError, MDSpectrum, md_spectrum

__all__ = ["EnergyConservationError", "MDSpectrum", "md_spectrum"]
