"""``python -m physnetjax.spectra {harmonic,ir} ...``: vibrational spectra from a trained model.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``main(args) -> int``: ``harmonic`` in :mod:`physnetjax.spectra.cli_harmonic`, ``ir``
in :mod:`physnetjax.spectra.cli_ir`. Those modules import the heavy parts (JAX, the
model) only inside ``main``, so building the parser stays cheap. Each subcommand takes
``--config FILE`` and ``--print-config`` (:mod:`physnetjax.cli_config`); ``args.parser``
is the subcommand's parser, with which it keeps the options used in ``OUT/config.toml``.

Exit status (:mod:`physnetjax.cli_errors`): 0 done; 2 bad input (an argument value,
the checkpoint, the geometry, masses); 3 an output directory that cannot be written
(checked before any computation); 4 the run stopped (geometry optimisation did not
converge, MD energy not conserved). Errors are one line
``python -m physnetjax.spectra: error: ...`` on stderr; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib

from physnetjax.cli_config import add_config_options, chosen_options, parse_args
from physnetjax.cli_errors import cli_main, exit_process
from physnetjax.cli_help import ArgumentParser, HelpFormatter

SUBCOMMANDS = {
    "harmonic": "physnetjax.spectra.cli_harmonic",
    "ir": "physnetjax.spectra.cli_ir",
}
"""Subcommand name → module implementing it."""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m physnetjax.spectra", formatter_class=HelpFormatter,
                            description=__doc__.splitlines()[0].split(": ", 1)[-1])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        summary = module.__doc__.splitlines()[0].split(": ", 1)[-1]
        subparser = subparsers.add_parser(name, help=summary, description=summary, formatter_class=HelpFormatter)
        module.add_arguments(subparser)
        add_config_options(subparser)
        subparser.set_defaults(run=module.main, parser=subparser)
    return parser


@cli_main("python -m physnetjax.spectra")
def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    args.chosen = chosen_options(parser, argv)
    return args.run(args)


if __name__ == "__main__":
    exit_process(main())
