"""Read labels stored under other names: a mapping from the PhysNet keys to a file's own.

Data files name their arrays after the code that wrote them: sGDML's MD17 files hold
``z`` for the atomic numbers, rMD17's ``coords``, ``nuclear_charges``, ``energies`` and
``forces``; extxyz files written for MACE carry ``REF_energy`` (``atoms.info``) and
``REF_forces`` (a per-atom column). A key mapping tells the loaders where each PhysNet
key's values are, as NequIP's ``key_mapping`` and MACE's ``--energy_key`` do::

    ["Z=z"]                                          # sGDML MD17
    ["R=coords", "Z=nuclear_charges", "E=energies", "F=forces"]   # rMD17
    ["E=REF_energy", "F=REF_forces"]                 # extxyz for MACE

Mappable keys (:data:`NPZ_KEYS`): in a ``.npz`` file R, Z, N, E, F, D, Q, S and Qa (the
file's key replaces the PhysNet one, which is then not read); in an ASE-readable file
(:data:`ASE_KEYS`) the labels E, F, D, Q and S, each looked up per frame among the
calculator results, ``atoms.info`` and ``atoms.arrays`` in that order (positions and
atomic numbers are the atoms' own). A mapped label replaces what the loader reads by
default (the calculator's ``energy`` for E, ``info['charge']`` for Q, ...). Units are
the loaders' options as before (``--energy-unit`` converts a mapped energy too).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

NPZ_KEYS = ("R", "Z", "N", "E", "F", "D", "Q", "S", "Qa")
"""PhysNet keys a mapping may point elsewhere in a ``.npz`` file."""

ASE_KEYS = ("E", "F", "D", "Q", "S")
"""PhysNet labels a mapping may point elsewhere in an ASE-readable file."""


def parse_key_mapping(entries: Optional[Sequence[str]]) -> dict[str, str]:
    """``["E=energies", "F=forces"]`` → ``{"E": "energies", "F": "forces"}`` (None or empty → ``{}``).

    Raises:
      ValueError: an entry that is not ``KEY=NAME``, a KEY not in :data:`NPZ_KEYS`, a KEY given twice, or one
        file name given for two keys.
    """
    mapping: dict[str, str] = {}
    for entry in entries or ():
        ours, sep, theirs = str(entry).partition("=")
        ours, theirs = ours.strip(), theirs.strip()
        if not sep or not ours or not theirs:
            raise ValueError(f"key mapping {entry!r}: give PHYSNET_KEY=FILE_KEY, e.g. E=energies or F=REF_forces")
        if ours not in NPZ_KEYS:
            raise ValueError(f"key mapping {entry!r}: {ours!r} is no PhysNet key; the keys are {', '.join(NPZ_KEYS)} "
                             "(positions, atomic numbers, atom counts, energy, forces, dipole, total charge, stress, "
                             "atomic charges)")
        if ours in mapping:
            raise ValueError(f"key mapping: {ours} is given twice ({ours}={mapping[ours]}, {entry})")
        if theirs in mapping.values():
            other = next(key for key, name in mapping.items() if name == theirs)
            raise ValueError(f"key mapping: {theirs!r} is given for both {other} and {ours}")
        mapping[ours] = theirs
    return mapping


def mapping_text(mapping: Mapping[str, str]) -> str:
    """``E=energies F=forces``: the mapping as it is written."""
    return " ".join(f"{ours}={theirs}" for ours, theirs in mapping.items())


def renamed_npz_keys(arrays: Mapping, mapping: Mapping[str, str]) -> tuple[dict, list[str]]:
    """The arrays of a ``.npz`` file under the PhysNet keys of ``mapping``, and the PhysNet keys the file also holds
    under their own name that the mapping replaces (not read, which the loader warns of). Every mapped file key
    must be in ``arrays`` (the loader checks it first, naming what is missing)."""
    replaced = [ours for ours, theirs in mapping.items() if ours in arrays and ours != theirs]
    renamed = {name: value for name, value in arrays.items() if name not in mapping and name not in mapping.values()}
    renamed.update({ours: arrays[theirs] for ours, theirs in mapping.items()})
    return renamed, replaced


def frame_value(atoms, results: Mapping, name: str):
    """The value stored under ``name`` in one ASE frame: its calculator result, else ``atoms.info``, else
    ``atoms.arrays``; None where the frame has none."""
    for store in (results, atoms.info, atoms.arrays):
        if name in store:
            return store[name]
    return None


def frame_names(frames) -> str:
    """``info: a, b; arrays: c; calculator results: d`` over ``frames`` (ASE Atoms): where a mapped name was
    looked for."""
    stores = {"info": set(), "arrays": set(), "calculator results": set()}
    for atoms in frames:
        stores["info"].update(atoms.info)
        stores["arrays"].update(atoms.arrays)
        if atoms.calc is not None:
            stores["calculator results"].update(atoms.calc.results)
    return "; ".join(f"{where}: {', '.join(sorted(names)) or 'none'}" for where, names in stores.items())
