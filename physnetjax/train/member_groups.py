"""Ensemble members trained in G concurrent groups on the CPU.

The ensemble step (:func:`physnetjax.train.ensemble.make_ensemble_steps`) is one
compiled ``jax.vmap`` over the K members. On XLA:CPU one such call does not keep
the cores busy with useful work: its intra-op thread pool spends much of its time
waiting, so one model's step is barely faster on 2 cores than on 1 (1.05x,
benchmarks/README.md, "Ensemble cost"). Splitting the members into G groups of
K/G and calling the *same* compiled step on every group at once, from G host
threads, lets the groups fill each other's idle time: on 2 idle CPU cores, K = 4
as 2 groups of 2 took 2.4x one model's wall time per training step, against
3.4-3.9x for one call over all 4 members.

The arithmetic is that of the one vmapped step on K/G members: member k's updates
depend only on member k's state and batch, so the grouping changes no result beyond
the rounding of a differently sized vmap (checked against separately trained
members in float64, tests/test_member_groups.py).

Between steps the state stays split (a tuple of G member-stacked states);
:meth:`GroupedStep.split` and :meth:`GroupedStep.join` convert once per epoch.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def member_groups(size: int, backend: Optional[str] = None, cores: Optional[int] = None) -> int:
    """How many concurrent groups G the trainer splits K = ``size`` members into.

    1 for one model and off the CPU (an accelerator runs one call best); on the CPU
    the largest divisor of K not above the usable cores (equal groups share one
    compiled step). Measured only on 2 cores (benchmarks/README.md).
    """
    backend = jax.default_backend() if backend is None else backend
    cores = usable_cores() if cores is None else cores
    if size < 2 or backend != "cpu":
        return 1
    return max(g for g in range(1, min(size, max(cores, 1)) + 1) if size % g == 0)


@functools.lru_cache(maxsize=None)
def _splitter(groups: int) -> Callable:
    """Jitted: member-stacked pytree → tuple of ``groups`` pytrees of K/G consecutive members each."""

    def split(tree):
        size = jax.tree_util.tree_leaves(tree)[0].shape[0]
        part = size // groups
        return tuple(jax.tree_util.tree_map(lambda x, g=g: x[g * part:(g + 1) * part], tree) for g in range(groups))

    return jax.jit(split)


@jax.jit
def _join(parts: tuple):
    """Jitted inverse of :func:`_splitter`: the groups' pytrees concatenated along the member axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *parts)


@functools.lru_cache(maxsize=None)
def _executor(groups: int) -> concurrent.futures.ThreadPoolExecutor:
    """One thread pool per group count, kept for the process (the threads only dispatch compiled calls)."""
    return concurrent.futures.ThreadPoolExecutor(max_workers=groups, thread_name_prefix="member-group")


class GroupedStep:
    """A member-stacked step ``step(state, a, b, lr_scale) → (state, loss (K,), grad_norm (K,))`` run as G groups.

    Args:
      step: the compiled ensemble step (any member count; one compilation serves K/G).
      groups: G, a divisor of the member count.
      stacked: for the inputs ``a`` and ``b``, whether they carry the leading member axis
        (host-packed batches: both; device-resident frames and rows: only the rows).
      put: places one group's slice of a member-stacked host input on the device(s).

    Call with the tuple of G group states from :meth:`split` and host (NumPy) inputs;
    returns (tuple of G states, tuple of G losses, tuple of G gradient norms).
    """

    def __init__(self, step: Callable, groups: int, stacked: Sequence[bool], put: Callable):
        if groups < 2:
            raise ValueError(f"a grouped step needs at least 2 groups, received {groups}")
        self.step = step
        self.groups = groups
        self.stacked = tuple(stacked)
        self.put = put

    def split(self, state) -> tuple:
        """The member-stacked ``state`` as G group states of K/G consecutive members."""
        size = jax.tree_util.tree_leaves(state)[0].shape[0]
        if size % self.groups:
            raise ValueError(f"{size} members do not split into {self.groups} equal groups")
        return _splitter(self.groups)(state)

    def join(self, states: tuple):
        """The G group states concatenated back into one member-stacked state."""
        return _join(tuple(states))

    def _slice(self, value, group: int, part: int):
        return jax.tree_util.tree_map(lambda x: x[group * part:(group + 1) * part], value)

    def __call__(self, states: tuple, a, b, lr_scale) -> tuple:
        part = jax.tree_util.tree_leaves(a if self.stacked[0] else b)[0].shape[0] // self.groups

        def run(group: int):
            inputs = [self.put(self._slice(x, group, part)) if stacked else x
                      for x, stacked in zip((a, b), self.stacked)]
            return self.step(states[group], *inputs, lr_scale)

        outs = list(_executor(self.groups).map(run, range(self.groups)))
        return tuple(o[0] for o in outs), tuple(o[1] for o in outs), tuple(o[2] for o in outs)


def concatenated(values: list) -> np.ndarray:
    """Per-step losses or norms, each a tuple of G group arrays (K/G,), as one host array (steps, K)."""
    return np.stack([np.concatenate([np.asarray(v).reshape(-1) for v in step]) for step in jax.device_get(values)])
