"""Close contacts in MD frames: where a trajectory has left the region a model was trained on.

Two atoms nearer than :data:`~physnetjax.validation.MIN_DISTANCE_WARNING` (0.5 Å) are
closer than any chemical bond: no training set of molecules at chemical temperatures
holds such a contact, so the model extrapolates there, and nothing in a learned
potential need stop the atoms from falling further in (a molecule squeezed by its own
periodic images into a 4 Å cell does). Below
:data:`~physnetjax.validation.MIN_DISTANCE_ERROR` (0.1 Å) the atoms overlap and the
frame has no physical meaning. The MD driver (:mod:`physnetjax.md.driver`) checks
every saved frame with :func:`closest_contact`: it warns at the first close contact
(:class:`~physnetjax.errors.CloseContactWarning`),
stops at an overlap like at a blow-up, names the closest approach in the report, and
says in an energy-drift message that a smaller timestep will not help.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from physnetjax.validation import MIN_DISTANCE_ERROR, MIN_DISTANCE_WARNING, close_contacts


@dataclasses.dataclass(frozen=True)
class CloseContact:
    """The closest pair of atoms ``i`` ≤ ``j`` (``i == j``: an atom and its own periodic image) of a frame.

    ``distance`` in Å, ``step`` the MD step of the frame.
    """

    step: int
    i: int
    j: int
    distance: float

    @property
    def overlapping(self) -> bool:
        """Closer than :data:`~physnetjax.validation.MIN_DISTANCE_ERROR`: the frame has no physical meaning."""
        return self.distance < MIN_DISTANCE_ERROR

    def describe(self) -> str:
        """E.g. ``atoms 3-8 0.2364 Å apart at step 120 (below 0.5 Å, shorter than any bond)``."""
        pair = f"atoms {self.i}-{self.j}" + (" (periodic image)" if self.i == self.j else "")
        limit = MIN_DISTANCE_ERROR if self.overlapping else MIN_DISTANCE_WARNING
        return (f"{pair} {self.distance:.4g} Å apart at step {self.step} (below {limit:g} Å, "
                f"{'overlapping' if self.overlapping else 'shorter than any bond'})")


def closest_contact(positions, cell, pbc, step: int) -> Optional[CloseContact]:
    """The closest pair of a frame when nearer than :data:`~physnetjax.validation.MIN_DISTANCE_WARNING`, else None.

    Args:
      positions: (N, 3) Å, finite.
      cell: (3, 3) Å cell vectors as rows, or None for an isolated system.
      pbc: (3,) bool periodic directions.
      step: the frame's MD step (recorded in the result).
    """
    i, j, d = close_contacts(np.asarray(positions, np.float64), cell, pbc)
    if not len(d):
        return None
    return CloseContact(step=int(step), i=int(i[0]), j=int(j[0]), distance=float(d[0]))


def closer(first: Optional[CloseContact], second: Optional[CloseContact]) -> Optional[CloseContact]:
    """The nearer of two contacts (None: no contact); the earlier one on a tie."""
    if first is None or (second is not None and second.distance < first.distance):
        return second
    return first
