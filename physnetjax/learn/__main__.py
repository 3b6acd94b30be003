"""Command line: ``python -m physnetjax.learn --out RUN [--rounds N --select M --temperatures T ...]``.

Runs :func:`physnetjax.learn.loop.run_learning` and prints the report table; running
the same command again on the same ``--out`` resumes after the last finished round
(``--rounds`` may be raised to add rounds). Options may come from a TOML file
(``--config``, ``--print-config``: :mod:`physnetjax.cli_config`); the options used are
kept in ``RUN/config.toml``.

Exit status (:mod:`physnetjax.cli_errors`): 0 done; 2 bad input (argument values,
data files, starting frames whose electrons do not allow ``--charge`` and ``--uhf``, or
without energies or forces, or whose labels are not the labeller's: other units, the opposite
force sign, an energy offset, another method (:mod:`physnetjax.learn.inputs`), a run
directory holding other settings, tblite missing); 3 the run directory is in use by
another ``learn`` process, or cannot be written; 4 a training run stopped (its
force check failed).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from physnetjax.cli_config import (CONFIG_NAME, OptionUse, add_config_options, check_config_replaceable,
                                   chosen_options, parse_args, refuse_unused_options, write_resolved_config)
from physnetjax.cli_errors import cli_main, configure_logging, exit_process
from physnetjax.cli_help import ArgumentParser, HelpFormatter
from physnetjax.learn.config import SELECTIONS, LearnConfig
from physnetjax.train.cli import HELP as TRAIN_HELP

DEFAULTS = LearnConfig()
OPTION_OF = {field.name: f"--{field.name.replace('_', '-')}" for field in dataclasses.fields(LearnConfig)} | {
    "timestep_fs": "--timestep"}
"""LearnConfig field → the option that sets it: the names in the messages of its checks."""


OPTION_USES = (
    OptionUse("friction", "md_ensemble", ("langevin",)),
    *(OptionUse("test_frames", source, (None,), note=f"drawn from the bundled set, which --{source} replaces",
                remedy="give the test frames as --test FILE, held out of --data") for source in ("data", "test")),
    OptionUse("min_rmsd", "selection", ("uncertain-diverse",), note="the RMSD exclusion of uncertain-diverse"),
)
"""Options that other options' values leave unused: chosen there, they are refused
(:func:`~physnetjax.cli_config.refuse_unused_options`)."""


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    parser = ArgumentParser(prog="python -m physnetjax.learn",
                            description="Active learning: MD with an ensemble, label the most uncertain "
                                        "diverse frames (GFN2-xTB), retrain; repeat.",
                            formatter_class=HelpFormatter)
    add = parser.add_argument
    add("--out", default=d.out, help="run directory (an existing one is resumed)")
    add("--data", help="initial frames (.npz or ASE file); default: the bundled ethanol GFN2-xTB set")
    add("--initial-frames", type=int, help="random initial frames taken from --data (default: all; 50 of the "
                                           "bundled set)")
    add("--test", help="test frames for the per-round test error")
    add("--energy-unit", default=d.energy_unit, help=TRAIN_HELP["energy_unit"].replace("in the data", "in --data "
                                                                                         "and --test"))
    add("--force-unit", help=TRAIN_HELP["force_unit"])
    add("--dipole-unit", default=d.dipole_unit, help=TRAIN_HELP["dipole_unit"])
    add("--force-sign", type=int, choices=(1, -1), default=d.force_sign, help=TRAIN_HELP["force_sign"])
    add("--keys", nargs="+", metavar="KEY=NAME", help=TRAIN_HELP["keys"].replace("the data files", "--data and --test"))
    add("--test-frames", type=int, default=d.test_frames,
        help="bundled set without --test: this many further bundled frames as the test set (0: none)")
    add("--rounds", type=int, default=d.rounds, help="acquisition rounds after the initial training")
    add("--select", type=int, default=d.select, help="frames labelled per round")
    add("--selection", default=d.selection, choices=list(SELECTIONS),
        help="uncertain-diverse (by ensemble spread, RMSD-separated) or random (a baseline)")
    add("--min-rmsd", type=float, default=d.min_rmsd, help="selection: exclusion radius in Å (aligned RMSD)")
    add("--temperatures", type=float, nargs="+", default=list(d.temperatures), help="MD temperatures in K")
    add("--md-ensemble", default=d.md_ensemble, choices=["nve", "langevin", "nvt-nhc", "csvr"], help="MD ensemble")
    add("--md-steps", type=int, default=d.md_steps, help="MD steps per temperature and round")
    add("--timestep", type=float, default=d.timestep_fs, help="MD time step in fs")
    add("--save-every", type=int, default=d.save_every, help="steps between candidate frames")
    add("--friction", type=float, default=d.friction, help="Langevin friction in 1/fs")
    add("--max-force", type=float, default=d.max_force, help="MD stops (blow-up) past this |F| in eV/Å")
    add("--uncertainty-threshold", type=float, help="only frames with a force spread (eV/Å) past it are candidates")
    add("--max-label-force", type=float,
        help="skip a labelled frame whose largest |F_i| exceeds this (eV/Å): a geometry far from thermal")
    add("--allow-topology-change", action="store_true",
        help="keep MD frames whose bonds differ from the start geometry's (default: an MD run's candidates end "
             "before its first such frame)")
    add("--min-distance", type=float, default=d.min_distance,
        help="an MD run's candidates end before its first frame with two atoms closer than this (Å)")
    add("--bond-factor", type=float, default=d.bond_factor,
        help="atoms are bonded when closer than this times the sum of their covalent radii")
    add("--labeller", default=d.labeller, choices=["GFN2-xTB", "GFN1-xTB", "IPEA1-xTB"], help="tblite method")
    add("--charge", type=float, default=d.charge, help="total charge in e")
    add("--uhf", type=int, default=d.uhf,
        help="number of unpaired electrons of the labels (spin multiplicity - 1), as xtb's --uhf; needed for an odd "
             "valence electron count, at most min(n_val, 2 n_orb - n_val) for n_val valence electrons in n_orb "
             "valence orbitals (default: a closed shell)")
    add("--ensemble", type=int, default=d.ensemble, help="ensemble members K (>= 2)")
    add("--features", type=int, default=d.features, help=TRAIN_HELP["features"])
    add("--max-degree", type=int, default=d.max_degree, help=TRAIN_HELP["max_degree"])
    add("--num-iterations", type=int, default=d.num_iterations, help=TRAIN_HELP["num_iterations"])
    add("--correlation", type=int, default=d.correlation,
        help="product order of each atom's messages (1: PhysNet; 2-3: higher body order)")
    add("--radial-mlp", type=int, default=d.radial_mlp,
        help="width of a two-layer radial perceptron in each filter (default: none, linear filter)")
    add("--message-degree", type=int, default=d.message_degree,
        help="degree of the first message pass's edge harmonics and messages (>= --max-degree, needs "
             "--correlation >= 2; default: --max-degree)")
    add("--num-basis-functions", type=int, default=d.num_basis_functions,
        help=TRAIN_HELP["num_basis_functions"])
    add("--cutoff", type=float, default=d.cutoff, help=TRAIN_HELP["cutoff"])
    add("--epochs", type=int, default=d.epochs, help="epochs of round 0")
    add("--retrain-epochs", type=int, help="epochs of rounds >= 1 (default: --epochs)")
    add("--batch-size", type=int, default=d.batch_size, help=TRAIN_HELP["batch_size"])
    add("--learning-rate", type=float, default=d.learning_rate, help=TRAIN_HELP["learning_rate"])
    add("--valid", type=float, default=d.valid, help="validation fraction (< 1) or count of each round's data")
    add("--max-time", type=float, help="training-time budget per round in s")
    add("--seed", type=int, default=d.seed,
        help="random seed of the initial frames, the MD runs, the selection and the trainings")
    add("--progress", action="store_true", help="progress bars of the training runs")
    add("--verbose", action="store_true", help="info log messages, and the traceback of an error")
    add_config_options(parser)
    return parser


@cli_main("python -m physnetjax.learn", resume_hint="rerun the same command to continue: finished rounds are "
                                                     "kept, the interrupted one is redone")
def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    configure_logging("python -m physnetjax.learn", args.verbose)
    refuse_unused_options(parser, args, OPTION_USES, chosen_options(parser, argv))
    values = {key: value for key, value in vars(args).items() if key != "verbose"}
    values["timestep_fs"] = values.pop("timestep")
    config = LearnConfig(**values, names=OPTION_OF)
    check_config_replaceable(parser, Path(config.out) / CONFIG_NAME)
    from physnetjax.data.generate import openmp_threads
    from physnetjax.learn.loop import run_learning
    from physnetjax.learn.report import report_lines

    with openmp_threads(None):  # tblite labels on one thread unless OMP_NUM_THREADS says otherwise, as data.generate
        report = run_learning(config, on_start=lambda run_dir: write_resolved_config(parser, args,
                                                                                     run_dir / CONFIG_NAME),
                              names=OPTION_OF)
    print("\n".join(report_lines(report["rounds"])))
    print(f"report: {Path(config.out) / 'report.json'}" + (f"; plot: {report['plot']}" if report["plot"] else ""))
    return 0


if __name__ == "__main__":
    exit_process(main())
