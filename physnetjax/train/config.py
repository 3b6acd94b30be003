"""Every setting of a training run, as one JSON-serialisable dataclass.

The defaults are the README's main job: a small PhysNet trained on the bundled
ethanol GFN2-xTB set in a few minutes on two CPU cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Mapping, Optional

from physnetjax.data.dataset import bundled_dataset_path, check_reading_options
from physnetjax.data.reference import parse_element_energy_prior
from physnetjax.data.split import check_split_size
from physnetjax.errors import displayed_setting, namer
from physnetjax.jsonlines import replace_text
from physnetjax.model import ZBL_CUTOFF_DEFAULT, PhysNet
from physnetjax.validation import check_seed

OPTIMIZERS = ("amsgrad", "adam", "adamw")
SCHEDULES = ("constant", "exponential", "cosine", "plateau")
LOSSES = ("mse", "mae")
BEST_METRICS = ("loss", "energy_mae", "forces_mae", "energy_rmse", "forces_rmse", "dipole_mae", "stress_mae")
PRESETS = {
    "fast": {},
    "accurate": {"features": 64, "correlation": 3, "radial_mlp": 64, "message_degree": 2},
}
"""Named starting points of a run's settings (``--preset``); any option given explicitly overrides them.

* ``fast`` is :class:`TrainConfig`'s defaults: features 32 (8.9k parameters on CHO), the
  README's main job and the best forces per training sample in the defaults study
  (benchmarks/README.md, "Defaults study").
* ``accurate``: features 64 with the product basis of correlation 3
  (:mod:`physnetjax.product_basis`), a radial perceptron of width 64 in the filters and
  degree-2 messages in the first pass (102k parameters), at the default learning rate 5e-3:
  4-6x the CPU time per training sample of ``fast`` and lower test errors from a 240 s budget
  on (benchmarks/README.md, "The preset at learning rate 5e-3"): test force MAE at 240 s
  ethanol 0.0108, aspirin 0.0382 eV/Å; at 1,200 s 0.0064 and 0.0191 / 0.0216 (seeds 0 / 1).
"""


def preset_settings(preset: str, **settings) -> dict:
    """The settings of :data:`PRESETS` ``[preset]``, updated with ``settings`` (which win).

    Raises:
      ValueError: an unknown preset name.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, received {preset!r}")
    return {**PRESETS[preset], **settings}


POSITIVE_SETTINGS = ("learning_rate", "clip_norm", "decay_rate", "decay_epochs", "zbl_cutoff", "force_check_delta",
                     "force_check_threshold")
"""Settings that must be finite numbers > 0."""
NON_NEGATIVE_SETTINGS = ("energy_weight", "forces_weight", "dipole_weight", "charge_weight", "stress_weight",
                         "final_energy_weight", "warmup_epochs", "weight_decay", "final_lr_factor")
"""Settings that must be finite numbers >= 0."""

ARCHITECTURE_SETTINGS = ("features", "max_degree", "num_iterations", "correlation", "radial_mlp", "message_degree",
                         "num_basis_functions", "cutoff", "n_res", "charges", "zbl", "zbl_cutoff", "dispersion",
                         "dispersion_functional", "dispersion_cutoff", "dispersion_trainable", "max_atomic_number")
"""Settings that define the network (attributes of :class:`physnetjax.PhysNet` of the same names); with
``init_from`` they are the checkpoint's."""

USED_ONLY_WITH = {
    "weight_decay": ("optimizer", "adamw"), "dipole_weight": ("charges", True), "charge_weight": ("charges", True),
    "warmup_epochs": ("schedule", "cosine"), "final_lr_factor": ("schedule", "cosine"),
    "decay_rate": ("schedule", "exponential"), "decay_epochs": ("schedule", "exponential"),
    "plateau_factor": ("schedule", "plateau"), "plateau_patience": ("schedule", "plateau"),
    "final_energy_weight": ("final_stage", None), "zbl_cutoff": ("zbl", True),
    "dispersion_functional": ("dispersion", None), "dispersion_cutoff": ("dispersion", None),
    "dispersion_trainable": ("dispersion", None),
}
"""Settings that act only when another setting has a value (None: any value but the default, e.g. a
``final_stage`` > 0); :func:`unused_settings` names those given where they do nothing."""


def unused_settings(config: "TrainConfig") -> list[str]:
    """The settings of :data:`USED_ONLY_WITH` that ``config`` sets but does not use.

    A setting counts only when its value differs from the default (a config file written by a run lists every
    setting with its value, and a TrainConfig cannot tell a given default from an unset one). Each entry reads like "--weight-decay 0.1 (used only with --optimizer adamw; here
    amsgrad)"; settings that depend on the architecture are skipped with ``init_from`` (the checkpoint's counts).
    """
    defaults, unused = TrainConfig(), []
    for name, (needs, value) in USED_ONLY_WITH.items():
        if getattr(config, name) == getattr(defaults, name):
            continue
        if config.init_from and needs in ARCHITECTURE_SETTINGS:
            continue
        have = getattr(config, needs)
        if (have != getattr(defaults, needs)) if value is None else (have == value):
            continue
        flag = "--" + needs.replace("_", "-")
        wanted = {True: flag, None: f"a {flag}"}.get(value, f"{flag} {value}")
        unused.append(f"--{name.replace('_', '-')} {getattr(config, name)} (used only with {wanted}; "
                      f"here {flag} is {have})")
    return unused


RESUME_OVERRIDES = ("epochs", "max_time", "patience", "progress", "plots", "log_every", "checkpoint_interval_s",
                    "data", "valid_data", "test_data")
"""Settings a ``--resume`` may change; any other would break exact continuation. ``data``, ``valid_data`` and
``test_data`` only to the same files at new paths: their content is checked against the run's SHA-256 (see
``resume``)."""

DATA_FILE_SETTINGS = ("data", "valid_data", "test_data")
"""The settings naming data files, in the order their frames are read (:meth:`TrainConfig.data_parts`)."""


@dataclasses.dataclass
class TrainConfig:
    """Settings of one run (units: Å, eV, e; times in s; learning rates per step).

    Data: ``data`` files (None → the bundled ethanol set), their units, ``force_sign``
    (−1 when the files store +dE/dR; the forces are negated on reading), ``keys`` (``["E=energies", ...]``: where
    the files hold the PhysNet keys under other names, :mod:`physnetjax.data.key_mapping`), the split
    (``valid``/``test``/``train`` fractions < 1 or counts ≥ 1, or a ``split_file``), or files whose frames are the
    validation or test split (``valid_data``, ``test_data``: the other parts come from ``data``);
    ``element_energy_prior`` (``["H=-13.6", ...]`` in ``energy_unit``): the data method's isolated-atom energies,
    which split E0 among the elements where the training compositions leave it open
    (:func:`physnetjax.data.reference.fit_reference_energies`; default the GFN2-xTB free atoms).
    Model: PhysNet hyper-parameters; ``max_atomic_number`` None → largest Z in the data;
    ``zbl_cutoff`` (Å) where the ZBL repulsion is switched off when ``zbl`` is on.
    Loss: weights of energy (per molecule, or per atom with ``per_atom_energy``),
    forces, dipole, total charge and stress (periodic frames with stress labels; its term is the virial per atom
    σ·V/N in eV/atom, :mod:`physnetjax.train.loss`); ``loss`` "mse" or "mae". Final stage: the last
    ``final_stage`` fraction of the training steps (of the ``max_time`` budget when set)
    trains with energy weight ``final_energy_weight`` instead (0: no final stage;
    :func:`physnetjax.train.stages.in_final_stage`); validation keeps ``energy_weight``.
    Optimiser: AMSGrad (β2 = 0.99, ε = 1e-3 as PhysNet), Adam or AdamW; global-norm
    clipping; schedule constant / exponential / cosine (with linear warm-up) / plateau.
    Run: EMA decay, early-stopping ``patience`` (epochs without improvement of
    ``best_metric`` on the validation set), ``max_time`` training-time budget (the
    schedule and early stopping are then laid out over it, ``epochs`` sets their shape only),
    ``seed``, output directory, ``init_from`` checkpoint, force-check threshold.
    Ensemble: ``ensemble`` K > 1 trains K members as one compiled program, member k with
    seed ``seed + k`` (initial weights and shuffles), on bootstrap resamples of the
    training frames with ``bootstrap`` (:mod:`physnetjax.train.ensemble`).
    Precision: ``float64`` trains in double precision (parameters, batches, gradients, optimizer state and EMA;
    it needs JAX's 64-bit mode, ``jax.config.update("jax_enable_x64", True)``, which the command line sets);
    the default float32 is PhysNet's precision.
    """

    data: Optional[list] = None
    energy_unit: str = "eV"
    force_unit: Optional[str] = None
    dipole_unit: str = "eA"
    force_sign: int = 1
    keys: Optional[list] = None
    valid: float = 0.1
    test: float = 0.1
    train: Optional[float] = None
    split_file: Optional[str] = None
    valid_data: Optional[list] = None
    test_data: Optional[list] = None
    element_energy_prior: Optional[list] = None

    features: int = 32
    max_degree: int = 1
    num_iterations: int = 2
    correlation: int = 1
    radial_mlp: Optional[int] = None
    message_degree: Optional[int] = None
    num_basis_functions: int = 16
    cutoff: float = 5.0
    n_res: int = 1
    charges: bool = False
    zbl: bool = False
    zbl_cutoff: float = ZBL_CUTOFF_DEFAULT
    dispersion: Optional[str] = None
    dispersion_functional: str = "pbe0"
    dispersion_cutoff: float = 15.0
    dispersion_trainable: bool = False
    max_atomic_number: Optional[int] = None

    loss: str = "mse"
    energy_weight: float = 1.0
    forces_weight: float = 50.0
    dipole_weight: float = 1.0
    charge_weight: float = 0.0
    stress_weight: float = 1.0
    per_atom_energy: bool = False
    final_stage: float = 0.0
    final_energy_weight: float = 10.0

    optimizer: str = "amsgrad"
    learning_rate: float = 5e-3
    weight_decay: float = 1e-4
    clip_norm: float = 10.0
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    final_lr_factor: float = 0.02
    decay_rate: float = 0.1
    decay_epochs: float = 100.0
    plateau_factor: float = 0.5
    plateau_patience: int = 5

    epochs: int = 40
    batch_size: int = 8
    ema_decay: float = 0.999
    patience: Optional[int] = None
    best_metric: str = "loss"
    max_time: Optional[float] = None
    seed: int = 0
    ensemble: int = 1
    bootstrap: bool = False
    float64: bool = False

    out: Optional[str] = None
    init_from: Optional[str] = None
    force_check_threshold: float = 1e-3
    force_check_delta: float = 1e-4
    checkpoint_interval_s: float = 10.0
    progress: bool = True
    plots: bool = True
    log_every: int = 1

    names: dataclasses.InitVar[Optional[Mapping[str, str]]] = None

    def __post_init__(self, names: Optional[Mapping[str, str]] = None):
        """Check every setting, the architecture's with :meth:`physnetjax.PhysNet.check_configuration`; ValueError
        naming it as ``names`` does (a command line passes its options, e.g. ``{"learning_rate": "--learning-rate"}``;
        by default the field names). ``names`` is not kept."""
        name = namer(names)

        for field, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("loss", LOSSES),
                               ("best_metric", BEST_METRICS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"{name(field)} must be one of {allowed}, received {getattr(self, field)!r}")
        for field in ("epochs", "batch_size", "log_every", "n_res"):
            if getattr(self, field) < 1:
                raise ValueError(f"{name(field)} must be >= 1, received {getattr(self, field)}")
        for field in ("patience", "max_atomic_number"):
            if getattr(self, field) is not None and getattr(self, field) < 1:
                raise ValueError(f"{name(field)} must be >= 1 (or not given), received {getattr(self, field)}")
        for field in POSITIVE_SETTINGS:
            if not (math.isfinite(getattr(self, field)) and getattr(self, field) > 0):
                raise ValueError(f"{name(field)} must be > 0 and finite, received {getattr(self, field)}")
        for field in NON_NEGATIVE_SETTINGS:
            if not (math.isfinite(getattr(self, field)) and getattr(self, field) >= 0):
                raise ValueError(f"{name(field)} must be >= 0 and finite, received {getattr(self, field)}")
        for field in ("valid", "test", "train"):
            if getattr(self, field) is not None:
                check_split_size(getattr(self, field), field, names)
        defaults = {setting.name: setting.default for setting in dataclasses.fields(TrainConfig)}
        for files, share in (("valid_data", "valid"), ("test_data", "test")):
            if getattr(self, files) is not None and not getattr(self, files):
                raise ValueError(f"{name(files)} names no file (give files, or leave it out)")
            if getattr(self, files) and self.split_file:
                raise ValueError(f"{name('split_file')} indexes the frames of {name('data')} and cannot be combined "
                                 f"with {name(files)}: give the split one way")
            if getattr(self, files) and getattr(self, share) != defaults[share]:
                raise ValueError(f"{displayed_setting(share, f'{getattr(self, share):g}', names)} does nothing with "
                                 f"{name(files)}: the {'validation' if share == 'valid' else 'test'} frames are "
                                 "those files'")
        if self.ensemble < 1:
            raise ValueError(f"{name('ensemble')} must be >= 1 member, received {self.ensemble}")
        check_seed(self.seed, name("seed"), count=self.ensemble)
        if self.bootstrap and self.ensemble < 2:
            raise ValueError(f"{name('bootstrap')} resamples the training frames per ensemble member; it needs "
                             f"{name('ensemble')} >= 2, received {self.ensemble}")
        if not 0.0 < self.plateau_factor <= 1.0:
            raise ValueError(f"{name('plateau_factor')} must be in (0, 1] (the learning rate's factor on a plateau), "
                             f"received {self.plateau_factor}")
        if self.plateau_patience < 0:
            raise ValueError(f"{name('plateau_patience')} must be >= 0 epochs, received {self.plateau_patience}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"{name('ema_decay')} must be in [0, 1), received {self.ema_decay}")
        check_reading_options(self.energy_unit, self.force_unit, self.dipole_unit, self.force_sign, self.keys, name)
        try:
            parse_element_energy_prior(self.element_energy_prior, self.energy_unit)
        except ValueError as error:
            raise ValueError(f"{name('element_energy_prior')}: {error}") from None
        if self.max_time is not None and not (math.isfinite(self.max_time) and self.max_time > 0):
            raise ValueError(f"{name('max_time')} must be > 0 seconds and finite, received {self.max_time}")
        if not 0.0 <= self.final_stage < 1.0:
            raise ValueError(f"{name('final_stage')} must be a fraction of the run in [0, 1), received "
                             f"{self.final_stage}")
        if not self.checkpoint_interval_s >= 0:
            raise ValueError(f"{name('checkpoint_interval_s')} must be >= 0 seconds, received "
                             f"{self.checkpoint_interval_s}")
        PhysNet(**self.model_settings()).check_configuration(names)
        if isinstance(self.data, (str, Path)):
            self.data = [str(self.data)]

    def model_settings(self) -> dict:
        """The :data:`ARCHITECTURE_SETTINGS` as :class:`physnetjax.PhysNet` keywords (``max_atomic_number`` left
        out while None: the data's largest Z decides it)."""
        return {field: getattr(self, field) for field in ARCHITECTURE_SETTINGS
                if not (field == "max_atomic_number" and self.max_atomic_number is None)}

    @classmethod
    def from_preset(cls, preset: str = "fast", **settings) -> "TrainConfig":
        """The config of :func:`preset_settings` (e.g. ``TrainConfig.from_preset("accurate", max_time=1200)``)."""
        return cls(**preset_settings(preset, **settings))

    def data_parts(self) -> dict[str, list[str]]:
        """``{"training": data files, "validation": valid_data, "test": test_data}`` (those given; the bundled set
        without ``data``), in the order the trainer reads their frames."""
        parts = {"training": list(self.data or [str(bundled_dataset_path())])}
        for part, files in (("validation", self.valid_data), ("test", self.test_data)):
            if files:
                parts[part] = list(files)
        return parts

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path) -> None:
        replace_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path) -> "TrainConfig":
        """The settings saved in ``path`` (a run's config.json).

        Raises:
          ValueError: naming ``path``: it is not a JSON object, holds keys that are no
            setting, or a value that :meth:`__post_init__` refuses.
        """
        settings = read_json_object(path)
        unknown = sorted(set(settings) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {unknown}; remove them or restore the file the run wrote")
        wrong = [problem for field in dataclasses.fields(cls) if field.name in settings
                 for problem in [_type_problem(field, settings[field.name])] if problem]
        if wrong:
            raise ValueError(f"{path}: {'; '.join(wrong)}; restore the file the run wrote")
        try:
            return cls(**settings)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from None


_JSON_KINDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "list": "an array of strings"}


def _type_problem(field: dataclasses.Field, value) -> str | None:
    """What is wrong with the JSON ``value`` of setting ``field`` (of annotation ``int``, ``Optional[float]``, ...),
    or None when it has the right type."""
    kind = str(field.type)
    optional = kind.startswith("Optional[")
    kind = kind.removeprefix("Optional[").removesuffix("]")
    if value is None:
        return None if optional else f"{field.name} must be {_JSON_KINDS.get(kind, kind)}, received null"
    ok = {"int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, (int, float)) and not isinstance(value, bool),
          "bool": isinstance(value, bool), "str": isinstance(value, str),
          "list": isinstance(value, list) and all(isinstance(item, str) for item in value)}.get(kind, True)
    return None if ok else f"{field.name} must be {_JSON_KINDS[kind]}, received {json.dumps(value)}"


def read_json_object(path) -> dict:
    """The JSON object in the file ``path`` (a run's config.json or model.json).

    Raises:
      ValueError: naming ``path``: the file is not valid JSON (e.g. truncated) or not an object.
    """
    try:
        value = json.loads(Path(path).read_bytes().decode("utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); is the file truncated?") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a JSON text file ({error}); was it overwritten by another file?") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object of settings, found {type(value).__name__}")
    return value
