"""``python -m physnetjax.spectra {harmonic,ir} ...``: vibrational spectra from a trained model.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``: ``harmonic`` in :mod:`physnetjax.spectra.cli_harmonic`, ``ir``
in :mod:`physnetjax.spectra.cli_ir`. Those modules import the heavy parts (JAX, the
model) only inside ``main``, so building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "harmonic": "physnetjax.spectra.cli_harmonic",
    "ir": "physnetjax.spectra.cli_ir",
}
"""Subcommand name → module implementing it."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m physnetjax.spectra",
                                     description=__doc__.splitlines()[0].split(": ", 1)[-1])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        summary = module.__doc__.splitlines()[0].split(": ", 1)[-1]
        subparser = subparsers.add_parser(name, help=summary, description=summary)
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.main)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
