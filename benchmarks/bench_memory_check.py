"""Cost of the memory check of compiled functions (``physnetjax.compilation.CompiledFunction``) per call.

Every function compiled through :func:`physnetjax.compilation.jit` describes its arguments' shapes at each call, to
check a new shape against the device's free memory before it runs (:mod:`physnetjax.device_memory`); the check
itself runs once per shape. What is timed, round robin (:func:`common.interleaved_times`), with the description and
with it switched off on the same compiled function (its ``_check_memory`` replaced by a no-op):

* ``atoms.get_forces()`` of ethanol through the ASE calculator (float32, the default training architecture,
  randomly initialised), the atoms moved by 1e-4 Å before each call so that every call evaluates;
* a training step of the default ``python -m physnetjax.train`` settings on the shipped ethanol data: the device
  step on its state (donated), as the trainer calls it.

Reported per call: median wall and process CPU time, and the difference. Writes ``bench_memory_check.json``.

    python benchmarks/bench_memory_check.py [--quick | --smoke] [--out DIR]
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from ase.build import molecule
from common import SHARED_DATA, interleaved_times, medians_per_call, parse_args, publish_timed_table

from physnetjax import PhysNet, init_params
from physnetjax.calculator import PhysNetCalculator
from physnetjax.predict import jitted_apply
from physnetjax.train import TrainConfig
from physnetjax.train.loop import Trainer


def switchable(compiled):
    """(check on, check off): functions that set ``compiled``'s memory check before a timed run."""
    check = compiled._check_memory

    def on():
        compiled._check_memory = check

    def off():
        compiled._check_memory = lambda args, kwargs: None

    return on, off


def calculator_calls(repeat: int) -> dict:
    model = PhysNet(features=32, max_degree=1, num_iterations=2, num_basis_functions=16, cutoff=5.0,
                    max_atomic_number=8)
    calc = PhysNetCalculator(model, init_params(model, 0))
    atoms = molecule("CH3CH2OH")
    atoms.calc = calc
    atoms.get_forces()
    on, off = switchable(jitted_apply(calc._network, False))
    rng = np.random.default_rng(0)

    def call(switch):
        def run():
            switch()
            for _ in range(repeat):
                atoms.positions += rng.normal(0.0, 1e-4, atoms.positions.shape)
                atoms.get_forces()
        return run

    return {"checked": call(on), "unchecked": call(off)}


def training_calls(steps: int, out: str) -> tuple:
    data = SHARED_DATA / "ethanol_gfn2_500K.npz"
    trainer = Trainer(TrainConfig(data=[str(data)], out=out, progress=False, plots=False), Path(out), resuming=False)
    inputs = list(trainer.training_inputs())[:steps]
    start, scale = jax.device_get(trainer.state), jnp.float32(1.0)
    on, off = switchable(trainer.train_step)

    def call(switch):
        def run():
            switch()
            state = jax.device_put(start)
            for frames, rows in inputs:
                state, loss, _ = trainer.train_step(state, frames, rows, scale)
            jax.block_until_ready(state)
        return run

    return {"checked": call(on), "unchecked": call(off)}, len(inputs)


def main() -> None:
    args = parse_args(__doc__)
    rounds = {"full": 15, "quick": 6, "smoke": 2}[args.mode]
    repeat = {"full": 200, "quick": 50, "smoke": 3}[args.mode]
    warnings.simplefilter("ignore")  # the random model's training-record warnings are not what is measured
    load_before = os.getloadavg()
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as out:
        training, steps = training_calls(repeat, out)
        for name, calls, count in (("ASE get_forces, ethanol", calculator_calls(repeat), repeat),
                                   ("training step, default settings", training, steps)):
            times = interleaved_times(calls, rounds)
            per_call = medians_per_call(times, count, 1e6)
            data[name] = {"calls_per_sample": count, "rounds": rounds, "times_s": times, "median_us_per_call": per_call}
            checked, unchecked = per_call["checked"], per_call["unchecked"]
            rows.append([name, unchecked["wall_s"], checked["wall_s"], checked["wall_s"] - unchecked["wall_s"],
                         unchecked["cpu_s"], checked["cpu_s"], checked["cpu_s"] - unchecked["cpu_s"]])
    publish_timed_table("bench_memory_check", args, f"the memory check's description of the arguments, µs per call "
                        f"(median of {rounds} samples", "wall (perf_counter) and process CPU (process_time) per call, "
                        "without and with the check",
                        ["call", "wall without", "wall with", "difference", "CPU without", "CPU with", "difference"],
                        rows, data, load_before)


if __name__ == "__main__":
    main()
