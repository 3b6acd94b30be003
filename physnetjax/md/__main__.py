"""Command line: ``python -m physnetjax.md --checkpoint CKPT --geometry FILE --ensemble nve ...``.

Runs :func:`physnetjax.md.driver.simulate` with a progress bar and prints the final
report (energy drift and fluctuation, mean temperature, steps/s). Without
``--checkpoint`` the shipped example model (ethanol) is used. Options may come from a
TOML file (``--config``, ``--print-config``: :mod:`physnetjax.cli_config`); with
``--out OUT`` the options used are kept in ``OUT.config.toml``.

An option the chosen ``--ensemble`` does not use (:data:`ENSEMBLE_ONLY`, e.g.
``--friction`` without ``langevin``, ``--pressure`` without ``npt``) given on the command
line is refused, as is a ``--restart`` file that records another ensemble or model (a
parameter fingerprint) than the run's ``--ensemble`` and ``--checkpoint``.

With an ensemble checkpoint the forces are the members' mean and every saved frame
records the largest per-atom force spread; ``--uncertainty-threshold`` stops the run at
the first frame past it (``--on-uncertainty stop``, the last trusted frame saved to
``OUT.last_trusted.xyz``) or flags such frames (``flag``).

Exit status (:mod:`physnetjax.cli_errors`): 0 done; 2 bad input (checkpoint, geometry,
argument values such as a zero timestep, an uncertainty threshold for a single model,
options the ensemble does not use, a restart file of another ensemble or model);
3 an output path that cannot be written (checked before the model is loaded); 4 the run
was stopped (NaN/Inf, absurd force, NVE energy not conserved, or the ensemble
uncertainty past ``--uncertainty-threshold``), the last good / trusted frame saved to
``OUT.last_good.xyz`` / ``OUT.last_trusted.xyz`` (without ``--out`` no file is written and
the message gives the frame's step).
"""

from __future__ import annotations

import argparse
import sys

import ase.io

from physnetjax.cli_config import (CONFIG_NAME, OptionUse, add_config_options, check_config_replaceable,
                                   chosen_options, given_options, parse_args, refuse_unused_options,
                                   write_resolved_config)
from physnetjax.cli_errors import EXIT_OK, EXIT_RUN_STOPPED, cli_main, configure_logging, exit_process
from physnetjax.cli_help import ArgumentParser, HelpFormatter, describe
from physnetjax.cli_precision import add_precision_options, chosen_precision
from physnetjax.structure_file import read_last_frame
from physnetjax.errors import PhysNetInputError
from physnetjax.md.driver import (
    ENERGY_DRIFT_ACTIONS,
    ENERGY_TOLERANCE_MEV_PER_ATOM,
    ENSEMBLE_ONLY_ARGUMENTS,
    UNCERTAINTY_ACTIONS,
    check_md_arguments,
    check_uncertainty_arguments,
    params_fingerprint,
    read_restart,
    simulate,
)
from physnetjax.md.ensembles import ENSEMBLES
from physnetjax.training_record import TrainingRecord
from physnetjax.validation import atoms_total_charge, check_distinct_files, check_output_path, check_total_charge


DEFAULT_ENSEMBLE = "nve"
KEYWORD_OF = {
    "friction": "friction",
    "temperature_end": "temperature_end_K",
    "thermostat_time": "thermostat_time_fs",
    "chain_length": "chain_length",
    "pressure": "pressure_bar",
    "pressure_end": "pressure_end_bar",
    "barostat_time": "barostat_time_fs",
    "compressibility": "compressibility_per_bar",
    "anisotropic": "anisotropic",
    "energy_tolerance": "energy_tolerance",
    "on_energy_drift": "on_energy_drift",
}
"""Options that only some ensembles use (dest → :func:`~physnetjax.md.driver.simulate`'s keyword in
:data:`~physnetjax.md.driver.ENSEMBLE_ONLY_ARGUMENTS`). ``--temperature`` is not one: it draws the start
velocities in every ensemble."""
ENSEMBLE_ONLY = {dest: ENSEMBLE_ONLY_ARGUMENTS[keyword] for dest, keyword in KEYWORD_OF.items()}
"""dest → the ensembles that use it."""
OPTION_USES = [OptionUse(dest, "ensemble", users) for dest, users in ENSEMBLE_ONLY.items()]
"""Chosen with another ``--ensemble``, these options are refused (:func:`~physnetjax.cli_config.refuse_unused_options`)."""
OPTION_OF = {
    "ensemble": "--ensemble", "temperature_K": "--temperature", "timestep_fs": "--timestep", "steps": "--steps",
    "save_every": "--save-every", "chunk_frames": "--chunk", "max_force": "--max-force", "skin": "--skin",
    "out": "--out", "uncertainty_threshold": "--uncertainty-threshold", "on_uncertainty": "--on-uncertainty",
    "total_charge": "--total-charge", "seed": "--seed", "atom_energies": "--atom-energies",
    **{keyword: f"--{dest.replace('_', '-')}" for dest, keyword in KEYWORD_OF.items()},
}
""":func:`~physnetjax.md.driver.simulate`'s keyword → the option that sets it: the names in the messages of
:func:`~physnetjax.md.driver.check_md_arguments`, the checks it runs, and simulate's stop reasons."""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m physnetjax.md", description=describe(__doc__.split("\n\n")[1]),
                            formatter_class=HelpFormatter)
    parser.add_argument("--checkpoint", help="model checkpoint directory (new or legacy format); "
                        "default: the shipped example model")
    parser.add_argument("--geometry", required=True, help="start geometry, any file ase.io.read understands")
    parser.add_argument("--ensemble", choices=ENSEMBLES, default=DEFAULT_ENSEMBLE,
                        help="nve: velocity Verlet; langevin: BAOAB; nvt-nhc: Nosé–Hoover chain; csvr: stochastic "
                        "velocity rescaling; npt: stochastic cell rescaling + CSVR (periodic cells only)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (initial velocities / thermostat)")
    parser.add_argument("--temperature-end", type=float, default=None,
                        help="K; ramp the thermostat linearly from --temperature to this over the run "
                        "(default: no ramp)")
    parser.add_argument("--thermostat-time", type=float, default=100.0,
                        help="fs; relaxation time of the nvt-nhc / csvr / npt thermostat")
    parser.add_argument("--chain-length", type=int, default=3, help="thermostats in the Nosé–Hoover chain")
    parser.add_argument("--pressure", type=float, default=1.0, help="bar; npt target pressure")
    parser.add_argument("--pressure-end", type=float, default=None,
                        help="bar; ramp the npt pressure linearly from --pressure to this over the run "
                        "(default: no ramp)")
    parser.add_argument("--barostat-time", type=float, default=1000.0, help="fs; npt volume relaxation time")
    parser.add_argument("--compressibility", type=float, default=4.5e-5,
                        help="1/bar; npt barostat compressibility (sets its mobility; water: 4.5e-5)")
    parser.add_argument("--anisotropic", action="store_true",
                        help="npt: rescale the x, y, z axes independently instead of isotropically")
    parser.add_argument("--total-charge", type=float,
                        help="total charge in e (default: the geometry's info['charge'], else 0)")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--steps", type=int, default=1000, help="MD steps (after a --restart: further steps)")
    parser.add_argument("--out", help="trajectory file (.xyz/.extxyz/.traj); its frames are also logged "
                        "as JSON Lines to OUT.jsonl (default: no trajectory, only the report)")
    parser.add_argument("--save-every", type=int, default=10, help="steps between saved frames")
    parser.add_argument("--chunk", type=int, default=100, help="saved frames per jitted chunk")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial velocities and thermostat noise")
    add_precision_options(parser, "run")
    parser.add_argument("--max-force", type=float, default=100.0,
                        help="stop when any atom's |F| exceeds this at any step, in eV/Å")
    parser.add_argument("--skin", type=float, default=0.5, help="neighbor-list skin in Å")
    parser.add_argument("--edge-chunk-size", type=int,
                        help="message-pass edges per chunk (memory O(N + chunk); for ~10^4+ atoms, e.g. 65536; "
                        "default: all edges at once)")
    parser.add_argument("--md-checkpoint", help="write MD-state checkpoints to this .npz (default: none)")
    parser.add_argument("--restart", help="continue from an MD-state checkpoint (.npz)")
    parser.add_argument("--energy-tolerance", type=float, default=ENERGY_TOLERANCE_MEV_PER_ATOM,
                        help="largest change of the conserved energy in meV/atom")
    parser.add_argument("--on-energy-drift", choices=ENERGY_DRIFT_ACTIONS, default="stop",
                        help="NVE energy beyond --energy-tolerance: stop (save the last good frame) or warn")
    parser.add_argument("--uncertainty-threshold", type=float, metavar="EV_PER_A",
                        help="ensemble checkpoints: largest accepted per-atom force spread (eV/Å) of a saved frame "
                        "(default: not watched)")
    parser.add_argument("--on-uncertainty", choices=UNCERTAINTY_ACTIONS, default="stop",
                        help="a frame past --uncertainty-threshold: stop (keep the last trusted frame) or flag it")
    parser.add_argument("--atom-energies", action="store_true",
                        help="write each saved frame's per-atom energies into --out (eV, summing to its energy; "
                        "atoms.get_potential_energies() after reading it): one more model evaluation per saved frame")
    parser.add_argument("--verbose", action="store_true", help="info log messages, and the traceback of an error")
    add_config_options(parser)
    return parser


def read_geometry(path) -> ase.Atoms:
    """The last frame of ``path`` (:func:`physnetjax.structure_file.read_last_frame`; several frames warn)."""
    return read_last_frame(path, f"--geometry {path}", "MD starts from")


def _named_ensemble(ensemble: str, given: set) -> str:
    """``--ensemble X``, marked as the default when it is one that was not asked for."""
    default = "ensemble" not in given and ensemble == DEFAULT_ENSEMBLE
    return f"--ensemble {ensemble}" + (" (the default)" if default else "")


def check_restart(path, saved: dict, ensemble: str, given: set, checkpoint, params) -> None:
    """Check the restart file ``path`` (its arrays ``saved``) against this run's ensemble and model.

    Another model is refused. Another ensemble is refused unless ``--ensemble`` was given on
    the command line (a default would silently turn, say, a Langevin run into NVE); given,
    it is a deliberate switch (equilibrate, then NVE), which
    :func:`~physnetjax.md.driver.simulate` makes with a warning. Files written before these
    records (no ``ensemble`` / ``model`` entry) are not checked.

    Raises:
      PhysNetInputError: naming ``--restart`` and the option to change.
    """
    recorded = str(saved.get("ensemble", ensemble))
    if recorded != ensemble:
        if "ensemble" not in given:
            raise PhysNetInputError(
                f"--restart {path} continues a {recorded} run, not {_named_ensemble(ensemble, given)}: pass "
                f"--ensemble {recorded} to continue it, or --ensemble {ensemble} explicitly to switch ensembles")
    if "model" in saved and str(saved["model"]) != params_fingerprint(params):
        model = (f"--checkpoint {checkpoint}" if checkpoint is not None
                 else "the shipped example model (no --checkpoint)")
        raise PhysNetInputError(f"--restart {path} was written by a run of another model than {model} (the "
                                "parameters differ): continue it with the --checkpoint it was run with")


@cli_main("python -m physnetjax.md")
def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    given = given_options(parser, argv)
    configure_logging("python -m physnetjax.md", args.verbose)
    refuse_unused_options(parser, args, OPTION_USES, chosen_options(parser, argv))
    for path, what in ((args.out, "--out"), (args.md_checkpoint, "--md-checkpoint")):
        if path is not None:
            check_output_path(path, overwrite=True, what=what)
    check_distinct_files(
        [("--out", args.out), ("its log", None if args.out is None else f"{args.out}.jsonl"),
         ("its settings", None if args.out is None else f"{args.out}.config.toml"),
         ("its last good frame", None if args.out is None else f"{args.out}.last_good.xyz"),
         ("its last trusted frame", None if args.out is None else f"{args.out}.last_trusted.xyz"),
         ("--md-checkpoint", args.md_checkpoint)],
        [("--geometry", args.geometry), ("--restart", args.restart), ("--checkpoint", args.checkpoint)],
        may_equal={("--md-checkpoint", "--restart")})
    if args.out is not None:
        check_config_replaceable(parser, f"{args.out}.{CONFIG_NAME}")
    ensemble_only = {keyword: getattr(args, dest) if args.ensemble in ENSEMBLE_ONLY[dest] else None
                     for dest, keyword in KEYWORD_OF.items()}
    check_md_arguments(ensemble=args.ensemble, temperature_K=args.temperature, timestep_fs=args.timestep,
                       steps=args.steps, save_every=args.save_every, chunk_frames=args.chunk, max_force=args.max_force,
                       skin=args.skin, out=args.out, ensemble_only=ensemble_only,
                       uncertainty_threshold=args.uncertainty_threshold, on_uncertainty=args.on_uncertainty,
                       atom_energies=args.atom_energies, names=OPTION_OF)
    if args.edge_chunk_size is not None and args.edge_chunk_size < 1:
        raise PhysNetInputError(f"--edge-chunk-size must be >= 1 (message-pass edges per chunk), received "
                                f"{args.edge_chunk_size}")
    checkpoint = args.checkpoint
    if checkpoint is None:
        from physnetjax.pretrained import example_model_path

        checkpoint = example_model_path()
    dtype = chosen_precision(args, checkpoint)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from physnetjax.checkpoint import load_checkpoint

    console = Console(stderr=True)
    model, params, metadata = load_checkpoint(checkpoint, with_metadata=True)
    check_uncertainty_arguments(model, args.uncertainty_threshold, names=OPTION_OF)
    if args.edge_chunk_size is not None:
        model = model.clone(edge_chunk_size=args.edge_chunk_size)
    atoms = read_geometry(args.geometry)
    if args.total_charge is not None:  # warns when the geometry file says otherwise, as the other tools do
        atoms.info["charge"] = atoms_total_charge(atoms, check_total_charge(args.total_charge, atoms.numbers,
                                                                            names=OPTION_OF), OPTION_OF)
        atoms.set_initial_charges(None)  # said once: the charge is info['charge'] from here on
    if args.restart is not None:
        check_restart(args.restart, read_restart(args.restart, atoms, model.supported_max_atomic_number), args.ensemble, given,
                      args.checkpoint, params)
    bar = Progress(TextColumn("MD"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                   TimeRemainingColumn(), console=console)
    task = bar.add_task("md", total=args.steps)

    def show(done: int) -> None:
        """At simulate's first call, once the inputs passed its checks: the settings of this run are kept beside its
        outputs (a refused run leaves an earlier run's OUT.config.toml as it was) and the bar starts."""
        if done == 0 and args.out is not None:
            write_resolved_config(parser, args, f"{args.out}.{CONFIG_NAME}")
        bar.start()
        bar.update(task, completed=done)

    try:
        report = simulate(
            model, params, atoms, ensemble=args.ensemble, temperature_K=args.temperature,
            timestep_fs=args.timestep, steps=args.steps, out=args.out, save_every=args.save_every,
            chunk_frames=args.chunk, seed=args.seed,
            dtype=dtype, max_force=args.max_force, skin=args.skin,
            checkpoint_path=args.md_checkpoint, restart=args.restart,
            progress=show,
            training_record=TrainingRecord.from_metadata(metadata),
            **ensemble_only, uncertainty_threshold=args.uncertainty_threshold, on_uncertainty=args.on_uncertainty,
            atom_energies=args.atom_energies, names=OPTION_OF,
        )
    finally:
        bar.stop()
    for line in report.lines():
        print(line)
    if report.stopped:
        print(f"python -m physnetjax.md: stopped: {report.stop_reason}", file=sys.stderr)
        return EXIT_RUN_STOPPED
    return EXIT_OK


if __name__ == "__main__":
    exit_process(main())
