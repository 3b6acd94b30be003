"""Command line of the trainer. With no data argument it trains on the bundled ethanol set.

Examples::

    python -m physnetjax.train                              # bundled ethanol, ~75 s on 2 idle CPU cores
    python -m physnetjax.train --data my.npz --energy-unit kcal/mol --epochs 200 --out runs/my
    python -m physnetjax.train --data frames.extxyz --charges --dipole-unit Debye
    python -m physnetjax.train --resume runs/my --epochs 400    # continue exactly
    python -m physnetjax.train --max-time 240 --out runs/4min   # schedule laid out over 240 s of training
    python -m physnetjax.train --preset accurate --max-time 1200    # the larger model, for longer budgets
    python -m physnetjax.train --data new.npz --init-from runs/my/best   # fine-tune (weights only)
    python -m physnetjax.train --ensemble 4 --bootstrap --out runs/ens4  # 4 members, one compiled program
    python -m physnetjax.train --print-config > run.toml    # edit, then:
    python -m physnetjax.train --config run.toml --epochs 80   # the command line overrides the file

Exit status (:mod:`physnetjax.cli_errors`): 0 done; 2 bad input (data file, option
value, run directory to resume); 3 the run directory cannot be created, already
holds a run, or holds files of the names a run writes (not a run's: left alone);
4 training stopped (NaN loss or metrics, failed force check).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
from pathlib import Path

from physnetjax.cli_config import (CONFIG_NAME, add_config_options, check_config_replaceable, parse_args,
                                   write_resolved_config)
from physnetjax.cli_errors import cli_main
from physnetjax.cli_help import ArgumentParser, HelpFormatter, describe
from physnetjax.cli_precision import switch_x64_on_for
from physnetjax.errors import PhysNetInputError
from physnetjax.model_dispersion import DISPERSION_METHODS
from physnetjax.train.config import (ARCHITECTURE_SETTINGS, BEST_METRICS, LOSSES, OPTIMIZERS, PRESETS, SCHEDULES,
                                     TrainConfig, preset_settings)

HELP = {
    "data": "PhysNet .npz or ASE-readable files (default: the bundled ethanol GFN2-xTB set)",
    "energy_unit": "unit of E in the data (eV, meV, hartree, kcal/mol, kJ/mol)",
    "force_unit": "unit of F, ENERGY/LENGTH e.g. kcal/mol/A, hartree/bohr (default: energy unit per Å)",
    "dipole_unit": "unit of D (eA, Debye, au)",
    "force_sign": "1: the data's forces are -dE/dR; -1: they are +dE/dR (gradients), negate them",
    "keys": "where the data files hold the PhysNet keys under other names, as KEY=NAME: e.g. Z=z (sGDML MD17), "
            "R=coords Z=nuclear_charges E=energies F=forces (rMD17), E=REF_energy F=REF_forces (extxyz for MACE); "
            "KEY one of R Z N E F D Q S Qa (.npz) or E F D Q S (ASE files) (default: none)",
    "valid": "validation fraction (<1) or frame count", "test": "test fraction (<1) or frame count",
    "train": "training fraction or count (default: the rest)",
    "split_file": ".npz with index arrays train, valid[, test] (default: a random split by --seed)",
    "valid_data": "files whose frames are the validation split (default: a --valid share of --data)",
    "test_data": "files whose frames are the test split, e.g. a benchmark's test set (default: a --test share of "
                 "--data)",
    "element_energy_prior": "isolated-atom energies of the data's method as ELEMENT=ENERGY in --energy-unit (e.g. "
                            "H=-13.6 O=-2041.3): how E0 is split among the elements where the training compositions "
                            "leave it open, as for one molecule's data (default: GFN2-xTB free atoms, scaled to the "
                            "data)",
    "features": "feature channels per atom (width of the network)",
    "max_degree": "largest angular momentum l of the equivariant features (0: invariant only)",
    "num_iterations": "message-passing iterations (interaction blocks)",
    "correlation": "product order of each atom's messages (1: PhysNet; 2-3: higher body order, MACE-like)",
    "radial_mlp": "width of a two-layer radial perceptron in each filter (default: none, PhysNet's linear filter)",
    "message_degree": "degree of the first message pass's edge harmonics and messages, >= --max-degree; higher "
                      "degrees reach the product basis and are truncated after it (default: --max-degree)",
    "num_basis_functions": "radial basis functions per pair distance",
    "cutoff": "message-passing cutoff radius in Å",
    "n_res": "residual blocks in each refinement",
    "charges": "predict atomic charges: electrostatics and dipoles (trains on D and Q when present)",
    "zbl": "add ZBL screened nuclear repulsion at short range",
    "zbl_cutoff": "distance in Å where the ZBL repulsion is switched off",
    "dispersion": "add Grimme D3(BJ) dispersion as a physical term (d3bj); train on the remainder "
                  "(default: none)",
    "dispersion_functional": "functional whose D3(BJ) damping parameters are used (pbe0, b3lyp, ...)",
    "dispersion_cutoff": "D3 cutoff in Å (switched off smoothly over its last fifth)",
    "dispersion_trainable": "train the D3 damping parameters s6, s8, a1, a2 (softplus-positive)",
    "max_atomic_number": "largest Z the model supports (default: largest in the data)",
    "loss": "mean squared (mse) or mean absolute (mae, as PhysNet) errors",
    "energy_weight": "loss weight of the energy term (per eV² for mse)",
    "forces_weight": "loss weight of the force term (per (eV/Å)² for mse)",
    "dipole_weight": "loss weight of the dipole term (per (e·Å)² for mse; --charges only)",
    "final_stage": "fraction of the training steps (of --max-time when set) at the end of the run trained "
                   "with --final-energy-weight (0: none)",
    "final_energy_weight": "energy loss weight during the final stage (validation keeps --energy-weight)",
    "charge_weight": "loss weight of the total-charge term (per e² for mse; --charges only)",
    "stress_weight": "loss weight of the stress term of periodic frames with stress labels, taken as the virial "
                     "per atom σ·V/N (per (eV/atom)² for mse)",
    "optimizer": "amsgrad (beta2 0.99, eps 1e-3 as PhysNet), adam or adamw",
    "learning_rate": "peak learning rate",
    "weight_decay": "decoupled weight decay (adamw only)",
    "schedule": "learning-rate schedule over --epochs (or over --max-time)",
    "epochs": "training epochs (without --max-time)",
    "batch_size": "molecules per training batch",
    "seed": "random seed of the split, the initial weights and the batch order",
    "per_atom_energy": "energy term per atom instead of per molecule",
    "clip_norm": "global gradient-norm clipping threshold",
    "warmup_epochs": "linear warm-up (cosine schedule)", "final_lr_factor": "cosine end lr / lr",
    "decay_rate": "exponential schedule: lr factor per --decay-epochs",
    "decay_epochs": "exponential schedule: epochs over which the lr falls by --decay-rate",
    "plateau_factor": "plateau schedule: lr factor on plateau",
    "plateau_patience": "plateau schedule: epochs without improvement before reducing",
    "ema_decay": "EMA decay of the validated/saved weights",
    "patience": "early stopping: epochs without improvement of --best-metric (default: none)",
    "best_metric": "validation metric selecting the best checkpoint",
    "max_time": "time budget in seconds of training (all invocations): schedule and early stopping are laid "
                "out over it instead of --epochs (default: none)",
    "out": "run directory (default ./runs/physnet-DATE-TIME)",
    "init_from": "start from the weights (and architecture) of this checkpoint, legacy ones included "
                 "(default: a random start)",
    "force_check_threshold": "max |F_autodiff - F_finite-difference| in eV/Å allowed at each best checkpoint",
    "force_check_delta": "finite-difference step in Å",
    "checkpoint_interval_s": "write the latest (and a newer best) checkpoint at most this often, in s of wall time; "
                             "always at the end (0: every epoch)",
    "ensemble": "train K members at once (one compiled step); member k uses seed SEED+k for weights and shuffles",
    "bootstrap": "with --ensemble: each member trains on its own resample (with replacement) of the training frames",
    "float64": "train in float64: parameters, batches, gradients, optimizer state and EMA (1.6x the time per epoch "
               "of float32 on 2 CPU cores; the checkpoint holds float64 weights, which float32 tools round)",
    "progress": "rich progress bar", "plots": "learning-curve and parity PNGs (matplotlib)",
    "log_every": "print the summary line every N epochs (best epochs always)",
}
LIST_METAVARS = {"data": "FILE", "valid_data": "FILE", "test_data": "FILE", "keys": "KEY=NAME",
                 "element_energy_prior": "ELEMENT=ENERGY"}
""":class:`TrainConfig` settings that are lists → the metavar of their option's values."""
CHOICES = {"dispersion": DISPERSION_METHODS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "loss": LOSSES, "best_metric": BEST_METRICS}
OPTION_OF = {field.name: "--" + field.name.replace("_", "-") for field in dataclasses.fields(TrainConfig)}
""":class:`TrainConfig` field → the option that sets it: the names in the messages of its checks."""


def build_parser() -> argparse.ArgumentParser:
    """Parser whose options mirror :class:`TrainConfig`; unset options stay absent (SUPPRESS)."""
    parser = ArgumentParser(prog="python -m physnetjax.train", description=describe(__doc__),
                            formatter_class=HelpFormatter, argument_default=argparse.SUPPRESS)
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run exactly (optimizer, EMA, "
                        "schedule, RNG, epoch, best metric, split); may change --epochs/--max-time/--patience, and "
                        "--data (--valid-data, --test-data) to the same files moved (content checked)")
    parser.add_argument("--preset", choices=tuple(PRESETS),
                        help="named settings, overridden by any option given (with --resume they must match the "
                             "run's): fast = the standard settings; accurate = --features 64 --correlation 3 "
                             "--radial-mlp 64 --message-degree 2 (4-6x the cost per sample, lower "
                             "errors from a few minutes of training on) "
                             "(default: fast)")
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        help_text = HELP[field.name]
        if "default" not in help_text:
            help_text += f" (default: {default})"
        if field.name in LIST_METAVARS:
            parser.add_argument(flag, nargs="+", metavar=LIST_METAVARS[field.name], help=help_text)
        elif isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(field.type.split(" ")[0].replace("Optional[", "").rstrip("]"), str)
            parser.add_argument(flag, type=kind, choices=CHOICES.get(field.name), help=help_text)
    parser.add_argument("--allow-changed-data", action="store_true",
                        help="with --resume: continue although a data file's content changed (warns)")
    parser.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")
    parser.add_argument("--quiet", action="store_true", help="warnings and errors only")
    add_config_options(parser, shown_defaults={"preset": "fast", **defaults.to_dict()})
    return parser


@contextlib.contextmanager
def progress_logging(level: int, verbose: bool):
    """The package's log lines go, unprefixed, to this call's stdout at ``level`` (checkpoint details only with
    ``verbose``); afterwards the loggers are as before, so a later call in the same process (whose stdout may
    be another stream) is not written through a stale handler."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    package, checkpoint = logging.getLogger("physnetjax"), logging.getLogger("physnetjax.checkpoint")
    before = (package.level, package.propagate, checkpoint.level)
    package.addHandler(handler)
    package.setLevel(level)
    package.propagate = False
    checkpoint.setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(before[0])
        package.propagate = before[1]
        checkpoint.setLevel(before[2])


def interrupted_run_hint(run_dir) -> str:
    """What to do after Ctrl-C stopped a training run in ``run_dir`` (None: before a run directory was set up)."""
    if run_dir is None:
        return "no run was started: rerun the same command"
    if not (Path(run_dir) / "latest").exists():
        return f"{run_dir} holds no checkpoint yet: rerun the same command to start over"
    return f"continue from the last checkpoint with: python -m physnetjax.train --resume {run_dir}"


def run_float64(run_dir) -> bool:
    """Whether the run in ``run_dir`` trains in float64 (False where its config.json cannot be read: resuming
    then says why)."""
    try:
        return TrainConfig.load(Path(run_dir) / "config.json").float64
    except (OSError, ValueError):
        return False


@cli_main("python -m physnetjax.train")
def main(argv=None) -> int:
    started: dict = {}  # "run_dir": the run directory, once it holds a run
    try:
        return _main(argv, started)
    except KeyboardInterrupt as interrupt:
        interrupt.resume_hint = interrupted_run_hint(started.get("run_dir"))
        raise


def _main(argv, started: dict) -> int:
    from physnetjax.train.ensemble import check_init_architecture
    from physnetjax.train.loop import resume, train

    parser = build_parser()
    args = vars(parse_args(parser, argv))
    verbose, quiet = args.pop("verbose", False), args.pop("quiet", False)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    run_dir = args.pop("resume", None)
    allow_changed_data = args.pop("allow_changed_data", False)
    if allow_changed_data and run_dir is None:
        raise PhysNetInputError("--allow-changed-data applies only with --resume RUN_DIR")
    preset = args.pop("preset", None)
    settings = preset_settings(preset or "fast", **args)
    architecture = {name: settings[name] for name in ARCHITECTURE_SETTINGS if name in settings}
    if run_dir is None and settings.get("init_from") and architecture:
        check_init_architecture(settings["init_from"], architecture)  # given on the command line, defaults too

    def keep_config(config: TrainConfig, directory) -> None:
        started["run_dir"] = directory
        used_preset = None if run_dir is not None else preset or "fast"
        write_resolved_config(parser, {"preset": used_preset, **config.to_dict()}, directory / CONFIG_NAME)

    if (run_float64(run_dir) if run_dir is not None else settings.get("float64")):
        switch_x64_on_for("float64")
    out = run_dir if run_dir is not None else settings.get("out")
    if out is not None:
        check_config_replaceable(parser, Path(out) / CONFIG_NAME, what="--resume" if run_dir is not None else "--out")
    with progress_logging(level, verbose):
        if run_dir is not None:
            started["run_dir"] = run_dir
            resume(run_dir, allow_changed_data=allow_changed_data, on_start=keep_config, names=OPTION_OF, **settings)
        else:
            train(TrainConfig(**settings, names=OPTION_OF), on_start=keep_config, names=OPTION_OF)
    return 0
