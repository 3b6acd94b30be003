"""Command line: ``python -m physnetjax.md --checkpoint CKPT --geometry FILE --ensemble nve ...``.

Runs :func:`physnetjax.md.driver.simulate` with a progress bar and prints the final
report (energy drift and fluctuation, mean temperature, steps/s). Without
``--checkpoint`` the shipped example model (ethanol) is used. Exit status 2 when the
run was stopped for NaN/Inf or an absurd force.
"""

from __future__ import annotations

import argparse
import logging
import sys

import ase.io
import jax

from physnetjax.md.ensembles import ENSEMBLES


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m physnetjax.md", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", help="model checkpoint directory (new or legacy format); "
                        "default: the shipped example model")
    parser.add_argument("--geometry", required=True, help="start geometry, any file ase.io.read understands")
    parser.add_argument("--ensemble", choices=ENSEMBLES, default="nve",
                        help="nve: velocity Verlet; langevin: BAOAB; nvt-nhc: Nosé–Hoover chain; csvr: stochastic "
                        "velocity rescaling; npt: stochastic cell rescaling + CSVR (periodic cells only)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (initial velocities / thermostat)")
    parser.add_argument("--temperature-end", type=float, default=None,
                        help="K; ramp the thermostat linearly from --temperature to this over the run")
    parser.add_argument("--thermostat-time", type=float, default=100.0,
                        help="fs; relaxation time of the nvt-nhc / csvr / npt thermostat")
    parser.add_argument("--chain-length", type=int, default=3, help="thermostats in the Nosé–Hoover chain")
    parser.add_argument("--pressure", type=float, default=1.0, help="bar; npt target pressure")
    parser.add_argument("--pressure-end", type=float, default=None,
                        help="bar; ramp the npt pressure linearly from --pressure to this over the run")
    parser.add_argument("--barostat-time", type=float, default=1000.0, help="fs; npt volume relaxation time")
    parser.add_argument("--compressibility", type=float, default=4.5e-5,
                        help="1/bar; npt barostat compressibility (sets its mobility; water: 4.5e-5)")
    parser.add_argument("--anisotropic", action="store_true",
                        help="npt: rescale the x, y, z axes independently instead of isotropically")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", help="trajectory file (.xyz/.extxyz/.traj); its frames are also logged "
                        "as JSON Lines to OUT.jsonl")
    parser.add_argument("--save-every", type=int, default=10, help="steps between saved frames")
    parser.add_argument("--chunk", type=int, default=100, help="saved frames per jitted chunk")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--float64", action="store_true", help="run in float64")
    parser.add_argument("--max-force", type=float, default=100.0, help="stop above this |F| in eV/Å")
    parser.add_argument("--skin", type=float, default=0.5, help="neighbor-list skin in Å")
    parser.add_argument("--edge-chunk-size", type=int,
                        help="message-pass edges per chunk (memory O(N + chunk); for ~10^4+ atoms, e.g. 65536)")
    parser.add_argument("--md-checkpoint", help="write MD-state checkpoints to this .npz")
    parser.add_argument("--restart", help="continue from an MD-state checkpoint (.npz)")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, force=True)
    if args.float64:
        jax.config.update("jax_enable_x64", True)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from physnetjax.checkpoint import load_checkpoint
    from physnetjax.md.driver import MDInstabilityError, simulate

    console = Console(stderr=True)
    checkpoint = args.checkpoint
    if checkpoint is None:
        from physnetjax.pretrained import example_model_path

        checkpoint = example_model_path()
    model, params, _ = load_checkpoint(checkpoint)
    if args.edge_chunk_size is not None:
        model = model.clone(edge_chunk_size=args.edge_chunk_size)
    atoms = ase.io.read(args.geometry)
    with Progress(TextColumn("MD"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("md", total=args.steps)
        try:
            report = simulate(
                model, params, atoms, ensemble=args.ensemble, temperature_K=args.temperature,
                timestep_fs=args.timestep, steps=args.steps, out=args.out, save_every=args.save_every,
                chunk_frames=args.chunk, friction=args.friction, seed=args.seed,
                dtype="float64" if args.float64 else "float32", max_force=args.max_force, skin=args.skin,
                checkpoint_path=args.md_checkpoint, restart=args.restart,
                progress=lambda done: bar.update(task, completed=done),
                thermostat_time_fs=args.thermostat_time, chain_length=args.chain_length,
                temperature_end_K=args.temperature_end, pressure_bar=args.pressure,
                pressure_end_bar=args.pressure_end, barostat_time_fs=args.barostat_time,
                compressibility_per_bar=args.compressibility, anisotropic=args.anisotropic,
            )
        except MDInstabilityError as err:
            console.print(f"[red]error:[/red] {err}")
            return 2
    for line in report.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
