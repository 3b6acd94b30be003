"""Command line: ``python -m physnetjax.eval --checkpoint CKPT --data FILE... [options]``.

Evaluates a checkpoint (physnetjax or legacy format; default: the shipped example
model) on labelled frames in any format the trainer reads (PhysNet ``.npz``, extxyz,
ASE ``.traj``/``.db``), prints the error tables and, with ``--out DIR``, writes the
per-frame CSV, the JSON summary and parity PNGs (see :mod:`physnetjax.eval.outputs`)
and the options used as ``config.toml`` (``--config``/``--print-config``:
:mod:`physnetjax.cli_config`).

Examples::

    python -m physnetjax.eval --checkpoint runs/my/best --data test.npz --out eval/
    python -m physnetjax.eval --checkpoint old_run/epoch-300 --data frames.extxyz \\
        --energy-unit kcal/mol --write-predictions predicted.extxyz

Exit status (:mod:`physnetjax.cli_errors`): 0 success; 2 bad input (an argument, the
checkpoint, the data); 3 an output path that cannot be written (checked before the
checkpoint is loaded). Errors are one line ``python -m physnetjax.eval: error: ...`` on
stderr; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

from physnetjax.cli_config import (CONFIG_NAME, add_config_options, check_config_replaceable, check_outputs_replaceable,
                                   parse_args, write_resolved_config)
from physnetjax.cli_errors import cli_main, configure_logging
from physnetjax.cli_help import WEIGHTS_HELP, ArgumentParser, HelpFormatter
from physnetjax.cli_precision import add_precision_options, chosen_precision
from physnetjax.data.frame_digests import (TRAINING_FRAMES_KEY, VALIDATION_FRAMES_KEY, RecordedShare, dataset_digests,
                                          recorded_frames)
from physnetjax.data.key_mapping import parse_key_mapping
from physnetjax.errors import OutputPathError, PhysNetInputError, PhysNetInputWarning, warn_caller
from physnetjax.train.cli import HELP
from physnetjax.training_record import TrainingRecord
from physnetjax.validation import check_distinct_files, check_output_directory, check_output_path


EXAMPLES = """examples:
  python -m physnetjax.eval --checkpoint runs/my/best --data test.npz --out eval/
  python -m physnetjax.eval --checkpoint old_run/epoch-300 --data frames.extxyz \\
      --energy-unit kcal/mol --write-predictions predicted.extxyz

exit status: 0 success, 2 bad argument, checkpoint or data, 3 output path cannot be written"""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m physnetjax.eval", epilog=EXAMPLES, formatter_class=HelpFormatter,
        description="Errors of a checkpoint on labelled frames: MAE/RMSE tables, per-element force errors,\n"
                    "worst frames; with --out a per-frame CSV, a JSON summary and parity PNGs.")
    parser.add_argument("--checkpoint", help="checkpoint directory (physnetjax or legacy format); "
                        "default: the shipped example model")
    parser.add_argument("--data", nargs="+", required=True, metavar="FILE",
                        help="labelled frames: PhysNet .npz or ASE-readable files (extxyz, .traj, .db)")
    parser.add_argument("--energy-unit", default="eV", help=HELP["energy_unit"] + "; default eV")
    parser.add_argument("--force-unit", help=HELP["force_unit"])
    parser.add_argument("--dipole-unit", default="eA", help=HELP["dipole_unit"] + "; default eA")
    parser.add_argument("--force-sign", type=int, choices=(1, -1), default=1, help=HELP["force_sign"] + "; default 1")
    parser.add_argument("--keys", nargs="+", metavar="KEY=NAME", help=HELP["keys"])
    parser.add_argument("--out", metavar="DIR", help="write frames.csv, summary.json and parity PNGs here")
    parser.add_argument("--write-predictions", metavar="FILE.extxyz",
                        help="write the frames with model values and REF_* reference labels")
    parser.add_argument("--batch-size", type=int, default=32, help="molecules per jitted call; default 32")
    parser.add_argument("--worst", type=int, default=5, metavar="K",
                        help="list the K worst frames by force and by energy error; default 5")
    add_precision_options(parser, "evaluate")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema",
                        help=WEIGHTS_HELP)
    parser.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                        help="parity PNGs in --out (needs matplotlib); default on")
    parser.add_argument("--verbose", action="store_true", help="info log messages, and the traceback of an error")
    add_config_options(parser)
    return parser


def check_output_paths(out, predictions) -> None:
    """Create ``out`` and make sure it and the predictions file can be written (before any evaluation).

    Raises:
      OutputPathError: a path is not writable or is of the wrong kind, or ``out`` is a training run directory, whose
        parity plots (of its validation split) eval's would replace.
      ValueError: the predictions file has the wrong suffix.
    """
    from physnetjax.checkpoint.format import is_training_run
    from physnetjax.eval.outputs import check_predictions_path

    if out is not None and is_training_run(out):
        raise OutputPathError(f"--out {out} is a training run directory: eval's parity_energy.png and "
                              "parity_forces.png would replace the run's (of its validation split); choose another "
                              f"--out, e.g. {Path(out) / 'eval'}")
    if out is not None:
        check_output_directory(out, what="--out")
    if predictions is not None:
        check_output_path(check_predictions_path(predictions), overwrite=True, what="--write-predictions")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Evaluate and report; every failure is an exception that :func:`main` turns into one line.

    With ``--out`` the options used (``args`` of ``parser``) are kept in ``OUT/config.toml``.
    """
    if args.batch_size < 1:
        raise PhysNetInputError(f"--batch-size must be >= 1, received {args.batch_size}")
    if args.worst < 0:
        raise PhysNetInputError(f"--worst must be >= 0, received {args.worst}")
    keys = parse_key_mapping(args.keys)
    check_output_paths(args.out, args.write_predictions)
    if args.out is not None:
        check_config_replaceable(parser, Path(args.out) / CONFIG_NAME)
        from physnetjax.eval.outputs import OUTPUT_NAMES

        check_outputs_replaceable(parser, Path(args.out), OUTPUT_NAMES)
    check_distinct_files([("--write-predictions", args.write_predictions)],
                         [("--data", path) for path in args.data] + [("--checkpoint", args.checkpoint)])
    checkpoint = args.checkpoint
    if checkpoint is None:
        from physnetjax.pretrained import example_model_path

        checkpoint = str(example_model_path())
    dtype = chosen_precision(args, checkpoint)
    from physnetjax.checkpoint import load_checkpoint
    from physnetjax.data import load_dataset
    from physnetjax.data.sanity import check_label_sanity
    from physnetjax.eval import outputs
    from physnetjax.eval.evaluate import evaluate, given_units, label_scale_findings
    from physnetjax.eval.predictions import check_model_elements, predict_dataset
    from physnetjax.eval.table import render

    model, params, metadata = load_checkpoint(checkpoint, weights=args.weights, with_metadata=True)
    dataset = load_dataset(args.data, energy_unit=args.energy_unit, force_unit=args.force_unit,
                           dipole_unit=args.dipole_unit, force_sign=args.force_sign,
                           keys=keys)
    check_model_elements(model, dataset)  # before the warnings about the data, which assume an evaluation
    record = TrainingRecord.from_metadata(metadata)
    if metadata.get("element_energies_fit", "unknown") is None and dataset.has_E.any():
        warn_caller(f"{checkpoint} was trained without energy labels: its energies carry an arbitrary offset, so "
                    "the energy errors below measure that offset, not the model; judge it by its forces",
                    PhysNetInputWarning)
    record.check_dataset(dataset.Z, dataset.N, dataset.Q, positions=dataset.R, cells=dataset.cell, where="--data",
                         mask=dataset.has_E,
                         consequence="their energy errors below include it, and it is not the model's error")
    recorded = recorded_frames_in(dataset, metadata, checkpoint)
    if args.out is not None:
        write_resolved_config(parser, args, Path(args.out) / CONFIG_NAME)
    start = time.perf_counter()
    predictions = predict_dataset(model, params, dataset, batch_size=args.batch_size, dtype=dtype,
                                  energies=args.write_predictions is not None)
    seconds = time.perf_counter() - start
    result = evaluate(dataset, predictions, worst=args.worst)
    # Units and sign judged against the model's predictions and, for what that leaves open, from the labels
    # alone as in training: one message per problem.
    scale_findings = label_scale_findings(dataset, predictions, where=", ".join(args.data),
                                          units=given_units(args.energy_unit, args.force_unit, args.dipole_unit))
    check_label_sanity(dataset, ", ".join(args.data), skip=scale_findings)
    for message in scale_findings.values():
        warn_caller(message, PhysNetInputWarning)
    print(f"checkpoint: {checkpoint}\ndata: {dataset.summary()}")
    if not model.charges and (dataset.has_D.any() or dataset.has_Q.any()):
        print("the model predicts no charges: dipoles and total charges are not compared")
    weights_text = " with the raw (non-EMA) weights" if args.weights == "raw" else ""
    print(f"evaluated in {dtype}{weights_text} in {seconds:.1f} s (compilation included); units eV, Å, e\n")
    render(result)
    written = []
    if args.out is not None:
        out = Path(args.out)
        outputs.write_frames_csv(result, out / "frames.csv")
        outputs.write_summary(result, out / "summary.json", checkpoint=str(checkpoint), data=list(args.data),
                              units={"energy": args.energy_unit, "force": args.force_unit,
                                     "dipole": args.dipole_unit, "force_sign": args.force_sign},
                              model_config=model.config(), dtype=dtype, recorded=recorded, weights=args.weights)
        written += [out / CONFIG_NAME, out / "frames.csv", out / "summary.json"]
        if args.plots:
            written += outputs.write_parity_plots(dataset, predictions, out)
    if args.write_predictions is not None:
        outputs.write_predictions(dataset, predictions, args.write_predictions)
        written.append(Path(args.write_predictions))
    if written:
        print("\nwritten: " + ", ".join(str(p) for p in written))


def recorded_frames_in(dataset, metadata: dict, checkpoint) -> dict[str, Optional[RecordedShare]]:
    """The training and the validation frames of the checkpoint (or of the members it was combined from) among
    ``dataset``'s: ``{"training_frames": share, "validation_frames": share}``, None where it records none.

    Warns (:class:`PhysNetInputWarning`) when there are any: errors on training frames are training errors, and the
    validation frames chose the checkpoint (its best epoch), so errors on them are optimistic too, if less so.
    """
    digests = dataset_digests(dataset)
    records = {key: recorded_frames(metadata, key) for key in (TRAINING_FRAMES_KEY, VALIDATION_FRAMES_KEY)}
    shares = {key: None if record is None else record.share_of(digests) for key, record in records.items()}
    held_out = "evaluate on frames held out of training (a training run's test split is in its split.npz)"
    trained, validated = shares[TRAINING_FRAMES_KEY], shares[VALIDATION_FRAMES_KEY]
    if trained is not None and trained.any:
        warn_caller(f"{trained.describe()} of --data are frames {checkpoint} was trained on (same atoms and "
                    f"positions): their errors are training errors, so the errors below are optimistic; {held_out}",
                    PhysNetInputWarning)
    if validated is not None and validated.any:
        warn_caller(f"{validated.describe()} of --data are the validation frames of {checkpoint} (same atoms and "
                    "positions), which chose its best epoch: the errors below are somewhat optimistic on them; "
                    f"{held_out}", PhysNetInputWarning)
    return shares


@cli_main("python -m physnetjax.eval")
def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    configure_logging("python -m physnetjax.eval", args.verbose)
    run(args, parser)
    return 0
