"""How physnetjax compiles: ``jax.jit`` with XLA:CPU's YNNPACK library fusions off.

XLA:CPU (jaxlib 0.10) hands reductions, elementwise fusions and small matrix
products to the YNNPACK library ("ynn fusions", debug option
``xla_cpu_experimental_ynn_fusion_type``). For PhysNet's arrays of
(edges × components × features) those library calls cost more than XLA's own
fused loops once there are many edges, and less for one small molecule
(benchmarks/README.md, "Training-loop speed" and "Compiled without YNNPACK
fusions: inference and MD"; 2 CPU cores):

* the default ethanol training step took 14 ms of process CPU time with them and
  5.4 ms without;
* energy and forces of 16 or 64 ethanol molecules in one call take 0.64–0.75×
  the time without them, one molecule the same;
* NVE MD of a periodic ethanol box runs 1.2× (1125 atoms) to 2.2× (72 atoms) more
  steps per second without them, but one molecule of 9–36 atoms runs 7–20 % fewer.

The option only chooses kernels; the arithmetic is the same (float64 losses,
gradients, energies and forces equal plain ``jax.jit``'s to round-off;
``tests/test_compilation.py``).

:func:`jit` is what the library compiles training steps and batched model
evaluations with (``predict`` and the ASE calculator, ``eval``, ``check``'s
evaluations). :func:`jit_for_system` is for functions that step one system (MD):
plain ``jax.jit`` below :data:`SYSTEM_MIN_ATOMS` atoms, :func:`jit` from there on.
The spectra of one molecule (geometry optimisation, Hessian, IR MD of a few
replicas) keep plain ``jax.jit``: their molecules are small and their runs short.
:func:`jit` passes ``CPU_COMPILER_OPTIONS`` when the default backend is the CPU
and this jax/XLA accepts them (probed once by compiling a one-line function ahead
of time, which also works while a trace is open); on GPU/TPU, or where the option
does not exist, it is plain ``jax.jit``.

XLA options can only be given to a top-level ``jax.jit``: jax raises a ValueError
when such a function is called inside another ``jax.jit`` or ``jax.grad`` trace
(a user's, or ``jax.eval_shape``). A :class:`CompiledFunction` therefore carries
both compilations and runs the plain one when it is called inside a trace, where
the enclosing compilation decides the kernels anyway.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable, Optional

import jax
import numpy as np

logger = logging.getLogger(__name__)

CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
"""XLA debug options of physnetjax's compiled functions on the CPU: no YNNPACK library fusions (empty list)."""


SYSTEM_MIN_ATOMS = 64
"""Smallest system whose MD :func:`jit_for_system` compiles without YNNPACK fusions (measured: 36 atoms
run faster with them, 72 without; benchmarks/README.md)."""

NESTED_CALL_ERROR = "can only be passed to top-level"
"""Part of jax's ValueError for a ``jax.jit`` with ``compiler_options`` called inside another trace."""


@functools.lru_cache(maxsize=None)
def compiler_options() -> Optional[dict]:
    """``CPU_COMPILER_OPTIONS`` on a CPU backend whose XLA accepts them, else None (plain ``jax.jit``)."""
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_COMPILER_OPTIONS).lower(np.float32(0.0)).compile()
    except (TypeError, ValueError, RuntimeError) as error:
        logger.debug("XLA compiler options %s not accepted (%s); physnetjax compiles with plain jax.jit",
                     CPU_COMPILER_OPTIONS, error)
        return None
    return dict(CPU_COMPILER_OPTIONS)


class CompiledFunction:
    """``fn`` compiled with XLA ``options`` when called at top level, with plain ``jax.jit`` inside a trace.

    Behaves like the ``jax.jit`` object it wraps: calls, ``lower`` (ahead-of-time
    compilation, always with the options) and the other attributes of the jitted function.
    """

    def __init__(self, fn: Callable, options: dict, jit_kwargs: dict):
        self._with_options = jax.jit(fn, compiler_options=options, **jit_kwargs)
        self._nested = jax.jit(fn, **jit_kwargs)
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        try:
            return self._with_options(*args, **kwargs)
        except ValueError as error:
            if NESTED_CALL_ERROR not in str(error):
                raise
        return self._nested(*args, **kwargs)

    def __getattr__(self, name):
        if "_with_options" not in self.__dict__:  # not yet initialised (copy, unpickling)
            raise AttributeError(name)
        return getattr(self.__dict__["_with_options"], name)


def jit(fn: Callable, **jit_kwargs) -> Callable:
    """``jax.jit(fn, **jit_kwargs)`` with :func:`compiler_options` where they apply (:class:`CompiledFunction`)."""
    options = compiler_options()
    if options is None:
        return jax.jit(fn, **jit_kwargs)
    return CompiledFunction(fn, options, jit_kwargs)


def jit_for_system(num_atoms: int, fn: Callable, **jit_kwargs) -> Callable:
    """A function stepping one system of ``num_atoms`` atoms: plain ``jax.jit`` below :data:`SYSTEM_MIN_ATOMS`,
    else :func:`jit`."""
    if num_atoms < SYSTEM_MIN_ATOMS:
        return jax.jit(fn, **jit_kwargs)
    return jit(fn, **jit_kwargs)
