"""Conversions between MD frames and ASE ``Atoms``, and trajectory writing.

ASE measures time in Å·√(amu/eV); with C = 1 amu·Å²/fs² in eV
(:data:`physnetjax.units.AMU_A2_PER_FS2_IN_EV`) that unit is √C fs ≈ 10.18 fs, so a
momentum p in amu·Å/fs is p·√C in ASE units.

Frames written by :class:`TrajectoryWriter` carry the potential energy and forces
(single-point calculator) and the momenta, so ``ase.io.read`` gives back
``get_potential_energy()``, ``get_forces()`` and ``get_kinetic_energy()``; their
``info`` holds ``step``, ``time_fs``, ``temperature_K`` and ``conserved_eV`` (and, for a periodic
cell, ``pressure_bar`` and ``volume_A3``).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import ase
import ase.io
import numpy as np
from ase.calculators.singlepoint import SinglePointCalculator

from physnetjax.errors import FULL_DISK_ERRNOS, PhysNetInputError, write_failure
from physnetjax.jsonlines import cut_back
from physnetjax.units import ASE_TIME_UNIT_FS

TRAJECTORY_FORMATS = {".xyz": "extxyz", ".extxyz": "extxyz", ".traj": "traj"}


def momenta_to_ase(momenta) -> np.ndarray:
    """amu·Å/fs → ASE momentum units (amu·Å per ASE time unit)."""
    return np.asarray(momenta, dtype=np.float64) * ASE_TIME_UNIT_FS


def momenta_from_ase(momenta) -> np.ndarray:
    """ASE momentum units → amu·Å/fs."""
    return np.asarray(momenta, dtype=np.float64) / ASE_TIME_UNIT_FS


def frame_atoms(template: ase.Atoms, positions, momenta, energy: float, forces, info: dict,
                energies=None) -> ase.Atoms:
    """A copy of ``template`` at ``positions`` (Å) with momenta (amu·Å/fs), energy (eV), forces (eV/Å), the per-atom
    ``energies`` (eV) if given, and the total charge ``template.info["charge"]`` (e) if it has one: a frame read back
    is the ion the energy was computed for."""
    atoms = ase.Atoms(numbers=template.numbers, positions=np.asarray(positions, np.float64),
                      cell=template.cell, pbc=template.pbc, masses=template.get_masses())
    atoms.set_momenta(momenta_to_ase(momenta))
    results = {} if energies is None else {"energies": np.asarray(energies, np.float64)}
    atoms.calc = SinglePointCalculator(atoms, energy=float(energy), forces=np.asarray(forces, np.float64), **results)
    if "charge" in template.info:
        atoms.info["charge"] = template.info["charge"]
    atoms.info.update(info)
    return atoms


def trajectory_format(path) -> str:
    """ASE format name for ``path`` (``.xyz``/``.extxyz`` → extxyz, ``.traj`` → traj)."""
    suffix = Path(path).suffix.lower()
    if suffix not in TRAJECTORY_FORMATS:
        raise ValueError(
            f"trajectory file must end in one of {sorted(TRAJECTORY_FORMATS)}, received {str(path)!r}"
        )
    return TRAJECTORY_FORMATS[suffix]


def trajectory_until(path, last_step: int) -> tuple[list, int]:
    """The frames of ``path`` whose ``info["step"]`` is at most ``last_step``, and how many later ones it holds.

    A run killed after its last MD checkpoint has written frames beyond it; a
    restart from that checkpoint keeps only these (:func:`replace_frames`), so the
    trajectory stays monotonic without duplicated steps. A missing or empty file
    gives no frames. The file is only read, so that a restart can check it before
    anything is compiled and change it once every check has passed.

    Raises:
      PhysNetInputError: naming the file, when ASE cannot read it (a damaged frame), or when the last frame it keeps
        is before ``last_step`` (a file cut, restored from an older copy or of another run: appending to it would
        leave a gap of steps).
    """
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return [], 0
    fmt = trajectory_format(path)
    try:
        frames = ase.io.read(path, index=":", format=fmt)
    except Exception as error:  # ASE reports a damaged file by many types (XYZError, ValueError, IndexError, ...)
        raise PhysNetInputError(
            f"{path}: cannot read the trajectory the restart continues ({type(error).__name__}: {error}); the file "
            "is damaged (a run killed while writing it, or edited): remove its damaged last frame, or move it away "
            "to start a new trajectory") from error
    keep = [frame for frame in frames if int(frame.info.get("step", -1)) <= last_step]
    if keep and "step" in keep[-1].info and int(keep[-1].info["step"]) < last_step:
        raise PhysNetInputError(
            f"{path}: its last frame is step {int(keep[-1].info['step'])} but the restart is at step {last_step}: "
            "the frames between are missing (the file was cut, restored from an older copy, or is another run's), "
            "and the restart would append after a gap; restore the trajectory the checkpoint's run wrote, or move "
            "it away to start a new trajectory")
    return keep, len(frames) - len(keep)


def replace_frames(path, frames: list) -> None:
    """Rewrite the trajectory ``path`` (of :func:`trajectory_format`) with ``frames``, atomically."""
    path = Path(path)
    fmt = trajectory_format(path)
    tmp = path.with_name(f".{path.name}.truncating{path.suffix}")
    if frames:
        ase.io.write(tmp, frames, format=fmt)
    else:
        tmp.write_text("")
    os.replace(tmp, path)


class TrajectoryWriter:
    """Append frames to an extxyz or ASE .traj file (the file is created anew, or appended with ``append``)."""

    def __init__(self, path, append: bool = False):
        self.path = Path(path)
        self.format = trajectory_format(path)
        self._failed = False
        if self.format == "traj":
            from ase.io.trajectory import Trajectory

            self._traj = Trajectory(str(self.path), "a" if append else "w")
        else:
            self._traj = None
            if not append:
                self.path.write_text("")

    def write(self, atoms: ase.Atoms) -> None:
        """Append the frame ``atoms``.

        Raises:
          OutputWriteError: the file system refused the write (disk full, ...); an extxyz file is cut back to the
            frames before this one (each complete), and the writer takes no further frame.
        """
        if self._failed:
            raise RuntimeError(f"{self.path}: a write failed before; no further frame is written")
        size = self.path.stat().st_size if self.path.exists() else 0
        try:
            if self._traj is not None:
                self._traj.write(atoms)
            else:
                ase.io.write(self.path, atoms, format="extxyz", append=True)
        except OSError as error:
            if error.errno not in FULL_DISK_ERRNOS and error.errno != errno.EIO:
                raise
            self._failed = True
            step = atoms.info.get("step")
            frame = "this frame" if step is None else f"the frame of step {step}"
            if self._traj is None:
                cut_back(self.path, size)
                kept = f"it holds the frames before {frame}, each complete"
            else:  # a .traj file counts a frame only once it is written whole
                kept = f"it holds the frames before {frame}; {frame} may be missing or damaged at its end"
            raise write_failure(self.path, error, kept) from error

    def close(self) -> None:
        if self._traj is not None:
            try:
                self._traj.close()
            except OSError:
                if not self._failed:  # after a failed write the error was raised already
                    raise
