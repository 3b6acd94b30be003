"""Convert the DFT-D3 reference tables once into the files shipped beside this script.

Not imported at run time. Run it from the repository root with the two source wheels and
the dftd3 source archive unpacked somewhere (they are not needed afterwards; torch is not
needed either: the two tensor files are read by :func:`read_torch_tensor`)::

    pip download --no-deps tad-dftd3==0.7.0 tad-mctc==0.11.3 -d /tmp/d3src
    curl -sLo /tmp/d3src/dftd3-1.7.0.tar.gz https://files.pythonhosted.org/packages/c8/82/\
a30967e6ac28e6469afce1d8a4176d82daab7c9368ee95129bb3ca5a4b66/dftd3-1.7.0.tar.gz
    cd /tmp/d3src && unzip -q tad_dftd3-0.7.0-py3-none-any.whl -d tad \
        && unzip -q tad_mctc-0.11.3-py3-none-any.whl -d mctc && tar xzf dftd3-1.7.0.tar.gz
    python physnetjax/physics/d3_data/convert.py /tmp/d3src

(``dftd3-1.7.0.tar.gz``: sha256 42844f1c0ba553a42b0921313b5f8d1b8877a5bee0c8419f1b73452db914d1a3;
only the text of one file is read.)

Inputs (numbers only; see README.md for provenance and licences):

* ``tad_dftd3/reference-c6.pt`` (tad-dftd3 0.7.0, Apache-2.0): the reference C6 grid
  (104, 104, 7, 7) in Eh·a0⁶ of s-dftd3's current reference set (Z = 1–103, up to 7
  references per element; Fr, Ra and the actinides as revised for s-dftd3);
  ``tad_dftd3/reference.py``: the reference CNs (104, 7), −1 marking an
  absent reference.
* ``tad_dftd3/data/r4r2.py``: the ⟨r⁴⟩/⟨r²⟩ list.
* ``dftd3-1.7.0/subprojects/s-dftd3/src/dftd3/reference.f90`` (s-dftd3 1.7.0, the
  reference implementation the tests compare with, LGPL-3.0): only its
  ``number_of_references`` list, how many of an element's references s-dftd3 weighs.
  Two elements differ from the tabulated CNs: curium has 7 tabulated references of which
  s-dftd3 weighs 6, mendelevium 5 tabulated of which it weighs 6 (the sixth with CN −1
  and C6 0, which takes ~1.8 % of a free Md atom's weight). The tables follow s-dftd3.
* ``tad_mctc/data/radii.py`` (tad-mctc 0.11.3, Apache-2.0): the D3 covalent radii in Å
  (``_COV_2009``, Pyykkö & Atsumi 2009, metals −10 %); ``tad_mctc/data/vdw-pairwise.pt``:
  the pair radii R0AB (104, 104) in Bohr (s-dftd3's vdwrad.f90 Å values × tad-mctc's
  Å→Bohr factor, undone here to the tabulated 0.0001 Å values).
* ``tad_dftd3/param/parameters.toml`` and ``aliases.toml`` (tad-dftd3 0.7.0, which
  vendors s-dftd3's assets/parameters.toml): the ``d3.bj`` damping parameters.

Outputs: ``d3_reference.npz`` (compressed) and ``d3_bj_parameters.toml``.
"""

from __future__ import annotations

import ast
import collections
import pickle
import re
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np

MAX_ELEMENT = 103
NUM_REFERENCES = 7
TAD_MCTC_BOHR_PER_ANGSTROM = 1.8897261246204407  # tad-mctc's AA2AU (CODATA 2018), used for vdw-pairwise.pt

_STORAGE_DTYPES = {"DoubleStorage": np.float64, "FloatStorage": np.float32, "LongStorage": np.int64}


def read_torch_tensor(path: Path) -> np.ndarray:
    """The one tensor saved by ``torch.save`` in ``path`` (a zip of a pickle and raw storages), without torch.

    Only the two reconstructors a plain saved tensor needs are resolved; anything else in the pickle is refused.
    """
    archive = zipfile.ZipFile(path)
    root = archive.namelist()[0].split("/")[0]

    def rebuild(storage, offset, size, stride, *_):
        strides = [step * storage.itemsize for step in stride]
        return np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=strides).copy()

    class TensorUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return rebuild
            if module == "torch" and name in _STORAGE_DTYPES:
                return name
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"{path}: unexpected {module}.{name} in a tensor file")

        def persistent_load(self, pid):
            _, storage_type, key, _, numel = pid
            return np.frombuffer(archive.read(f"{root}/data/{key}"), dtype=_STORAGE_DTYPES[storage_type])[:numel]

    return TensorUnpickler(archive.open(f"{root}/data.pkl")).load()


def reference_tables(c6: np.ndarray, cn_rows: np.ndarray, counts: np.ndarray):
    """Reference CNs (0 where unused), the mask of used references and the C6 grid (0 where unused).

    ``counts[Z]`` references of element Z are used, the first ones of its row, as s-dftd3
    does (its ``number_of_references``); a used reference without a tabulated CN (−1 in the
    row) keeps CN −1 and must have C6 0, as in s-dftd3.
    """
    tabulated = cn_rows >= 0.0
    reference_mask = np.arange(cn_rows.shape[1])[None, :] < counts[:, None]
    reference_mask[0] = False
    reference_cn = np.where(reference_mask, cn_rows, 0.0)
    both = reference_mask[:, None, :, None] & reference_mask[None, :, None, :]
    both_tabulated = both & tabulated[:, None, :, None] & tabulated[None, :, None, :]
    if not np.array_equal(c6, np.swapaxes(np.swapaxes(c6, 0, 1), 2, 3)):
        raise ValueError("C6 reference table is not symmetric under (Z_i, a) <-> (Z_j, b)")
    if np.any(c6[~tabulated[:, None, :, None] | ~tabulated[None, :, None, :]] != 0.0):
        raise ValueError("a C6 entry of a reference without a tabulated CN is not 0")
    if np.any(c6[both_tabulated] <= 0.0):
        raise ValueError("a used, tabulated reference C6 is not positive")
    return reference_cn, reference_mask, np.where(both, c6, 0.0)


def reference_counts(path: Path) -> np.ndarray:
    """s-dftd3's ``number_of_references`` list of reference.f90, as a (104,) array with 0 for Z = 0."""
    text = path.read_text()
    start = text.index("number_of_references(max_elem) = [")
    body = re.sub(r"!.*", "", text[start: text.index("]", start)].split("[", 1)[1])
    counts = [int(value) for value in re.findall(r"\d+", body)]
    if len(counts) != MAX_ELEMENT or not all(1 <= count <= NUM_REFERENCES for count in counts):
        raise ValueError(f"{path}: expected {MAX_ELEMENT} reference counts between 1 and {NUM_REFERENCES}")
    return np.asarray([0, *counts])


def reference_cn_rows(path: Path) -> np.ndarray:
    """The (104, 7) reference CN rows of tad-dftd3's reference.py (``_load_cn``), one ``[...],  # El`` line each."""
    text = path.read_text()
    body = text[text.index("def _load_cn"):]
    rows = re.findall(r"\[([-+0-9., ]+)\],\s*#\s*(\w+)", body)[: MAX_ELEMENT + 1]
    if rows[-1][1] != "Lr" or len(rows) != MAX_ELEMENT + 1:
        raise ValueError(f"{path}: expected reference CN rows None, H, ..., Lr")
    return np.array([[float(value) for value in row.split(",") if value.strip()] for row, _ in rows])


def covalent_radii(path: Path) -> np.ndarray:
    """The ``_COV_2009`` list (Å, 0.01 Å values) of tad-mctc's data/radii.py, up to :data:`MAX_ELEMENT`."""
    text = path.read_text()
    start = text.index("_COV_2009 = [")
    values = [float(v) for v in re.findall(r"[0-9]+\.[0-9]+", text[start: text.index("]", start)])]
    return np.asarray(values[: MAX_ELEMENT + 1])


def r4_over_r2_values(path: Path) -> np.ndarray:
    """The ⟨r⁴⟩/⟨r²⟩ list literal ``_r4_over_r2 = [...]`` of tad-dftd3's data/r4r2.py."""
    text = path.read_text()
    start = text.index("_r4_over_r2 = [")
    end = text.index("]", start)
    values = ast.literal_eval(text[start + len("_r4_over_r2 = "): end + 1])
    return np.asarray(values[: MAX_ELEMENT + 1], dtype=np.float64)


def bj_parameters(parameters_path: Path, aliases_path: Path) -> str:
    """TOML text with one table per functional: s6, s8, a1, a2, s9, alp (+ doi)."""
    data = tomllib.loads(parameters_path.read_text())
    defaults = data["default"]["parameter"]["d3"]["bj"]
    aliases = tomllib.loads(aliases_path.read_text()).get("alias", {})
    lines = [
        "# DFT-D3(BJ) rational-damping parameters per functional, generated by convert.py",
        "# from tad-dftd3 0.7.0 param/parameters.toml (a verbatim copy of s-dftd3's",
        "# assets/parameters.toml). Defaults filled in: s6 = 1, s9 = 1, alp = 14.",
        "# E = -sum_ij [s6 C6/(r^6 + f^6) + s8 C8/(r^8 + f^8)], f = a1 sqrt(C8/C6) + a2 (Bohr).",
        "",
    ]
    names = []
    for name, entry in data["parameter"].items():
        bj = entry.get("d3", {}).get("bj")
        if bj is None:
            continue
        values = {**defaults, **bj}
        names.append(name)
        lines.append(f'[functional."{name}"]')
        for key in ("s6", "s8", "a1", "a2", "s9", "alp"):
            lines.append(f"{key} = {float(values[key])!r}")
        if "doi" in values:
            lines.append(f'doi = "{values["doi"]}"')
        lines.append("")
    lines.append("[alias]")
    for alias, target in sorted(aliases.items()):
        if target in names:
            lines.append(f'"{alias}" = "{target}"')
    return "\n".join(lines) + "\n"


def main(source: Path) -> None:
    here = Path(__file__).resolve().parent
    tad = source / "tad/tad_dftd3"
    reference_cn, reference_mask, c6_reference = reference_tables(
        read_torch_tensor(tad / "reference-c6.pt"), reference_cn_rows(tad / "reference.py"),
        reference_counts(source / "dftd3-1.7.0/subprojects/s-dftd3/src/dftd3/reference.f90"))

    radii = covalent_radii(source / "mctc/tad_mctc/data/radii.py")
    if np.max(np.abs(radii - np.round(radii, 2))) > 1e-12:
        raise ValueError("D3 covalent radii are not the 0.01 Å values expected")

    # Pair cutoff radii R0AB (Å, 4 decimals in s-dftd3's vdwrad.f90) for the ATM damping.
    vdw = read_torch_tensor(source / "mctc/tad_mctc/data/vdw-pairwise.pt") / TAD_MCTC_BOHR_PER_ANGSTROM
    vdw_rounded = np.round(vdw, 4)
    if np.max(np.abs(vdw - vdw_rounded)) > 1e-9 or not np.array_equal(vdw_rounded, vdw_rounded.T):
        raise ValueError("R0AB radii are not the symmetric 0.0001 Å values expected")

    np.savez_compressed(
        here / "d3_reference.npz",
        c6_reference=c6_reference,
        reference_cn=reference_cn,
        reference_mask=reference_mask,
        covalent_radius_angstrom=radii,
        vdw_radius_angstrom=vdw_rounded,
        r4_over_r2=r4_over_r2_values(tad / "data/r4r2.py"),
    )
    (here / "d3_bj_parameters.toml").write_text(
        bj_parameters(tad / "param/parameters.toml", tad / "param/aliases.toml")
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
