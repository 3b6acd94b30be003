"""The training loop: data → split → E0 → epochs (train, EMA validation, checkpoints) → test, plots.

Run directory ``RUN_DIR/``::

    config.json     every setting (TrainConfig), read back by --resume
    config.toml     the same as a commented TOML file (CLI runs; ``--config`` on it repeats the run)
    model.json      the architecture being trained (element_energies None)
    split.npz       train/valid/test frame indices
    metrics.csv     one row per epoch; metrics.json the same plus the final summary
    metrics.jsonl   the rows of metrics.csv as JSON Lines (flushed per epoch, for trackers)
    checkpoints/epoch-NNNN/   physnetjax checkpoints (EMA weights + E0; train state)
    latest -> checkpoints/epoch-NNNN   last epoch written (with train state)
    best   -> checkpoints/epoch-NNNN   best validation metric so far
    learning_curve.png, parity_energy.png, parity_forces.png

Each epoch's state is copied to the host; it is written (by a background thread,
together with a newer best epoch's state kept since the last write) once
``checkpoint_interval_s`` of wall time have passed since the last write, and always
when the run ends or is interrupted by an exception (a checkpoint write takes ~0.15 s
of CPU, more than a whole epoch of a small model on ethanol, so writing every epoch
made such runs ~25 % slower). ``latest`` and ``best`` are symlinks replaced atomically
(``os.replace``) only after the checkpoint they point to is completely written, so a
run killed at any moment (kill -9) resumes from the last checkpoint written, at most
``checkpoint_interval_s`` of training back. Resuming replays the same per-epoch
shuffles (seeded by (seed, epoch)), optimiser, EMA, schedule, plateau and
early-stopping state, so it continues exactly as the uninterrupted run would.

With ``max_time`` the run is time-budgeted (:mod:`physnetjax.train.timebudget`):
the learning-rate schedule and early stopping are laid out over the budget of
training time (summed over resumed invocations, saved in every checkpoint) instead
of ``epochs``, and the run stops after the last epoch that fits in the budget, with
the learning rate at the schedule's end value.

With ``final_stage`` f > 0 the last fraction f of the steps (of the budget) use a
second compiled train step whose loss has ``final_energy_weight``
(:mod:`physnetjax.train.stages`).

With ``ensemble`` K > 1 the same loop trains K members at once
(:mod:`physnetjax.train.ensemble`): the state is stacked over members, the metrics
are those of the member mean plus ``member{k}_*`` columns, the checkpoints are
ensemble checkpoints, and at the end the spread's calibration scale is fitted on
the validation split and stored in ``best`` (:meth:`Trainer._calibrate`).

For a charge model the final summary adds ``dipole_r2`` to the valid and test metrics: the
dipole R² in the molecular frame (:mod:`physnetjax.dipole_surface`), how much of the dipole's
dependence on the geometry (what IR intensities depend on) the model reproduces, which the
dipole MAE of thermal frames, dominated by rigid rotation, does not tell. Both splits' values
are recorded in ``best`` (metadata ``dipole_surface``, read by the spectra commands), and one
below :data:`~physnetjax.dipole_surface.IR_R2_THRESHOLD` warns
(:meth:`Trainer._record_dipole_surface`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from physnetjax.checkpoint import is_checkpoint, load_checkpoint, load_train_state, read_config, save_checkpoint
from physnetjax.data import (
    DataError,
    bundled_dataset_path,
    check_data_file,
    fit_reference_energies,
    load_split,
    random_split,
    save_split,
    shifted_energies,
)
from physnetjax.data.dataset import load_dataset_parts
from physnetjax.data.fingerprint import changed_files, data_fingerprint, file_sha256
from physnetjax.data.frame_digests import TRAINING_FRAMES_KEY, VALIDATION_FRAMES_KEY, FrameRecord, dataset_digests
from physnetjax.data.key_mapping import parse_key_mapping
from physnetjax.data.reference import parse_element_energy_prior
from physnetjax.data.sanity import check_label_sanity
from physnetjax.data.split import split_with_held_out_files
from physnetjax.dipole_surface import DIPOLE_SURFACE_KEY, dipole_surface_fit, judged_r2, unreliable_ir_message
from physnetjax.distance_domain import TRAINED_DISTANCES_KEY, DistanceDomain
from physnetjax.ensemble import fit_calibration_scale, gaussian_nll, member_params, spearman_rank_correlation
from physnetjax.ensemble.calibration import warn_few_frames, without_zero_spreads
from physnetjax.checkpoint.errors import CheckpointWriteError
from physnetjax.errors import (FULL_DISK_ERRNOS, OutOfMemoryError, OutputWriteError, PhysNetInputError,
                               PhysNetInputWarning, displayed, out_of_memory_as, warn_caller, write_failure)
from physnetjax.jsonlines import append_record, append_text, replace_text, start_log, write_json
from physnetjax.model import PhysNet
from physnetjax.neighbors import image_reach
from physnetjax.predict import init_params, out_of_memory_error
from physnetjax.train import plots
from physnetjax.train.batching import as_batched, batch_offsets, batch_shapes, iterate_batches, num_batches
from physnetjax.train.config import (ARCHITECTURE_SETTINGS, DATA_FILE_SETTINGS, RESUME_OVERRIDES, TrainConfig,
                                     read_json_object, unused_settings)
from physnetjax.train.background import BackgroundWriter
from physnetjax.train.device_batches import batch_rows, build_device_frames, frame_rows, supports_device_batches
from physnetjax.train.device_steps import make_device_steps
from physnetjax.train.ensemble import (
    bootstrap_frames,
    check_init_architecture,
    ensemble_step_functions,
    init_member_params,
    initial_weights,
    make_ensemble_steps,
    member_batches,
    member_columns,
    member_seeds,
    saved_model,
)
from physnetjax.train.forcecheck import ForceCheckError, finite_difference_force_error
from physnetjax.train.loss import SUMS, TERMS, loss_from_sums, loss_weights, metrics_from_totals
from physnetjax.train.optim import Plateau, init_state, make_optimizer, make_schedule, make_steps, step_functions
from physnetjax.train.run_lock import LOCK_NAME, run_lock
from physnetjax.train.parallel import device_mesh, replicate, shard_batch, shard_member_batch
from physnetjax.train.stages import epoch_run_progress, in_final_stage
from physnetjax.training_record import TrainingRecord
from physnetjax.validation import (ELEMENT_ENERGIES_FIT_KEY, MAX_RECORDED_CHARGE_STATES, TRAINED_CHARGE_STATES_KEY,
                                   TRAINED_CHARGES_KEY, TRAINED_ELEMENTS_KEY, charge_states,
                                   check_directory_creatable, check_output_directory, distinct_charges, element)
from physnetjax.train.timebudget import TimeBudget, progress_factor
from physnetjax.units import GPA

logger = logging.getLogger(__name__)

DATA_SHA256_KEY = "data_sha256"
SPLIT_SHA256_KEY = "split_sha256"
"""Checkpoint metadata key: {data path: SHA-256 of its content} of the run's data files."""

METRIC_NAMES = ("energy", "energy_per_atom", "forces", "dipole", "charge", "stress")
CSV_COLUMNS = (["epoch", "time_s", "lr", "train_loss", "grad_norm", "valid_loss"]
               + [f"valid_{m}_{s}" for m in METRIC_NAMES for s in ("mae", "rmse")]
               + ["force_check_max_error", "best"])
ADDED_COLUMNS = ("valid_stress_mae", "valid_stress_rmse")
"""Columns a metrics.csv written before they existed may lack; a resume adds them, empty for the epochs before."""


def _point(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to ``target`` (relative), replacing any old link atomically.

    Raises:
      CheckpointWriteError: ``target`` is not a complete checkpoint (a link never points at nothing), or the link
        cannot be made (the old one is then unchanged).
    """
    if not is_checkpoint(target):
        raise CheckpointWriteError(f"refusing to point {link} at {target}: it is not a complete checkpoint; {link} "
                                   "is unchanged")
    tmp = link.with_name(f".{link.name}.tmp")
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.path.relpath(target, link.parent), tmp)
        os.replace(tmp, link)
    except OSError as error:
        if tmp.is_symlink():
            tmp.unlink()
        raise CheckpointWriteError(f"cannot point {link} at the checkpoint {target} ({error.strerror or error}); "
                                   f"{link} is unchanged") from error


def build_model(config: TrainConfig, max_atomic_number: int) -> PhysNet:
    """The PhysNet to train (no element energies: the trainer fits and adds them), with float64 parameters when
    ``config.float64``."""
    return PhysNet(**{**config.model_settings(), "max_atomic_number": max_atomic_number},
                   param_dtype=training_dtype(config))


def training_dtype(config: TrainConfig) -> np.dtype:
    """The floating-point type of the run's parameters, batches and steps: float64 with ``config.float64``."""
    return np.dtype(np.float64 if config.float64 else np.float32)


def check_x64_for(config: TrainConfig) -> None:
    """Refuse a float64 run while JAX's 64-bit mode is off (JAX would round every array to float32 unasked).

    Raises:
      PhysNetInputError: naming the setting that switches it on.
    """
    if config.float64 and not jax.config.jax_enable_x64:
        raise PhysNetInputError("float64 training needs JAX's 64-bit mode: call jax.config.update("
                                "'jax_enable_x64', True) before training (python -m physnetjax.train does for "
                                "--float64 and for --resume of a float64 run)")


_COMPILED: dict = {}
_STEP_SETTINGS = ("loss", "energy_weight", "forces_weight", "dipole_weight", "charge_weight", "stress_weight",
                  "per_atom_energy", "optimizer", "learning_rate", "weight_decay", "clip_norm", "schedule", "ema_decay")
_SCHEDULE_SETTINGS = {"constant": (), "plateau": (), "exponential": ("decay_rate", "decay_epochs"),
                      "cosine": ("warmup_epochs", "final_lr_factor", "epochs")}


def _compiled(model, config: TrainConfig, steps_per_epoch: int, shapes) -> tuple:
    """(schedule, optimizer, train_step, eval_step, loss_and_grads, device_train_step, evaluate_rows), shared by
    runs with equal settings in one process (a resumed or repeated run does not compile again).

    train_step/eval_step/loss_and_grads take host-packed batches; device_train_step and
    evaluate_rows take device-resident frames and rows (:mod:`physnetjax.train.device_steps`;
    None when ``shapes`` need triplet lists). For an ensemble (``config.ensemble`` > 1) the
    steps are those of :func:`physnetjax.train.ensemble.make_ensemble_steps` and
    loss_and_grads is None.
    """
    settings = _STEP_SETTINGS + _SCHEDULE_SETTINGS[config.schedule]
    architecture = json.dumps(model.config(), sort_keys=True)  # equal modules need not hash equal
    key = (architecture, steps_per_epoch, shapes, config.ensemble, tuple(getattr(config, name) for name in settings))
    if key not in _COMPILED:
        schedule = make_schedule(config, steps_per_epoch)
        optimizer = make_optimizer(config, schedule)
        step_args = (model, optimizer, loss_weights(config), config.loss, config.ema_decay)
        if config.ensemble > 1:
            steps = (*make_ensemble_steps(*step_args), None)
            raw_steps = ensemble_step_functions(*step_args)
        else:
            steps = make_steps(*step_args)
            raw_steps = step_functions(*step_args)[:2]
        device_steps = (make_device_steps(*raw_steps, shapes, config.ensemble > 1)
                        if supports_device_batches(shapes) else (None, None))
        _COMPILED[key] = (schedule, optimizer, *steps, *device_steps)
    return _COMPILED[key]


def edited_settings(mine: dict, recorded: dict, *, names: set, skipped: set) -> list[str]:
    """``"name = value (the checkpoint's: value)"`` for each of ``names`` (not ``skipped``) where the two differ."""
    return [f"{name} = {json.dumps(mine.get(name))} (the checkpoint's: {json.dumps(recorded.get(name))})"
            for name in sorted(names - skipped) if mine.get(name) != recorded.get(name)]


class Trainer:
    """One run: holds data, model, compiled steps and host state; :meth:`run` trains.

    Use :func:`train` / :func:`resume` rather than this class directly. ``names``: setting → how the
    messages of the checks that need the data (the split sizes) name it; a command line passes its options.
    ``epochs_changed``: a resume that gives another ``epochs`` than the run's (refused when the run has trained
    as many already, see :meth:`_check_resumable`).
    """

    def __init__(self, config: TrainConfig, run_dir: Path, resuming: bool, allow_changed_data: bool = False,
                 clock=time.monotonic, names: Optional[Mapping[str, str]] = None, epochs_changed: bool = False):
        self.config = config
        self.names = names
        self.run_dir = run_dir
        self.resuming = resuming
        self.allow_changed_data = allow_changed_data
        self.clock = clock
        self.start_time = clock()
        self.budget = TimeBudget(config.max_time) if config.max_time is not None else None
        self.lr_factor = 1.0
        self.size = config.ensemble
        self.dtype = training_dtype(config)
        self.seeds = member_seeds(config.seed, self.size)
        self.columns = CSV_COLUMNS + member_columns(self.size)
        parts = config.data_parts()
        paths = [path for files in parts.values() for path in files]
        for path in paths:
            check_data_file(path)
        self.data_sha256 = data_fingerprint(paths)
        resumed = self._check_resumable(epochs_changed) if resuming else None
        self.dataset, self.part_frames = load_dataset_parts(
            parts, energy_unit=config.energy_unit, force_unit=config.force_unit, dipole_unit=config.dipole_unit,
            force_sign=config.force_sign, keys=parse_key_mapping(config.keys))
        logger.info("data: %s", self.dataset.summary())
        check_label_sanity(self.dataset.trained_labels(), ", ".join(paths))
        self._setup_split()
        self.initial_training_frames = None
        self._setup_model()
        self.dataset = as_batched(self.dataset, self.model)
        self._check_elements_in_range(paths)
        self._check_charge_states(paths)
        self._check_best_metric()
        self._check_some_term_trains()
        train_idx = self.split["train"]
        self.member_frames = (bootstrap_frames(train_idx, self.seeds) if config.bootstrap
                              else [train_idx] * self.size)
        training_frames = FrameRecord.of(dataset_digests(self.dataset, train_idx))
        if self.initial_training_frames is not None:
            self._check_held_out_of_initial_model()
            training_frames = training_frames.union(self.initial_training_frames)
        self.training_frames = training_frames.to_metadata()  # encoded once, written into every checkpoint
        self.validation_frames = FrameRecord.of(dataset_digests(self.dataset, self.split["valid"])).to_metadata()
        self.element_energies = np.zeros(self.model.max_atomic_number + 1)
        self.element_energies_fit = None
        fitted = self.dataset.has_E[train_idx] & (self.dataset.term_weights[train_idx, 1] > 0)  # not weight-0 frames
        if fitted.any():
            prior = parse_element_energy_prior(config.element_energy_prior, config.energy_unit)
            fit = fit_reference_energies(self.dataset.Z[train_idx], self.dataset.E[train_idx],
                                         self.model.max_atomic_number, mask=fitted, prior=prior)
            self.element_energies, self.element_energies_fit = fit.energies, fit.to_dict()
            if prior is not None and fit.method == "least-squares":
                warn_caller(f"{displayed('element_energy_prior', self.names)} is not used: the training "
                            "compositions determine every element energy E0 (a least-squares fit)",
                            PhysNetInputWarning)
        self.energies = shifted_energies(self.dataset.Z, self.dataset.E, self.element_energies)
        z_train = self.dataset.Z[train_idx]
        self.trained_elements = sorted(int(z) for z in np.unique(z_train[z_train > 0]))
        self.trained_charges = distinct_charges(self.dataset.Q[train_idx])
        states = (charge_states(z_train, self.dataset.N[train_idx], self.dataset.Q[train_idx])
                  if len(self.trained_charges) > 1 else {})  # one charge: the charges record says it all
        self.trained_charge_states = states if 0 < len(states) <= MAX_RECORDED_CHARGE_STATES else None
        self.trained_distances = DistanceDomain.of_frames(z_train, self.dataset.R[train_idx], self.dataset.N[train_idx],
                                                          self.model.cutoff, self.dataset.cell[train_idx]).to_metadata()
        self._check_held_out_frames()
        member = self.model.clone(element_energies=tuple(float(e) for e in self.element_energies))
        self.saved_model = saved_model(member, self.size)

        self.mesh = device_mesh()
        num_devices = self.mesh.devices.size
        self.shapes = batch_shapes(self.dataset, self.model, config.batch_size, num_devices)
        self.steps_per_epoch = num_batches(len(train_idx), config.batch_size)
        self.weights = loss_weights(config)
        step_config = config if self.budget is None else dataclasses.replace(config, schedule="constant")
        (self.schedule, self.optimizer, host_train_step, self.eval_step, self.loss_and_grads, device_train_step,
         self.evaluate_rows) = _compiled(self.model, step_config, self.steps_per_epoch, self.shapes)
        self.device_frames = None
        if device_train_step is not None:
            self.train_step = device_train_step
            self._setup_device_frames()
        else:
            self.train_step = host_train_step
        self.final_train_step = None
        if config.final_stage > 0:
            stage_config = dataclasses.replace(step_config, energy_weight=config.final_energy_weight)
            final_steps = _compiled(self.model, stage_config, self.steps_per_epoch, self.shapes)
            self.final_train_step = final_steps[5] if device_train_step is not None else final_steps[2]
        self.writer = BackgroundWriter()
        self.unwritten_best = self.unwritten_latest = None
        self.last_write = time.monotonic()
        logger.info("devices: %d (%s), %s; batch %d = %d per device; %d train / %d valid / %d test frames",
                    num_devices, jax.local_devices()[0].platform, self.dtype.name, config.batch_size,
                    self.shapes.molecules,
                    len(train_idx), len(self.split["valid"]), len(self.split["test"]))

        if self.size > 1:
            self.state = jax.vmap(lambda p: init_state(p, self.optimizer))(self.initial_params)
        else:
            self.state = init_state(self.initial_params, self.optimizer)
        self.epoch = 0
        self.best_value = math.inf
        self.force_check_shown = None
        self.best_epoch = 0
        self.epochs_since_best = 0
        self.plateau = Plateau(config.plateau_factor, config.plateau_patience, config.schedule == "plateau")
        self.rows: list[dict] = []
        if resumed is not None:
            self._restore(*resumed)
        else:
            self._write_metrics([])
        self.state = replicate(self.state, self.mesh)

    # -- setup -------------------------------------------------------------------------

    def _setup_split(self) -> None:
        split_path = self.run_dir / "split.npz"
        if self.resuming:
            self.split = load_split(split_path, len(self.dataset))
        else:
            if self.config.split_file:
                self.split = load_split(self.config.split_file, len(self.dataset))
                self._check_split_file_covers_data()
            elif len(self.part_frames) > 1:
                self.split = split_with_held_out_files(
                    self.part_frames["training"], self.part_frames.get("validation", 0),
                    self.part_frames.get("test", 0), self.config.valid, self.config.test, self.config.seed,
                    self.config.train, names=self.names)
            else:
                self.split = random_split(len(self.dataset), self.config.valid, self.config.test, self.config.seed,
                                          self.config.train, names=self.names)
            save_split(split_path, self.split)
        self.split_sha256 = file_sha256(split_path)

    def _check_split_file_covers_data(self) -> None:
        """Warn when ``--split-file`` leaves frames of the data in no split (e.g. a split made for other data)."""
        used = np.concatenate([self.split[name] for name in ("train", "valid", "test")])
        unused = np.setdiff1d(np.arange(len(self.dataset)), used)
        if unused.size:
            first = ", ".join(self.dataset.sources[i] for i in unused[:3])
            warn_caller(f"--split-file {self.config.split_file}: {unused.size} of the {len(self.dataset)} frames are "
                        f"in none of train, valid and test and are not used (first: {first}); was the split made "
                        "for other data? Give a split of these files, or leave out --split-file for a random one",
                        PhysNetInputWarning)

    def _setup_model(self) -> None:
        model_path = self.run_dir / "model.json"
        if self.resuming:  # self.model: read from model.json by _check_resumable
            self.initial_params = self._fresh_params()
            return
        if self.config.init_from:
            self.model, self.initial_params, initial_metadata = initial_weights(self.config.init_from, self.size)
            self.model = self.model.clone(param_dtype=self.dtype)
            self.initial_params = jax.tree_util.tree_map(lambda x: x.astype(self.dtype), self.initial_params)
            self.initial_training_frames = FrameRecord.from_metadata(initial_metadata)
            defaults = TrainConfig()
            for name in ARCHITECTURE_SETTINGS:  # config.json/config.toml record the architecture trained
                value = getattr(self.model, name)
                if value is not None or getattr(defaults, name) is None:
                    setattr(self.config, name, value)
            logger.info("initial weights from %s (architecture taken from it)", self.config.init_from)
        else:
            max_z = self.config.max_atomic_number or int(self.dataset.Z.max())
            self.model = build_model(self.config, max_z)
            self.initial_params = self._fresh_params()
        write_json(model_path, self.model.config())

    def _check_held_out_of_initial_model(self) -> None:
        """Warn when the ``--init-from`` model was trained on frames this run validates or tests on.

        Its checkpoint records its training frames (:mod:`physnetjax.data.frame_digests`). A model fine-tuned from it
        has seen them: the test errors on them are partly training errors (optimistic), and validation on them picks
        the best epoch and the calibration by frames it fits. A learning-loop round keeps the previous round's split,
        so its initial model's frames stay in train.
        """
        found = []
        for name in ("valid", "test"):
            share = self.initial_training_frames.share_of(dataset_digests(self.dataset, self.split[name]))
            if share.any:
                found.append(f"{share.describe()} of the {'validation' if name == 'valid' else 'test'} split")
        if found:
            warn_caller(f"--init-from {self.config.init_from} was trained on {' and '.join(found)} of this run "
                        "(same atoms and positions): its errors there are partly training errors, so the test "
                        "errors reported at the end are optimistic; keep its training frames in this run's "
                        "training split (--split-file), or test on other frames", PhysNetInputWarning)

    def _check_model_file(self, latest: Path) -> None:
        """Refuse a ``model.json`` whose architecture differs from that of the run's checkpoint ``latest`` (edited).

        ``model.json`` decides the network a resumed run trains; another cutoff or width would continue the
        checkpoint's weights in a different model (a wrong shape, or silently other numbers). Element energies
        are refitted on every start and not compared.
        """
        model_path = self.run_dir / "model.json"
        architecture = read_json_object(model_path)
        saved = read_config(latest)["model"]
        saved = saved.get("member", saved)
        defaults = {**PhysNet().config(), "zbl_cutoff": None}  # as PhysNet.from_config reads a dict without them
        mine, theirs = {**defaults, **architecture}, {**defaults, **saved}
        changed = edited_settings(mine, theirs, names=set(mine) | set(theirs), skipped={"element_energies"})
        if changed:
            raise PhysNetInputError(
                f"{model_path} does not describe the model of the run's checkpoint {os.path.realpath(latest)}: "
                f"{'; '.join(changed)}; the file was edited after the run started. Restore those values (another "
                "architecture is a new run, with its own --out)")

    def _setup_device_frames(self) -> None:
        """Keep the training, validation and test frames, with their neighbor lists built once, on every device."""
        frames = np.unique(np.concatenate([*self.member_frames, self.split["valid"], self.split["test"]]))
        host_frames = build_device_frames(self.dataset, frames, self.energies, self.model, dtype=self.dtype)
        self.device_frames = replicate(host_frames, self.mesh)
        self.frame_row = frame_rows(frames, len(self.dataset))
        self.split_rows = {}
        size = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(host_frames))
        logger.info("batches gathered on the device from %d frames with prebuilt neighbor lists (%.1f MB)",
                    len(frames), size / 2**20)

    def _fresh_params(self):
        """Freshly initialised variables: of seed ``config.seed``, or stacked over the members' seeds."""
        if self.size > 1:
            return init_member_params(self.model, self.seeds)
        return init_params(self.model, self.config.seed)

    def _check_resumable(self, epochs_changed: bool) -> tuple[dict, list, list]:
        """Refuse a run directory that cannot be resumed as it is; returns the metadata of its latest checkpoint and
        the rows of metrics.csv up to the checkpoint's epoch (as read, and as :meth:`_parse_row` reads them).

        None of these checks needs the data or the compiled steps, so they run before either (a refused resume
        exits in seconds, not after the setup's tens of seconds): no ``latest`` checkpoint, a file of it altered
        or missing (its SHA-256), an edited ``model.json`` or ``config.json``, data or ``split.npz`` of another
        content than the run's (changed data only warn with ``allow_changed_data``), a lost ``best`` link, a time
        budget added or removed, ``epochs_changed`` to no more epochs than trained, and a metrics.csv that is
        missing, truncated or edited.
        """
        self.model = self._run_model()
        latest = self.run_dir / "latest"
        if not latest.exists():
            saved = sorted(p for p in (self.run_dir / "checkpoints").glob("epoch-*") if (p / "config.json").exists())
            hint = (f"; its newest checkpoint is {saved[-1]}: restore the link with ln -sfn "
                    f"{saved[-1].relative_to(self.run_dir)} {latest}" if saved else "")
            raise FileNotFoundError(f"{self.run_dir}: nothing to resume, no complete checkpoint at {latest}{hint}")
        load_train_state(latest)  # checks every file of the checkpoint; :meth:`_restore` reads the state into place
        meta = read_config(latest).get("metadata") or {}
        self._check_model_file(latest)
        self._check_data_unchanged(meta.get(DATA_SHA256_KEY))
        self._check_split_unchanged(meta.get(SPLIT_SHA256_KEY))
        self._check_settings_unchanged(latest, meta.get("train_config"))
        epoch = int(meta["epoch"])
        self._check_best_link(int(meta["host"]["best_epoch"]))
        saved_budget = meta["host"].get("time_budget")
        if (saved_budget is None) != (self.budget is None):
            raise ValueError(f"{self.run_dir} was {'not ' if saved_budget is None else ''}trained with a time budget; "
                             "resume it with --max-time " + ("removed" if saved_budget is None else "given"))
        metrics = self.run_dir / "metrics.csv"
        rows = self._read_metrics_rows(metrics, epoch)
        try:
            parsed = [self._parse_row(row) for row in rows or ()]
        except ValueError:
            rows = None
        if rows is None or [int(row["epoch"]) for row in rows] != list(range(1, epoch + 1)):
            found = "unreadable rows" if rows is None else f"the rows of {len(rows)} of those epochs"
            raise ValueError(f"{metrics} is truncated or edited: the checkpoint is at epoch {epoch} but the file "
                             f"holds {found}; resuming would rewrite it and metrics.jsonl with the rest lost. Restore "
                             "it (metrics.jsonl holds the same rows as JSON Lines)")
        if epochs_changed and self.config.max_time is None and self.config.epochs <= epoch:
            raise ValueError(f"--epochs {self.config.epochs} is the total number of epochs, and {self.run_dir} has "
                             f"trained {epoch} already: nothing would be trained. For N more epochs pass --epochs "
                             f"{epoch} + N (e.g. --epochs {epoch + self.config.epochs})")
        return meta, rows, parsed

    def _run_model(self) -> PhysNet:
        """The model that the resumed run's ``model.json`` describes (refused: not JSON, not a model configuration)."""
        model_path = self.run_dir / "model.json"
        architecture = read_json_object(model_path)
        try:
            return PhysNet.from_config(architecture)
        except TypeError as error:
            raise ValueError(f"{model_path}: not a model configuration ({error})") from None

    def _restore(self, meta: dict, rows: list, parsed: list) -> None:
        """Continue from the latest checkpoint that :meth:`_check_resumable` checked (its ``meta``data, the metrics
        ``rows`` as read and ``parsed``): its train state, host state and metrics files."""
        for partial in (self.run_dir / "checkpoints").glob(".*partial*"):
            shutil.rmtree(partial, ignore_errors=True)
        self.state = load_train_state(self.run_dir / "latest", target=self.state)
        if FrameRecord.from_metadata(meta) is not None:  # holds the initial model's frames too
            self.training_frames = meta[TRAINING_FRAMES_KEY]
        host = meta["host"]
        self.epoch = int(meta["epoch"])
        self.best_value, self.best_epoch = float(host["best_value"]), int(host["best_epoch"])
        self.epochs_since_best = int(host["epochs_since_best"])
        self.plateau.scale = float(host["plateau"]["scale"])
        self.plateau.best = float(host["plateau"]["best"])
        self.plateau.bad_epochs = int(host["plateau"]["bad_epochs"])
        if host.get("time_budget") is not None:
            self.budget = TimeBudget(**{**host["time_budget"], "budget": self.config.max_time})
        self._write_metrics(rows)
        self.rows = parsed
        if parsed:  # time_s continues from the last kept epoch: the run's wall time, summed over its invocations
            self.start_time -= parsed[-1]["time_s"]
        logger.info("resumed %s at epoch %d (best %s = %.6g at epoch %d)", self.run_dir, self.epoch,
                    self.config.best_metric, self.best_value, self.best_epoch)

    def _check_settings_unchanged(self, latest: Path, recorded) -> None:
        """Refuse settings in ``config.json`` that differ from those the checkpoint ``latest`` was trained with.

        Only :data:`RESUME_OVERRIDES` may change on a resume (given on the command line, where other changes are
        refused); a value edited in the file (a learning rate, a removed key that falls back to its default) would
        continue the run with other numbers. Paths are not compared: ``data`` has its own check of the content,
        and the run, its initial weights or split file may have moved since it started.
        """
        if not isinstance(recorded, dict):
            return
        mine = self.config.to_dict()
        skipped = {*RESUME_OVERRIDES, "out", "data", "init_from", "split_file"}
        changed = edited_settings(mine, recorded, names=set(mine) & set(recorded), skipped=skipped)
        if changed:
            raise PhysNetInputError(
                f"{self.run_dir / 'config.json'} does not hold the settings the run's checkpoint "
                f"{os.path.realpath(latest)} was trained with: {'; '.join(changed)}; the file was edited after the "
                f"run started. Restore those values (a resume may change only {', '.join(RESUME_OVERRIDES)}; for "
                f"other settings start a new run with --init-from {self.run_dir / 'best'})")

    def _check_best_link(self, best_epoch: int) -> None:
        """Refuse to resume a run whose ``best`` checkpoint (of ``best_epoch``) is gone: the run would train on and
        then fail at its end, where the best weights are evaluated and tested (an epoch better than the lost one
        would replace it)."""
        best = self.run_dir / "best"
        if best_epoch < 1 or is_checkpoint(best):
            return
        kept = self.run_dir / "checkpoints" / f"epoch-{best_epoch:04d}"
        fix = (f"restore the link with ln -sfn {kept.relative_to(self.run_dir)} {best}" if is_checkpoint(kept) else
               f"its checkpoint {kept} is gone too, so the run cannot finish; start a new run with --init-from "
               f"{self.run_dir / 'latest'}")
        raise FileNotFoundError(f"{self.run_dir}: the link {best} to the run's best checkpoint (epoch "
                                f"{best_epoch}) is missing or broken: {fix}")

    def _check_elements_in_range(self, paths) -> None:
        """DataError when the data hold elements above the model's max_atomic_number (their embedding is missing) or
        beyond its D3 dispersion's reference data (:attr:`PhysNet.supported_max_atomic_number`)."""
        limit = self.model.supported_max_atomic_number
        heavy = self.dataset.Z > limit
        if heavy.any():
            frames = np.nonzero(heavy.any(axis=1))[0]
            elements = ", ".join(element(z) for z in np.unique(self.dataset.Z[heavy]))
            fix = ("D3 dispersion has reference data only up to there: train without --dispersion, or without these "
                   "frames" if limit < self.model.max_atomic_number
                   else "raise --max-atomic-number or --init-from a model that covers them")
            raise DataError(
                f"{', '.join(paths)}: element(s) {elements} in {len(frames)} frame(s) (first: "
                f"{self.dataset.sources[frames[0]]}) are outside the model's range Z = 1..{limit}; {fix}")

    def _check_best_metric(self) -> None:
        """Refuse a ``best_metric`` the validation split cannot measure (no such labels, or dipoles without charges):
        no epoch would ever be best, so the run would end without a ``best`` checkpoint."""
        name = self.config.best_metric
        quantity = name.split("_")[0]
        label, word = {"energy": ("E", "energy"), "forces": ("F", "force"), "dipole": ("D", "dipole"),
                       "stress": ("S", "stress")}.get(quantity, (None, None))
        if label is None:
            return
        valid = self.split["valid"]
        if label == "D" and not self.model.charges:
            reason = "a model without --charges predicts no dipoles"
        elif not getattr(self.dataset, f"has_{label}")[valid].any():
            reason = f"none of the {len(valid)} validation frames has {word} labels"
        else:
            return
        raise PhysNetInputError(f"--best-metric {name} cannot be measured: {reason}, so no epoch would be best and no "
                                "checkpoint saved; choose --best-metric loss or a metric of the labels the data hold")

    def _check_some_term_trains(self) -> None:
        """Refuse a loss without a term: every weight 0, or the positive ones only on labels the training frames lack
        or carry at a per-frame loss weight of 0 only (dipole and total-charge terms exist only with --charges, the
        stress term with stress-labelled data). Every epoch would report a loss of 0 and train nothing."""
        config, train, data = self.config, self.split["train"], self.dataset
        frame, energy, forces, stress = (data.term_weights[train] > 0).T  # frames of loss weight 0 train nothing
        energy_weight = max(config.energy_weight, config.final_energy_weight if config.final_stage > 0 else 0.0)
        terms = [("energy_weight", energy_weight, "energy", (data.has_E[train] & energy).any()),
                 ("forces_weight", config.forces_weight, "force", (data.has_F[train] & forces).any())]
        if data.has_S.any():
            terms.append(("stress_weight", config.stress_weight, "stress", (data.has_S[train] & stress).any()))
        if self.model.charges:
            terms += [("dipole_weight", config.dipole_weight, "dipole", (data.has_D[train] & frame).any()),
                      ("charge_weight", config.charge_weight, "total-charge", (data.has_Q[train] & frame).any())]
        if any(weight > 0 and present for _, weight, _, present in terms):
            return
        weights = ", ".join(f"{displayed(key, self.names)} {weight:g}" for key, weight, _, _ in terms)
        labelled = ", ".join(label for _, _, label, present in terms if present) or "no"
        unweighted = " of a per-frame loss weight above 0" if data.weighted else ""
        raise PhysNetInputError(f"no loss term would train anything ({weights}; the {len(train)} training frames have "
                                f"{labelled} labels{unweighted}): give a term with labels a positive weight")

    def _check_held_out_frames(self) -> None:
        """Warn where validation or test frames hold elements, total charges, charge states or compositions the
        training frames never had (a ``test_data`` file of other molecules): their errors measure an untrained
        guess, or an energy offset the training data never fixed, not how well the model learned (a test energy
        MAE of 11,700 eV for base pairs tested on an ethanol model, without a word).

        Interatomic distances are not judged here: validation and test frames drawn from the same data reach a
        little beyond the training frames' shortest distances as a matter of course (``eval`` and MD judge them)."""
        record = TrainingRecord.from_metadata({
            TRAINED_ELEMENTS_KEY: self.trained_elements, TRAINED_CHARGES_KEY: self.trained_charges,
            TRAINED_CHARGE_STATES_KEY: self.trained_charge_states, ELEMENT_ENERGIES_FIT_KEY: self.element_energies_fit})
        data = self.dataset
        for name, part in (("valid", "validation"), ("test", "test")):
            frames = self.split[name]
            if len(frames):
                record.check_dataset(data.Z[frames], data.N[frames], data.Q[frames], where=f"the {part} split",
                                     consequence=f"its {part} energy errors include that offset",
                                     mask=data.has_E[frames])

    def _check_charge_states(self, paths) -> None:
        """Warn when frames of several total charges train a model without charges, whose energy ignores Q."""
        charges = np.unique(self.dataset.Q[self.split["train"]])
        if self.model.charges or len(charges) < 2:
            return
        listed = ", ".join(f"{q:g}" for q in charges)
        warn_caller(f"{', '.join(paths)}: the training frames have total charges {listed} e, but a model without "
                    "--charges does not see the total charge (the same geometry gets one energy whatever its "
                    "charge); train with --charges or one charge state per model",
                    PhysNetInputWarning)

    def _check_data_unchanged(self, recorded) -> None:
        """Refuse (or, with ``allow_changed_data``, warn) when the data files differ from those the run used.

        Runs saved before the fingerprint existed have none recorded: nothing is checked.
        """
        if recorded is None:
            return
        changed = changed_files(recorded, self.data_sha256)
        if not changed:
            return
        message = (f"{self.run_dir}: the data changed since the run started: {', '.join(changed)} (SHA-256 "
                   "differs); resuming would continue on different data")
        if not self.allow_changed_data:
            raise DataError(message + ". Restore the original file, start a new run (--init-from "
                            f"{self.run_dir / 'best'}), or pass --allow-changed-data")
        logger.warning("warning: %s (--allow-changed-data)", message)

    def _check_split_unchanged(self, recorded) -> None:
        """Refuse to resume when split.npz differs from the one the run's checkpoints were trained with.

        The split decides which frames train, validate (best checkpoint, early stop) and test;
        another one mid-run would mix them. Runs saved before the record existed: not checked.
        """
        if recorded is not None and recorded != file_sha256(self.run_dir / "split.npz"):
            raise DataError(f"{self.run_dir / 'split.npz'} changed since the run started (SHA-256 differs): the "
                            "split decides which frames train, validate and test, so resuming would mix them. "
                            "Restore the run's split.npz, or start a new run (--init-from "
                            f"{self.run_dir / 'best'} --split-file YOUR_SPLIT)")

    def _read_metrics_rows(self, metrics: Path, epoch: int) -> list | None:
        """The rows of metrics.csv up to the checkpoint's ``epoch`` (as read, text), or None when an epoch is no
        number.

        Resuming rewrites metrics.csv and metrics.jsonl with this run's columns from these rows, so a file of other
        columns (some removed, renamed or added) or a row of fewer or more values than its header is refused, naming
        them: it would come back without those values. Rows after the checkpoint's epoch (trained, then lost with
        the interrupted run) are dropped whatever their shape. An empty file (no header) reads as no rows; a missing
        one is refused (FileNotFoundError), naming metrics.jsonl when that holds the rows. A file without the
        :data:`ADDED_COLUMNS` (written by an older release) is accepted: they are left empty for its epochs.
        """
        if not metrics.exists():
            twin = metrics.with_name("metrics.jsonl")
            raise FileNotFoundError(
                f"{metrics} does not exist: the checkpoint is at epoch {epoch}, and resuming would start "
                "metrics.csv and metrics.jsonl anew without the rows of those epochs. Restore it "
                + ("(metrics.jsonl holds the same rows as JSON Lines)" if twin.exists()
                   else f"from a copy, or start a new run with --init-from {self.run_dir / 'best'}"))
        with open(metrics, newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [name for name in self.columns if name not in header and name not in ADDED_COLUMNS]
            extra = [name for name in dict.fromkeys(header) if name not in self.columns]
            repeated = sorted({name for name in header if header.count(name) > 1})
            if header and (missing or extra or repeated):
                found = "; ".join(f"{what}: {', '.join(names)}" for what, names in (
                    ("missing", missing), ("unknown", extra), ("given twice", repeated)) if names)
                raise ValueError(f"{metrics} holds other columns than this run writes ({found}); resuming would "
                                 "rewrite it and metrics.jsonl without those values. Restore its header and columns "
                                 "(metrics.jsonl holds the same rows as JSON Lines)")
            rows = []
            for row in reader:
                try:
                    if int(row["epoch"]) > epoch:
                        continue
                except (TypeError, ValueError):
                    return None
                if None in row or None in row.values():
                    count = sum(value is not None for key, value in row.items() if key is not None)
                    raise ValueError(f"{metrics} line {reader.line_num} holds {count + len(row.get(None, ()))} "
                                     f"values for {len(header)} columns: it was cut short or edited; resuming would "
                                     "rewrite it and metrics.jsonl with those values lost. Restore it (metrics.jsonl "
                                     "holds the same rows as JSON Lines)")
                rows.append(row)
        return rows

    @staticmethod
    def _parse_row(row: dict) -> dict:
        """A metrics.csv row as the run wrote it into metrics.json: epoch and best int, the other values float, an
        empty value (a column the epoch did not fill, e.g. the force check of an epoch that was not the best) left
        out. Raises ValueError for a value that is no number (or an epoch or best that is no integer)."""
        return {k: int(v) if k in ("epoch", "best") else float(v) for k, v in row.items() if v != ""}

    def _write_metrics(self, rows: list) -> None:
        """Replace metrics.csv and its JSON Lines twin metrics.jsonl with ``rows`` (as read from metrics.csv; [] for
        a fresh run), each in one step (a temporary file, then ``os.replace``): a resume interrupted while rewriting
        them (or refused by a full disk) leaves each file whole, so it can simply be repeated."""
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.columns)
        writer.writeheader()
        writer.writerows({k: row.get(k, "") for k in self.columns} for row in rows)
        replace_text(self.run_dir / "metrics.csv", text.getvalue())
        start_log(self.run_dir / "metrics.jsonl", [_jsonl_record(row, self.columns) for row in rows])

    def _append_csv(self, row: dict) -> None:
        """Append the epoch's ``row`` to metrics.csv and metrics.jsonl; a write the disk refuses is cut off again
        (the files hold whole rows only) and raised as an OutputWriteError that says what the run keeps."""
        text = io.StringIO(newline="")
        csv.DictWriter(text, self.columns).writerow({k: row.get(k, "") for k in self.columns})
        kept = f"it holds the rows before epoch {row['epoch']}; {self._kept_text()}"
        append_text(self.run_dir / "metrics.csv", text.getvalue(), kept)
        append_record(self.run_dir / "metrics.jsonl", _jsonl_record(row, self.columns), kept)

    def _kept_text(self) -> str:
        """What a run stopped by a failed write keeps, and how to go on from it."""
        latest = self.run_dir / "latest"
        if is_checkpoint(latest):
            return (f"the run keeps its last complete checkpoint {os.path.realpath(latest)} ({latest}): free space "
                    f"and continue it with python -m physnetjax.train --resume {self.run_dir}")
        return (f"{self.run_dir} holds no complete checkpoint yet: free space and run the same command again (it "
                "starts the run over)")

    # -- evaluation ----------------------------------------------------------------------

    def batches(self, indices, seed=None):
        for batch, labels in iterate_batches(self.dataset, indices, self.energies, self.model,
                                             self.config.batch_size, self.shapes, seed=seed, dtype=self.dtype):
            yield shard_batch(batch, self.mesh), shard_batch(labels, self.mesh), labels

    def training_inputs(self):
        """This epoch's (frames, rows) per step for the device-gathered steps, else host-packed (batch, labels).

        The frame order is that of :meth:`training_batches` (shuffled with (seed, epoch) per member).
        """
        if self.device_frames is None:
            for batch, labels, _ in self.training_batches():
                yield batch, labels
            return
        per_member = [batch_rows(self.frame_row[np.random.default_rng([seed, self.epoch]).permutation(frames)],
                                 self.config.batch_size, self.shapes)
                      for frames, seed in zip(self.member_frames, self.seeds)]
        if self.size == 1:
            for rows in per_member[0]:
                yield self.device_frames, shard_batch(rows, self.mesh)
            return
        for rows in np.stack(per_member, axis=1):
            yield self.device_frames, shard_member_batch(rows, self.mesh)

    def training_batches(self):
        """This epoch's training batches: shuffled with (seed, epoch), or per member stacked (K, D, ...)."""
        if self.size == 1:
            yield from self.batches(self.split["train"], seed=[self.config.seed, self.epoch])
            return
        for batch, labels in member_batches(self.dataset, self.member_frames, self.seeds, self.epoch, self.energies,
                                            self.model, self.config.batch_size, self.shapes, dtype=self.dtype):
            yield shard_member_batch(batch, self.mesh), shard_member_batch(labels, self.mesh), labels

    def steps_done(self) -> int:
        """Optimiser steps taken (every member takes the same number)."""
        return int(np.asarray(self.state.step).reshape(-1)[0])

    def evaluate(self, params, indices, collect: bool = False, split: str = "valid") -> tuple:
        """(loss, metrics, predictions, members) of ``params`` on frames ``indices`` (training energies, eV).

        predictions (when ``collect``): E_ref/E_pred (K,) eV relative to the element
        references, F_ref/F_pred (A, 3) eV/Å for atoms with force labels, and for a charge
        model D_pred (L, 3) e·Å about each molecule's centroid for the L dipole-labelled
        frames D_frames (L,) (in the order of ``indices``), and for periodic batches S_ref/S_pred (P, 3, 3)
        eV/Å³ of the P stress-labelled frames. For an
        ensemble, loss/metrics/predictions are those of the member mean, predictions add
        the member spread E_std (K,) and F_std (A, 3), and members lists every member's
        (loss, metrics); for a single model members is empty.

        Raises:
          FloatingPointError: the loss or a metric is NaN/Inf (naming ``split``), never reported as a number.
        """
        totals = {t: np.zeros(len(SUMS)) for t in TERMS}
        member_totals = [{t: np.zeros(len(SUMS)) for t in TERMS} for _ in range(self.size if self.size > 1 else 0)]
        collected = {"E_ref": [], "E_pred": [], "F_ref": [], "F_pred": []}
        if self.model.charges:
            collected["D_pred"] = []
        if self.size > 1:
            collected.update({"E_std": [], "F_std": [], "F_var_sum": [], "F_err_sum": [], "F_atoms": []})
        for outputs, labels in jax.device_get(list(self._evaluation_batches(params, indices, split))):
            if self.size > 1:
                _, member_sums, _, sums, predictions = outputs
                for t in TERMS:
                    values = np.asarray(member_sums[t], np.float64)
                    for k, member in enumerate(member_totals):
                        member[t] += values[:, k]
            else:
                _, sums, predictions = outputs
            for t in TERMS:
                totals[t] += np.array([float(x) for x in sums[t]])
            if collect:
                e_mask, f_mask = labels["E_mask"], labels["F_mask"]
                collected["E_ref"].append(labels["E"][e_mask])
                collected["E_pred"].append(np.asarray(predictions["E"])[e_mask])
                collected["F_ref"].append(labels["F"][f_mask])
                collected["F_pred"].append(np.asarray(predictions["F"])[f_mask])
                if self.model.charges:
                    collected["D_pred"].append(np.asarray(predictions["D"], np.float64)[labels["D_mask"]])
                if "S" in predictions:
                    collected.setdefault("S_ref", []).append(labels["S"][labels["S_mask"]])
                    collected.setdefault("S_pred", []).append(np.asarray(predictions["S"])[labels["S_mask"]])
                if self.size > 1:
                    collected["E_std"].append(np.asarray(predictions["E_std"])[e_mask])
                    collected["F_std"].append(np.asarray(predictions["F_std"])[f_mask])
                    for key in ("F_var_sum", "F_err_sum", "F_atoms"):
                        collected[key].append(np.asarray(predictions[key]).ravel())
        predictions = {k: np.concatenate(v) for k, v in collected.items()} if collect else {}
        if collect and self.model.charges:  # the batches hold the frames in order, padding slots unlabelled
            predictions["D_frames"] = np.asarray(indices)[self.dataset.has_D[indices]]
        loss, metrics, members = self._losses_and_metrics(totals, member_totals, split, len(indices))
        return loss, metrics, predictions, members

    def _evaluation_batches(self, params, indices, split: str):
        """Per batch of ``indices``: (eval_step outputs, labels), not yet copied to the host.

        With device-resident frames the batches are gathered on the device from rows
        that are cut and sent once per split (the validation set is the same every epoch).
        """
        if self.device_frames is None:
            for batch, labels, host_labels in self.batches(indices):
                yield self.eval_step(params, batch, labels), host_labels
            return
        key = np.asarray(indices).tobytes()
        if key not in self.split_rows:
            rows = self.frame_row[indices]
            if (rows < 0).any():
                raise ValueError(f"{split} frames {np.asarray(indices)[rows < 0][:5].tolist()} are not among the "
                                 "frames kept on the device (training, validation and test splits)")
            self.split_rows[key] = [shard_batch(batch, self.mesh) for batch in
                                    batch_rows(rows, self.config.batch_size, self.shapes)]
        for rows in self.split_rows[key]:
            yield self.evaluate_rows(params, self.device_frames, rows)

    def _losses_and_metrics(self, totals: dict, member_totals: list, split: str, frames: int) -> tuple:
        """(loss, metrics, members) from error sums; FloatingPointError naming ``split`` when one is not finite."""
        loss = float(loss_from_sums({t: tuple(totals[t]) for t in TERMS}, self.weights, self.config.loss))
        metrics = metrics_from_totals(totals)
        members = [(float(loss_from_sums({t: tuple(m[t]) for t in TERMS}, self.weights, self.config.loss)),
                    metrics_from_totals(m)) for m in member_totals]
        named = {"loss": loss, **metrics}
        for k, (member_loss, member_metrics) in enumerate(members):
            named.update({f"member{k}_loss": member_loss, **{f"member{k}_{n}": v for n, v in member_metrics.items()}})
        if not all(math.isfinite(v) for v in named.values()):
            bad = sorted(k for k, v in named.items() if k != "loss" and not math.isfinite(v))
            raise FloatingPointError(
                f"epoch {self.epoch}: the {split} loss is {loss} and metrics {bad or '[]'} are not finite on "
                f"{frames} {split} frames; the parameters diverged (lower --learning-rate) or a {split} "
                "frame gives NaN")
        return loss, metrics, members

    def _monitored(self, loss: float, metrics: dict) -> float:
        if self.config.best_metric == "loss":
            return loss
        return metrics.get(self.config.best_metric, math.inf)

    # -- checkpoints ---------------------------------------------------------------------

    def _metadata(self, row: dict) -> dict:
        return {
            "epoch": self.epoch,
            "step": self.steps_done(),
            "metrics": row,
            "element_energies": [float(e) for e in self.element_energies],
            "element_energies_fit": self.element_energies_fit,
            TRAINED_ELEMENTS_KEY: self.trained_elements,
            TRAINED_CHARGES_KEY: self.trained_charges,
            TRAINED_CHARGE_STATES_KEY: self.trained_charge_states,
            TRAINED_DISTANCES_KEY: self.trained_distances,
            DATA_SHA256_KEY: self.data_sha256,
            TRAINING_FRAMES_KEY: self.training_frames,
            VALIDATION_FRAMES_KEY: self.validation_frames,
            SPLIT_SHA256_KEY: self.split_sha256,
            "data": self.config.data or [str(bundled_dataset_path())],
            "data_units": {"energy": self.config.energy_unit, "force": self.config.force_unit,
                           "dipole": self.config.dipole_unit, "force_sign": self.config.force_sign},
            "train_config": self.config.to_dict(),
            "host": {"best_value": self.best_value, "best_epoch": self.best_epoch,
                     "epochs_since_best": self.epochs_since_best, "plateau": self.plateau.state(),
                     "time_budget": self.budget.state() if self.budget else None},
        }

    def _save(self, row: dict, is_best: bool) -> None:
        """Copy this epoch's state to the host; write it once ``checkpoint_interval_s`` have passed since the last write.
        A background write that has failed since the last epoch is raised first."""
        self.writer.raise_if_failed()
        snapshot = (self.run_dir / "checkpoints" / f"epoch-{self.epoch:04d}", jax.device_get(self.state),
                    self._metadata(dict(row)))
        if is_best:
            self.unwritten_best = snapshot
        self.unwritten_latest = snapshot
        if time.monotonic() - self.last_write >= self.config.checkpoint_interval_s:
            self._write_unwritten()

    def _write_unwritten(self) -> None:
        """Write the kept best state (when newer than the last write) and then the latest, in the background.

        :class:`~physnetjax.train.background.BackgroundWriter` runs one write at a time, in
        order, so ``best`` is in place before ``latest`` moves past it. The states are
        forgotten only once their write has started: when waiting for the previous write is
        interrupted (Ctrl-C), the run's ``finally`` still writes them.
        """
        best, latest = self.unwritten_best, self.unwritten_latest
        if latest is None:
            return
        writes = [] if best is None or best[0] == latest[0] else [(*best, True)]
        writes.append((*latest, best is not None and best[0] == latest[0]))
        self.writer.submit(self._write_checkpoints, writes)
        self.unwritten_best = self.unwritten_latest = None
        self.last_write = time.monotonic()

    def _write_checkpoints(self, writes: list) -> None:
        for directory, train_state, metadata, is_best in writes:
            self._write_checkpoint(directory, train_state, metadata, is_best)

    def _write_checkpoint(self, directory: Path, train_state, metadata: dict, is_best: bool) -> None:
        """Write one checkpoint, then point ``best`` (if ``is_best``) and ``latest`` at it and drop older ones.

        A checkpoint is removed only once both links point at complete checkpoints that are not it, so a failed
        write (disk full) leaves the run where it was: ``latest`` and ``best`` at complete checkpoints.

        Raises:
          CheckpointWriteError: the write failed; the message says which complete checkpoint the run keeps.
        """
        try:
            save_checkpoint(directory, self.saved_model, train_state.ema_params, metadata, train_state=train_state,
                            overwrite=True)
            if is_best:
                _point(self.run_dir / "best", directory)
            _point(self.run_dir / "latest", directory)
        except CheckpointWriteError as error:
            raise CheckpointWriteError(f"{error}; {self._kept_text()}") from error
        links = [self.run_dir / name for name in ("best", "latest") if (self.run_dir / name).is_symlink()]
        if not all(is_checkpoint(link) for link in links):
            logger.warning("%s: a link of the run points at no complete checkpoint; no older checkpoint is removed",
                           self.run_dir)
            return
        keep = {os.path.realpath(link) for link in links}
        for old in (self.run_dir / "checkpoints").glob("epoch-*"):
            if os.path.realpath(old) not in keep:
                shutil.rmtree(old, ignore_errors=True)

    def _calibrate(self, valid_pred: dict, test_pred: dict, valid_members: list, test_members: list) -> dict:
        """Fit the spread's calibration scale on the validation split and store it in the best checkpoint.

        s = sqrt(mean_i |e_i|² / σ_i²) (maximum likelihood of e_i ~ N(0, s² σ_i² / d · I);
        :func:`physnetjax.ensemble.fit_calibration_scale`) over the force-labelled validation
        atoms (e_i = F̄_i − F_ref,i, σ_i = forces_std), or the validation energies when no
        frame has forces. The best checkpoint is rewritten with ``calibration_scale`` = s.
        Returns the ensemble part of the final summary (calibration, per-member metrics,
        spread–error rank correlations on valid and test).
        """
        if len(valid_pred["F_std"]):
            quantity, errors, spreads = "forces", valid_pred["F_pred"] - valid_pred["F_ref"], valid_pred["F_std"]
        else:
            quantity, errors, spreads = "energy", valid_pred["E_pred"] - valid_pred["E_ref"], valid_pred["E_std"]
        errors, spreads, _ = without_zero_spreads(errors, spreads, "ensemble calibration")  # isolated atoms
        calibration = {"quantity": quantity, "fitted_on": "valid", "samples": int(len(spreads)),
                       "criterion": "maximum likelihood of e ~ N(0, s^2 sigma^2 / d I): s^2 = mean(|e|^2 / sigma^2)"}
        try:
            scale = fit_calibration_scale(errors, spreads)
        except ValueError as error:
            logger.warning("calibration scale not fitted (%s); the checkpoint keeps scale 1", error)
            scale = None
        if scale is not None:
            warn_few_frames(len(self.split["valid"]), "ensemble calibration on the validation split")
            calibration.update(scale=scale, valid_nll_uncalibrated=gaussian_nll(errors, spreads, 1.0),
                               valid_nll_calibrated=gaussian_nll(errors, spreads, scale))
            best = (self.run_dir / "best").resolve()
            model, params, meta = load_checkpoint(best, with_metadata=True)
            meta["calibration"] = calibration
            self._resave_best(best, model.clone(calibration_scale=scale), params, meta)
        report = {"size": self.size, "seeds": self.seeds, "bootstrap": self.config.bootstrap,
                  "calibration": calibration, "valid": _ensemble_report(valid_pred, valid_members),
                  "test": _ensemble_report(test_pred, test_members)}
        rho = report["test"].get("forces_spread_error_spearman")
        logger.info("ensemble of %d: calibration scale %s (%s, validation); test spread-error Spearman rho %s",
                    self.size, _fmt(scale), quantity, _fmt(rho))
        return report

    def _force_check(self, params) -> float:
        """Max |F_autodiff − F_fd| (eV/Å, float64; max over members) on the first validation frame; raises above
        threshold."""
        k = int(self.split["valid"][0])
        n = int(self.dataset.N[k])
        members = [member_params(params, k) for k in range(self.size)] if self.size > 1 else [params]
        cell = self.dataset.cell[k] if self.dataset.periodic[k] else None
        error = max(finite_difference_force_error(self.model, member, self.dataset.Z[k, :n], self.dataset.R[k, :n],
                                                  self.config.force_check_delta, cell) for member in members)
        self._log_force_check(error, self.dataset.sources[k])
        if not error <= self.config.force_check_threshold:
            raise ForceCheckError(
                f"epoch {self.epoch}: autodiff forces differ from float64 central finite differences of the "
                f"energy by {error:.3g} eV/Å on {self.dataset.sources[k]} (threshold "
                f"{self.config.force_check_threshold:g}); the model's forces are not -dE/dR. Best checkpoint "
                f"not updated; last good one: {self.run_dir / 'best'}")
        return error

    def _log_force_check(self, error: float, source: str) -> None:
        """Show the force-check error once, then only when it grew tenfold or more (every value at --verbose)."""
        shown = self.force_check_shown
        if shown is None or error > 10.0 * shown:
            self.force_check_shown = error
            logger.info("force check (float64 finite differences, %s): max error %.3g eV/Å (threshold %g; rerun "
                        "at every best checkpoint, shown again if it grows tenfold, every value with --verbose)",
                        source, error, self.config.force_check_threshold)
        else:
            logger.debug("force check (float64 finite differences, %s): max error %.3g eV/Å", source, error)

    # -- loop ----------------------------------------------------------------------------

    def _train_epoch(self, progress, first: bool) -> tuple:
        """(mean train loss, mean gradient norm, n · s or None).

        Time-budgeted runs set the learning rate of every step from the planned
        progress; on the first epoch of an invocation they block on every step to
        measure the step time s and return the training time of the epoch n · s
        without the first step's compilation (None for an epoch of one step, whose
        compilation and run cannot be told apart).
        """
        task = progress.add_task(f"epoch {self.epoch}", total=self.steps_per_epoch) if progress else None
        losses, norms = [], []
        scale = jnp.asarray(self.plateau.scale, self.dtype)
        timed = self.budget is not None and first
        steps_before = self.steps_done() if self.final_train_step is not None else 0
        step_times = []
        for k, (batch, labels) in enumerate(self.training_inputs(), start=1):
            if self.budget is not None:
                first_epoch_estimate = None
                if self.budget.epoch_seconds is None and len(step_times) > 1:
                    first_epoch_estimate = self.steps_per_epoch * _step_seconds(step_times)
                progress_k = self.budget.step_progress(k, self.steps_per_epoch, first_epoch_estimate)
                self.lr_factor = progress_factor(self.config, progress_k)
                scale = jnp.asarray(self.lr_factor * self.plateau.scale, self.dtype)
            else:
                progress_k = epoch_run_progress(steps_before + k, self.config.epochs, self.steps_per_epoch)
            step = self.train_step
            if self.final_train_step is not None and in_final_stage(progress_k, self.config.final_stage):
                step = self.final_train_step
            self.state, loss, norm = step(self.state, batch, labels, scale)
            losses.append(loss)
            norms.append(norm)
            if timed:
                jax.block_until_ready(loss)
                step_times.append(self.clock())
            if progress:
                progress.advance(task)
        if progress:
            progress.remove_task(task)
        losses = np.asarray(jax.device_get(losses), np.float64).reshape(len(losses), self.size)
        norms = np.asarray(jax.device_get(norms), np.float64).reshape(len(norms), self.size)
        self.member_train = [{"train_loss": float(np.mean(losses[:, k])), "grad_norm": float(np.mean(norms[:, k]))}
                             for k in range(self.size)]
        train_loss = float(np.mean([m["train_loss"] for m in self.member_train]))
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"epoch {self.epoch}: training loss is {train_loss}; lower --learning-rate")
        steps_estimate = None
        if timed and len(step_times) > 1:  # one step: its compilation cannot be told from its run time
            steps_estimate = len(step_times) * _step_seconds(step_times)
        return train_loss, float(np.mean([m["grad_norm"] for m in self.member_train])), steps_estimate

    def run(self) -> dict:
        """Train until a stop reason (:meth:`_stop_reason`) and finish (:meth:`_finish`); the device running out of
        memory on the way is an OutOfMemoryError naming the batch (:meth:`_out_of_memory`)."""
        with out_of_memory_as(self._out_of_memory):
            return self._run()

    def _run(self) -> dict:
        config = self.config
        stop_reason = "epochs"
        progress = _progress() if config.progress else None
        if progress:
            progress.start()
        epoch_mark = self.clock()
        first = True
        try:
            while True:
                reason = self._stop_reason()
                if reason:
                    stop_reason = reason
                    break
                self.epoch += 1
                train_loss, grad_norm, steps_estimate = self._train_epoch(progress, first)
                if self.budget is None:
                    lr = float(self.schedule(self.steps_done() - 1)) * self.plateau.scale
                else:
                    lr = config.learning_rate * self.lr_factor * self.plateau.scale
                valid_loss, metrics, _, members = self.evaluate(self.state.ema_params, self.split["valid"])
                monitored = self._monitored(valid_loss, metrics)
                is_best = monitored < self.best_value
                row = {"epoch": self.epoch, "lr": lr, "train_loss": train_loss, "grad_norm": grad_norm,
                       "valid_loss": valid_loss, **{f"valid_{k}": v for k, v in metrics.items()}}
                for k, (member_loss, member_metrics) in enumerate(members):
                    row.update({f"member{k}_{name}": value for name, value in self.member_train[k].items()})
                    row[f"member{k}_valid_loss"] = member_loss
                    row.update({f"member{k}_valid_{name}": value for name, value in member_metrics.items()})
                check_seconds = 0.0
                if is_best:
                    check_start = self.clock()
                    row["force_check_max_error"] = self._force_check(jax.device_get(self.state.ema_params))
                    check_seconds = self.clock() - check_start
                    self.best_value, self.best_epoch, self.epochs_since_best = monitored, self.epoch, 0
                else:
                    self.epochs_since_best += 1
                self.plateau.update(monitored)
                row["best"] = int(is_best)
                now = self.clock()
                if self.budget is not None:
                    self.budget.finish_epoch(steps_estimate if first else now - epoch_mark - check_seconds, first)
                    if is_best:
                        self.budget.best_elapsed = self.budget.elapsed
                epoch_mark, first = now, False
                row["time_s"] = now - self.start_time
                self.rows.append(row)
                self._append_csv(row)
                self._write_json()
                self._save(row, is_best)
                planned = config.epochs if self.budget is None else self.epoch + self.budget.epochs_left()
                if self.epoch % config.log_every == 0 or is_best or self.epoch == planned:
                    logger.info(_summary_line(row, planned, estimated=self.budget is not None))
        finally:
            if progress:
                progress.stop()
            self._write_unwritten()
            self.writer.wait()
        return self._finish(stop_reason)

    def _out_of_memory(self, error: BaseException) -> OutOfMemoryError:
        """OutOfMemoryError naming what one step holds (a batch's sizes, the members) and what to change."""
        shapes, members = self.shapes, self.config.ensemble
        doing = (f"training on batches of {self.config.batch_size} frames" + (f" with {members} members" if members > 1
                                                                              else "") + ", each device's batch of")
        return out_of_memory_error(self.model, doing, shapes.atoms, shapes.edges, shapes.pairs, shapes.triplets, error,
                                   remedy="use a smaller --batch-size" + (" or fewer --ensemble members"
                                                                          if members > 1 else "")
                                   + ", or a device with more memory")

    def _stop_reason(self) -> str | None:
        """Why to stop before the next epoch: "epochs", "max_time" (no further epoch fits in the
        budget), "early_stopping" (``patience`` epochs, or with a budget patience / epochs of it,
        without improvement); None to go on."""
        config, budget = self.config, self.budget
        if budget is None:
            if self.epoch >= config.epochs:
                return "epochs"
            if config.patience is not None and self.epochs_since_best >= config.patience:
                return "early_stopping"
            return None
        if self.epoch > 0 and budget.epochs_left() == 0:
            return "max_time"
        patience_seconds = None if config.patience is None else config.patience / config.epochs * budget.budget
        if self.epoch > 0 and patience_seconds is not None and budget.elapsed - budget.best_elapsed >= patience_seconds:
            return "early_stopping"
        return None

    def _patience_text(self) -> str:
        if self.budget is None:
            return f"{self.config.patience} epochs"
        return f"{self.config.patience / self.config.epochs * self.budget.budget:.0f} s of training"

    def _write_json(self, final: dict | None = None) -> None:
        write_json(self.run_dir / "metrics.json", {"epochs": self.rows, "final": final})

    def _finish(self, stop_reason: str) -> dict:
        if stop_reason != "epochs":
            reason = ("no further epoch fits in the time budget --max-time" if stop_reason == "max_time"
                      else f"no improvement for {self._patience_text()}")
            logger.info("stopped after epoch %d: %s", self.epoch, reason)
        best_model, best_params, best_meta = load_checkpoint(self.run_dir / "best", with_metadata=True)
        best_params = replicate(best_params, self.mesh)
        valid_loss, valid_metrics, valid_pred, valid_members = self.evaluate(best_params, self.split["valid"],
                                                                             collect=True)
        test_metrics, test_pred, test_members = {}, {}, []
        if len(self.split["test"]):
            _, test_metrics, test_pred, test_members = self.evaluate(best_params, self.split["test"], split="test",
                                                                     collect=True)
        if self.model.charges:
            self._record_dipole_surface(valid_metrics, valid_pred, test_metrics, test_pred)
        summary = {
            "run_dir": str(self.run_dir),
            "stop_reason": stop_reason,
            "epochs_run": self.epoch,
            "best_epoch": self.best_epoch,
            "best_metric": self.config.best_metric,
            "frames": {name: len(self.split[name]) for name in ("train", "valid", "test")},
            "valid": valid_metrics,
            "test": test_metrics,
            "time_s": self.clock() - self.start_time,
            "train_time_s": self.budget.elapsed if self.budget else None,
            "num_devices": int(self.mesh.devices.size),
        }
        kinds = self._errors_per_config_type(best_params)
        if kinds:
            summary["config_types"] = kinds
        if self.size > 1:
            summary["ensemble"] = self._calibrate(valid_pred, test_pred, valid_members, test_members)
        finished = (f"the run is complete (its checkpoints {self.run_dir / 'best'} and {self.run_dir / 'latest'}, "
                    "metrics.csv and metrics.json)")
        try:
            self._write_json(summary)
        except OutputWriteError as error:
            raise OutputWriteError(f"{error}; the final summary is not recorded, the checkpoints are complete: "
                                   "free space and finish the run with python -m physnetjax.train --resume "
                                   f"{self.run_dir}", error.cause) from error.cause
        if self.config.plots:
            self._plot(plots.learning_curve, finished, self.rows, self.run_dir / "learning_curve.png")
            self._plot(plots.parity, finished, valid_pred["E_ref"], valid_pred["E_pred"],
                       "energy (above E0 references)", "eV", self.run_dir / "parity_energy.png")
            self._plot(plots.parity, finished, valid_pred["F_ref"], valid_pred["F_pred"], "force components", "eV/Å",
                       self.run_dir / "parity_forces.png")
            if "S_ref" in valid_pred:
                self._plot(plots.parity, finished, valid_pred["S_ref"] / GPA, valid_pred["S_pred"] / GPA,
                           "stress components", "GPa", self.run_dir / "parity_stress.png")
        logger.info(
            "done in %.1f s: best epoch %d; valid (best, EMA) energy MAE %s eV, forces MAE %s eV/Å%s; "
            "test energy MAE %s eV, forces MAE %s eV/Å%s; checkpoint %s",
            summary["time_s"], self.best_epoch, _fmt(valid_metrics.get("energy_mae")),
            _fmt(valid_metrics.get("forces_mae")), _other_labels_text(valid_metrics), _fmt(test_metrics.get("energy_mae")),
            _fmt(test_metrics.get("forces_mae")), _other_labels_text(test_metrics), self.run_dir / "best")
        return summary

    def _errors_per_config_type(self, params) -> dict:
        """``{"valid"|"test": {kind: {"frames": count, **metrics}}}``: the errors of ``params`` on the validation and
        test frames of each frame kind (:attr:`~physnetjax.data.Dataset.config_type`, as MACE reports them at the end
        of training), logged; {} when the data hold one kind."""
        kinds = self.dataset.config_type
        if len(set(kinds.tolist())) < 2:
            return {}
        found = {}
        for split in ("valid", "test"):
            frames = self.split[split]
            for kind in dict.fromkeys(kinds[frames].tolist()):
                chosen = frames[kinds[frames] == kind]
                _, metrics, _, _ = self.evaluate(params, chosen, split=split)
                found.setdefault(split, {})[kind] = {"frames": len(chosen), **metrics}
                logger.info("%s frames of config_type %s (%d): energy MAE %s eV (%s eV/atom), forces MAE %s eV/Å, "
                            "RMSE %s eV/Å", split, kind, len(chosen), _fmt(metrics.get("energy_mae")),
                            _fmt(metrics.get("energy_per_atom_mae")), _fmt(metrics.get("forces_mae")),
                            _fmt(metrics.get("forces_rmse")))
        return found

    def _resave_best(self, best: Path, model, params, meta: dict) -> None:
        """Save the best checkpoint ``best`` again with ``meta`` (the run's final records): the new copy is written
        whole before the old one goes, so a refused write (disk full) leaves the old one in place, and the error
        says how to finish the run."""
        try:
            save_checkpoint(best, model, params, meta, train_state=load_train_state(best), overwrite=True)
        except CheckpointWriteError as error:
            raise CheckpointWriteError(f"{error}; the run's checkpoints are complete: free space and finish the run "
                                       f"with python -m physnetjax.train --resume {self.run_dir}") from error

    @staticmethod
    def _plot(draw, finished: str, *args) -> None:
        """``draw(*args)`` (its last argument the PNG to write); a write the disk refuses removes the partial file
        and raises an OutputWriteError saying that the run itself is complete."""
        path = Path(args[-1])
        try:
            draw(*args)
        except OSError as error:
            if error.errno not in FULL_DISK_ERRNOS:
                raise
            path.unlink(missing_ok=True)
            raise write_failure(path, error, f"{finished}; only this plot and those after it are missing: free space "
                                f"and draw them with python -m physnetjax.train --resume {path.parent}") from error

    def _record_dipole_surface(self, valid_metrics: dict, valid_pred: dict, test_metrics: dict,
                               test_pred: dict) -> None:
        """Add the molecular-frame dipole R² (:func:`physnetjax.dipole_surface.dipole_surface_fit`) of the best
        weights to the valid and test metrics as ``dipole_r2``, record both fits in the best checkpoint's metadata
        (:data:`~physnetjax.dipole_surface.DIPOLE_SURFACE_KEY`), and warn when the one it is judged by
        (:func:`~physnetjax.dipole_surface.judged_r2`) is below
        :data:`~physnetjax.dipole_surface.IR_R2_THRESHOLD`. Nothing is recorded when neither split gives one."""
        record = {}
        for split, metrics, predictions in (("valid", valid_metrics, valid_pred), ("test", test_metrics, test_pred)):
            fit = None
            if len(predictions.get("D_frames", ())):
                frames, data = predictions["D_frames"], self.dataset
                reach = image_reach(self.model)[0] if self.shapes.periodic else None
                labels = data.D[frames] - data.Q[frames][:, None] * batch_offsets(data, frames, reach)  # as D_pred
                fit = dipole_surface_fit(data.Z[frames], data.R[frames], data.N[frames], labels,
                                         predictions["D_pred"], cell=data.cell[frames])
            record[split] = None if fit is None else fit.to_dict()
            if fit is not None:
                metrics["dipole_r2"] = fit.r2
        judged = judged_r2(record)
        if judged is None:
            return
        best = (self.run_dir / "best").resolve()
        model, params, meta = load_checkpoint(best, with_metadata=True)
        meta[DIPOLE_SURFACE_KEY] = record
        self._resave_best(best, model, params, meta)
        message = unreliable_ir_message(*judged, dipole_weight=self.config.dipole_weight)
        if message is not None:
            warn_caller(message, PhysNetInputWarning)


def _ensemble_report(predictions: dict, members: list) -> dict:
    """Per-member metrics and, when the split has force labels, the Spearman ρ between per-frame spread and error.

    Per frame j (force-labelled atoms i of j): spread_j = sqrt(mean_i forces_std_i²),
    error_j = sqrt(mean_i |F̄_i − F_ref,i|²) (eV/Å); energies: energy_std_j against |Ē_j − E_ref,j| (eV).
    """
    report = {"members": [{"loss": loss, **metrics} for loss, metrics in members]}
    frames = predictions.get("F_atoms", np.zeros(0)) > 0
    if frames.sum() >= 2:
        atoms = predictions["F_atoms"][frames]
        report["forces_spread_error_spearman"] = _spearman_or_none(
            np.sqrt(predictions["F_var_sum"][frames] / atoms), np.sqrt(predictions["F_err_sum"][frames] / atoms))
    if len(predictions.get("E_std", ())) >= 2:
        report["energy_spread_error_spearman"] = _spearman_or_none(
            predictions["E_std"], np.abs(predictions["E_pred"] - predictions["E_ref"]))
    return report


def _spearman_or_none(spreads, errors):
    """Spearman ρ, or None where it is undefined (all spreads or all errors equal)."""
    try:
        return spearman_rank_correlation(spreads, errors)
    except ValueError as error:
        logger.warning("rank correlation undefined: %s", error)
        return None


def _step_seconds(step_times: list) -> float:
    """Step time s: the mean of steps 2.. from the clock after each step (the first step compiles)."""
    return (step_times[-1] - step_times[0]) / (len(step_times) - 1)


def _jsonl_record(row: dict, columns: list) -> dict:
    """The CSV ``columns`` of ``row`` as JSON values: epoch and best int, missing ("" or absent) None, else float."""
    record = {}
    for key in columns:
        value = row.get(key, "")
        if value in ("", None):
            record[key] = None
        else:
            record[key] = int(value) if key in ("epoch", "best") else float(value)
    return record


def _fmt(value) -> str:
    """Four decimals, or three significant digits below 1e-3 (an MAE of 8.9e-5 eV read "0.0001"; "n/a": None)."""
    if value is None:
        return "n/a"
    return f"{value:.2e}" if 0.0 < abs(value) < 1e-3 else f"{value:.4f}"


def _other_labels_text(metrics: dict) -> str:
    """``", dipole MAE x eÅ, dipole R² (molecular frame) y"`` of a split's metrics ("" without dipole labels), and
    ``", stress MAE z GPa"`` with stress labels."""
    text = ""
    if metrics.get("dipole_mae") is not None:
        text += (f", dipole MAE {_fmt(metrics['dipole_mae'])} eÅ, dipole R² (molecular frame) "
                 f"{_fmt(metrics.get('dipole_r2'))}")
    if metrics.get("stress_mae") is not None:
        text += f", stress MAE {metrics['stress_mae'] / GPA:.3g} GPa"
    return text


def _summary_line(row: dict, epochs: int, estimated: bool = False) -> str:
    """One epoch's log line; ``estimated``: ``epochs`` is a time budget's estimate, shown as ``/~N`` (it moves with
    the epochs' times: 526, 178, 376 on a loaded machine)."""
    parts = [f"epoch {int(row['epoch']):>4d}/{'~' if estimated else ''}{epochs}", f"lr {row['lr']:.2e}", f"train {row['train_loss']:.4e}",
             f"valid {row['valid_loss']:.4e}"]
    if row.get("valid_energy_mae") is not None:
        parts.append(f"E MAE {_fmt(row['valid_energy_mae'])} eV")
    if row.get("valid_forces_mae") is not None:
        parts.append(f"F MAE {_fmt(row['valid_forces_mae'])} eV/Å")
    if row.get("valid_dipole_mae") is not None:
        parts.append(f"D MAE {_fmt(row['valid_dipole_mae'])} eÅ")
    if row.get("valid_stress_mae") is not None:
        parts.append(f"σ MAE {row['valid_stress_mae'] / GPA:.3g} GPa")
    parts.append(f"{row['time_s']:.1f} s")
    if row.get("best"):
        parts.append("*best*")
    return "  ".join(parts)


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    transient=True, console=Console(stderr=True))


SETUP_FILES = ("split.npz", "model.json", "metrics.csv", "metrics.jsonl")
"""Files :class:`Trainer` writes while setting up a fresh run (removed again if the setup fails)."""


UNSTARTED_RUN_FILES = ("config.json", "config.toml", "metrics.json", *SETUP_FILES)
"""Files a run writes before its first checkpoint (besides ``checkpoints/`` holding only partial writes)."""


RUN_OUTPUTS = (*SETUP_FILES, "metrics.json", "checkpoints", "latest", "best", "learning_curve.png",
               "parity_energy.png", "parity_forces.png", "parity_stress.png")
"""What a run writes in its directory besides ``config.json`` and ``config.toml`` (judged apart: a run's
settings, :func:`physnetjax.cli_config.check_config_replaceable`). A new run refuses a directory that holds
any of them (:func:`_refuse_foreign_outputs`)."""


def _unstarted_run(run_dir: Path) -> bool:
    """True when ``run_dir`` (whose config.json is a run's settings) holds only what a run writes before its first
    complete checkpoint.

    Such a run (stopped in its first epochs by Ctrl-C or a failure) cannot be resumed;
    anything else in the directory (a ``latest`` or ``best`` link, a checkpoint, a file
    the trainer does not write) makes it False, and the directory is kept.
    """
    names = {*UNSTARTED_RUN_FILES, "checkpoints"}
    temporary = {f".{name}.tmp" for name in (*names, "latest", "best")}
    for entry in run_dir.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.name not in names | temporary or entry.is_symlink():
            return False
        if entry.name == "checkpoints" and (not entry.is_dir()
                                            or any(not p.name.startswith(".") for p in entry.iterdir())):
            return False
    return True


def _refuse_foreign_outputs(run_dir: Path) -> None:
    """Refuse to start a run in ``run_dir`` (holding no run) where it would replace files it did not write.

    ``train --out DIR`` into a folder of the user's own (a ``metrics.csv`` or ``split.npz`` of theirs) replaced
    those files, and a setup that failed (bad data) then deleted them with its own :data:`SETUP_FILES`.
    Other files in the directory are left alone.

    Raises:
      FileExistsError: ``run_dir`` holds one of :data:`RUN_OUTPUTS` (named).
    """
    held = [name for name in RUN_OUTPUTS if os.path.lexists(run_dir / name)]
    if held:
        raise FileExistsError(f"{run_dir} holds {', '.join(held)} but no training run (no config.json): a new run "
                              "writes files of those names there and would replace them; choose another --out, or "
                              "move them out of it")


def _remove_unstarted_run(run_dir: Path) -> None:
    """Delete what an :func:`_unstarted_run` left in ``run_dir`` (the directory and its lock stay)."""
    for entry in run_dir.iterdir():
        if entry.name == LOCK_NAME:
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def default_run_dir() -> Path:
    """``./runs/physnet-YYYYmmdd-HHMMSS`` (a suffix is added if it exists)."""
    base = Path.cwd() / "runs" / datetime.now().strftime("physnet-%Y%m%d-%H%M%S")
    candidate, k = base, 1
    while candidate.exists():
        candidate, k = base.with_name(f"{base.name}-{k}"), k + 1
    return candidate


def train(config: TrainConfig, clock=time.monotonic, on_start=None,
          names: Optional[Mapping[str, str]] = None) -> dict:
    """Train a fresh run (or one started from ``config.init_from`` weights); returns the final summary.

    The data are read and validated, the split and the model set up, before
    ``config.json`` is written: a refused start leaves no run behind (a directory
    this call created is removed again), so the same command can simply be retried.
    A run in ``config.out`` that stopped before its first complete checkpoint (nothing
    to resume) is replaced; one with a checkpoint, or with files the trainer does not
    write, is refused, as is a directory holding no run but files of the names a run writes
    (:data:`RUN_OUTPUTS`: a user's own ``metrics.csv`` or ``split.npz``).
    ``on_start(config, run_dir)``, if given, is called right after ``config.json`` is
    written, before the first epoch (the CLI writes ``config.toml`` there). ``names``: setting → how the
    messages of the checks that need the data (a split size that gives no validation frame) name it;
    a command line passes its options, as to :class:`TrainConfig`.

    Settings that differ from their defaults but would do nothing are refused first
    (:func:`~physnetjax.train.config.unused_settings`, e.g. ``weight_decay`` without
    ``optimizer="adamw"``), as are architecture settings beside ``init_from`` that differ
    from the checkpoint's (:func:`~physnetjax.train.ensemble.check_init_architecture`). A cosine
    warm-up at least as long as the run warns (the learning rate would only rise).

    Raises:
      FileExistsError: ``config.out`` already holds a run with a checkpoint (use :func:`resume`), or no run but
        files of the names a run writes.
      OutputPathError: ``config.out`` is a file, lies below one, or cannot be created (checked before the data
        is read).
      PhysNetInputError: settings that would be ignored (see above); ``config.float64`` while JAX's 64-bit mode
        is off.
      DataError: the data files are malformed.
      ForceCheckError: the float64 force check failed when saving a best checkpoint.
    """
    check_x64_for(config)
    unused = unused_settings(config)
    if unused:
        raise PhysNetInputError(f"setting(s) that would be ignored: {'; '.join(unused)}; remove them or set the "
                                "setting they need")
    if config.schedule == "cosine" and config.warmup_epochs >= config.epochs:
        warn_caller(f"--warmup-epochs {config.warmup_epochs:g} spans the whole --epochs {config.epochs} run: the "
                    f"learning rate rises from 0 to {config.learning_rate:g} at the last step and the cosine decay "
                    f"never starts; set --warmup-epochs below {config.epochs} (e.g. {0.1 * config.epochs:g}) or "
                    "another --schedule", PhysNetInputWarning)
    if config.init_from:
        defaults = TrainConfig()
        check_init_architecture(config.init_from, {name: getattr(config, name) for name in ARCHITECTURE_SETTINGS
                                                   if getattr(config, name) != getattr(defaults, name)})
    run_dir = check_directory_creatable(config.out if config.out else default_run_dir(), what="--out")
    created = [p for p in [run_dir, *run_dir.parents] if not p.exists()]
    check_output_directory(run_dir, what="--out")
    try:
        with run_lock(run_dir):
            return _train_in(run_dir, config, clock, on_start, names)
    except BaseException:
        for directory in created:
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        raise


def _train_in(run_dir: Path, config: TrainConfig, clock, on_start, names) -> dict:
    """:func:`train` in the existing ``run_dir``, its lock held."""
    if (run_dir / "config.json").exists():
        try:
            TrainConfig.load(run_dir / "config.json")
        except ValueError as error:
            raise FileExistsError(f"{run_dir} holds a config.json that is no training run's settings ({error}); "
                                  "choose another --out") from None
        if not _unstarted_run(run_dir):
            raise FileExistsError(f"{run_dir} already holds a run; resume it with --resume {run_dir} or pick --out")
        _remove_unstarted_run(run_dir)
        logger.info("%s held a run that stopped before its first checkpoint; starting over there", run_dir)
    _refuse_foreign_outputs(run_dir)
    config.out = str(run_dir)
    if config.data is None:
        config.data = [str(bundled_dataset_path())]
    try:
        trainer = Trainer(config, run_dir, resuming=False, clock=clock, names=names)
    except BaseException:
        for name in SETUP_FILES:
            (run_dir / name).unlink(missing_ok=True)
        raise
    config.save(run_dir / "config.json")
    if on_start is not None:
        on_start(config, run_dir)
    logger.info("run directory: %s", run_dir)
    return trainer.run()


def resume(run_dir, allow_changed_data: bool = False, clock=time.monotonic, on_start=None,
           names: Optional[Mapping[str, str]] = None, **overrides) -> dict:
    """Continue the run in ``run_dir`` exactly from its last complete epoch.

    ``overrides`` may change only :data:`RESUME_OVERRIDES` (e.g. more ``epochs``, or ``data``:
    the run's files moved to new paths, checked in order against the run's SHA-256); an
    override equal to the recorded value is no change (so the run's own config file may
    be passed again). The updated ``config.json`` is written only once the run is set up
    and its checkpoint restored, so a refused resume (changed data, a time budget added
    or removed) leaves the run's settings as they were. ``on_start(config, run_dir)`` as
    in :func:`train`, after the updated ``config.json`` is written. ``names``: setting → how the messages of
    the overrides' checks name it (a command line passes its options), as :class:`TrainConfig` takes it.

    Raises:
      DataError: a data file's content differs from the one the run recorded
        (SHA-256); with ``allow_changed_data`` a warning instead.
      ValueError: an ``epochs`` override (without ``max_time``) that the run has already reached.
      PhysNetInputError: the run trains in float64 (``config.float64``) and JAX's 64-bit mode is off.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    config = TrainConfig.load(config_path)
    overrides = {key: value for key, value in overrides.items() if getattr(config, key, None) != value}
    forbidden = sorted(set(overrides) - set(RESUME_OVERRIDES))
    if forbidden:
        raise ValueError(f"cannot change {', '.join(displayed(key, names) for key in forbidden)} when resuming "
                         f"(only {', '.join(displayed(key, names) for key in RESUME_OVERRIDES)}); start a new run "
                         "with --init-from instead")
    for key, value in overrides.items():
        setattr(config, key, value)
    config.__post_init__(names)
    check_x64_for(config)
    for setting in DATA_FILE_SETTINGS:
        missing = [path for path in getattr(config, setting) or [] if not Path(path).exists()]
        option = "--" + setting.replace("_", "-")
        if missing:
            raise FileNotFoundError(f"{', '.join(missing)}, the {setting.replace('_', ' ')} of {run_dir} (its "
                                    f"config.json {setting!r}), does not exist (moved or deleted?): give its new path "
                                    f"with {option} (its content is checked against the run's SHA-256), or start a "
                                    f"new run with --init-from {run_dir / 'best'} {option} NEW_PATH")
    with run_lock(run_dir):
        trainer = Trainer(config, run_dir, resuming=True, allow_changed_data=allow_changed_data, clock=clock,
                          names=names, epochs_changed="epochs" in overrides)
        config.save(config_path)
        if on_start is not None:
            on_start(config, run_dir)
        return trainer.run()
