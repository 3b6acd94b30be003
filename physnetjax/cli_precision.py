"""The precision a command evaluates a checkpoint in: ``--float64``, ``--float32``, or by default the checkpoint's.

A model trained with ``python -m physnetjax.train --float64`` holds float64 weights. The commands that evaluate a
checkpoint (``eval``, ``md``, ``ensemble calibrate``) run it in float64 unless ``--float32`` is given, as MACE's
tools default to the model's dtype, and every other checkpoint (float32 weights, legacy checkpoints, the shipped
models) in float32 unless ``--float64`` is given. Float64 switches JAX's 64-bit mode on for the process, before
the checkpoint is loaded.
"""

from __future__ import annotations

import argparse

from physnetjax.errors import PhysNetInputError


def add_precision_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--float64`` and ``--float32`` on ``parser``; ``what``: the work they set the precision of ("evaluate")."""
    parser.add_argument("--float64", action="store_true",
                        help=f"{what} in float64 (default: the checkpoint's precision, float64 for a model trained "
                             "with --float64, else float32)")
    parser.add_argument("--float32", action="store_true",
                        help=f"{what} in float32, also a model trained with --float64 (its weights rounded)")


def chosen_precision(args: argparse.Namespace, checkpoint) -> str:
    """``"float32"`` or ``"float64"``: the option given, else the precision of ``checkpoint``'s weights
    (:func:`physnetjax.checkpoint.format.stored_precision`); float64 switches JAX's 64-bit mode on.

    Raises:
      PhysNetInputError: both options are set (one of them may come from a ``--config`` file).
    """
    from physnetjax.checkpoint.format import stored_precision

    if args.float64 and args.float32:
        raise PhysNetInputError("--float64 and --float32 are both set (one may come from a --config file): give one, "
                                "or neither for the checkpoint's precision")
    precision = "float64" if args.float64 else "float32" if args.float32 else stored_precision(checkpoint)
    switch_x64_on_for(precision)
    return precision


def switch_x64_on_for(precision: str) -> None:
    """Switch JAX's 64-bit mode on for the process when ``precision`` is ``"float64"`` (a command does it before it
    loads a checkpoint or makes an array; JAX would round float64 to float32 while it is off)."""
    if precision == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
