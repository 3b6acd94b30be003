"""The precision of the model's float32 matrix products: full float32 (``highest``) unless the user chose one.

At JAX's default precision XLA may compute a float32 matrix product with reduced-precision
operands: on NVIDIA GPUs since Ampere (A100, H100, H200) in TF32, operands rounded to a
10-bit mantissa (relative error ~5e-4 per product, against ~6e-8 for float32). PhysNet's
dense layers and e3x's tensor products are such products. Measured on an H200 with the
shipped ethanol model (benchmarks/gpu_precision.py, 64 frames, against float64): at the
default precision the float32 forces were off by up to 4.2 meV/Å (RMS 0.90) and the
energies by up to 2.2 meV; at ``highest`` by 0.010 meV/Å (RMS 0.002) and 0.002 meV, as
on the CPU, for 13 % fewer MD steps per second. The CPU computes float32 products in
full float32 at either setting.

So every product the model traces (:class:`physnetjax.PhysNet` and what is built on it: the
ensemble, dispersion, forces, stress, the parameter gradients of training, whose transposed
products keep the precision of the forward ones) is traced at
``jax_default_matmul_precision`` when the user set it (``jax.config.update`` or the
``jax.default_matmul_precision`` context around the call, e.g. ``"tensorfloat32"`` to trade
accuracy for speed), else at ``highest``, as PyTorch computes float32 products (its
``allow_tf32`` is off by default). Float64 products are exact IEEE products at any setting.
"""

from __future__ import annotations

import functools

import jax

MODEL_MATMUL_PRECISION = "highest"
"""Precision of the model's matrix products when ``jax_default_matmul_precision`` is unset."""


def at_model_matmul_precision(method):
    """``method`` (a Flax module's ``__call__``) traced at the user's ``jax_default_matmul_precision``, else at
    :data:`MODEL_MATMUL_PRECISION`."""
    @functools.wraps(method)
    def traced(*args, **kwargs):
        with jax.default_matmul_precision(jax.config.jax_default_matmul_precision or MODEL_MATMUL_PRECISION):
            return method(*args, **kwargs)
    return traced
