"""Orbax restores whose array reads all end before the restore does, even when some fail.

Orbax reads a PyTree's values in batches, one per type handler, each an ``asyncio.gather``
of tensorstore reads, on an event loop it creates for the restore and closes after it. When a
read fails (a data file of the checkpoint deleted or truncated), the gather raises at once and
the restore ends, closing that loop, while the other reads of the batch (hundreds, for a
network's weights) are still running in tensorstore's threads. As each of them ends,
tensorstore posts its result to the closed loop, and Python prints a "RuntimeError: Event loop
is closed" traceback from that thread; whether any is printed depends on how many end before
the interpreter exits (22 of 48 runs of ``python -m physnetjax.check`` or ``migrate`` on a
legacy checkpoint with a deleted data file, 2026-12). The reads of the values' metadata, done
alike before the restore, fail so when the OCDBT manifest is truncated.

:func:`settled_registry` gives orbax's standard type handlers with the readers of arrays (NumPy
and jax), scalars and strings (the values physnetjax and legacy checkpoints hold) replaced by
ones that read each value (and each value's metadata) on its own and wait for all of them: a
failed read becomes a :class:`FailedRead` leaf of the restored tree (or of the metadata tree)
instead of an exception, so the restore returns only once every read has ended.
:func:`raise_failed_read` then raises the error of the first failed value in tree order (the
same value whatever order the reads ended in).
"""

from __future__ import annotations

import asyncio
import copy
from dataclasses import dataclass

import jax
import orbax.checkpoint as ocp


@dataclass(frozen=True)
class FailedRead:
    """Stands in the restored tree for a value whose read raised ``error``."""

    error: Exception


async def _settle(reads) -> list:
    """The one value of each of ``reads`` (coroutines of one-value batches), a failed one as :class:`FailedRead`."""
    values = await asyncio.gather(*reads, return_exceptions=True)
    for value in values:
        if isinstance(value, BaseException) and not isinstance(value, Exception):
            raise value  # a cancellation or an interrupt is no read error
    return [FailedRead(value) if isinstance(value, Exception) else value[0] for value in values]


def _settled(handler_class: type) -> type:
    """``handler_class`` (an orbax TypeHandler) reading each value (and its metadata) alone, failures returned."""

    class Settled(handler_class):
        async def metadata(self, infos):
            return await _settle([super(Settled, self).metadata([info]) for info in infos])

        async def deserialize(self, infos, args=None):
            return await _settle([super(Settled, self).deserialize([info], None if args is None else [args[k]])
                                  for k, info in enumerate(infos)])

    Settled.__name__ = Settled.__qualname__ = f"Settled{handler_class.__name__}"
    return Settled


_SETTLED = {handler: _settled(handler) for handler in (ocp.type_handlers.NumpyHandler,
                                                       ocp.type_handlers.ScalarHandler,
                                                       ocp.type_handlers.ArrayHandler,
                                                       ocp.type_handlers.StringHandler)}


def settled_registry():
    """Orbax's standard type handlers, those of arrays, scalars and strings settling every read (see above).

    Each is a copy of the registered handler (its options kept) given the settling subclass of its class.
    """
    handlers = []
    for value_type in ocp.type_handlers.supported_types():
        handler = ocp.type_handlers.get_type_handler(value_type)
        settled = _SETTLED.get(type(handler))
        if settled is not None:
            handler = copy.copy(handler)
            handler.__class__ = settled
        handlers.append((value_type, handler))
    return ocp.type_handlers.create_type_handler_registry(*handlers)


def raise_failed_read(tree) -> None:
    """Raise the error of the first :class:`FailedRead` leaf of ``tree`` (in tree order), if any."""
    for leaf in jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, FailedRead)):
        if isinstance(leaf, FailedRead):
            raise leaf.error
