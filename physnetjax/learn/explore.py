"""Exploration: MD with the current ensemble at each temperature, collecting candidate frames and their spread.

Each run is :func:`physnetjax.md.driver.simulate` in flag mode: every saved frame's
``max_forces_std_eV_per_A`` (largest per-atom force spread of the members, eV/Å) is
logged to ``md-<T>K.xyz.jsonl`` beside the trajectory. A run that blows up
(:class:`~physnetjax.md.driver.MDInstabilityError`: NaN, |F| > ``max_force``) keeps the
frames written before it — exactly the region the model does not know — and the loop
goes on. A run's candidates end before its first unphysical frame
(:func:`physnetjax.learn.physical.unphysical_reason` against the run's start geometry,
settings ``min_distance``, ``bond_factor``, ``allow_topology_change``): a dissociated or
collapsed molecule does not come back, and its frames (labels tens of eV above the
thermal ones, or no SCF at all) would spoil the fit; the frames cut are counted
(``unphysical_frames``, with ``first_unphysical``: where and why) and logged; with
``min_distance`` ≥ 0.5 Å that log names every close contact, and the MD's own
:class:`~physnetjax.errors.CloseContactWarning` is left out. So is the MD's
:class:`~physnetjax.distance_domain.TrainingDistancesWarning`: exploration leaves the training data on purpose,
and its frames' ``distance_excursion`` stays in the log.
Frames with a non-finite spread are not candidates; they are counted
(``non_finite_spreads``), and make the run's mean/max spread NaN, which the report shows.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path
from typing import Mapping, Optional

import ase
import ase.io
import numpy as np

from physnetjax.checkpoint import load_checkpoint
from physnetjax.data import Dataset
from physnetjax.data.generate import sampled_config_type
from physnetjax.distance_domain import TrainingDistancesWarning
from physnetjax.jsonlines import read_log
from physnetjax.errors import CloseContactWarning, displayed
from physnetjax.learn.physical import bonds, unphysical_reason
from physnetjax.md.driver import MDInstabilityError, simulate
from physnetjax.training_record import TrainingRecord
from physnetjax.validation import MIN_DISTANCE_ERROR, MIN_DISTANCE_WARNING

logger = logging.getLogger(__name__)

SPREAD_KEY = "max_forces_std_eV_per_A"

SIMULATE_SETTING = {"ensemble": "md_ensemble", "steps": "md_steps", "timestep_fs": "timestep_fs",
                    "save_every": "save_every", "friction": "friction", "max_force": "max_force",
                    "uncertainty_threshold": "uncertainty_threshold"}
""":func:`~physnetjax.md.driver.simulate`'s keyword → the :class:`~physnetjax.learn.config.LearnConfig` setting it
comes from: what the MD's messages (a stop reason, say) name."""


@dataclasses.dataclass
class Candidates:
    """Saved MD frames: (n_j,) numbers, (n_j, 3) positions in Å, spreads (M,) eV/Å, where each came from, and the
    kind each gets when labelled (:data:`EXPLORATION` at its MD's temperature: ``learn_800K``)."""

    numbers: list
    positions: list
    spreads: np.ndarray
    origins: list
    kinds: list


EXPLORATION = "learn"
"""The sampling named in the kind of the frames the loop chooses from its MD (:func:`sampled_config_type`:
``learn_800K``), so that a round's model reports its errors per exploration temperature."""


def start_geometry(data: Dataset, seed: int) -> ase.Atoms:
    """A frame of ``data`` drawn with ``seed``, as atoms without momenta (MD draws them at its temperature)
    and with the frame's total charge in ``info["charge"]`` (e), at which the MD runs."""
    k = int(np.random.default_rng(seed).integers(len(data)))
    n = int(data.N[k])
    return ase.Atoms(numbers=data.Z[k, :n], positions=data.R[k, :n], info={"charge": float(data.Q[k])})


def explore(checkpoint, data: Dataset, directory, config, round_index: int,
            names: Optional[Mapping[str, str]] = None) -> tuple[Candidates, list]:
    """Run the MD of one round; returns the candidates and one summary dict per temperature.

    ``config`` is the loop's :class:`~physnetjax.learn.config.LearnConfig`; the seed of the
    run at temperature number t is ``config.seed + 1000 * round_index + t`` (start frame,
    momenta, thermostat noise). The MD's messages name its settings as ``names`` names the
    LearnConfig settings they come from (:data:`SIMULATE_SETTING`; a command line passes its
    options, e.g. ``{"max_force": "--max-force"}``; by default the setting names).
    """
    md_names = {keyword: displayed(setting, names) for keyword, setting in SIMULATE_SETTING.items()}
    model, params, metadata = load_checkpoint(checkpoint, with_metadata=True)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    numbers, positions, spreads, origins, kinds, summaries = [], [], [], [], [], []
    for t, temperature in enumerate(config.temperatures):
        seed = config.seed + 1000 * round_index + t
        out = directory / f"md-{temperature:g}K.xyz"
        blew_up = None
        start = start_geometry(data, seed)
        reference_bonds = None if config.allow_topology_change else bonds(start.numbers, start.positions,
                                                                          config.bond_factor)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TrainingDistancesWarning)
                if config.min_distance >= MIN_DISTANCE_WARNING:  # the unphysical-frame log below names the contact
                    warnings.simplefilter("ignore", CloseContactWarning)
                simulate(model, params, start, ensemble=config.md_ensemble,
                         temperature_K=temperature, timestep_fs=config.timestep_fs, steps=config.md_steps,
                         out=str(out), save_every=config.save_every,
                         chunk_frames=min(100, config.md_steps // config.save_every),
                         friction=config.friction if config.md_ensemble == "langevin" else None, seed=seed,
                         max_force=config.max_force,
                         training_record=TrainingRecord.from_metadata(metadata),
                         on_uncertainty="flag",
                         uncertainty_threshold=config.uncertainty_threshold, names=md_names)
        except MDInstabilityError as error:
            blew_up = str(error)
            logger.warning("round %d, %g K: MD stopped (%s); its frames up to there are candidates",
                           round_index, temperature, error)
        frames = ase.io.read(out, ":") if out.exists() else []
        log = read_log(f"{out}.jsonl")
        if len(log) != len(frames):
            raise RuntimeError(f"{out}: {len(frames)} frames but {len(log)} log records")
        run_spreads = np.array([record[SPREAD_KEY] for record in log], np.float64)
        kept, unphysical, first_unphysical = 0, 0, None
        for k, (atoms, spread) in enumerate(zip(frames, run_spreads)):
            reason = unphysical_reason(atoms.numbers, atoms.positions, reference_bonds,
                                       max(config.min_distance, MIN_DISTANCE_ERROR), config.bond_factor)
            if reason is not None:
                unphysical, first_unphysical = len(frames) - k, f"{out.name}[{k}]: {reason}"
                logger.warning("round %d, %g K: %s; this frame and the %d after it are not candidates",
                               round_index, temperature, first_unphysical, unphysical - 1)
                break
            if not np.isfinite(spread):
                continue
            if config.uncertainty_threshold is not None and spread <= config.uncertainty_threshold:
                continue  # only frames past it (> threshold) are candidates: those the MD marks uncertain
            numbers.append(atoms.numbers.copy())
            positions.append(atoms.positions.copy())
            spreads.append(spread)
            origins.append(f"{out.name}[{k}]")
            kinds.append(sampled_config_type(EXPLORATION, temperature))
            kept += 1
        summaries.append({
            "temperature_K": temperature,
            "frames": len(frames),
            "candidates": kept,
            "mean_spread_eV_per_A": float(run_spreads.mean()) if len(run_spreads) else None,
            "max_spread_eV_per_A": float(run_spreads.max()) if len(run_spreads) else None,
            "non_finite_spreads": int(np.sum(~np.isfinite(run_spreads))),
            "unphysical_frames": unphysical,
            "first_unphysical": first_unphysical,
            "blew_up": blew_up,
        })
    return Candidates(numbers, positions, np.array(spreads, np.float64), origins, kinds), summaries

