"""Every setting of an active-learning run, as one JSON-serialisable dataclass."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Mapping, Optional

from physnetjax.errors import namer
from physnetjax.md.ensembles import ENSEMBLES
from physnetjax.validation import check_range, check_seed, check_temperature

SELECTIONS = ("uncertain-diverse", "random")
RESUME_CHANGES = ("rounds", "progress")
"""Settings a resumed run may change (more rounds); any other would mix two different runs."""
MODEL_SETTINGS = ("features", "max_degree", "num_iterations", "correlation", "radial_mlp", "message_degree",
                  "num_basis_functions", "cutoff")
"""The architecture settings of the loop's ensembles: PhysNet keywords of the same name, passed on to the trainer."""
READING_SETTINGS = ("energy_unit", "force_unit", "dipole_unit", "force_sign", "keys")
"""How the ``data`` and ``test`` files are read (as the trainer's options of the same names)."""


@dataclasses.dataclass
class LearnConfig:
    """Settings of one loop (units: Å, eV, K, fs).

    Data: ``data`` file (None → the bundled ethanol GFN2-xTB set), of which
    ``initial_frames`` random frames (seeded) start the loop (None: all of a file; 50 of
    the bundled set); ``test`` file for the per-round test error, or, with the bundled
    set and no ``test``, ``test_frames`` further bundled frames disjoint from the
    initial ones (0: no test set). The ``data`` and ``test`` files are read as the trainer reads its files:
    ``energy_unit``, ``force_unit``, ``dipole_unit``, ``force_sign`` (−1: the files store +dE/dR) and ``keys``
    (``["E=energies", ...]``, :mod:`physnetjax.data.key_mapping`); the run keeps their frames in eV, eV/Å and e·Å.
    Rounds: round 0 trains the first ensemble; each of the ``rounds`` following ones runs
    ``md_steps`` steps of ``md_ensemble`` MD at every temperature of ``temperatures``
    with the previous ensemble, selects up to ``select`` frames
    (:mod:`physnetjax.learn.selection`, radius ``min_rmsd`` Å; with
    ``uncertainty_threshold`` only frames whose spread passes it are candidates), labels
    them and retrains with ``--init-from`` the previous round's checkpoint;
    ``selection`` "random" takes random MD frames instead (a baseline to compare against);
    a labelled frame with a force |F_i| above ``max_label_force`` eV/Å is skipped.
    Physical filter (:mod:`physnetjax.learn.physical`): an MD run's candidates end before
    its first frame with two atoms closer than ``min_distance`` Å or, unless
    ``allow_topology_change``, with bonds (r_ij < ``bond_factor`` · (ρ_i + ρ_j),
    covalent radii) other than those of the run's start geometry.
    Labels: ``labeller`` (tblite method) at total ``charge`` (e) with ``uhf`` unpaired
    electrons (None: a closed shell); the starting frames' electron count must allow that
    state (:func:`physnetjax.data.generate.unpaired_electrons`: an odd count needs ``uhf``).
    Training: the trainer's settings of the same names; ``retrain_epochs`` (None →
    ``epochs``) for rounds ≥ 1.
    ``names`` (not kept): setting → how the error messages of the checks name it (a command
    line passes its options); by default the setting's name.
    """

    out: str = "learn-run"
    data: Optional[str] = None
    energy_unit: str = "eV"
    force_unit: Optional[str] = None
    dipole_unit: str = "eA"
    force_sign: int = 1
    keys: Optional[list] = None
    initial_frames: Optional[int] = None
    test: Optional[str] = None
    test_frames: int = 100
    rounds: int = 4
    select: int = 50
    selection: str = "uncertain-diverse"
    min_rmsd: float = 0.1
    temperatures: tuple = (300.0, 500.0, 800.0)
    md_ensemble: str = "langevin"
    md_steps: int = 2000
    timestep_fs: float = 0.5
    save_every: int = 10
    friction: float = 0.01
    max_force: float = 100.0
    uncertainty_threshold: Optional[float] = None
    max_label_force: Optional[float] = None
    allow_topology_change: bool = False
    min_distance: float = 0.5
    bond_factor: float = 1.3
    labeller: str = "GFN2-xTB"
    charge: float = 0.0
    uhf: Optional[int] = None

    ensemble: int = 4
    features: int = 32
    max_degree: int = 1
    num_iterations: int = 2
    correlation: int = 1
    radial_mlp: Optional[int] = None
    message_degree: Optional[int] = None
    num_basis_functions: int = 16
    cutoff: float = 5.0
    epochs: int = 40
    retrain_epochs: Optional[int] = None
    batch_size: int = 16
    learning_rate: float = 3e-3
    valid: float = 0.1
    max_time: Optional[float] = None
    seed: int = 0
    progress: bool = False

    names: dataclasses.InitVar[Optional[Mapping[str, str]]] = None

    def __post_init__(self, names: Optional[Mapping[str, str]]):
        """Check every setting; ValueError naming it as ``names`` does (a command line passes its options, e.g.
        ``{"timestep_fs": "--timestep"}``; by default the field names). ``names`` is not kept."""
        name = namer(names)

        self.temperatures = tuple(float(t) for t in self.temperatures)
        if self.rounds < 0:
            raise ValueError(f"{name('rounds')} must be >= 0, received {self.rounds}")
        self._check_reading_options(name)
        check_seed(self.seed, name("seed"), count=self.rounds + self.ensemble)  # round r's member k: seed + r + k
        for field in ("select", "md_steps", "save_every", "epochs", "batch_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"{name(field)} must be >= 1, received {getattr(self, field)}")
        from physnetjax.model import PhysNet

        PhysNet(**self.model_settings()).check_configuration(names)
        if self.md_steps % self.save_every:
            raise ValueError(f"{name('md_steps')} ({self.md_steps}) must be a multiple of {name('save_every')} "
                             f"({self.save_every})")
        if self.ensemble < 2:
            raise ValueError(f"the loop selects by the ensemble spread: {name('ensemble')} must be >= 2 members, "
                             f"received {self.ensemble}")
        if not self.temperatures or not all(math.isfinite(t) and t > 0 for t in self.temperatures):
            raise ValueError(f"{name('temperatures')} must be one or more finite values > 0 K, received "
                             f"{list(self.temperatures)}")
        for temperature in self.temperatures:
            check_temperature(name("temperatures"), temperature)
        shown = [f"{t:g}" for t in self.temperatures]  # as the MD files are named: md-<T>K.xyz
        repeated = sorted({t for t in shown if shown.count(t) > 1}, key=float)
        if repeated:
            raise ValueError(f"{name('temperatures')} holds {', '.join(repeated)} K more than once (received "
                             f"{' '.join(shown)}): a second MD run at a temperature replaced the first one's "
                             f"trajectory; give each temperature once ({name('md_steps')} sets how long each runs)")
        for field, unit in (("timestep_fs", "fs"), ("friction", "fs^-1"), ("max_force", "eV/Å")):
            check_range(name(field), getattr(self, field), unit, 0.0, strict=True)
        if self.uncertainty_threshold is not None:
            check_range(name("uncertainty_threshold"), self.uncertainty_threshold, "eV/Å", 0.0, strict=True)
        if not (0 < self.valid < 1 or (self.valid >= 1 and math.isfinite(self.valid)
                                       and self.valid == int(self.valid))):
            raise ValueError(f"{name('valid')} must be a fraction in (0, 1) or a whole number of frames >= 1, "
                             f"received {self.valid}")
        if not math.isfinite(self.charge):
            raise ValueError(f"{name('charge')} must be finite, received {self.charge}")
        if self.max_label_force is not None and not self.max_label_force > 0:
            raise ValueError(f"{name('max_label_force')} must be > 0 eV/Å, received {self.max_label_force}")
        if not self.min_distance >= 0:
            raise ValueError(f"{name('min_distance')} must be >= 0 Å, received {self.min_distance}")
        if not self.bond_factor > 0:
            raise ValueError(f"{name('bond_factor')} must be > 0, received {self.bond_factor}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"{name('selection')} must be one of {SELECTIONS}, received {self.selection!r}")
        if not self.min_rmsd > 0:
            raise ValueError(f"{name('min_rmsd')} must be > 0 Å, received {self.min_rmsd}")
        if self.md_ensemble not in ENSEMBLES or self.md_ensemble == "npt":
            raise ValueError(f"{name('md_ensemble')} must be one of {[e for e in ENSEMBLES if e != 'npt']}, "
                             f"received {self.md_ensemble!r}")
        if self.initial_frames is not None and self.initial_frames < 2:
            raise ValueError(f"{name('initial_frames')} must be >= 2 (a training and a validation frame), "
                             f"received {self.initial_frames}")
        if self.test_frames < 0:
            raise ValueError(f"{name('test_frames')} must be >= 0, received {self.test_frames}")
        if self.retrain_epochs is not None and self.retrain_epochs < 1:
            raise ValueError(f"{name('retrain_epochs')} must be >= 1, received {self.retrain_epochs}")
        from physnetjax.learn.loop import round_train_config

        round_train_config(self, Path(self.out), 0, None, names)  # the trainer's checks, before anything is written

    def _check_reading_options(self, name) -> None:
        """ValueError for a reading option that is malformed, or given where no file is read (the bundled set)."""
        from physnetjax.data.dataset import check_reading_options

        check_reading_options(*(getattr(self, field) for field in READING_SETTINGS), name)
        defaults = LearnConfig.__dataclass_fields__
        given = [field for field in READING_SETTINGS if getattr(self, field) != defaults[field].default]
        if given and self.data is None and self.test is None:
            raise ValueError(f"{', '.join(name(field) for field in given)}: apply to the {name('data')} and "
                             f"{name('test')} files, and neither is given (the bundled set is read as it is: eV, "
                             "eV/Å, F = -dE/dR, the PhysNet keys)")

    def model_settings(self) -> dict:
        """The architecture settings (:data:`MODEL_SETTINGS`) by name."""
        return {name: getattr(self, name) for name in MODEL_SETTINGS}

    def to_dict(self) -> dict:
        settings = dataclasses.asdict(self)
        settings["temperatures"] = list(self.temperatures)
        return settings

    def changed_from(self, recorded: dict) -> list[str]:
        """Names of the settings that differ from ``recorded`` (a :meth:`to_dict`), resumable ones excluded.

        A setting ``recorded`` lacks (a run from before the setting existed) had its default.
        ``out`` is not compared: it is the directory the state was read from, however it is
        spelled (``run``, ``./run``, an absolute path) or wherever the run was moved. The
        ``data`` and ``test`` files are compared as the files they name from here
        (``inp/a.npz`` and ``./inp/a.npz`` are one file).
        """
        mine, defaults = self.to_dict(), LearnConfig().to_dict()
        return sorted(key for key in mine if key not in RESUME_CHANGES + ("out",)
                      and not _same_setting(key, recorded.get(key, defaults[key]), mine[key]))


def _same_setting(key: str, recorded, given) -> bool:
    if key in ("data", "test") and recorded is not None and given is not None:
        return os.path.abspath(recorded) == os.path.abspath(given)
    return recorded == given
