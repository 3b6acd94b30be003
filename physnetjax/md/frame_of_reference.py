"""The frame MD integrates in, and the user's frame that everything written is in.

Float32 positions far from the origin are coarse (1000 Å out one ulp is 6e-5 Å, and
each position update of v·dt ≈ 1e-3 Å loses up to half an ulp), so MD integrates
coordinates near the origin and moves them back, in float64, for everything it
writes:

    isolated:  r_user = r + c             c (3,) Å: the start centroid
    periodic:  r_user = r + m · h         m (n, 3) whole numbers: the lattice images
                                          that bring the start positions into the cell,
                                          h (3, 3) Å the cell (rows) of the frame written

Under a barostat the images stay and h is each frame's own cell, so r_user is the
image of the integrated atom in that frame's cell (positions scale with the cell).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from physnetjax.neighbors.periodic import lattice_images


@dataclasses.dataclass(frozen=True)
class FrameOfReference:
    """origin: (3,) Å, c (zeros for a periodic system); images: (n, 3) m of a periodic system, else None."""

    origin: np.ndarray
    images: Optional[np.ndarray] = None

    @classmethod
    def isolated(cls, origin) -> "FrameOfReference":
        return cls(np.asarray(origin, np.float64))

    @classmethod
    def periodic(cls, positions, cell) -> "FrameOfReference":
        """The images m that bring ``positions`` (n, 3) Å into ``cell`` (3, 3) Å."""
        return cls(np.zeros(3), lattice_images(positions, cell))

    def _shift(self, cell) -> np.ndarray:
        if self.images is None:
            return self.origin
        return self.images @ np.asarray(cell, np.float64)

    def to_integrated(self, positions, cell=None) -> np.ndarray:
        """r (Å, float64) of user positions (n, 3) Å in ``cell`` (periodic only)."""
        return np.asarray(positions, np.float64) - self._shift(cell)

    def to_user(self, positions, cell=None) -> np.ndarray:
        """r_user (Å, float64) of integrated positions (..., n, 3) Å; ``cell`` (..., 3, 3) Å, one per frame under a
        barostat (periodic only)."""
        return np.asarray(positions, np.float64) + self._shift(cell)
