"""The short ZBL default applies to new models only; old configs, EF and migrated models keep ZBL to the cutoff."""

import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from physnetjax import EF, PhysNet, init_params
from physnetjax.checkpoint import migrate_legacy
from physnetjax.model import ZBL_CUTOFF_DEFAULT
from physnetjax.neighbors import apply_batch, batch_molecules, model_pair_cutoff
from physnetjax.train import TrainConfig

KE = 14.399645351950548
BOHR = 0.529177210903
ZBL_C = (0.18175, 0.50986, 0.28022, 0.02817)
ZBL_D = (3.19980, 0.94229, 0.40290, 0.20162)


def textbook_repulsion(z, r, cutoff):
    """Σ_{i<j} k_e Z_i Z_j / r Σ_k c_k exp(−d_k r / a) φ(r / r_c), float64 double loop."""
    total = 0.0
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            rij = float(np.linalg.norm(r[i] - r[j]))
            if rij >= cutoff:
                continue
            a = 0.8854 * BOHR / (z[i] ** 0.23 + z[j] ** 0.23)
            x = rij / cutoff
            switch = 1.0 - 6.0 * x**5 + 15.0 * x**4 - 10.0 * x**3
            total += KE * z[i] * z[j] / rij * sum(c * math.exp(-d * rij / a) for c, d in zip(ZBL_C, ZBL_D)) * switch
    return total


def test_defaults():
    assert PhysNet().zbl_cutoff == ZBL_CUTOFF_DEFAULT == TrainConfig().zbl_cutoff
    assert EF().zbl_cutoff is None and EF(cutoff=5.0).repulsion_cutoff == 5.0


@pytest.mark.parametrize("stored", ["null", "absent"])
def test_an_old_config_keeps_zbl_to_the_model_cutoff(molecules, stored):
    """A config written before the default (``zbl_cutoff: null`` or no key) gives the same repulsion as before."""
    settings = dict(features=8, max_degree=0, num_iterations=1, n_res=1, num_basis_functions=4, cutoff=4.0,
                    max_atomic_number=8, zbl=True, param_dtype=np.float64)
    config = json.loads(json.dumps(PhysNet(**settings, zbl_cutoff=None).config()))
    if stored == "absent":
        del config["zbl_cutoff"]
    old = PhysNet.from_config(config)
    assert old.zbl_cutoff is None and old.repulsion_cutoff == 4.0
    z, r = molecules["ethanol"]
    batch = batch_molecules([z], [r], old.cutoff, pair_cutoff=model_pair_cutoff(old), dtype=np.float64)
    repulsion = float(jax.jit(lambda p, b: apply_batch(old, p, b))(init_params(old, 0), batch)["repulsion"][0])
    assert repulsion == pytest.approx(textbook_repulsion(z, r, 4.0), rel=1e-11)
    assert abs(textbook_repulsion(z, r, 4.0) - textbook_repulsion(z, r, ZBL_CUTOFF_DEFAULT)) > 1.0


def test_migrated_legacy_model_stores_its_cutoff_explicitly():
    migration = migrate_legacy(Path(__file__).parent / "data" / "legacy" / "A")
    assert migration.model.zbl_cutoff == migration.model.cutoff
    assert migration.model.config()["zbl_cutoff"] == migration.model.cutoff
