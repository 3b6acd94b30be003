"""Stick spectra as PNG (matplotlib, from the ``plot`` extra, imported only when drawing)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from physnetjax.jsonlines import written_whole
from physnetjax.spectra.lines import merged_lines

MATPLOTLIB_MISSING = "drawing the spectrum needs matplotlib: pip install 'physnetjax[plot]' (or skip the PNG)"


def require_matplotlib() -> None:
    """Raise ImportError with an install hint when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise ImportError(MATPLOTLIB_MISSING) from error


def plot_stick_spectrum(path, frequencies_cm1, intensities_km_mol: Optional[np.ndarray] = None,
                        title: str = "") -> None:
    """Write a stick spectrum to ``path`` (PNG): one vertical line per real line, degenerate modes merged
    (:func:`physnetjax.spectra.lines.merged_lines`: their intensities summed).

    Args:
      path: output file.
      frequencies_cm1: (M,) wavenumbers in cm⁻¹; negative (imaginary) ones are not drawn
        and their count is added to the title.
      intensities_km_mol: (M,) IR intensities in km/mol, or None: then each line's height is
        its number of modes and the y axis says that no intensities are available.
      title: figure title.
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frequencies = np.asarray(frequencies_cm1, dtype=np.float64)
    real = frequencies > 0
    lines, heights = merged_lines(frequencies[real],
                                  None if intensities_km_mol is None else np.asarray(intensities_km_mol)[real])
    figure, axes = plt.subplots(figsize=(8, 4))
    axes.vlines(lines, 0.0, heights, color="tab:blue", linewidth=1.5)
    axes.set_xlabel("wavenumber (cm$^{-1}$)")
    axes.set_ylabel("IR intensity (km/mol)" if intensities_km_mol is not None
                    else "modes (no intensities: model without charges)")
    axes.set_xlim(0.0, max(4000.0, 1.05 * float(frequencies.max(initial=0.0))))
    axes.set_ylim(0.0, 1.1 * float(heights.max(initial=0.0)) or 1.0)
    imaginary = int(np.sum(~real))
    if imaginary:
        title = f"{title} ({imaginary} imaginary mode{'s' if imaginary > 1 else ''} not drawn)".strip()
    axes.set_title(title)
    figure.tight_layout()
    with written_whole(path) as tmp:
        figure.savefig(tmp, dpi=120)
    plt.close(figure)
