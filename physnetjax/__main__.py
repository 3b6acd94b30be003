"""``python -m physnetjax``: lists the command-line tools; each runs as ``python -m physnetjax.<tool>``.

Given a tool's name (``python -m physnetjax train --epochs 5``) it exits with status 2 and
the command to run instead, so a mistyped command never starts anything. The library
modules named like a tool's subcommand (:data:`SUBCOMMAND_MODULES`) do the same when run
with ``-m`` (``python -m physnetjax.spectra.harmonic ...`` printed nothing and exited 0:
the module only defines functions), through :func:`refuse_library_module`.
"""

from __future__ import annotations

import shlex
import sys

TOOLS = {
    "train": "train a model, or an ensemble (--ensemble K), on energies, forces, dipoles and charges",
    "eval": "errors of a checkpoint on labelled frames: per element, worst frames, parity plots",
    "check": "check a model: forces = -dE/dR, invariances, smoothness, stability, float32 precision",
    "md": "molecular dynamics (NVE, NVT, NPT, ramps), with uncertainty when the model is an ensemble",
    "spectra": "harmonic frequencies and IR intensities (harmonic); IR and power spectra from MD (ir)",
    "ensemble": "combine checkpoints into one ensemble (combine); calibrate its spread (calibrate)",
    "learn": "active learning: MD with an ensemble, uncertain frames labelled with GFN2-xTB, retraining",
    "data.generate": "thermal configurations of a molecule labelled with GFN2-xTB (needs the xtb extra)",
    "migrate": "convert a checkpoint of the original physnetjax to this format, with a report",
}
"""Tool (module below ``physnetjax``) → what it does; each has ``--help``."""

SUBCOMMAND_MODULES = {
    "spectra.harmonic": "spectra harmonic",
    "ensemble.combine": "ensemble combine",
}
"""Library module named like a subcommand (below ``physnetjax``) → the tool and subcommand it implements."""


def listing() -> str:
    """The usage line and one line per tool."""
    width = max(map(len, TOOLS))
    lines = [f"  {name:<{width}}  {summary}" for name, summary in TOOLS.items()]
    return ("usage: python -m physnetjax.<tool> [options]   (python -m physnetjax.<tool> --help for its options)\n\n"
            "tools:\n" + "\n".join(lines) + "\n")


def main(argv=None) -> int:
    """Print the listing (exit 0), or for any argument the command meant (exit 2)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(listing())
        return 0
    if args[0] in TOOLS:
        meant = " ".join(["python -m physnetjax." + args[0], *map(shlex.quote, args[1:])])
        sys.stderr.write(f"python -m physnetjax: error: the tools run as modules of their own: {meant}\n")
    else:
        sys.stderr.write(f"python -m physnetjax: error: no tool {args[0]!r}; the tools are "
                         f"{', '.join(TOOLS)} (python -m physnetjax.<tool>)\n")
    return 2


def refuse_library_module(module: str, argv=None) -> int:
    """For ``python -m physnetjax.<module>`` of a :data:`SUBCOMMAND_MODULES` module: name the command meant (exit 2)."""
    args = sys.argv[1:] if argv is None else list(argv)
    meant = " ".join(["python -m physnetjax." + SUBCOMMAND_MODULES[module], *map(shlex.quote, args)])
    sys.stderr.write(f"python -m physnetjax.{module}: error: this is a library module, not a tool; "
                     f"the command is {meant}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
