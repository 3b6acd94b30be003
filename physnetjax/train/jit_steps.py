"""How the trainer's steps are compiled: ``jax.jit`` with XLA:CPU's YNNPACK library fusions off.

XLA:CPU (jaxlib 0.10) hands reductions, elementwise fusions and small matrix
products to the YNNPACK library ("ynn fusions", debug option
``xla_cpu_experimental_ynn_fusion_type``). For the training step of a small
PhysNet — forces by autodiff inside the loss, then the parameter gradient through
them, on arrays of (edges × components × features) = (1152 × 4 × 32) — those
library calls cost more than XLA's own fused loops: the default ethanol step took
14 ms of process CPU time with them and 5.4 ms without (benchmarks/README.md,
"Training-loop speed"). The option only chooses kernels; the results are the same
arithmetic (float32 gradients of one batch agree with float64 to the same 1e-4
relative either way).

:func:`jit_step` compiles a step with ``CPU_STEP_COMPILER_OPTIONS`` when the
default backend is the CPU and this jax/XLA accepts them (probed once by
compiling a one-line function); on GPU/TPU, or where the option does not exist, it
is plain ``jax.jit``.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable, Optional

import jax
import numpy as np

logger = logging.getLogger(__name__)

CPU_STEP_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
"""XLA debug options of the trainer's steps on the CPU: no YNNPACK library fusions (empty list)."""


@functools.lru_cache(maxsize=None)
def step_compiler_options() -> Optional[dict]:
    """``CPU_STEP_COMPILER_OPTIONS`` on a CPU backend whose XLA accepts them, else None (plain ``jax.jit``)."""
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=CPU_STEP_COMPILER_OPTIONS)(np.float32(0.0)).block_until_ready()
    except (TypeError, ValueError, RuntimeError) as error:
        logger.debug("XLA compiler options %s not accepted (%s); steps use plain jax.jit",
                     CPU_STEP_COMPILER_OPTIONS, error)
        return None
    return dict(CPU_STEP_COMPILER_OPTIONS)


def jit_step(fn: Callable, **jit_kwargs) -> Callable:
    """``jax.jit(fn, **jit_kwargs)`` with :func:`step_compiler_options` where they apply."""
    options = step_compiler_options()
    if options is None:
        return jax.jit(fn, **jit_kwargs)
    return jax.jit(fn, compiler_options=options, **jit_kwargs)
