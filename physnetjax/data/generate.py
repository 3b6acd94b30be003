"""Label a molecule's thermal configurations with GFN2-xTB: ``python -m physnetjax.data.generate``.

Samples configurations with the same GFN2-xTB calculator (``tblite``, optional extra
``physnetjax[xtb]``) that labels them, in one of two ways (``--sampling``):

* ``md`` (default): Langevin molecular dynamics at ``--temperature``;
* ``normal-modes``: the structure is relaxed (ASE ``BFGS`` to max |F| ≤ 1e-4 eV/Å),
  its Hessian taken by central differences of the forces (δ = 0.005 Å, 6N + 1
  single points) and frames drawn from the classical harmonic Boltzmann distribution
  at ``--temperature`` (:mod:`physnetjax.data.normal_modes`): dense sampling of the
  neighbourhood of the minimum, which decides harmonic frequencies. The minimum
  itself is not among the frames.

and writes a PhysNet-style ``.npz``:

* ``R`` (M, n, 3) float32 Å, ``F`` (M, n, 3) float32 eV/Å, ``D`` (M, 3) float32 e·Å
  (about the coordinate origin), ``Qa`` (M, n) float32 Mulliken charges in e;
* ``E`` (M,) float64 eV — absolute energies are ~10² eV, where a float32 ulp is
  ~3e-5 eV, so they are kept in float64 and shifted before training;
* ``Z`` (M, n) int8, ``N`` (M,) int16, ``Q`` (M,) float32 total charge in e;
* ``config_type`` (M,) text, each frame's kind: the sampling and its temperature, e.g. ``md_500K``
  (:func:`sampled_config_type`), by which ``python -m physnetjax.eval`` and the trainer's final report break
  their errors down when sets of several samplings or temperatures are trained on together;
* metadata scalars ``method``, ``uhf`` (number of unpaired electrons, the spin
  multiplicity minus one), ``sampling``, ``temperature_K``, ``timestep_fs``,
  ``friction_per_fs``, ``stride``, ``equilibration_steps``, ``seed``, ``frames_requested``
  (M, but in a partial set), ``source``, ``tblite_version`` (the MD settings are unused by
  normal-mode sampling).

The command line shows its progress on stderr (:mod:`physnetjax.data.generate_progress`;
``--no-progress`` for none). After Ctrl-C or SIGTERM it writes the frames labelled so far
to ``--out`` (atomically): a partial set of K < ``frames_requested`` frames, exit 130 or 143;
so it does, with exit 2, when an xTB calculation fails after K ≥ 1 frames were labelled (an SCF
that does not converge at a hot or distorted geometry).
A partial set also holds the sampler's state after its last frame (:data:`RESUME_KEYS`: MD
positions, momenta and random-generator state; for normal modes the minimum and its
Hessian), so the same command with ``--resume`` continues it: the frames after K are those
the uninterrupted run would have sampled from that state (an xTB SCF restarted from scratch
agrees with a continued one to its convergence, so an MD trajectory then drifts apart as any
chaotic trajectory does; normal-mode samples are the same draws). The complete set holds
no sampler state.
tblite runs ``--threads`` OpenMP threads, by default ``OMP_NUM_THREADS`` where set, else one
(:func:`openmp_threads`).

xTB's electron count, that of the valence shells n_val = Σ v(Z) − charge, fixes the parity
of ``uhf``: an even count defaults to a closed shell (``uhf`` 0), an odd one needs ``uhf``
stated (``--uhf 1`` for a doublet), as with the xtb program's ``--uhf``. The valence
orbitals bound it, ``uhf`` ≤ min(n_val, 2 n_orb − n_val) (:mod:`physnetjax.data.xtb_shells`;
water: 8 valence electrons in 6 orbitals, so ``uhf`` ≤ 4); a larger one is refused, where
tblite would label another state.

The bundled ``physnetjax/data/ethanol_gfn2.npz`` was made with::

    python -m physnetjax.data.generate --frames 2000 --out physnetjax/data/ethanol_gfn2.npz

Frames are ``stride`` MD steps apart (default 20 × 0.5 fs = 10 fs) after
``equilibration_steps`` discarded steps, so successive frames are only weakly
correlated.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import logging
import math
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

import numpy as np

from physnetjax.cli_config import OptionUse, chosen_options, refuse_unused_options
from physnetjax.cli_errors import cli_main, configure_logging, exit_process
from physnetjax.cli_help import ArgumentParser, HelpFormatter, describe
from physnetjax.data.dataset import CONFIG_TYPE_KEY
from physnetjax.data.generate_progress import GenerateProgress
from physnetjax.data.normal_modes import normal_mode_displacements
from physnetjax.data.xtb_shells import VALENCE_ORBITALS, valence_electrons, valence_orbitals
from physnetjax.device_memory import check_host_fits, gigabytes
from physnetjax.errors import OutOfMemoryError, OutputPathError, PhysNetInputError, displayed
from physnetjax.npz_file import NpzReadError, read_npz, write_npz
from physnetjax.validation import (MAX_ABS_COORDINATE, MAX_ATOMIC_NUMBER, MAX_TEMPERATURE_K, MAX_TEMPERATURE_REASON,
                                   MIN_DISTANCE_ERROR, SYMBOLS, atoms_total_charge, check_atomic_numbers, check_length_unit,
                                   check_output_path, check_range, element, overlapping_frame, validate_structure)

logger = logging.getLogger(__name__)


def _structure(spec: str):
    """An isolated molecule (``ase.Atoms``) from a file path or an ``ase.build.molecule`` name (e.g. CH3CH2OH).

    A file is read as ``python -m physnetjax.md`` reads a geometry (:func:`physnetjax.structure_file.read_last_frame`:
    its last frame; a file of several frames warns; PhysNetInputError for one ASE cannot read). A periodic structure
    raises ValueError: xTB would label the periodic system, which the dataset (no cell) would train as an isolated
    molecule.
    """
    import ase.build

    from physnetjax.structure_file import read_last_frame

    if Path(spec).exists():
        atoms = read_last_frame(spec, spec, "sampling starts from")
        if atoms.pbc.any():
            raise ValueError(f"{spec} is periodic (pbc {atoms.pbc.tolist()}): this tool samples and labels isolated "
                             "molecules, and the dataset keeps no cell, so xTB's periodic labels would be trained as "
                             "those of an isolated molecule; give the molecule without a cell (pbc False)")
        return atoms
    try:
        return ase.build.molecule(spec)
    except KeyError:
        raise ValueError(f"{spec!r} is neither an existing structure file nor an ase.build.molecule name") from None


XTB_MAX_ATOMIC_NUMBER = 86
"""Largest element GFN2-xTB has parameters for (Rn)."""

METHODS = tuple(VALENCE_ORBITALS)
"""The xTB methods tblite has, as it spells them (GFN2-xTB, GFN1-xTB, IPEA1-xTB); :func:`xtb_method` takes them in
any case."""

SAMPLINGS = ("md", "normal-modes")
OPTION_USES = [OptionUse(dest, "sampling", ("md",), note="Langevin MD only")
               for dest in ("stride", "timestep", "friction", "equilibration_steps")]
"""Options of the MD sampling: with ``--sampling normal-modes`` they are refused, not ignored."""
RESUME_KEYS = {"md": ("resume_positions", "resume_momenta", "resume_rng_state"),
               "normal-modes": ("resume_minimum", "resume_hessian")}
"""Keys of a partial set's sampler state after its last frame, per sampling (module docstring): MD positions (n, 3)
Å and momenta (n, 3) amu·Å/(ASE time unit) as ASE holds them, and the NumPy generator's state as JSON; the relaxed
minimum (n, 3) Å and its Hessian (3n, 3n) eV/Å²."""
RESUMED_SETTINGS = ("method", "sampling", "temperature_K", "timestep_fs", "friction_per_fs", "stride",
                    "equilibration_steps", "seed", "frames_requested", "source")
"""Metadata a partial set must share with the command that resumes it (``source`` names the molecule, its charge and
spin state and the method)."""
RESUMED_OPTION = {"temperature_K": "temperature", "timestep_fs": "timestep", "friction_per_fs": "friction",
                  "frames_requested": "frames"}
"""The :func:`generate` keyword of a :data:`RESUMED_SETTINGS` key named otherwise (the others are their own)."""
NORMAL_MODE_FMAX = 1e-4
"""eV/Å: relaxation threshold before the Hessian of normal-mode sampling."""
NORMAL_MODE_DELTA = 0.005
"""Å: central-difference step of the Hessian of normal-mode sampling."""


def tblite_calculator(method: str = "GFN2-xTB", charge: float = 0.0, uhf: int = 0):
    """A tblite ASE calculator for ``method`` at total ``charge`` (e) with ``uhf`` unpaired electrons.

    Raises ValueError naming the extra when tblite is missing.
    """
    try:
        from tblite.ase import TBLite
    except ImportError as error:
        raise ValueError("labelling needs tblite: pip install 'physnetjax[xtb]'") from error
    return TBLite(method=method, charge=charge, multiplicity=uhf + 1, verbosity=0)


def xtb_method(text: str, names: Optional[Mapping[str, str]] = None) -> str:
    """The method of :data:`METHODS` that ``text`` names, in any case (``gfn2-xtb`` → ``GFN2-xTB``), as tblite and
    the dataset's ``method`` spell it.

    Raises:
      PhysNetInputError: a method tblite does not have (e.g. GFN3-xTB, which tblite refused with "Method
        'GFN3-xTB' is not available for this calculator"), naming the option (``names``) and the choices.
    """
    canonical = _method_choice(str(text))
    if canonical not in METHODS:
        raise PhysNetInputError(f"{displayed('method', names)} {text!r} is not a method tblite has: choose one of "
                                f"{', '.join(METHODS)}")
    return canonical


def check_xtb_elements(atomic_numbers, method: str, where: str) -> None:
    """PhysNetInputError naming the elements of ``atomic_numbers`` (n,) beyond Z = :data:`XTB_MAX_ATOMIC_NUMBER`,
    which tblite's ``method`` has no parameters for (a Z that is no element at all is named as such); ``where`` (the
    molecule) begins the message. :func:`physnetjax.validation.validate_structure` would call them outside "this
    model's range" and ask for another model, where there is no model, only the labelling method."""
    z = check_atomic_numbers(atomic_numbers, MAX_ATOMIC_NUMBER, where)
    beyond = np.nonzero(z > XTB_MAX_ATOMIC_NUMBER)[0]
    if beyond.size:
        symbols = ", ".join(element(value) for value in sorted({int(value) for value in z[beyond]}))
        atoms = ", ".join(str(int(i)) for i in beyond[:5]) + (f" (and {beyond.size - 5} more)" if beyond.size > 5
                                                              else "")
        raise PhysNetInputError(f"{where}: element(s) {symbols} at atom(s) {atoms} are beyond {method}, which covers "
                                f"Z = 1..{XTB_MAX_ATOMIC_NUMBER}, H to {SYMBOLS[XTB_MAX_ATOMIC_NUMBER]}: label "
                                "molecules of these elements with another method (e.g. DFT) and train on that set")


LABEL_BYTES = {"R": 12, "F": 12, "Qa": 4}
"""Bytes per atom and frame of the per-atom labels :func:`generate` holds (float32); each frame adds
:data:`FRAME_BYTES`, and the dataset it returns one byte per atom (``Z``, int8)."""
FRAME_BYTES = 12 + 8 + 2 + 4
"""Bytes per frame of ``D`` (3 float32), ``E`` (float64), ``N`` (int16) and ``Q`` (float32)."""
NORMAL_MODE_BYTES = 3 * 24
"""Bytes per atom and frame that normal-mode sampling draws at once (:func:`normal_mode_displacements`: the mode
coordinates, their Cartesian sum and the (M, n, 3) displacements, float64)."""


def _label_arrays(frames: int, n: int, sampling: str, names: Optional[Mapping[str, str]] = None) -> dict:
    """Zeroed arrays for the labels of ``frames`` frames of ``n`` atoms (``R``, ``F``, ``D``, ``Qa``, ``E``), after
    checking that they, and what ``sampling`` holds beside them, fit the free host memory.

    ``--frames 100000000000`` ended in an internal error (NumPy's MemoryError: "Unable to allocate 3.27 TiB"), and a
    size Linux over-commits would have been allocated and then filled frame by frame until the kernel ended the
    process.

    Raises:
      OutOfMemoryError: the size needed and the memory free, naming ``frames`` (``names``) (also where NumPy cannot
        allocate what the host's free memory did not rule out).
    """
    per_frame = sum(LABEL_BYTES.values()) * n + FRAME_BYTES + n + (NORMAL_MODE_BYTES * n if sampling != "md" else 0)
    needed = frames * per_frame
    frames_option, seed_option = displayed("frames", names), displayed("seed", names)
    remedy = (f"lower {frames_option} ({per_frame} bytes a frame of {n} atoms), or label several smaller sets with "
              f"different {seed_option} into separate files and train on them together (--data A.npz B.npz)")
    check_host_fits(needed, f"to hold the labels of {frames} frames ({frames_option})", remedy)
    try:
        return {
            "R": np.zeros((frames, n, 3), np.float32),
            "F": np.zeros((frames, n, 3), np.float32),
            "D": np.zeros((frames, 3), np.float32),
            "Qa": np.zeros((frames, n), np.float32),
            "E": np.zeros(frames, np.float64),
        }
    except MemoryError:
        raise OutOfMemoryError(f"out of memory on the host to hold the labels of {frames} frames ({frames_option}): "
                               f"they need {gigabytes(needed)}: {remedy}", needed) from None


def unpaired_electrons(atoms, charge: float, uhf: int | None = None, method: str = "GFN2-xTB") -> int:
    """The number of unpaired electrons to label ``atoms`` at total ``charge`` (e) with, checked against its electrons.

    xTB treats only the valence electrons, n_val = Σ_i v(Z_i) − charge, in n_orb valence
    orbitals (:mod:`physnetjax.data.xtb_shells`): a state with ``uhf`` unpaired electrons
    exists when ``uhf`` has the parity of n_val and 0 ≤ ``uhf`` ≤ min(n_val, 2 n_orb − n_val);
    tblite would label an impossible one as another state without a word. Beyond Z = 86
    (no table; tblite refuses such elements) the bound is all electrons Σ_i Z_i − charge, and
    for a method without an orbital table the orbital bound is left out. ``uhf`` None means a
    closed shell (0), or the sum of the structure's initial magnetic moments where a structure
    file sets them (what tblite reads then).

    Raises:
      ValueError: a charge that is not a whole number or leaves a negative number of (valence)
        electrons; ``uhf`` negative, above that bound, or of another parity than n_val (so an odd
        n_val needs ``uhf`` stated).
    """
    numbers = atoms.get_atomic_numbers()
    protons = int(numbers.sum())
    formula = atoms.get_chemical_formula()
    if not (math.isfinite(charge) and charge == round(charge)):
        raise ValueError(f"charge must be a whole number of e (the molecule's total charge), received {charge:g}")
    electrons = protons - round(charge)
    if electrons < 0:
        raise ValueError(f"charge {charge:g} leaves {formula} ({protons} protons) with {electrons} electrons")
    where = f"{formula} at charge {charge:g} has {electrons} electrons"
    count, upper, reason = electrons, electrons, ""
    neutral_valence = valence_electrons(numbers)
    if neutral_valence is not None:
        count = neutral_valence - round(charge)
        if count < 0:
            raise ValueError(f"charge {charge:g} leaves {formula} with {count} valence electrons ({method} treats "
                             f"{neutral_valence} in the neutral molecule)")
        where += f", {count} of them in the valence shells {method} treats"
        upper = count
        orbitals = valence_orbitals(numbers, method)
        if orbitals is not None and 2 * orbitals - count < count:
            upper = 2 * orbitals - count
            reason = (f", in {orbitals} valence orbitals: at most {orbitals} electrons can have one spin, so uhf "
                      f"<= 2 × {orbitals} - {count}")
    origin = f"uhf {uhf}"
    if uhf is None:
        moments = float(atoms.get_initial_magnetic_moments().sum())
        if moments == 0 and count % 2:
            raise ValueError(f"{where}, an odd number: give uhf (--uhf), the number of unpaired electrons, "
                             "e.g. 1 for a doublet")
        if abs(moments - round(moments)) > 1e-6:
            raise ValueError(f"the initial magnetic moments of {formula} sum to {moments:g}, not a whole number of "
                             "unpaired electrons: give uhf (--uhf), the number of unpaired electrons")
        uhf, origin = round(moments), f"the structure's initial magnetic moments (sum {moments:g})"
    if not 0 <= uhf <= upper:
        raise ValueError(f"{origin}: the number of unpaired electrons must be between 0 and {upper} "
                         f"({where}{reason})")
    if (count - uhf) % 2:
        raise ValueError(f"{origin} does not match the parity of the electrons: {where}, so uhf must be "
                         f"{'odd' if count % 2 else 'even'}")
    return int(uhf)


def xtb_failure(error: Exception, where: str, method: str, charge: float, uhf: int) -> PhysNetInputError:
    """The one-line error for a tblite calculation that failed (ASE's ``CalculationFailed``, e.g. an SCF
    that does not converge for a charge and spin state the geometry cannot hold), naming ``where``
    (molecule and frame), ``method``, ``charge`` (e) and ``uhf``."""
    detail = " ".join(str(error).split()) or type(error).__name__
    return PhysNetInputError(f"{where}: the {method} SCF (xTB, tblite) failed at charge {charge:g} e with {uhf} "
                             f"unpaired electron{'' if uhf == 1 else 's'} ({detail}): xTB cannot converge that charge "
                             "and spin state at this geometry")


def labels_of(atoms) -> dict:
    """The labels of ``atoms`` from its attached calculator, in the units of the module docstring.

    Returns ``R`` (n, 3) Å, ``E`` eV, ``F`` (n, 3) eV/Å, ``D`` (3,) e·Å about the origin,
    ``Qa`` (n,) e. The forces are the raw −dE/dR: with a FixCom constraint applied ASE
    would return f − m λ (λ = Σ m f / Σ m²), which carries a spurious net force Σ f ≠ 0.
    """
    return {
        "R": atoms.get_positions(),
        "E": atoms.get_potential_energy(),
        "F": atoms.get_forces(apply_constraint=False),
        "D": atoms.get_dipole_moment(),
        "Qa": atoms.get_charges(),
    }


OPTION_OF = {keyword: f"--{keyword.replace('_', '-')}"
             for keyword in ("frames", "stride", "temperature", "timestep", "friction", "equilibration_steps",
                             "charge", "seed", "sampling", "method")}
""":func:`generate`'s sampling keyword → the option that sets it: the names in the messages of
:func:`check_sampling_settings` on the command line."""


def check_sampling_settings(frames: int, stride: int, temperature: float, timestep: float, friction: float,
                            equilibration_steps: int, names: Optional[Mapping[str, str]] = None) -> None:
    """ValueError naming the first of :func:`generate`'s sampling settings out of range: ``frames`` and ``stride``
    >= 1, ``equilibration_steps`` >= 0, ``temperature`` (K), ``timestep`` (fs) and ``friction`` (1/fs) finite
    and > 0 (an infinite timestep or temperature gave NaN positions, which xTB then failed on), ``temperature`` at
    most :data:`physnetjax.validation.MAX_TEMPERATURE_K`, the bound of MD and the learning loop (1e6 K: k_B T =
    86 eV, no chemistry left; an exponent too many ran into SCF failures). The messages name the keywords, or as
    ``names`` does (a command line passes its options, :data:`OPTION_OF`)."""
    for keyword, value in (("frames", frames), ("stride", stride)):
        if value < 1:
            raise ValueError(f"{displayed(keyword, names)} must be >= 1, received {value}")
    if equilibration_steps < 0:
        raise ValueError(f"{displayed('equilibration_steps', names)} must be >= 0, received {equilibration_steps}")
    check_range(displayed("temperature", names), temperature, "K", 0.0, strict=True, highest=MAX_TEMPERATURE_K,
                why=MAX_TEMPERATURE_REASON)
    check_range(displayed("timestep", names), timestep, "fs", 0.0, strict=True)
    check_range(displayed("friction", names), friction, "1/fs", 0.0, strict=True)


def generate(
    molecule: str = "CH3CH2OH",
    frames: int = 1000,
    stride: int = 20,
    temperature: float = 500.0,
    timestep: float = 0.5,
    friction: float = 0.01,
    equilibration_steps: int = 2000,
    method: str = "GFN2-xTB",
    charge: Optional[float] = None,
    seed: int = 0,
    sampling: str = "md",
    uhf: int | None = None,
    names: Optional[Mapping[str, str]] = None,
    progress: Optional[Callable[[str, int, Optional[int]], None]] = None,
    resume: Optional[Mapping[str, np.ndarray]] = None,
    resume_name: str = "resume",
) -> dict:
    """Sample configurations (Langevin MD or normal modes, module docstring) and label them with tblite.

    Args:
      molecule: structure file or ``ase.build.molecule`` name.
      frames: number of frames M to keep.
      stride: MD steps between kept frames.
      temperature: Langevin bath temperature, or that of the normal-mode distribution, in K.
      timestep: MD timestep in fs.
      friction: Langevin friction in 1/fs.
      equilibration_steps: steps run and discarded before the first frame.
      method: tblite method name (GFN2-xTB, GFN1-xTB, IPEA1-xTB).
      charge: total charge in e; None: the structure file's (``info["charge"]``, else its initial charges' sum,
        :func:`physnetjax.validation.atoms_total_charge`), 0 for an ``ase.build.molecule`` name. A given charge
        that differs from the file's warns and is used.
      seed: seed of the Maxwell–Boltzmann start velocities and the Langevin noise, or
        of the normal-mode coordinates.
      sampling: ``"md"`` or ``"normal-modes"``.
      uhf: number of unpaired electrons; None for a closed shell or the structure's initial magnetic
        moments (:func:`unpaired_electrons`).
      names: keyword → how the messages of :func:`check_sampling_settings` name it (a command line passes
        :data:`OPTION_OF`); by default the keywords.
      progress: called as ``progress(phase, done, total)`` while sampling and labelling
        (:mod:`physnetjax.data.generate_progress`: phases ``equilibration``, ``relaxation``, ``Hessian``,
        ``labelling``; ``total`` None while unknown).
      resume: the arrays of a partial set an interrupted run with the same settings wrote (module docstring): its
        frames are kept and the sampling continues from its sampler state (:func:`check_resumable`).
      resume_name: how a refusal of ``resume`` names it (a command line: ``--resume OUT``).

    Returns:
      dict of arrays in the layout of the module docstring.

    A ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM under :func:`~physnetjax.cli_errors.cli_main`) passes through
    with the frames labelled so far as its attribute ``labelled``: such a dict of the first K frames
    (``frames_requested`` still M), or None before the first frame was labelled. So does the PhysNetInputError of
    an xTB calculation that fails while sampling (the command line writes it as it writes an interrupted run's).

    Raises:
      ValueError: a setting out of range (:func:`check_sampling_settings`), a ``method`` tblite does not have
        (:func:`xtb_method`), elements beyond Rn (:func:`check_xtb_elements`), a structure that
        :func:`physnetjax.validation.validate_structure` refuses (atoms closer than 0.5 Å, NaN
        positions, a charge beyond the electrons), unknown ``sampling``, tblite
        missing, a ``charge``/``uhf`` the electron count
        refuses (:func:`unpaired_electrons`), a failed xTB calculation (:func:`xtb_failure`, naming
        the frame being sampled; after frames labelled at the same charge and spin state it blames the geometry,
        before them the charge and spin state), a ``resume`` set :func:`check_resumable` refuses, or (normal
        modes) a structure whose relaxed Hessian is not that of a minimum (naming ``molecule``).
      OutOfMemoryError: ``frames`` whose labels do not fit the host's free memory (:func:`_label_arrays`).

    Warns:
      LengthUnitWarning: a structure whose atoms sit ~1.89× their covalent bond lengths apart, as positions in bohr
        read as Å (:func:`physnetjax.validation.check_length_unit`, as the spectra commands warn); xTB labels such a
        geometry without complaint.
    """
    from ase.calculators.calculator import CalculationFailed, InputError

    check_sampling_settings(frames, stride, temperature, timestep, friction, equilibration_steps, names)
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, received {sampling!r}")
    method = xtb_method(method, names)
    atoms = _structure(molecule)
    charge = atoms_total_charge(atoms, charge, {"total_charge": displayed("charge", names)})
    if sampling == "normal-modes" and len(atoms) < 2:
        raise ValueError(f"{molecule}: one atom has no vibrations to sample; --sampling normal-modes needs a molecule")
    check_xtb_elements(atoms.numbers, method, molecule)
    validate_structure(atoms.numbers, atoms.positions, XTB_MAX_ATOMIC_NUMBER, total_charge=charge, strict=True,
                       where=molecule)
    check_length_unit(atoms.numbers, atoms.positions, molecule)
    uhf = unpaired_electrons(atoms, charge, uhf, method)
    atoms.calc = tblite_calculator(method, charge, uhf)
    rng = np.random.default_rng(seed)
    out = _label_arrays(frames, len(atoms), sampling, names)
    how = "Langevin MD" if sampling == "md" else "harmonic normal-mode sampling"
    provenance = {"method": method, "charge": charge, "uhf": uhf, "sampling": sampling, "temperature": temperature,
                  "timestep": timestep, "friction": friction, "stride": stride,
                  "equilibration_steps": equilibration_steps, "seed": seed, "frames": frames,
                  "source": f"physnetjax.data.generate: {how} of {molecule} (charge {charge:g} e, {uhf} unpaired "
                            f"electron{'' if uhf == 1 else 's'}) with tblite {method}"}
    done, state = 0, None
    if resume is not None:
        done = check_resumable(resume, _dataset(out, 0, atoms, provenance), atoms.numbers, resume_name, names)
        for key in out:
            out[key][:done] = resume[key]
        state = {key: resume[key] for key in RESUME_KEYS[sampling]}
    if sampling == "md":
        configurations = _md_configurations(atoms, frames - done, stride, temperature, timestep, friction,
                                            equilibration_steps, rng, progress, state)
    else:
        configurations = _normal_mode_configurations(atoms, frames, temperature, rng, progress, state, done,
                                                     where=molecule)
    try:
        for k, sampled in enumerate(configurations, start=done):
            for key, value in labels_of(atoms).items():
                out[key][k] = value
            done, state = k + 1, sampled
            if progress is not None:
                progress("labelling", done, frames)
    except KeyboardInterrupt as interrupt:
        interrupt.labelled = _dataset(out, done, atoms, provenance, state) if done else None
        raise
    except CalculationFailed as error:
        stage = ("relaxation or Hessian before frame 1" if sampling != "md" and done == 0
                 else f"{how}, sampling frame {done + 1} of {frames}")
        failure = xtb_failure(error, f"{molecule} ({stage})", method, charge, uhf)
        if done:  # the same electrons, charge and spin state converged for every frame before: the geometry did it
            labelled = "frame 1 was" if done == 1 else f"frames 1-{done} were"
            hint = (f"{labelled} labelled at this charge and spin state, so this frame's geometry is the likely cause "
                    f"(a hot or distorted one): lower {displayed('temperature', names)} ({temperature:g} K), or check "
                    "the structure")
        else:
            hint = "try another uhf (--uhf) or charge (--charge)"
        failed = PhysNetInputError(f"{failure}; {hint}")
        failed.labelled = _dataset(out, done, atoms, provenance, state) if done else None
        raise failed from error
    except InputError as error:  # tblite refuses a geometry, e.g. atoms on top of each other after a collision
        failed = PhysNetInputError(f"{molecule} ({how}, sampling frame {done + 1} of {frames}): {method} (tblite) "
                                   f"refused the geometry ({' '.join(str(error).split())}): the sampling drove atoms "
                                   "together; lower the temperature or the timestep")
        failed.labelled = _dataset(out, done, atoms, provenance, state) if done else None
        raise failed from error
    return _dataset(out, frames, atoms, provenance)


def _dataset(labels: dict, count: int, atoms, provenance: dict, state: Optional[dict] = None) -> dict:
    """The dataset of the first ``count`` frames of ``labels`` (R, F, D, Qa, E) of molecule ``atoms``, with its
    metadata (``provenance``: :func:`generate`'s settings, ``frames`` the number asked for) and, for a partial set,
    ``state``: the sampler's state after frame ``count`` (:data:`RESUME_KEYS`)."""
    n = len(atoms)
    data = {key: value[:count] for key, value in labels.items()}
    data["Z"] = np.tile(atoms.get_atomic_numbers().astype(np.int8), (count, 1))
    data["N"] = np.full(count, n, np.int16)
    data["Q"] = np.full(count, provenance["charge"], np.float32)
    data[CONFIG_TYPE_KEY] = np.full(count, sampled_config_type(provenance["sampling"], provenance["temperature"]))
    data.update(
        method=np.array(provenance["method"]),
        uhf=np.array(provenance["uhf"]),
        sampling=np.array(provenance["sampling"]),
        temperature_K=np.array(provenance["temperature"]),
        timestep_fs=np.array(provenance["timestep"]),
        friction_per_fs=np.array(provenance["friction"]),
        stride=np.array(provenance["stride"]),
        equilibration_steps=np.array(provenance["equilibration_steps"]),
        seed=np.array(provenance["seed"]),
        frames_requested=np.array(provenance["frames"]),
        source=np.array(provenance["source"]),
        tblite_version=np.array(importlib.metadata.version("tblite")),
    )
    if state is not None and count < provenance["frames"]:
        data.update(state)
    return data


def sampled_config_type(sampling: str, temperature_K: float) -> str:
    """The kind (:data:`~physnetjax.data.dataset.CONFIG_TYPE_KEY`) of frames ``sampling`` drew at ``temperature_K``
    K: ``"md_500K"``, ``"normal-modes_300K"`` here, ``"learn_800K"`` for the frames the learning loop chooses from its
    MD (:data:`physnetjax.learn.explore.EXPLORATION`). A resumed set's frames share it, as they share the settings."""
    return f"{sampling}_{temperature_K:g}K"


RESUMED_LABELS = ("E", "R", "F", "D", "Qa")
"""Per-frame arrays a resumed set keeps from its partial set (its ``Z``, ``N`` and ``Q`` are written anew)."""
DAMAGED = "the set was damaged or edited after this command wrote it: label a new set into another file"
"""How :func:`check_resumable` ends a message about a partial set this command cannot have written."""


def _frame_shapes(count: int, n: int) -> dict:
    """Shape of each of :data:`RESUMED_LABELS` in a set of ``count`` frames of ``n`` atoms."""
    return {"E": (count,), "R": (count, n, 3), "F": (count, n, 3), "D": (count, 3), "Qa": (count, n)}


def _state_shapes(n: int) -> dict:
    """Shape of each array of :data:`RESUME_KEYS` but the random generator's state, for ``n`` atoms."""
    return {"resume_positions": (n, 3), "resume_momenta": (n, 3), "resume_minimum": (n, 3),
            "resume_hessian": (3 * n, 3 * n)}


def _real_array(partial: Mapping[str, np.ndarray], key: str, where: str) -> np.ndarray:
    """``partial[key]`` as an array, or PhysNetInputError where it holds no real numbers (text, booleans)."""
    value = np.asarray(partial[key])
    if value.dtype == bool or not (np.issubdtype(value.dtype, np.integer) or np.issubdtype(value.dtype, np.floating)):
        raise PhysNetInputError(f"{where}: key {key!r} holds {value.dtype} values, not real numbers; {DAMAGED}")
    return value


def _geometry_fault(positions) -> Optional[tuple[int, str]]:
    """The first frame of ``positions`` (K, n, 3) Å (finite) that is a geometry this command never samples, as the
    dataset loader refuses it, and what it has: coordinates beyond ±:data:`~physnetjax.validation.MAX_ABS_COORDINATE`,
    or overlapping atoms (:func:`~physnetjax.validation.overlapping_frame`, the closest pair named); None where no
    frame has either."""
    positions = np.asarray(positions, np.float64)
    far = (np.abs(positions) > MAX_ABS_COORDINATE).reshape(len(positions), -1).any(axis=1)
    if far.any():
        return int(np.argmax(far)), f"coordinates beyond ±{MAX_ABS_COORDINATE:g} Å"
    overlap = overlapping_frame(positions)
    if overlap is None:
        return None
    k, i, j, distance = overlap
    return k, f"overlapping atoms (atoms {i}-{j} at {distance:.3g} Å, closer than {MIN_DISTANCE_ERROR} Å)"


def _check_rng_state(text, where: str) -> None:
    """PhysNetInputError unless ``text`` (``resume_rng_state``) is the JSON of a state of the generator that
    ``np.random.default_rng`` makes (PCG64), which :func:`_md_configurations` restores."""
    generator = np.random.default_rng()
    kind = type(generator.bit_generator).__name__
    try:
        generator.bit_generator.state = json.loads(str(np.asarray(text)))
    except (ValueError, TypeError, KeyError, OverflowError) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise PhysNetInputError(f"{where}: key 'resume_rng_state' is not the state of NumPy's {kind} generator this "
                                f"command samples with ({type(error).__name__}: {detail}); {DAMAGED}") from None


def check_resumable(partial: Mapping[str, np.ndarray], fresh: Mapping[str, np.ndarray], numbers, where: str,
                    names: Optional[Mapping[str, str]] = None) -> int:
    """The number of frames K of a partial set that a run of ``fresh``'s settings (its :func:`_dataset` of no frames)
    on atoms ``numbers`` (n,) Z may continue; ``where`` begins each message.

    Besides its settings, the set's arrays are checked as this command writes them, since a resume copies its frames
    into the completed set and continues from its sampler state: :data:`RESUMED_LABELS` and ``Z`` of K rows each and
    of the molecule's shapes, real numbers, finite; no frame with coordinates beyond
    :data:`~physnetjax.validation.MAX_ABS_COORDINATE` or overlapping atoms (closer than
    :data:`~physnetjax.validation.MIN_DISTANCE_ERROR`), as the dataset loader refuses them (:func:`_geometry_fault`);
    the sampler state (:data:`RESUME_KEYS`) of the molecule's shapes and finite, its positions or minimum free of
    both faults, and its random generator's state one NumPy's PCG64 takes. Frames are counted from 0 in the
    messages, as the dataset loader counts them. Before, a damaged set ended in NumPy's or JSON's words ("could not
    broadcast input array", "Expecting value"), in an xTB failure blamed on the spin state (NaN momenta), or, with a
    NaN energy or two atoms on one spot in a frame, in a completed set that kept the frame (exit 0).

    Raises:
      PhysNetInputError: not a set this module wrote, a complete set, one sampled with other settings or atoms (the
        first differing setting named, with both values), one without sampler state (written before partial sets
        kept it), or one whose arrays are not as this command writes them (naming the key, and the frame where
        one is at fault).
    """
    lacking = [key for key in (*RESUMED_SETTINGS, *RESUMED_LABELS, "Z") if key not in partial]
    if lacking:
        raise PhysNetInputError(f"{where}: not a set written by python -m physnetjax.data.generate (it lacks "
                                f"{lacking[0]})")
    differing = [key for key in RESUMED_SETTINGS if str(partial[key]) != str(fresh[key])]
    if differing:
        key = differing[0]
        option = ("--molecule, --charge, --uhf and --method" if key == "source" else
                  displayed(RESUMED_OPTION.get(key, key), names))
        raise PhysNetInputError(f"{where}: it was sampled with {key} {partial[key]}, this command asks for "
                                f"{fresh[key]}: resume with its settings ({option}), or write a new set elsewhere")
    energies = _real_array(partial, "E", where)
    if energies.ndim != 1:
        raise PhysNetInputError(f"{where}: key 'E' has shape {energies.shape}, expected (K,), an energy per frame; "
                                f"{DAMAGED}")
    count, requested = len(energies), int(partial["frames_requested"])
    rows = {key: np.shape(partial[key])[0] if np.ndim(partial[key]) else 0 for key in (*RESUMED_LABELS, "Z")}
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{key} {size}" for key, size in rows.items())
        raise PhysNetInputError(f"{where}: its per-frame arrays hold different numbers of frames ({listed}), where "
                                f"each has a row per frame; {DAMAGED}")
    numbers = np.asarray(numbers)
    z = np.asarray(partial["Z"])
    if z.ndim != 2:
        raise PhysNetInputError(f"{where}: key 'Z' has shape {z.shape}, expected ({count}, n): a row of atomic "
                                f"numbers per frame; {DAMAGED}")
    mismatched = (np.ones(count, bool) if z.shape[1] != numbers.shape[0]
                  else (z != numbers[None, :]).any(axis=1))
    if count and mismatched[0]:
        raise PhysNetInputError(f"{where}: its atoms (Z = {z[0].tolist()}) are not those of this command's molecule "
                                f"(Z = {numbers.tolist()})")
    if mismatched.any():
        k = int(np.argmax(mismatched))
        raise PhysNetInputError(f"{where}: key 'Z' of frame {k} ({z[k].tolist()}) is not that of its frame 0 and this "
                                f"command's molecule ({numbers.tolist()}); {DAMAGED}")
    if count >= requested:
        raise PhysNetInputError(f"{where}: nothing to resume: it holds all {requested} frames it was asked for")
    sampling = str(fresh["sampling"])
    missing = [key for key in RESUME_KEYS[sampling] if key not in partial]
    if missing:
        raise PhysNetInputError(f"{where}: its {count} frames cannot be continued: it holds no sampler state "
                                f"({missing[0]}; partial sets written before --resume existed do not); label more "
                                "frames with another --seed into another file and train on both")
    n = numbers.shape[0]
    for key, expected in _frame_shapes(count, n).items():
        value = _real_array(partial, key, where)
        if value.shape != expected:
            raise PhysNetInputError(f"{where}: key {key!r} has shape {value.shape}, expected {expected}: "
                                    f"{count} frames, as key 'E' holds, of the {n} atoms of this command's "
                                    f"molecule; {DAMAGED}")
        bad = ~np.isfinite(value).reshape(count, -1).all(axis=1)
        if bad.any():
            frames = np.nonzero(bad)[0]
            listed = ", ".join(str(int(k)) for k in frames[:5]) + (f" (and {len(frames) - 5} more)"
                                                                     if len(frames) > 5 else "")
            raise PhysNetInputError(f"{where}: key {key!r} has NaN or Inf in frame(s) {listed}, which this command "
                                    f"never writes; {DAMAGED}")
    fault = _geometry_fault(partial["R"])
    if fault is not None:
        raise PhysNetInputError(f"{where}: key 'R': frame {fault[0]} has {fault[1]}, a geometry this command never "
                                f"samples; {DAMAGED}")
    state_shapes = _state_shapes(n)
    for key in RESUME_KEYS[sampling]:
        if key == "resume_rng_state":
            _check_rng_state(partial[key], where)
            continue
        value = _real_array(partial, key, where)
        if value.shape != state_shapes[key]:
            raise PhysNetInputError(f"{where}: key {key!r} has shape {value.shape}, expected {state_shapes[key]}: the "
                                    f"sampler's state after its {count} frames, for the {n} atoms of this command's "
                                    f"molecule; {DAMAGED}")
        if not np.isfinite(value).all():
            raise PhysNetInputError(f"{where}: key {key!r} has NaN or Inf (the sampler's state after its "
                                    f"{count} frames), which this command never writes; {DAMAGED}")
        fault = _geometry_fault(value[None]) if key in ("resume_positions", "resume_minimum") else None
        if fault is not None:
            raise PhysNetInputError(f"{where}: key {key!r} has {fault[1]}, a geometry this command never samples; "
                                    f"{DAMAGED}")
    return count


def _md_configurations(atoms, frames, stride, temperature, timestep, friction, equilibration_steps, rng,
                       progress=None, state: Optional[Mapping[str, np.ndarray]] = None):
    """Move ``atoms`` along a Langevin trajectory; after each of ``frames`` strides yield the sampler's state
    (:data:`RESUME_KEYS`). The equilibration runs ``stride`` steps at a time, each reported to ``progress`` (the
    trajectory is that of one run). Given a ``state``, the trajectory continues from it, without equilibration."""
    import ase.constraints
    import ase.md.langevin
    import ase.md.velocitydistribution
    import ase.units

    if state is None:
        ase.md.velocitydistribution.thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
        ase.md.velocitydistribution.Stationary(atoms)
        with np.errstate(divide="ignore", invalid="ignore"):  # a linear molecule: ASE divides 0/0 for the axis it drops
            ase.md.velocitydistribution.ZeroRotation(atoms)
    else:
        atoms.set_positions(np.asarray(state["resume_positions"], np.float64))
        atoms.set_momenta(np.asarray(state["resume_momenta"], np.float64))
        rng.bit_generator.state = json.loads(str(state["resume_rng_state"]))
        equilibration_steps = 0
    atoms.set_constraint(ase.constraints.FixCom())
    dyn = ase.md.langevin.Langevin(
        atoms,
        timestep=timestep * ase.units.fs,
        temperature_K=temperature,
        friction=friction / ase.units.fs,
        fixcm=False,
        rng=rng,
    )
    if progress is not None and equilibration_steps:
        progress("equilibration", 0, equilibration_steps)
    for start in range(0, equilibration_steps, stride):
        dyn.run(min(stride, equilibration_steps - start))
        if progress is not None:
            progress("equilibration", min(start + stride, equilibration_steps), equilibration_steps)
    for _ in range(frames):
        dyn.run(stride)
        yield {"resume_positions": atoms.get_positions(), "resume_momenta": atoms.get_momenta(),
               "resume_rng_state": np.array(json.dumps(rng.bit_generator.state))}


def _normal_mode_configurations(atoms, frames, temperature, rng, progress=None,
                                state: Optional[Mapping[str, np.ndarray]] = None, skip: int = 0, where: str = ""):
    """Relax ``atoms``, take its Hessian, then set ``frames`` harmonic Boltzmann samples in turn (the relaxation
    steps and the Hessian's force calls reported to ``progress``), yielding the minimum and Hessian after each
    (:data:`RESUME_KEYS`). Given a ``state`` (a minimum and its Hessian), the first ``skip`` samples are drawn and
    passed over instead.

    Raises:
      PhysNetInputError: a Hessian that is not that of a minimum (a saddle point; :func:`normal_mode_displacements`),
        the message beginning with ``where`` (the molecule), which it did not name.
    """
    if state is None:
        minimum, hessian = _relaxed_hessian(atoms, progress)
    else:
        minimum, hessian = (np.asarray(state[key], np.float64) for key in RESUME_KEYS["normal-modes"])
    centred = minimum - minimum.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    num_rigid = 5 if singular[1] < 1e-3 * singular[0] else 6
    try:
        displacements = normal_mode_displacements(hessian, atoms.get_masses(), temperature, frames, rng, num_rigid)
    except ValueError as error:
        raise PhysNetInputError(f"{where}: {error}" if where else str(error)) from None
    for displacement in displacements[skip:]:
        atoms.set_positions(minimum + displacement)
        yield {"resume_minimum": minimum, "resume_hessian": hessian}


def _relaxed_hessian(atoms, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Relax ``atoms`` (BFGS to :data:`NORMAL_MODE_FMAX`) and take its Hessian by central differences: ((n, 3) Å
    minimum, (3n, 3n) eV/Å²), the relaxation steps and the force calls reported to ``progress``."""
    from ase.optimize import BFGS

    optimizer = BFGS(atoms, logfile=None)
    if progress is not None:
        optimizer.attach(lambda: progress("relaxation", optimizer.nsteps, None))
    optimizer.run(fmax=NORMAL_MODE_FMAX, steps=1000)
    if progress is not None:
        progress("relaxation", optimizer.nsteps, optimizer.nsteps)
    minimum = atoms.get_positions()
    logger.info("relaxed to E = %.6f eV, max |F| = %.1e eV/Å", atoms.get_potential_energy(),
                np.abs(atoms.get_forces()).max())
    return minimum, _finite_difference_hessian(atoms, minimum, NORMAL_MODE_DELTA, progress)


def _finite_difference_hessian(atoms, minimum, delta, progress=None):
    """H_{ia,jb} = −(F_jb(R + δ e_ia) − F_jb(R − δ e_ia)) / 2δ in eV/Å², (3N, 3N), symmetrised; the 6N force calls
    reported to ``progress``."""
    size = 3 * len(atoms)
    hessian = np.zeros((size, size))
    for column in range(size):
        if progress is not None:
            progress("Hessian", 2 * column, 2 * size)
        forces = []
        for sign in (1.0, -1.0):
            displaced = minimum.copy()
            displaced.reshape(-1)[column] += sign * delta
            atoms.set_positions(displaced)
            forces.append(atoms.get_forces().reshape(-1))
        hessian[column] = -(forces[0] - forces[1]) / (2.0 * delta)
    if progress is not None:
        progress("Hessian", 2 * size, 2 * size)
    atoms.set_positions(minimum)
    return 0.5 * (hessian + hessian.T)


@cli_main("python -m physnetjax.data.generate")
def main(argv=None) -> int:
    """Command line; exit status as in :mod:`physnetjax.cli_errors` (3: ``--out`` not writable, checked first)."""
    parser = ArgumentParser(prog="python -m physnetjax.data.generate", formatter_class=HelpFormatter,
                            description=describe(__doc__).split(":")[0] + " (needs the xtb extra: tblite).")
    parser.add_argument("--molecule", default="CH3CH2OH", help="structure file or ase.build.molecule name")
    parser.add_argument("--frames", type=int, default=1000, help="labelled frames to write")
    parser.add_argument("--stride", type=int, default=20, help="MD steps between frames")
    parser.add_argument("--sampling", choices=SAMPLINGS, default="md",
                        help="md: Langevin MD; normal-modes: harmonic Boltzmann samples around the relaxed structure")
    parser.add_argument("--temperature", type=float, default=500.0, help="K (MD bath or normal-mode distribution)")
    parser.add_argument("--timestep", type=float, default=0.5, help="MD time step in fs")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction in 1/fs")
    parser.add_argument("--equilibration-steps", type=int, default=2000, help="MD steps before the first frame")
    parser.add_argument("--method", default="GFN2-xTB", choices=METHODS, type=_method_choice,
                        help="tblite method, in any case")
    parser.add_argument("--charge", type=float, default=None,
                        help="total charge in e (default: the structure file's info['charge'] or initial charges, "
                             "else 0)")
    parser.add_argument("--uhf", type=int, default=None,
                        help="number of unpaired electrons (spin multiplicity - 1), as xtb's --uhf; needed for an odd "
                             "valence electron count, at most min(n_val, 2 n_orb - n_val) for n_val valence electrons "
                             "in n_orb valence orbitals; default 0 or the structure file's magnetic moments")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial velocities and Langevin noise")
    parser.add_argument("--threads", type=int, default=None,
                        help="OpenMP threads of tblite (sets OMP_NUM_THREADS) (default: OMP_NUM_THREADS where set, "
                             "else 1: one thread was faster for molecules of 4 to 24 atoms, README)")
    parser.add_argument("--out", required=True,
                        help="output .npz path; after Ctrl-C or SIGTERM it holds the frames labelled so far")
    parser.add_argument("--resume", action="store_true",
                        help="continue the partial set at --out (an interrupted run of this command with the same "
                             "settings) up to --frames")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out (without it an existing file is refused: it may hold hours of "
                             "labelling; a partial set continues with --resume)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="progress of the equilibration (or relaxation and Hessian) and the labelling on stderr: "
                             "bars on a terminal, a line every tenth or minute elsewhere")
    parser.add_argument("--verbose", action="store_true", help="info log messages, and the traceback of an error")
    args = parser.parse_args(argv)
    configure_logging("python -m physnetjax.data.generate", args.verbose)
    check_output_path(args.out, overwrite=True, what="--out")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1 (OpenMP threads of tblite), received {args.threads}")
    refuse_unused_options(parser, args, OPTION_USES, chosen_options(parser, argv))
    if Path(args.out).suffix != ".npz":
        raise ValueError(f"--out {args.out}: the dataset is a .npz file; give a path ending in .npz")
    if args.charge is not None and not (math.isfinite(args.charge) and args.charge == round(args.charge)):
        raise ValueError(f"--charge must be a whole number of e (the molecule's total charge), received {args.charge}")
    if args.resume and args.overwrite:
        raise ValueError("--resume continues the set at --out, --overwrite replaces it: give one of them")
    if Path(args.out).exists() and not (args.resume or args.overwrite):
        raise OutputPathError(f"--out {args.out} already exists{existing_set_note(args.out)}; pass --overwrite to "
                              "replace it, or choose another path")
    resume = None
    if args.resume:
        if not Path(args.out).exists():
            raise PhysNetInputError(f"--resume {args.out}: the file does not exist, nothing to resume (run without "
                                    "--resume to start a set)")
        try:
            resume = read_npz(args.out)
        except NpzReadError as error:
            raise PhysNetInputError(f"--resume {args.out}: {error}") from None
    try:
        with openmp_threads(args.threads), contextlib.ExitStack() as stack:
            progress = stack.enter_context(GenerateProgress()) if args.progress else None
            data = generate(
                args.molecule, args.frames, args.stride, args.temperature, args.timestep, args.friction,
                args.equilibration_steps, args.method, args.charge, args.seed, args.sampling, args.uhf,
                names=OPTION_OF, progress=progress, resume=resume, resume_name=f"--resume {args.out}",
            )
    except KeyboardInterrupt as interrupt:  # the bars have ended: the interrupt's line comes after them
        interrupt.resume_hint = save_partial(args.out, getattr(interrupt, "labelled", None), args.frames)
        raise
    except PhysNetInputError as error:  # an xTB failure after frames were labelled: keep them, as Ctrl-C does
        labelled = getattr(error, "labelled", None)
        if labelled is None:
            raise
        raise PhysNetInputError(f"{error}; {save_partial(args.out, labelled, args.frames, FAILED_ADVICE)}") from error
    write_npz(args.out, data, compressed=True)
    print(f"wrote {args.out}: {args.frames} frames")
    return 0


def existing_set_note(path) -> str:
    """`` (N labelled frames)``, `` (a partial set of K of M frames: ...--resume)`` or ``""`` (not a readable set):
    what the file at ``path`` that a new set would replace holds."""
    try:
        data = read_npz(path)
    except (NpzReadError, OSError):
        return ""
    if "E" not in data:
        return ""
    count = len(data["E"])
    requested = int(data["frames_requested"]) if np.ndim(data.get("frames_requested", ())) == 0 else count
    if count < requested and any(key in data for keys in RESUME_KEYS.values() for key in keys):
        return (f" (a partial set of {count} of {requested} frames: continue it with the same command and "
                "--resume)")
    return f" ({count} labelled frames)"


@contextlib.contextmanager
def openmp_threads(threads: int | None) -> Iterator[None]:
    """Within the block ``OMP_NUM_THREADS`` is ``threads``, or where None 1 unless the environment sets it; tblite
    reads it when it is first imported, in the block. Afterwards the environment is as before. On a loaded 2-core
    machine one thread labelled 4 to 24 atoms 1.1-16 times faster than tblite's default of a thread per core, and
    made its first call in milliseconds instead of seconds (README, the data.generate paragraph of "Training")."""
    before = os.environ.get("OMP_NUM_THREADS")
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    elif before is None:
        os.environ["OMP_NUM_THREADS"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


INTERRUPTED_ADVICE = ("train on it as it is, continue it with the same command and --resume, or label more frames "
                      "with another --seed into another file and train on both (--data A.npz B.npz)")
"""What :func:`save_partial` says to do with the partial set of an interrupted run."""
FAILED_ADVICE = ("train on it as it is, continue it with the same command and --resume (from the state before the "
                 "failed frame, which it samples again and may fail on again), or label more frames at a lower "
                 "--temperature into another file and train on both (--data A.npz B.npz)")
"""What :func:`save_partial` says to do with the partial set of a run an xTB failure stopped."""


def save_partial(out, labelled: dict | None, frames: int, advice: str = INTERRUPTED_ADVICE) -> str:
    """Write the frames labelled before an interrupt or an xTB failure (:func:`generate`'s ``labelled``) to ``out``,
    atomically; the line that says so and what to do with them (``advice``), for the interrupt's or the error's
    message (nothing written when no frame was labelled or the write failed)."""
    if labelled is None:
        return f"no frame was labelled yet, nothing written to {out}"
    count = len(labelled["E"])
    try:
        write_npz(out, labelled, compressed=True)
    except OutputPathError as error:
        return f"the {count} frames labelled so far are lost: {error}"
    return (f"wrote the {count} of {frames} frames labelled so far to {out}, a partial set (frames_requested "
            f"{frames}): {advice}")


def _method_choice(text: str) -> str:
    """``--method``'s value as :data:`METHODS` spells it where it names one in another case (argparse then checks
    the choices, naming them)."""
    return {method.lower(): method for method in METHODS}.get(text.lower(), text)


if __name__ == "__main__":
    exit_process(main())
