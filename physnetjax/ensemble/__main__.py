"""Command line: ``python -m physnetjax.ensemble combine CKPT CKPT ... --out DIR``.

Combines separately trained checkpoints of one architecture (single models or
ensembles) into one ensemble checkpoint (:func:`physnetjax.ensemble.combine.combine_checkpoints`)
that ``predict``, the ASE calculator, MD and ``check`` load like a single model.

Exit status (:mod:`physnetjax.cli_errors`): 0 written; 2 an input that is not a
readable checkpoint, architectures that differ (named), fewer than 2 members; 3
``--out`` exists (without ``--overwrite``) or cannot be written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from physnetjax.cli_errors import cli_main
from physnetjax.errors import OutputPathError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m physnetjax.ensemble", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    combine = commands.add_parser("combine", help="combine checkpoints into one ensemble checkpoint")
    combine.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoint directories (2 or more members)")
    combine.add_argument("--out", required=True, help="directory of the new ensemble checkpoint")
    combine.add_argument("--calibration-scale", type=float, default=1.0,
                         help="factor on the reported spreads (1 = uncalibrated)")
    combine.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint at --out")
    combine.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


@cli_main("python -m physnetjax.ensemble")
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, force=True)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise OutputPathError(f"--out {out} exists; choose another directory or pass --overwrite")
    from physnetjax.checkpoint import read_config
    from physnetjax.ensemble.combine import combine_checkpoints

    target = combine_checkpoints(args.checkpoints, out, calibration_scale=args.calibration_scale,
                                 overwrite=args.overwrite)
    print(f"ensemble of {read_config(target)['model']['ensemble_size']} members written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
