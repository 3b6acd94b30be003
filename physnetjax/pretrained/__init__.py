"""Small example models shipped with physnetjax: ethanol (no charges), and CO2 and ethanol_ir (charges, for IR spectra).

How each was made, and its test errors, is in ``<name>/README.md``.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).parent


def example_model_path(name: str = "ethanol") -> Path:
    """Checkpoint directory of a shipped example model (load with :func:`physnetjax.load_checkpoint`)."""
    path = EXAMPLES / name / "model"
    if not path.is_dir():
        raise ValueError(f"no shipped example model {name!r}; available: "
                         f"{sorted(p.name for p in EXAMPLES.iterdir() if (p / 'model').is_dir())}")
    return path


def example_geometry_path(name: str = "ethanol") -> Path:
    """Start geometry (extxyz) of a shipped example model."""
    return EXAMPLES / name / f"{name}.xyz"


def co2_model_path() -> Path:
    """Checkpoint directory of the shipped CO2 charge model (GFN2-xTB energies, forces and dipoles)."""
    return example_model_path("co2")


def co2_geometry_path() -> Path:
    """CO2 at the minimum of the shipped CO2 model (extxyz)."""
    return example_geometry_path("co2")


def ethanol_ir_model_path() -> Path:
    """Checkpoint directory of the shipped ethanol charge model for spectra (GFN2-xTB energies, forces, dipoles)."""
    return example_model_path("ethanol_ir")


def ethanol_ir_geometry_path() -> Path:
    """Gauche ethanol at the minimum of the shipped ethanol_ir model (extxyz)."""
    return example_geometry_path("ethanol_ir")
