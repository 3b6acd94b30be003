"""The valence shells of tblite's xTB methods: electrons and orbitals per element, and the spin states they allow.

xTB treats only valence electrons, in a minimal basis of valence orbitals (s, p and for
most elements d shells: 1, 4 or 9 spatial orbitals per atom); the core electrons are in
no orbital, and the lanthanides La–Lu keep their 4f electrons in the core too (3 valence
electrons each). A molecule at total charge Q thus has

    n_val = Σ_i v(Z_i) − Q   electrons in   n_orb = Σ_i o(Z_i)   spatial orbitals,

and a state with u unpaired electrons has (n_val + u)/2 electrons of spin α and
(n_val − u)/2 of spin β. It exists only when

    u ≡ n_val (mod 2),   0 ≤ u ≤ n_val   and   (n_val + u)/2 ≤ n_orb, i.e. u ≤ 2 n_orb − n_val.

tblite 0.8 refuses only the wrong parity. Above n_val it labels the state u = n_val
(the same energy: water at uhf 8, 10, 12); above 2 n_orb − n_val it drops the α
electrons that find no orbital, so the labels are those of another charge state
(water, 8 valence electrons in 6 orbitals: uhf 6 has 7 electrons, uhf 8 has 6).

The tables hold what tblite 0.8.0 assigns to each element it supports (Z = 1–86): v is
the sum of the orbital occupations and o the number of orbitals of a single atom (an
ion where the neutral atom's SCF does not converge); ``tests/test_xtb_shells.py``
recomputes both. v is the same in GFN2-xTB, GFN1-xTB and IPEA1-xTB; o differs.
"""

from __future__ import annotations

from typing import Iterable, Optional

VALENCE_ELECTRONS = (
    0,
    1, 2,
    1, 2, 3, 4, 5, 6, 7, 8,
    1, 2, 3, 4, 5, 6, 7, 8,
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 2, 3, 4, 5, 6, 7, 8,
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 2, 3, 4, 5, 6, 7, 8,
    1, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11, 2, 3, 4, 5, 6, 7, 8,
)
"""Valence electrons v(Z) of the neutral atom in tblite's xTB methods, indexed by Z (1–86; one period a line)."""

_GFN2_ORBITALS = (
    0,
    1, 4,
    4, 4, 4, 4, 4, 4, 4, 9,
    4, 9, 9, 9, 9, 9, 9, 9,
    4, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 4, 9, 9, 9, 9, 9, 9,
    4, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 4, 9, 9, 9, 9, 9, 9,
    4, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 4, 4, 4, 4, 4, 9, 9,
)


def _changed(table: tuple, changes: dict) -> tuple:
    return tuple(changes.get(z, count) for z, count in enumerate(table))


_GFN1_ORBITALS = _changed(_GFN2_ORBITALS, {1: 2, 2: 1, 12: 4, 84: 9})

VALENCE_ORBITALS = {
    "GFN2-xTB": _GFN2_ORBITALS,
    "GFN1-xTB": _GFN1_ORBITALS,
    "IPEA1-xTB": _changed(_GFN1_ORBITALS, {5: 5, 6: 5, 7: 5, 8: 5, 9: 5}),
}
"""Method name (as tblite spells it) → valence orbitals o(Z) per element, indexed by Z (1–86)."""


def valence_electrons(atomic_numbers: Iterable[int]) -> Optional[int]:
    """Σ_i v(Z_i), the valence electrons of the neutral molecule; None when an element lies beyond Z = 86."""
    z = [int(value) for value in atomic_numbers]
    if not all(0 < value < len(VALENCE_ELECTRONS) for value in z):
        return None
    return sum(VALENCE_ELECTRONS[value] for value in z)


def valence_orbitals(atomic_numbers: Iterable[int], method: str) -> Optional[int]:
    """Σ_i o(Z_i), the spatial orbitals of ``method``; None for another method or an element beyond Z = 86."""
    table = VALENCE_ORBITALS.get(method)
    z = [int(value) for value in atomic_numbers]
    if table is None or not all(0 < value < len(table) for value in z):
        return None
    return sum(table[value] for value in z)
