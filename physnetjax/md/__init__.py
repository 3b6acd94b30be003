"""JAX-native molecular dynamics: integrators, model force functions and the run driver."""

from physnetjax.md.integrators import (
    Frame,
    MDState,
    conserved_quantity,
    frame_of,
    kinetic_energy,
    langevin,
    maxwell_boltzmann_momenta,
    nve,
    run,
    temperature,
)

__all__ = [
    "Frame",
    "MDState",
    "conserved_quantity",
    "frame_of",
    "kinetic_energy",
    "langevin",
    "maxwell_boltzmann_momenta",
    "nve",
    "run",
    "temperature",
]
