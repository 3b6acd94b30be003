"""Timing and output layout shared by the peers' prediction scripts (plain NumPy, any venv).

Each peer script defines ``one_pass() -> (energy (F,), [forces (N_f, 3) per frame])`` in its
own framework; :func:`save_timed_passes` runs it once untimed (compilation, caches), then
``repeats`` timed passes, and writes the last pass's outputs with the forces zero-padded to
(F, N_max, 3) next to the pass times (s) and the parameter count.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def save_timed_passes(one_pass: Callable[[], tuple], n_atoms: list[int], repeats: int,
                      parameters: int, out: str) -> None:
    one_pass()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        energy, per_frame_forces = one_pass()
        seconds.append(time.perf_counter() - start)
    forces = np.zeros((len(n_atoms), max(n_atoms), 3))
    for k, f in enumerate(per_frame_forces):
        forces[k, :len(f)] = f
    np.savez(out, energy=np.asarray(energy, dtype=np.float64), forces=forces, seconds=np.array(seconds),
             parameters=parameters)
