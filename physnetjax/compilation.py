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
XLA's default kernels below :data:`SYSTEM_MIN_ATOMS` atoms, :func:`jit`'s from there on.
The spectra of one molecule (geometry optimisation, Hessian, IR MD of a few
replicas) keep XLA's default kernels (:func:`jit_with_xla_defaults`): their molecules
are small and their runs short.
:func:`jit` passes ``CPU_COMPILER_OPTIONS`` when the default backend is the CPU
and this jax/XLA accepts them (probed once by compiling a one-line function ahead
of time, which also works while a trace is open); on GPU/TPU, or where the option
does not exist, it compiles with XLA's defaults.

Every function compiled here is checked to fit the device's free memory before it
runs, once per shape of its arguments (:class:`CompiledFunction`,
:mod:`physnetjax.device_memory`): a program too large raises OutOfMemoryError where
it would otherwise be killed by the kernel (CPU) or fail inside XLA.

XLA options can only be given to a top-level ``jax.jit``: jax raises a ValueError
when such a function is called inside another ``jax.jit`` or ``jax.grad`` trace
(a user's, or ``jax.eval_shape``). A :class:`CompiledFunction` therefore carries
both compilations and runs the plain one when it is called inside a trace, where
the enclosing compilation decides the kernels anyway.
"""

from __future__ import annotations

import functools
import logging
import weakref
from typing import Callable, Optional

import jax
import numpy as np

from physnetjax import device_memory

logger = logging.getLogger(__name__)

CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
"""XLA debug options of physnetjax's compiled functions on the CPU: no YNNPACK library fusions (empty list)."""


SYSTEM_MIN_ATOMS = 64
"""Smallest system whose MD :func:`jit_for_system` compiles without YNNPACK fusions (measured: 36 atoms
run faster with them, 72 without; benchmarks/README.md)."""

_TRACER = jax.core.Tracer

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
    """``fn`` compiled with XLA ``options`` (None: XLA's defaults) when called at top level, with plain ``jax.jit``
    inside a trace; each new shape of its arguments is checked to fit the device's memory before it runs.

    Behaves like the ``jax.jit`` object it wraps: calls, ``lower`` (ahead-of-time
    compilation, always with the options) and the other attributes of the jitted function.
    The first top-level call with arguments of new shapes or dtypes compiles ahead of time and hands the program
    to :func:`~physnetjax.device_memory.check_fits` (the call that follows finds the compiled program in jax's
    cache), so that a program larger than the free memory raises OutOfMemoryError instead of running.
    """

    def __init__(self, fn: Callable, options: Optional[dict], jit_kwargs: dict):
        self._nested = jax.jit(fn, **jit_kwargs)
        self._with_options = jax.jit(fn, compiler_options=options, **jit_kwargs) if options else self._nested
        self._fitting_shapes: set = set()
        self._previous: dict = {}  # argument position -> (the argument of the last call, its shape id)
        self._shape_ids: dict = {}  # description of an argument -> a number, so that a signature hashes fast
        self._donated = _positions(jit_kwargs.get("donate_argnums", ()))
        self._static = _positions(jit_kwargs.get("static_argnums", ()))
        static_names = jit_kwargs.get("static_argnames", ())
        self._static_names = {static_names} if isinstance(static_names, str) else set(static_names)
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        self._check_memory(args, kwargs)
        try:
            return self._with_options(*args, **kwargs)
        except ValueError as error:
            if NESTED_CALL_ERROR not in str(error):
                raise
        return self._nested(*args, **kwargs)

    def _check_memory(self, args, kwargs) -> None:
        """:func:`~physnetjax.device_memory.check_fits` once per shape signature of top-level arguments."""
        signature = self._signature(args, kwargs)
        if signature is None or signature in self._fitting_shapes:
            return
        try:
            compiled = self._with_options.lower(*args, **kwargs).compile()
        except ValueError as error:
            if NESTED_CALL_ERROR not in str(error):
                raise
            return
        device_memory.check_fits(compiled, f"the compiled {getattr(self, '__name__', 'function')}")
        self._fitting_shapes.add(signature)

    def _signature(self, args, kwargs) -> Optional[tuple]:
        """The arguments' tree structures, shapes and dtypes (other leaves: their types), each argument's as a number
        (one per distinct description); None inside a trace.

        Describing costs ~1.7 µs per array, so two kinds of argument are described more cheaply:

        * one that is the same object as at the previous call (the parameters of every call of the calculator or of
          an evaluation loop) reuses that call's description; the previous argument is held by a weak reference
          where Python allows one, so a batch of arrays is not kept alive (a parameter dict is held until the next
          call);
        * a donated argument (a training step's state: ~100 arrays in Flax and optax containers, 100 µs to flatten,
          which the step consumes and returns with the same shapes) is described by its type alone.

        Static arguments (``static_argnums``, ``static_argnames``) are described by their values, which choose the
        program (an array's size given as a number).
        """
        static = tuple((name, kwargs[name]) for name in sorted(self._static_names) if name in kwargs)
        if static:
            kwargs = {name: value for name, value in kwargs.items() if name not in self._static_names}
        described = [static]
        for position, arg in enumerate((*args, kwargs)):
            if position in self._static:
                described.append(("static", arg))
                continue
            previous = self._previous.get(position)
            if previous is not None and previous[0]() is arg:
                described.append(previous[1])
                continue
            if position in self._donated:
                described.append(type(arg))
                continue
            leaves, treedef = jax.tree.flatten(arg)
            description = [treedef]
            for leaf in leaves:
                if isinstance(leaf, _TRACER):
                    return None
                dtype = getattr(leaf, "dtype", None)
                description.append(type(leaf) if dtype is None else (leaf.shape, dtype))
            shape_id = self._shape_ids.setdefault(tuple(description), len(self._shape_ids))
            self._previous[position] = (_reference(arg), shape_id)
            described.append(shape_id)
        return tuple(described)

    def __getattr__(self, name):
        if "_with_options" not in self.__dict__:  # not yet initialised (copy, unpickling)
            raise AttributeError(name)
        return getattr(self.__dict__["_with_options"], name)


def _positions(argnums) -> set:
    """``donate_argnums``/``static_argnums`` (an int or a sequence of ints) as a set."""
    return {argnums} if isinstance(argnums, int) else set(argnums)


def _reference(value) -> Callable:
    """A weak reference to ``value`` where it takes one (arrays, dataclasses), else a function returning it (dicts,
    tuples, whose previous call's object is then kept until the next call)."""
    try:
        return weakref.ref(value)
    except TypeError:
        return lambda: value


def jit(fn: Callable, **jit_kwargs) -> Callable:
    """``jax.jit(fn, **jit_kwargs)`` with :func:`compiler_options` where they apply and the memory check of
    :class:`CompiledFunction`."""
    return CompiledFunction(fn, compiler_options(), jit_kwargs)


def jit_with_xla_defaults(fn: Callable, **jit_kwargs) -> Callable:
    """``jax.jit(fn, **jit_kwargs)`` with XLA's default kernels and the memory check of :class:`CompiledFunction`
    (the spectra of one molecule: its geometry optimisation and Hessian)."""
    return CompiledFunction(fn, None, jit_kwargs)


def jit_for_system(num_atoms: int, fn: Callable, **jit_kwargs) -> Callable:
    """A function stepping one system of ``num_atoms`` atoms: compiled with XLA's defaults below
    :data:`SYSTEM_MIN_ATOMS`, else :func:`jit`; memory-checked either way (:class:`CompiledFunction`)."""
    if num_atoms < SYSTEM_MIN_ATOMS:
        return jit_with_xla_defaults(fn, **jit_kwargs)
    return jit(fn, **jit_kwargs)
