"""Combine checkpoints into one ensemble, or calibrate an ensemble's spread on held-out frames.

``python -m physnetjax.ensemble combine CKPT CKPT ... --out DIR`` joins separately trained checkpoints of one
architecture (single models or ensembles) into one ensemble checkpoint
(:func:`physnetjax.ensemble.combine.combine_checkpoints`) that ``predict``, the ASE
calculator, MD and ``check`` load like a single model. ``... calibrate CKPT --data FILE...
--out DIR`` fits the ensemble's spread scale on labelled frames held out of training
(:func:`physnetjax.ensemble.calibrate_checkpoint.calibrate_checkpoint`) and prints it
with the rank correlation between spread and error.

Exit status (:mod:`physnetjax.cli_errors`): 0 written; 2 an input that is not a
readable checkpoint or data file, architectures that differ (named), fewer than 2
members, a single model to calibrate, data to calibrate on whose positions or force
labels the data checks find in other units (nothing written); 3 ``--out`` exists (without
``--overwrite``), is a training run's checkpoint (never replaced: it holds the run's weights
and resume state), is one of ``combine``'s input checkpoints, holds one or lies inside one
(it would replace an input and its training state), or cannot be created (its missing
parent folders are created with it, as for every output directory; checked before any
checkpoint is read).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from physnetjax.checkpoint.format import check_not_a_run_checkpoint
from physnetjax.cli_config import parse_args as parse_options
from physnetjax.cli_errors import cli_main, configure_logging, exit_process
from physnetjax.cli_help import ArgumentParser, HelpFormatter, describe
from physnetjax.cli_precision import add_precision_options, chosen_precision, switch_x64_on_for
from physnetjax.data.key_mapping import parse_key_mapping
from physnetjax.errors import OutputPathError, PhysNetInputError
from physnetjax.train.cli import HELP
from physnetjax.validation import check_directory_creatable

VERBOSE_HELP = "info log messages, and the traceback of an error"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m physnetjax.ensemble", description=describe(__doc__),
                            formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{combine,calibrate}")
    combine = commands.add_parser("combine", help="combine checkpoints into one ensemble checkpoint",
                                  description="Combine checkpoints of one architecture into one ensemble checkpoint.",
                                  formatter_class=HelpFormatter)
    combine.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoint directories (2 or more members)")
    combine.add_argument("--out", required=True, help="directory of the new ensemble checkpoint")
    combine.add_argument("--calibration-scale", type=float, default=1.0,
                         help="factor on the reported spreads (1 = uncalibrated)")
    combine.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")
    combine.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    calibrate = commands.add_parser("calibrate", help="fit the spread scale of an ensemble on held-out frames",
                                    description="Fit an ensemble's spread scale on labelled frames held out of "
                                                "training; print it with the spread-error rank correlation.",
                                    formatter_class=HelpFormatter)
    calibrate.add_argument("checkpoint", metavar="CKPT", help="ensemble checkpoint directory")
    calibrate.add_argument("--data", nargs="+", required=True, metavar="FILE",
                           help="labelled frames held out of every member's training")
    calibrate.add_argument("--energy-unit", default="eV", help=HELP["energy_unit"] + "; default eV")
    calibrate.add_argument("--force-unit", help=HELP["force_unit"])
    calibrate.add_argument("--force-sign", type=int, choices=(1, -1), default=1,
                           help=HELP["force_sign"] + "; default 1")
    calibrate.add_argument("--keys", nargs="+", metavar="KEY=NAME", help=HELP["keys"])
    calibrate.add_argument("--out", required=True, help="directory of the calibrated checkpoint")
    calibrate.add_argument("--batch-size", type=int, default=32, help="frames per jitted call")
    add_precision_options(calibrate, "evaluate")
    calibrate.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")
    calibrate.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    return parse_options(build_parser(), argv)


@cli_main("python -m physnetjax.ensemble")
def main(argv=None) -> int:
    args = parse_args(argv)
    configure_logging("python -m physnetjax.ensemble", args.verbose)
    if args.command == "combine" and not (math.isfinite(args.calibration_scale) and args.calibration_scale > 0):
        raise PhysNetInputError(f"--calibration-scale must be finite and > 0, received {args.calibration_scale}")
    out = check_directory_creatable(args.out, what="--out")
    check_not_a_run_checkpoint(args.out, what="--out")
    if args.command == "combine":
        from physnetjax.ensemble.combine import refuse_output_among_inputs

        refuse_output_among_inputs(args.checkpoints, args.out, what="--out")
    if out.exists() and not args.overwrite:
        raise OutputPathError(f"--out {out} exists; choose another directory or pass --overwrite")
    if args.command == "calibrate":
        return calibrate(args)
    from physnetjax.checkpoint import read_config
    from physnetjax.checkpoint.format import stored_precision
    from physnetjax.ensemble.combine import combine_checkpoints

    if any(stored_precision(path) == "float64" for path in args.checkpoints):  # loaded unrounded, written as they are
        switch_x64_on_for("float64")

    target = combine_checkpoints(args.checkpoints, out, calibration_scale=args.calibration_scale,
                                 overwrite=args.overwrite)
    print(f"ensemble of {read_config(target)['model']['ensemble_size']} members written to {target}")
    return 0


def calibrate(args) -> int:
    """``calibrate``: fit, save, print the scale and the rank correlations."""
    keys = parse_key_mapping(args.keys)
    dtype = chosen_precision(args, args.checkpoint)
    from physnetjax.ensemble.calibrate_checkpoint import calibrate_checkpoint

    record = calibrate_checkpoint(args.checkpoint, args.data, args.out, batch_size=args.batch_size,
                                  dtype=dtype, overwrite=args.overwrite,
                                  energy_unit=args.energy_unit, force_unit=args.force_unit,
                                  force_sign=args.force_sign, keys=keys)

    def rho(value):
        return "undefined" if value is None else f"{value:.3f}"

    left_out = (f" ({record['atoms_without_spread']} atom(s) of spread 0 left out)"
                if record.get("atoms_without_spread") else "")
    print(f"calibration_scale {record['calibration_scale']:.4g} from {record['atoms']} atoms of "
          f"{record['frames']} frames{left_out}; force NLL per atom {record['force_nll_per_atom_uncalibrated']:.3f} -> "
          f"{record['force_nll_per_atom_calibrated']:.3f}")
    print(f"Spearman rho: frame max forces_std vs force RMSE {rho(record['spearman_max_forces_std_vs_force_rmse'])}, "
          f"energy_std vs |energy error| {rho(record['spearman_energy_std_vs_abs_energy_error'])}")
    print(f"calibrated ensemble written to {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    exit_process(main())
