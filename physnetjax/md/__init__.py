"""JAX-native molecular dynamics: integrators (NVE, Langevin, NHC, CSVR, NPT), model force functions, the driver."""

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
from physnetjax.md.barostat import NPTFrame, NPTState, instantaneous_pressure, pressure_tensor, stochastic_cell_rescaling
from physnetjax.md.thermostats import NHCState, ThermostatState, csvr, nose_hoover_chain

__all__ = [
    "NHCState",
    "NPTFrame",
    "NPTState",
    "ThermostatState",
    "csvr",
    "instantaneous_pressure",
    "nose_hoover_chain",
    "pressure_tensor",
    "stochastic_cell_rescaling",
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
