"""``python -m physnetjax.check [CHECKPOINT] [--geometry FILE ...] [--json OUT] [--quick]``.

Loads a checkpoint (physnetjax format, or legacy: migrated in memory; default: the
shipped example model), picks the structures (``--geometry`` files, else the defaults of
:mod:`physnetjax.check.geometry`), runs :func:`physnetjax.check.check_model` in
float64 and prints the pass/warn/fail table, with the rows of group ``inputs`` from what the
checkpoint's metadata records of its training (elements, total charges, interatomic
distances; for a charge model the dipole R² in the molecular frame).

Exit status (:mod:`physnetjax.cli_errors`): 0 when no check failed (warnings allowed;
with ``--strict`` a warning also gives 1), 1 when a check failed, 2 when the
checkpoint or a geometry cannot be read or is invalid for the model (e.g. an element
outside its range), 3 when ``--json`` cannot be written (checked before any check runs).
Options may come from a TOML file (``--config``, ``--print-config``: :mod:`physnetjax.cli_config`).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from physnetjax.check.report import GROUPS
from physnetjax.cli_config import add_config_options, parse_args
from physnetjax.cli_errors import EXIT_OK, EXIT_VERDICT, cli_main, configure_logging, exit_process
from physnetjax.cli_help import WEIGHTS_HELP, ArgumentParser, HelpFormatter, describe
from physnetjax.errors import PhysNetInputError
from physnetjax.text_table import print_line
from physnetjax.training_record import TrainingRecord
from physnetjax.validation import check_distinct_files, check_output_path


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m physnetjax.check", formatter_class=HelpFormatter,
                            description=describe(__doc__.split("\n\n")[1]))
    parser.add_argument("checkpoint", nargs="?",
                        help="checkpoint directory (physnetjax or legacy format); default: the shipped example model")
    parser.add_argument("--geometry", nargs="+", metavar="FILE",
                        help=".npz (Z, R[, N, Q, cell, pbc]) or any ASE-readable file; default: frames stored with "
                             "the model")
    parser.add_argument("--frames", type=int, help="frames used per geometry file (default 3; 1 with --quick)")
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON (schema version 1) to OUT")
    parser.add_argument("--quick", action="store_true",
                        help="coarser scans, 4 displacements, 200 NVE steps, one frame")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS), help="run only these groups (default: all)")
    parser.add_argument("--weights", choices=("ema", "raw"), default="ema", help=WEIGHTS_HELP)
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument("--verbose", action="store_true", help="log progress")
    add_config_options(parser)
    return parser


@cli_main("python -m physnetjax.check")
def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    if args.frames is not None and args.frames < 1:
        raise PhysNetInputError(f"--frames must be >= 1, received {args.frames}")
    if args.json:
        check_output_path(args.json, overwrite=True, what="--json")
        check_distinct_files([("--json", args.json)], [("--checkpoint", args.checkpoint)]
                             + [("--geometry", path) for path in args.geometry or ()])
    configure_logging("python -m physnetjax.check", args.verbose)
    import jax

    jax.config.update("jax_enable_x64", True)
    from rich.console import Console

    from physnetjax.check.geometry import default_structures, read_structures
    from physnetjax.check.runner import check_model
    from physnetjax.check.settings import CheckSettings
    from physnetjax.checkpoint import load_checkpoint
    from physnetjax.dipole_surface import recorded_r2

    settings = CheckSettings.quick() if args.quick else CheckSettings()
    if args.frames is not None:
        settings = dataclasses.replace(settings, max_structures=args.frames)
    console = Console()
    if args.checkpoint is None:
        from physnetjax.pretrained import example_model_path

        args.checkpoint = str(example_model_path())
        print_line(console, "no checkpoint given: checking the shipped example model")
    model, params, metadata = load_checkpoint(args.checkpoint, weights=args.weights, with_metadata=True)
    if args.geometry:
        structures = [s for path in args.geometry for s in read_structures(path, settings.max_structures)]
    else:
        structures = default_structures(Path(args.checkpoint), metadata, settings.max_structures,
                                        model.supported_max_atomic_number)
    report = check_model(model, params, structures, groups=args.only, settings=settings,
                         checkpoint=str(Path(args.checkpoint).resolve()),
                         training_record=TrainingRecord.from_metadata(metadata), dipole_r2=recorded_r2(metadata))
    report.render(console)
    if args.json:
        report.write_json(args.json)
        print_line(console, f"report written to {args.json}")
    if report.status == "fail" or (args.strict and report.status == "warn"):
        return EXIT_VERDICT
    return EXIT_OK


if __name__ == "__main__":
    exit_process(main())
