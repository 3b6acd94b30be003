"""The interatomic distances a model was trained on, and the check of a structure against them.

A model is fitted where its training frames put atoms; nearer or farther apart it extrapolates, and
its energies and forces there are a guess however smooth they look. Over its training frames, within
the model cutoff r_c (the pairs the model sees), the trainer records

* per unordered element pair {Z_a, Z_b} (Z_a ≤ Z_b) the shortest distance between two such atoms,
  r_min(Z_a, Z_b) = min |r_i − r_j| over the pairs of those elements with |r_i − r_j| < r_c;
* per element Z the longest nearest-neighbour distance, r_nn,max(Z) = max over atoms i of element Z
  of min_j |r_i − r_j|; it is unbounded (∞) when an atom of Z had no neighbour within r_c;
* per element Z the most neighbours, n_max(Z) = max over atoms i of element Z of n_i, the number of
  atoms j (periodic images included) with |r_i − r_j| < r_c: the size of the sum message passing
  takes over i's neighbours.

Periodic frames count every image within r_c (minimum image and beyond; an atom and its own image are a
pair of its element with itself, and each image is one neighbour: an atom of a 2 Å cubic cell has 6
neighbours at 2 Å). A structure lies outside this domain where a pair is shorter than
(1 − :data:`DOMAIN_MARGIN`) r_min of its elements, an atom's nearest neighbour (∞ with none within
r_c) farther than (1 + :data:`DOMAIN_MARGIN`) r_nn,max of its element, or an atom has more neighbours
than n_max of its element by more than :data:`DOMAIN_MARGIN` of max(n_max, 1 / :data:`DOMAIN_MARGIN`),
i.e. n > n_max + max(1, 0.1 n_max): counts are whole numbers, and one neighbour more than a small n_max
is within the fluctuations of held-out frames (:data:`DOMAIN_MARGIN`). A compressed condensed phase
falls outside by its counts while its nearest neighbours can stay within the margin (fcc Cu with its
lattice scaled by 0.85: nearest neighbours of 2.17 Å, longer than the shortest of 800 K frames, but
78 neighbours within 5 Å where thermal cells had at most 48: the sum message passing takes over
them has 63 % more terms than any it was fitted on). An element pair never seen
within r_c in training is not judged (an element never trained on is, by the elements check), nor
are the counts of a record written before they were (no ``most_neighbours``).
How far it lies outside is its largest relative excursion, the largest of 1 − d / r_min over its
pairs, r_nn / r_nn,max − 1 and (n − n_max) / max(n_max, 1 / :data:`DOMAIN_MARGIN`) over its atoms
(n / n_max − 1 from 10 trained neighbours on; 0 inside; :meth:`DistanceDomain.excursion`, the
value of ``check``'s row ``inputs.trained_distances``).

Fewer neighbours than in training is not judged. The extreme, an atom alone (no neighbour within r_c),
is judged already by r_nn,max (r_nn = ∞), and so is an atom drifting away from the rest, as its
nearest neighbour recedes. Short of that, fewer neighbours at trained distances is what the ordinary
smaller inputs have (a smaller molecule of the trained elements, the fragments of a dissociation scan,
a surface atom of a trained bulk, a molecule of a trained cluster): a minimum count would warn on each
of them, while more neighbours than trained means an environment denser or larger than any training
frame held, whose sum over neighbours the model was never fitted on.

The record is stored in checkpoint metadata under :data:`TRAINED_DISTANCES_KEY`, JSON-friendly::

    {"cutoff": 5.0, "shortest": {"1-6": 0.952, "1-8": 0.888, ...},
     "longest_nearest_neighbour": {"1": 1.273, "6": 1.176, "8": 1.065},   # Å; null for ∞
     "most_neighbours": {"1": 8, "6": 8, "8": 8}}

and read by :class:`physnetjax.training_record.TrainingRecord`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterator, Optional

import numpy as np

from physnetjax.errors import PhysNetInputWarning, warn_caller
from physnetjax.validation import MAX_ATOMIC_NUMBER, SYMBOLS, close_contacts

TRAINED_DISTANCES_KEY = "trained_distances"
"""Checkpoint metadata key: the training frames' :class:`DistanceDomain` (:meth:`DistanceDomain.to_metadata`),
written by the trainer."""

DOMAIN_MARGIN = 0.1
"""Relative margin of the distance domain: a pair shorter than 0.9 r_min, or a nearest neighbour farther than
1.1 r_nn,max, warns.

Measured on ``ethanol_gfn2_500K.npz`` (1000 frames of 500 K GFN2-xTB MD), recorded on the training part of
50 random 80/10/10 splits and judged on the 200 held-out frames of each: the held-out frames reach 0.965 r_min
and 1.021 r_nn,max at worst (methanol, CO2 and the bundled 2000-frame ethanol set: 0.983–0.995 and
1.005–1.029; a record of only 5 of the bundled ethanol frames: 0.89 at worst, 0.06 % of the other frames
outside). So 0.1 keeps frames of the training distribution silent with three times the largest excursion
seen (a contact that only a few training frames hold can fall further outside: held-out frames of 100 DFT
frames of DNA base pairs reach 0.67 r_min of a rare H-O contact), while a geometry with its bonds stretched by 30 % (every ethanol frame scaled 1.3× about its centroid:
at least 1.13 r_nn,max in each) and a pair compressed to 0.8 r_min both warn.

Neighbour counts, measured alike (cutoffs 4 and 5 Å, 50 splits of each set): no held-out atom of the ethanol, methanol
and CO2 sets has more neighbours than n_max of its element; those of the DNA bases (100 frames) reach n_max + 1, the
largest excursion 0.100 (11 neighbours where 10 were trained, cytosine at 4 Å; thymine 13/12, A-T pair 18/17 and
24/23). One neighbour more than trained is thus within the spread of held-out frames of a small set, and it is more
than 10 % of an n_max below 10: counts are measured against max(n_max, 1 / DOMAIN_MARGIN), so that one neighbour more
never warns and two warn up to n_max = 19. EMT copper (2×2×2 fcc cells of 32 atoms, 200 frames each of 300 K and
800 K Langevin MD and of ±3 % strained, rattled cells; 20 splits at 5 Å): held-out atoms reach n_max (48, 48 and 54),
no frame outside; the lattice compressed to 0.85 (volume 0.61) has 78 neighbours per atom, excursion 0.44 against
all of them, where its nearest neighbours (2.17 Å) lie within the 800 K frames' shortest (2.08 Å)."""

_PAIR_CODES = MAX_ATOMIC_NUMBER + 1
"""Element pair {a, b} (a ≤ b) ↔ index a · :data:`_PAIR_CODES` + b of a flat table."""

_DISTANCES_PER_CHUNK = 2**20
"""Most pair distances of isolated frames computed at once (8 MiB per array of them)."""

_DENSE_ATOMS_MAX = 256
"""Widest frames (padded atom count) whose pairs are all computed; wider ones go through a cell list (O(n))."""


class TrainingDistancesWarning(PhysNetInputWarning):
    """A structure's interatomic distances lie outside those of the model's training frames: the model extrapolates.

    Its own class so that a caller that leaves the training data on purpose (the active-learning loop's exploration
    MD, which labels such frames) can leave it out by category, not by the words of the message.
    """


def outside_message(text: str, where: str = "") -> str:
    """The warning for one structure outside the domain, from :meth:`DistanceDomain.excursion`'s description."""
    return (f"{where + ': ' if where else ''}{text}: the model extrapolates here (interatomic distances more than "
            f"{DOMAIN_MARGIN:.0%} outside those of its training data)")


def _symbol(z: int) -> str:
    return SYMBOLS[int(z)] if 0 < int(z) < len(SYMBOLS) else f"Z{int(z)}"


def frame_pairs(atomic_numbers, positions, num_atoms, cutoff: float, cells=None) -> Iterator[tuple]:
    """The atom pairs of each frame closer than ``cutoff``, in chunks of frames.

    Isolated frames (an all-zero cell) of at most :data:`_DENSE_ATOMS_MAX` atoms are taken many at a time, all
    pairs i < j at once; each periodic frame (a non-zero cell row is a periodic direction), and each frame of a
    wider set, through :func:`physnetjax.validation.close_contacts` (cell list), with every periodic image within
    the cutoff: pairs i ≤ j, i = j an atom and its own image.

    Args:
      atomic_numbers: (M, N_max) Z, 0 for padding. positions: (M, N_max, 3) Å. num_atoms: (M,) real atoms.
      cutoff: Å. cells: (M, 3, 3) Å, cell vectors as rows (None: every frame isolated).

    Yields:
      (frames (k,) indices of the chunk's frames, f (P,) index into ``frames``, i (P,), j (P,) atom indices,
      d (P,) distances in Å, float64); every frame is in exactly one chunk, also one without pairs.
    """
    z = np.asarray(atomic_numbers)
    r = np.asarray(positions, np.float64)
    n = np.asarray(num_atoms)
    cells = np.zeros((len(z), 3, 3)) if cells is None else np.asarray(cells, np.float64).reshape(-1, 3, 3)
    listed = cells.any(axis=(1, 2)) | (z.shape[1] > _DENSE_ATOMS_MAX)
    upper_i, upper_j = np.triu_indices(z.shape[1], 1)
    chunk = max(1, _DISTANCES_PER_CHUNK // max(len(upper_i), 1))
    dense = np.nonzero(~listed)[0]
    for start in range(0, len(dense), chunk):
        frames = dense[start:start + chunk]
        d = np.linalg.norm(r[frames][:, upper_i] - r[frames][:, upper_j], axis=-1)
        f, p = np.nonzero((upper_j[None, :] < n[frames][:, None]) & (d < cutoff))
        yield frames, f, upper_i[p], upper_j[p], d[f, p]
    for k in np.nonzero(listed)[0]:
        i, j, d = close_contacts(r[k, :n[k]], cells[k], cells[k].any(axis=1), cutoff)
        yield np.array([k]), np.zeros(len(d), np.int64), i, j, d


def unique_pairs(i, j, shifts) -> np.ndarray:
    """(P,) bool: each unordered pair of a full neighbor list once, as :meth:`DistanceDomain.pair_excursion` takes them.

    A full list holds i → j at shift S and j → i at −S; this keeps i < j, and of an atom's pairs with its own periodic
    images (i = j) the one whose shift has a positive first non-zero component.

    Args:
      i, j: (P,) atom indices. shifts: (P, 3) the image shifts (Å or cell units; zero within the cell).
    """
    i, j, shifts = np.asarray(i), np.asarray(j), np.asarray(shifts).reshape(-1, 3)
    first_nonzero = np.take_along_axis(shifts, np.argmax(shifts != 0, axis=1)[:, None], axis=1)[:, 0]
    return (i < j) | ((i == j) & (first_nonzero > 0))


def _nearest(shape, f, i, j, d) -> np.ndarray:
    """(k, N_max) distance of each atom to its nearest neighbour among the pairs (∞ where it has none)."""
    nearest = np.full(shape, np.inf)
    np.minimum.at(nearest, (f, i), d)
    np.minimum.at(nearest, (f, j), d)
    return nearest


def _neighbour_counts(shape, f, i, j) -> np.ndarray:
    """(k, N_max) int: each atom's neighbours among the pairs, n_i = #{pairs with i} + #{pairs with j} (a pair of an
    atom with its own image counts twice: the images at +S and −S are two neighbours)."""
    row, size = np.asarray(f, np.int64) * shape[1], shape[0] * shape[1]
    return (np.bincount(row + np.asarray(i, np.int64), minlength=size)
            + np.bincount(row + np.asarray(j, np.int64), minlength=size)).reshape(shape)


@dataclasses.dataclass(frozen=True)
class DistanceDomain:
    """The interatomic distances of a model's training frames (module docstring).

    Attributes:
      cutoff: r_c in Å, the reach within which pairs and nearest neighbours were taken.
      shortest: {(Z_a, Z_b) with Z_a ≤ Z_b: r_min in Å}, the element pairs seen within r_c.
      longest_nearest: {Z: r_nn,max in Å (∞: some atom of Z had no neighbour within r_c)}.
      most_neighbours: {Z: n_max, the most neighbours within r_c of an atom of Z}; empty for a record written before
        the counts were (they are not judged).
    """

    cutoff: float
    shortest: dict
    longest_nearest: dict
    most_neighbours: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def of_frames(cls, atomic_numbers, positions, num_atoms, cutoff: float, cells=None) -> "DistanceDomain":
        """The domain of frames (arguments as :func:`frame_pairs`), vectorised over frames."""
        z = np.asarray(atomic_numbers)
        shortest = np.full(_PAIR_CODES**2, np.inf)
        longest = np.full(_PAIR_CODES, -np.inf)
        most = np.full(_PAIR_CODES, -1)
        for frames, f, i, j, d in frame_pairs(z, positions, num_atoms, cutoff, cells):
            zf = z[frames]
            a, b = zf[f, i].astype(np.int64), zf[f, j].astype(np.int64)
            np.minimum.at(shortest, np.minimum(a, b) * _PAIR_CODES + np.maximum(a, b), d)
            real = np.arange(z.shape[1])[None, :] < np.asarray(num_atoms)[frames][:, None]
            np.maximum.at(longest, zf[real], _nearest(zf.shape, f, i, j, d)[real])
            np.maximum.at(most, zf[real], _neighbour_counts(zf.shape, f, i, j)[real])
        return cls(cutoff=float(cutoff),
                   shortest={(int(c) // _PAIR_CODES, int(c) % _PAIR_CODES): float(shortest[c])
                             for c in np.nonzero(np.isfinite(shortest))[0]},
                   longest_nearest={int(e): float(longest[e]) for e in np.nonzero(longest > -np.inf)[0]},
                   most_neighbours={int(e): int(most[e]) for e in np.nonzero(most >= 0)[0]})

    def to_metadata(self) -> dict:
        """JSON-friendly form (module docstring): pairs as ``"a-b"``, elements as ``"Z"``, ∞ as None."""
        return {"cutoff": self.cutoff,
                "shortest": {f"{a}-{b}": d for (a, b), d in sorted(self.shortest.items())},
                "longest_nearest_neighbour": {str(z): (d if np.isfinite(d) else None)
                                              for z, d in sorted(self.longest_nearest.items())},
                "most_neighbours": {str(z): n for z, n in sorted(self.most_neighbours.items())}}

    @classmethod
    def from_metadata(cls, value) -> Optional["DistanceDomain"]:
        """The domain :meth:`to_metadata` wrote, also one written before ``most_neighbours`` was (its counts
        unknown: empty); None for anything else (no record: nothing is judged)."""
        if not isinstance(value, dict) or not {"cutoff", "shortest", "longest_nearest_neighbour"} <= set(value):
            return None
        return cls(cutoff=float(value["cutoff"]),
                   shortest={tuple(sorted(int(z) for z in pair.split("-"))): float(d)
                             for pair, d in value["shortest"].items()},
                   longest_nearest={int(z): (np.inf if d is None else float(d))
                                    for z, d in value["longest_nearest_neighbour"].items()},
                   most_neighbours={int(z): int(n) for z, n in value.get("most_neighbours", {}).items()})

    @classmethod
    def intersection(cls, domains) -> "DistanceDomain":
        """Where every one of ``domains`` was trained: per element pair the largest r_min, per element the
        smallest r_nn,max and the smallest n_max, the smallest cutoff; pairs and elements absent from any of them
        left out (so the counts of all elements, where one of ``domains`` was recorded without counts)."""
        domains = list(domains)
        pairs = set.intersection(*(set(d.shortest) for d in domains))
        elements = set.intersection(*(set(d.longest_nearest) for d in domains))
        counted = set.intersection(*(set(d.most_neighbours) for d in domains))
        return cls(cutoff=min(d.cutoff for d in domains),
                   shortest={p: max(d.shortest[p] for d in domains) for p in sorted(pairs)},
                   longest_nearest={z: min(d.longest_nearest[z] for d in domains) for z in sorted(elements)},
                   most_neighbours={z: min(d.most_neighbours[z] for d in domains) for z in sorted(counted)})

    @functools.cached_property
    def _recorded(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(r_min per pair code, 0 for a pair never seen; r_nn,max per Z, ∞ for an element never seen, Å; n_max per
        Z and the count it is measured against, max(n_max, 1 / DOMAIN_MARGIN), 0 and ∞ for an element not counted)."""
        shortest = np.zeros(_PAIR_CODES**2)
        for (a, b), d in self.shortest.items():
            shortest[a * _PAIR_CODES + b] = d
        longest = np.full(_PAIR_CODES, np.inf)
        for z, d in self.longest_nearest.items():
            longest[z] = d
        most, scale = np.zeros(_PAIR_CODES), np.full(_PAIR_CODES, np.inf)
        for z, n in self.most_neighbours.items():
            most[z], scale[z] = n, max(n, 1.0 / DOMAIN_MARGIN)
        return shortest, longest, most, scale

    def _crowding(self, z, counts) -> np.ndarray:
        """Relative excess of neighbours, (n − n_max(Z)) / max(n_max(Z), 1 / DOMAIN_MARGIN), of atoms of elements z
        (any shape) with ``counts`` neighbours within r_c (same shape); 0 for an element not counted. Above
        DOMAIN_MARGIN: more neighbours than the training data had, by the margin and by more than one."""
        _, _, most, scale = self._recorded
        return (counts - most[z]) / scale[z]

    def outside(self, atomic_numbers, positions, num_atoms, cells=None) -> tuple[np.ndarray, np.ndarray, Optional[str]]:
        """Which frames lie outside the domain, how far, and what the first of them holds.

        Args: as :func:`frame_pairs` (the cutoff is the domain's).

        Returns:
          ((M,) bool: a pair shorter, a nearest neighbour farther or an atom with more neighbours than the domain
          allows, by the margin; (M,) each frame's largest relative excursion beyond the record: the largest of
          1 − d / r_min over its pairs, r_nn / r_nn,max − 1 and (n − n_max) / max(n_max, 1 / DOMAIN_MARGIN) over its
          atoms, 0 where none is positive (an atom with no neighbour within r_c counted at r_c, so a lower bound
          there; pairs and elements never seen, and counts never recorded, not judged); for the first flagged frame,
          its worst pair, worst distant atom and worst crowded atom in words, or None when there is none).
        """
        z = np.asarray(atomic_numbers)
        flagged = np.zeros(len(z), bool)
        excursion = np.zeros(len(z))
        first = None
        for frames, f, i, j, d in frame_pairs(z, positions, num_atoms, self.cutoff, cells):
            hit, beyond, text = self._judged(z[frames], np.asarray(num_atoms)[frames], f, i, j, d)
            flagged[frames], excursion[frames] = hit, beyond
            if text is not None and (first is None or frames[hit][0] < first[0]):
                first = (int(frames[hit][0]), text)
        return flagged, excursion, None if first is None else first[1]

    def _judged(self, z, num_atoms, f, i, j, d) -> tuple[np.ndarray, np.ndarray, Optional[str]]:
        """:meth:`outside` of k frames given their pairs: z (k, N_max) Z, num_atoms (k,), and the pairs closer than
        the cutoff, each unordered pair once (f (P,) frame, i (P,) ≤ j (P,) atoms, i = j an atom and its own image,
        d (P,) Å) → (flagged (k,), excursion (k,), the first flagged frame's worst pair and atoms in words or None)."""
        shortest, longest, _, _ = self._recorded
        lowest, highest = (1.0 - DOMAIN_MARGIN) * shortest, (1.0 + DOMAIN_MARGIN) * longest
        z = z.astype(np.int64)
        a, b = z[f, i], z[f, j]
        pair = np.minimum(a, b) * _PAIR_CODES + np.maximum(a, b)
        short = d < lowest[pair]
        real = np.arange(z.shape[1])[None, :] < np.asarray(num_atoms)[:, None]
        nearest = _nearest(z.shape, f, i, j, d)
        far = real & (nearest > highest[z])
        counts = _neighbour_counts(z.shape, f, i, j)
        crowding = np.where(real, self._crowding(z, counts), 0.0)
        crowded = crowding > DOMAIN_MARGIN
        hit = np.zeros(len(z), bool)
        hit[f[short]] = True
        hit |= far.any(axis=1) | crowded.any(axis=1)
        beyond = np.maximum(np.where(real, np.minimum(nearest, self.cutoff) / longest[z] - 1.0, 0.0),
                            crowding).max(axis=1)
        with np.errstate(divide="ignore"):
            np.maximum.at(beyond, f, 1.0 - d / shortest[pair])
        text = None
        if hit.any():
            k = int(np.argmax(hit))
            mine = short & (f == k)
            text = self._described(z[k], i[mine], j[mine], d[mine], nearest[k], far[k], counts[k], crowding[k],
                                   crowded[k])
        return hit, np.maximum(beyond, 0.0), text

    def _described(self, z, i, j, d, nearest, far, counts, crowding, crowded) -> str:
        """The worst pair among the short ones (i, j, d), the worst of the ``far`` atoms and the worst of the
        ``crowded`` ones (by their ``crowding``, with their neighbour ``counts``) of one frame."""
        parts = []
        if len(d):
            pairs = [tuple(sorted((int(z[a]), int(z[b])))) for a, b in zip(i, j)]
            ratios = d / np.array([self.shortest[p] for p in pairs])
            w = int(np.argmin(ratios))
            a, b = int(i[w]), int(j[w])
            who = (f"atom {a} ({_symbol(z[a])}) is {d[w]:.3g} Å from its own periodic image" if a == b else
                   f"atoms {a} ({_symbol(z[a])}) and {b} ({_symbol(z[b])}) are {d[w]:.3g} Å apart")
            more = f" (and {len(d) - 1} more such pair(s))" if len(d) > 1 else ""
            parts.append(f"{who}; the training data's shortest {_symbol(z[a])}-{_symbol(z[b])} distance was "
                         f"{self.shortest[pairs[w]]:.3g} Å{more}")
        atoms = np.nonzero(far)[0]
        if len(atoms):
            w = int(atoms[np.argmax(nearest[atoms] / np.array([self.longest_nearest[int(z[a])] for a in atoms]))])
            symbol = _symbol(z[w])
            who = (f"atom {w} ({symbol}) has no neighbour within the cutoff {self.cutoff:g} Å"
                   if np.isinf(nearest[w]) else f"atom {w} ({symbol}) has its nearest neighbour {nearest[w]:.3g} Å "
                                               "away")
            more = f" (and {len(atoms) - 1} more such atom(s))" if len(atoms) > 1 else ""
            parts.append(f"{who}; the training data's longest nearest-neighbour distance of {symbol} was "
                         f"{self.longest_nearest[int(z[w])]:.3g} Å{more}")
        atoms = np.nonzero(crowded)[0]
        if len(atoms):
            w = int(atoms[np.argmax(crowding[atoms])])
            symbol = _symbol(z[w])
            more = f" (and {len(atoms) - 1} more such atom(s))" if len(atoms) > 1 else ""
            parts.append(f"atom {w} ({symbol}) has {int(counts[w])} neighbours within the cutoff {self.cutoff:g} Å; "
                         f"the training data's most neighbours of {symbol} was {self.most_neighbours[int(z[w])]}{more}")
        return "; ".join(parts)

    def excursion(self, atomic_numbers, positions, cell=None, pbc=None) -> tuple[float, Optional[str]]:
        """How far one structure lies outside the domain: (its largest relative excursion beyond the recorded
        distances and neighbour counts, as :meth:`outside` measures it, 0 inside them; its worst pair and worst atoms
        in words where it lies outside by more than the margin, else None).

        Args:
          atomic_numbers: (n,) Z. positions: (n, 3) Å (validated).
          cell, pbc: (3, 3) Å cell vectors as rows, (3,) bools (validated; None: isolated).
        """
        z = np.asarray(atomic_numbers).reshape(1, -1)
        cells = None
        if cell is not None and pbc is not None and np.any(pbc):
            cells = (np.asarray(cell, np.float64) * np.asarray(pbc, bool).reshape(3, 1))[None]
        _, excursion, text = self.outside(z, np.asarray(positions).reshape(1, -1, 3), [z.shape[1]], cells)
        return float(excursion[0]), text

    def pair_excursion(self, atomic_numbers, i, j, distances) -> tuple[float, Optional[str]]:
        """:meth:`excursion` of one structure whose pairs were already found (by a neighbor list of at least the
        domain's cutoff; pairs at or beyond it are left out).

        Args:
          atomic_numbers: (n,) Z. i, j: (P,) atom indices, each unordered pair at most once (i = j: an atom and one
            of its periodic images, each image pair once). distances: (P,) Å.
        """
        z = np.asarray(atomic_numbers).reshape(1, -1)
        d = np.asarray(distances, np.float64)
        keep = d < self.cutoff
        _, excursion, text = self._judged(z, np.array([z.shape[1]]), np.zeros(int(keep.sum()), np.int64),
                                          np.asarray(i)[keep], np.asarray(j)[keep], d[keep])
        return float(excursion[0]), text

    def holds_neighbors(self, atomic_numbers, i, j, distances) -> bool:
        """Whether one structure lies inside the domain, by the margin (:meth:`pair_excursion` would give no
        description), from its full neighbor list: the quick test for a structure evaluated anyway (the calculator's).
        An atom's neighbours are its entries in the list, n_i = #{pairs i → j}: one bincount.

        Args:
          atomic_numbers: (n,) Z. i, j: (P,) atom indices of a full list of at least the domain's cutoff (every pair
            in both directions; i = j an atom and its periodic images). distances: (P,) Å.
        """
        z = np.asarray(atomic_numbers).astype(np.int64).reshape(-1)
        i, d = np.asarray(i), np.asarray(distances, np.float64)
        shortest, longest, _, _ = self._recorded
        keep = d < self.cutoff
        i, d, a, b = i[keep], d[keep], z[i[keep]], z[np.asarray(j)[keep]]
        if (d < (1.0 - DOMAIN_MARGIN) * shortest[np.minimum(a, b) * _PAIR_CODES + np.maximum(a, b)]).any():
            return False
        if (self._crowding(z, np.bincount(i, minlength=len(z))) > DOMAIN_MARGIN).any():
            return False
        nearest = np.full(len(z), np.inf)
        np.minimum.at(nearest, i, d)
        return not (nearest > (1.0 + DOMAIN_MARGIN) * longest[z]).any()

    def check_structure(self, atomic_numbers, positions, cell=None, pbc=None, where: str = "") -> bool:
        """Warn (:class:`TrainingDistancesWarning`) when one structure lies outside the domain; whether it did.

        Args: as :meth:`excursion`; where: prefix of the message.
        """
        _, text = self.excursion(atomic_numbers, positions, cell, pbc)
        if text is not None:
            warn_caller(outside_message(text, where), TrainingDistancesWarning)
        return text is not None

    def check_frames(self, atomic_numbers, positions, num_atoms, cells=None, where: str = "") -> None:
        """Warn once, with their count, when frames (arguments as :func:`frame_pairs`) lie outside the domain."""
        flagged, _, text = self.outside(atomic_numbers, positions, num_atoms, cells)
        if flagged.any():
            first = int(np.argmax(flagged))
            warn_caller(f"{where + ': ' if where else ''}{int(flagged.sum())} of {len(flagged)} frames (first "
                        f"frame {first}: {text}) hold interatomic distances more than {DOMAIN_MARGIN:.0%} "
                        "outside those of this model's training data; the model extrapolates there",
                        TrainingDistancesWarning)
