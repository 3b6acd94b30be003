"""The ensembles of the MD driver: one place that turns an ensemble name and its options into dynamics.

:func:`build_dynamics` returns a :class:`Dynamics`: the jit-able step, how to make
the initial state, how to (re-)allocate the neighbor state, the frame observer and
the number of degrees of freedom used for temperatures.

========== ================================================= =====================================
ensemble   integrator                                        conserved quantity (E_pot + K + heat)
========== ================================================= =====================================
nve        velocity Verlet (:func:`~physnetjax.md.nve`)      total energy (heat = 0)
langevin   BAOAB (:func:`~physnetjax.md.langevin`)           + kinetic energy removed by friction/noise
nvt-nhc    Nosé–Hoover chain (:mod:`.thermostats`)           + chain energies (extended energy)
csvr       stochastic velocity rescaling (:mod:`.thermostats`) + kinetic energy removed (effective energy)
npt        stochastic cell rescaling + CSVR (:mod:`.barostat`) + energy removed by thermostat and barostat
========== ================================================= =====================================

The extra state of each integrator (thermostat chain, cell, PRNG key, heat) is
listed by :func:`ensemble_fields` and kept in the driver's ``.npz`` checkpoints.

In a periodic cell every ensemble observes the volume and the instantaneous pressure
P = 2K/(3V) − tr σ/3 (:func:`~physnetjax.md.barostat.periodic_frame_of`): NPT at the
stress its state carries, the fixed-cell ones at a stress evaluated for each saved
frame (:func:`fixed_cell_frame_of`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax.numpy as jnp
import numpy as np

from physnetjax.errors import PhysNetInputError, namer
from physnetjax.md.barostat import NPTFrame, npt_frame_of, periodic_frame_of, stochastic_cell_rescaling
from physnetjax.md.cell_potential import physnet_cell_potential
from physnetjax.md.integrators import MDState, frame_of, langevin, nve
from physnetjax.md.potential import physnet_potential
from physnetjax.md.thermostats import (
    csvr,
    linear_ramp,
    nhc_chain_masses,
    nose_hoover_chain,
    rebase_extended_energy,
)
from physnetjax.predict import element_energy_sum, split_element_energies
from physnetjax.units import BAR, BOLTZMANN
from physnetjax.validation import check_pressure, check_range, check_temperature

ENSEMBLES = ("nve", "langevin", "nvt-nhc", "csvr", "npt")


@dataclasses.dataclass(frozen=True)
class EnsembleOptions:
    """Thermostat and barostat settings (units in the names; ramps run over the whole run).

    temperature_K: target (start) temperature.  temperature_end_K: end of a linear ramp, or None.
    friction: Langevin γ in fs⁻¹.  thermostat_time_fs: τ_T of NHC/CSVR.  chain_length: NHC M.
    pressure_bar, pressure_end_bar: NPT target (start/end), bar.  barostat_time_fs: τ_P.
    compressibility_per_bar: β_T in bar⁻¹.  anisotropic: rescale the three axes independently.
    """

    temperature_K: float = 300.0
    temperature_end_K: Optional[float] = None
    friction: float = 0.01
    thermostat_time_fs: float = 100.0
    chain_length: int = 3
    pressure_bar: float = 1.0
    pressure_end_bar: Optional[float] = None
    barostat_time_fs: float = 1000.0
    compressibility_per_bar: float = 4.5e-5
    anisotropic: bool = False


CENTRE_OF_MASS_AT_REST = ("nve", "nvt-nhc", "csvr", "npt")
"""The ensembles that conserve the total momentum and count N_f = 3N − 3 degrees of freedom (all but Langevin,
whose noise moves the centre of mass and which counts 3N)."""

THERMOSTATTED = ("nvt-nhc", "csvr", "npt")
"""The ensembles with a thermostat relaxation time (``thermostat_time_fs``) and a temperature ramp."""


def check_ensemble_settings(ensemble: str, options: EnsembleOptions,
                            names: Optional[Mapping[str, str]] = None) -> None:
    """PhysNetInputError for a setting of ``options`` that ``ensemble`` uses and cannot run with.

    Every ensemble draws start momenta at ``temperature_K`` (finite, >= 0 K and at most
    :data:`~physnetjax.validation.MAX_TEMPERATURE_K`, as is ``temperature_end_K``; > 0 K for
    ``nvt-nhc``, whose thermostat masses scale with it); ``langevin`` needs a finite
    ``friction`` > 0 fs⁻¹; the :data:`THERMOSTATTED` ones a finite ``thermostat_time_fs``
    > 0 and a ramp end ``temperature_end_K`` (None or finite >= 0 K); ``nvt-nhc`` a
    ``chain_length`` >= 1; ``npt`` a finite ``pressure_bar`` and ``pressure_end_bar``
    (None or finite) of magnitude at most :data:`~physnetjax.validation.MAX_PRESSURE_BAR`,
    ``barostat_time_fs`` and ``compressibility_per_bar`` finite and > 0.
    Settings the ensemble does not use are not looked at.

    ``names``: keyword (the :class:`EnsembleOptions` field) → how the message names it
    (:func:`displayed`; ``ensemble`` too); by default the keywords.
    """
    name = namer(names)

    check_temperature(name("temperature_K"), options.temperature_K)
    if ensemble == "nvt-nhc" and not options.temperature_K > 0:
        raise PhysNetInputError(f"{name('temperature_K')} must be > 0 K for {name('ensemble')} nvt-nhc (the masses "
                                f"of a Nosé–Hoover chain are k_B T τ²), received {options.temperature_K}")
    if ensemble == "langevin":
        check_range(name("friction"), options.friction, "fs^-1", 0.0, strict=True)
    if ensemble in THERMOSTATTED:
        check_range(name("thermostat_time_fs"), options.thermostat_time_fs, "fs", 0.0, strict=True)
        if options.temperature_end_K is not None:
            check_temperature(name("temperature_end_K"), options.temperature_end_K)
    if ensemble == "nvt-nhc" and not (int(options.chain_length) == options.chain_length and options.chain_length >= 1):
        raise PhysNetInputError(f"{name('chain_length')} must be an integer >= 1 (thermostats in the chain), "
                                f"received {options.chain_length}")
    if ensemble == "npt":
        check_pressure(name("pressure_bar"), options.pressure_bar)
        if options.pressure_end_bar is not None:
            check_pressure(name("pressure_end_bar"), options.pressure_end_bar)
        check_range(name("barostat_time_fs"), options.barostat_time_fs, "fs", 0.0, strict=True)
        check_range(name("compressibility_per_bar"), options.compressibility_per_bar, "bar^-1", 0.0, strict=True)


class Dynamics(NamedTuple):
    """What the driver needs of an ensemble.

    init: ``init(positions, momenta, masses, nbrs, key, cell) -> state`` (jit-able).
    apply_fn: one step.  observe: state → frame (for :func:`physnetjax.md.run`); of a periodic cell an
      :class:`~physnetjax.md.barostat.NPTFrame` (volume and pressure) in every ensemble.
    allocate: ``allocate(positions, cell, capacity_multiplier) -> nbrs`` (host).
    degrees_of_freedom: N_f for temperatures.  variable_cell: True for NPT.
    element_energy: Σ_i E0[Z_i] in eV (float64) of the model's element energies, which the device energies leave
      out: a DFT-sized ~−5000 eV for CO2 lies on a float32 grid of 0.5 meV, larger than an NVE run's
      fluctuation. The driver adds it on the host to every potential and conserved energy it writes or reports.
    atom_element_energies: (N,) E0[Z_i] in eV (float64, zeros without element energies), added on the host to the
      per-atom energies of a frame.
    """

    init: Callable[..., Any]
    apply_fn: Callable[[MDState], MDState]
    observe: Callable[[MDState], Any]
    allocate: Callable[..., Any]
    degrees_of_freedom: int
    variable_cell: bool
    element_energy: float
    atom_element_energies: np.ndarray


def ensemble_fields(state: MDState) -> tuple[str, ...]:
    """Names of the state fields beyond positions/momenta/forces/masses/potential energy/neighbors/step."""
    skip = {"positions", "momenta", "forces", "masses", "potential_energy", "nbrs", "step", "stress"}
    return tuple(f.name for f in dataclasses.fields(state) if f.name not in skip and getattr(state, f.name) is not None)


def build_dynamics(ensemble: str, model, params, numbers, cell: Optional[np.ndarray], timestep_fs: float,
                   options: EnsembleOptions, ramp_steps: int, *, total_charge: float = 0.0, skin: float = 0.5,
                   capacity_multiplier: float = 1.25, record_uncertainty: bool = False,
                   record_atom_energies: bool = False) -> Dynamics:
    """Force functions and integrator of ``ensemble`` for ``model`` on one system.

    The device evaluates ``model`` without its element energies (:attr:`Dynamics.element_energy`, added on the host):
    the forces and the dynamics are the same, the energies keep float32's resolution of the network's part.

    Args:
      ensemble: one of :data:`ENSEMBLES`.
      cell: (3, 3) Å of a fully periodic system or None; for ``npt`` it is the
        reference cell of the neighbor lists (:mod:`physnetjax.md.cell_potential`).
      ramp_steps: the length of the temperature/pressure ramps in steps.
      total_charge: total charge Q of the system in e (the models with charges use it).
      record_uncertainty: ``model`` is a :class:`~physnetjax.ensemble.PhysNetEnsemble`;
        every saved frame also records ``max_forces_std`` = max_i ``forces_std``_i
        (eV/Å), from one more ensemble evaluation at the frame inside the jitted
        chunk (cost: 1/``save_every`` of the force evaluations).
      record_atom_energies: every saved frame also records the per-atom energies ``energies`` (N,) eV of the
        network (element energies left out, :attr:`Dynamics.element_energies` per atom), from one more evaluation
        at the frame, as ``record_uncertainty``; the two share it.

    Raises:
      ValueError: unknown ensemble, ``npt`` without a cell, bad option values.
    """
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, received {ensemble!r}")
    model, element_energies = split_element_energies(model)
    element_energy = element_energy_sum(element_energies, numbers)
    atom_element_energies = (np.zeros(len(numbers)) if element_energies is None
                             else element_energies[np.asarray(numbers)])
    num_atoms = len(numbers)
    conserved_dof = 3 * num_atoms - 3
    ramp = dict(temperature_end_K=options.temperature_end_K, ramp_steps=ramp_steps)
    if ensemble == "npt":
        if cell is None:
            raise ValueError("ensemble 'npt' needs a fully periodic cell (atoms.pbc all True)")
        if not options.compressibility_per_bar > 0:
            raise ValueError(f"compressibility must be > 0 bar^-1, received {options.compressibility_per_bar}")
        potential = physnet_cell_potential(model, params, numbers, cell, skin=skin,
                                           capacity_multiplier=capacity_multiplier, total_charge=total_charge)
        init_fn, apply_fn = stochastic_cell_rescaling(
            potential.energy_force_stress, timestep_fs, options.temperature_K, options.pressure_bar * BAR,
            barostat_time_fs=options.barostat_time_fs, compressibility=options.compressibility_per_bar / BAR,
            thermostat_time_fs=options.thermostat_time_fs, anisotropic=options.anisotropic,
            pressure_end=None if options.pressure_end_bar is None else options.pressure_end_bar * BAR,
            degrees_of_freedom=conserved_dof, neighbor_update=potential.update, **ramp)

        def init(positions, momenta, masses, nbrs, key, cell_now):
            return init_fn(positions, momenta, masses, cell_now, nbrs, key)

        observe = recording(npt_frame_of, lambda state: potential.outputs(state.positions, state.cell, state.nbrs),
                            record_uncertainty, record_atom_energies)
        return Dynamics(init, apply_fn, observe, potential.allocate, conserved_dof, True, element_energy,
                        atom_element_energies)

    potential = physnet_potential(model, params, numbers, cell=cell, total_charge=total_charge, skin=skin,
                                  capacity_multiplier=capacity_multiplier)
    force, update = potential.energy_force, potential.update

    def allocate(positions, cell_now, capacity_multiplier=capacity_multiplier):
        return potential.allocate(positions, capacity_multiplier=capacity_multiplier)

    if ensemble == "nve":
        init_fn, apply_fn = nve(force, timestep_fs, neighbor_update=update)
        init, dof = (lambda positions, momenta, masses, nbrs, key, cell_now:
                     init_fn(positions, momenta, masses, nbrs)), conserved_dof
    elif ensemble == "langevin":
        init_fn, apply_fn = langevin(force, timestep_fs, options.temperature_K, options.friction,
                                     neighbor_update=update)
        init, dof = (lambda positions, momenta, masses, nbrs, key, cell_now:
                     init_fn(positions, momenta, masses, nbrs, key)), 3 * num_atoms
    elif ensemble == "nvt-nhc":
        init_fn, apply_fn = nose_hoover_chain(force, timestep_fs, options.temperature_K, options.thermostat_time_fs,
                                              options.chain_length, degrees_of_freedom=conserved_dof,
                                              neighbor_update=update, **ramp)
        init, dof = (lambda positions, momenta, masses, nbrs, key, cell_now:
                     init_fn(positions, momenta, masses, nbrs)), conserved_dof
    else:
        init_fn, apply_fn = csvr(force, timestep_fs, options.temperature_K, options.thermostat_time_fs,
                                 degrees_of_freedom=conserved_dof, neighbor_update=update, **ramp)
        init, dof = (lambda positions, momenta, masses, nbrs, key, cell_now:
                     init_fn(positions, momenta, masses, nbrs, key)), conserved_dof
    observe = recording(frame_of if cell is None else fixed_cell_frame_of(cell, potential),
                        lambda state: potential.outputs(state.positions, state.nbrs), record_uncertainty,
                        record_atom_energies)
    return Dynamics(init, apply_fn, observe, allocate, dof, False, element_energy, atom_element_energies)


def fixed_cell_frame_of(cell: np.ndarray, potential) -> Callable[[MDState], NPTFrame]:
    """The observer of a run in the fixed periodic ``cell`` (3, 3) Å: :func:`~physnetjax.md.barostat.
    periodic_frame_of`, with the stress σ (3, 3) eV/Å³ from one more evaluation of ``potential``
    (:class:`~physnetjax.md.potential.Potential`) at the state's positions and neighbors, inside the jitted chunk
    (cost: 1/``save_every`` of the force evaluations), so that the frame holds the volume and the pressure
    P = 2K/(3V) − tr σ/3 as an NPT frame does."""

    def observe(state):
        return periodic_frame_of(state, cell, potential.outputs(state.positions, state.nbrs)["stress"][0])

    return observe


def recording(observe: Callable[[MDState], Any], outputs: Callable[[MDState], dict], uncertainty: bool,
              atom_energies: bool) -> Callable[[MDState], Any]:
    """``observe`` whose frame also holds, from ``outputs(state)`` (the model's outputs at the state, one more
    evaluation per saved frame), ``max_forces_std`` = max_i ``forces_std``_i (eV/Å) when ``uncertainty`` and the
    per-atom ``energies`` (eV) when ``atom_energies``; ``observe`` itself when neither."""
    if not (uncertainty or atom_energies):
        return observe

    def observe_with_outputs(state):
        out = outputs(state)
        frame = observe(state)
        if uncertainty:
            frame = frame.replace(max_forces_std=jnp.max(out["forces_std"]))
        if atom_energies:
            frame = frame.replace(energies=out["energies"])
        return frame

    return observe_with_outputs


def checkpoint_arrays(state: MDState, numbers, step: int, ensemble: str) -> dict:
    """Arrays of an MD checkpoint: positions, momenta, numbers, step, ensemble and :func:`ensemble_fields`."""
    arrays = dict(positions=np.asarray(state.positions), momenta=np.asarray(state.momenta),
                  numbers=np.asarray(numbers), step=step, ensemble=ensemble)
    arrays.update({name: np.asarray(getattr(state, name)) for name in ensemble_fields(state)})
    return arrays


TARGET_TEMPERATURE_KEY = "target_temperature_K"
"""MD-checkpoint key: the thermostat's target temperature (K) during the last step before the checkpoint."""

TARGET_PRESSURE_KEY = "target_pressure_bar"
"""MD-checkpoint key (npt): the barostat's target pressure (bar) during the last step before the checkpoint."""

CHAIN_MASSES_KEY = "chain_masses"
"""MD-checkpoint key (nvt-nhc): the thermostat masses Q_j (eV·fs²) the chain ran with."""


def run_targets(ensemble: str, options: EnsembleOptions, ramp_steps: int, step: int, dof: int) -> dict:
    """The targets of ``ensemble`` during step ``step`` (0-based, counted from the start of this run, as the ramps
    count): :data:`TARGET_TEMPERATURE_KEY` (every ensemble but nve), :data:`TARGET_PRESSURE_KEY` (npt) and, for
    nvt-nhc, :data:`CHAIN_MASSES_KEY` (``dof``: N_f of the chain); float64, for MD checkpoints and restarts."""
    if ensemble == "nve":
        return {}
    ramp_end = options.temperature_end_K if ensemble in THERMOSTATTED else None
    targets = {TARGET_TEMPERATURE_KEY: np.float64(linear_ramp(options.temperature_K, ramp_end, ramp_steps)(step))}
    if ensemble == "npt":
        targets[TARGET_PRESSURE_KEY] = np.float64(
            linear_ramp(options.pressure_bar, options.pressure_end_bar, ramp_steps)(step))
    if ensemble == "nvt-nhc":
        targets[CHAIN_MASSES_KEY] = nhc_chain_masses(options.temperature_K, options.thermostat_time_fs,
                                                     options.chain_length, dof)
    return targets


TARGET_JUMP = (1.0, 0.01)
"""(absolute, relative) change of a target temperature (K) or pressure (bar) at a restart that is reported: below
it, a ramp continued from the temperature it reached (half a ramp step apart) or a rounded value."""


class TargetJump(NamedTuple):
    """A target that a restart changes: ``keyword`` (the :class:`EnsembleOptions` field that sets it), its value in
    the checkpoint's last step and in the restart's first, and the unit."""

    keyword: str
    before: float
    after: float
    unit: str


def continue_targets(state: MDState, saved: dict, targets: dict, dof: int) -> tuple[MDState, list[TargetJump]]:
    """Carry a restarted run's targets on from the checkpoint's: (state, the targets that jump).

    ``saved``: the checkpoint's arrays; ``targets``: :func:`run_targets` of this run's first step. A target that
    moves by more than :data:`TARGET_JUMP` is returned (for the caller's warning: a ramp restarts from its start
    value, and a restart with another target does not continue the run as one long run would). A Nosé–Hoover chain
    run with another target temperature or other masses keeps its conserved quantity continuous
    (:func:`~physnetjax.md.thermostats.rebase_extended_energy`). Checkpoints written before targets were recorded
    are not compared.
    """
    changed = []
    for key, keyword, unit in ((TARGET_TEMPERATURE_KEY, "temperature_K", "K"),
                               (TARGET_PRESSURE_KEY, "pressure_bar", "bar")):
        if key in saved and key in targets:
            before, after = float(saved[key]), float(targets[key])
            if abs(after - before) > max(TARGET_JUMP[0], TARGET_JUMP[1] * abs(before)):
                changed.append(TargetJump(keyword, before, after, unit))
    if CHAIN_MASSES_KEY in targets and CHAIN_MASSES_KEY in saved and TARGET_TEMPERATURE_KEY in saved:
        masses_before = np.asarray(saved[CHAIN_MASSES_KEY], np.float64)
        if masses_before.shape == targets[CHAIN_MASSES_KEY].shape and (
                not np.array_equal(masses_before, targets[CHAIN_MASSES_KEY])
                or float(saved[TARGET_TEMPERATURE_KEY]) != float(targets[TARGET_TEMPERATURE_KEY])):
            state = rebase_extended_energy(state, targets[CHAIN_MASSES_KEY],
                                           BOLTZMANN * float(targets[TARGET_TEMPERATURE_KEY]), dof)
    return state, changed


def checkpoint_ensemble(saved: dict) -> str:
    """The ensemble MD checkpoint ``saved`` was run in: its ``ensemble`` entry; older checkpoints without one count
    as NVE, or Langevin when they hold a PRNG key."""
    return str(saved["ensemble"]) if "ensemble" in saved else ("langevin" if "key" in saved else "nve")


def restore_ensemble_state(state: MDState, saved: dict, ensemble: str) -> MDState:
    """Put the thermostat/barostat fields of checkpoint ``saved`` into a freshly initialised ``state``.

    The PRNG key is always taken over; the other fields (heat, chain, ramp work) only when
    the checkpoint is of the same ensemble (:func:`checkpoint_ensemble`): in another one the
    conserved quantity starts from that ensemble's definition (heat 0; NVE's is the total
    energy, which a Langevin run's heat would offset). The cell is not set here: the caller
    builds the state in the saved cell (its forces and stress depend on it).
    """
    same = checkpoint_ensemble(saved) == ensemble
    fields = {}
    for name in ensemble_fields(state):
        if name not in saved or name == "cell":
            continue
        if name == "key" or same:
            value = np.asarray(saved[name])
            fields[name] = jnp.asarray(value, getattr(state, name).dtype)
    return state.replace(**fields)
