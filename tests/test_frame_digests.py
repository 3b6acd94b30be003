"""Frame digests (physnetjax.data.frame_digests): the same frame in any file and format has one digest, distinct
frames have distinct ones, and a bottom-k sample of a large training set estimates the share of training frames."""

import hashlib

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from physnetjax.data import load_dataset
from physnetjax.data import frame_digests as fd
from physnetjax.data.frame_digests import (TRAINING_FRAMES_KEY, VALIDATION_FRAMES_KEY, FrameRecord, dataset_digests,
                                          frame_digests, union_of)
from physnetjax.data.split import random_split


def thermal_frames(count: int, seed: int = 0):
    """``count`` water-like frames (Z, R (count, 3, 3) Å) scattered by 0.1 Å."""
    rng = np.random.default_rng(seed)
    z = np.array([8, 1, 1])
    r0 = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]])
    return np.tile(z, (count, 1)), r0 + rng.normal(0.0, 0.1, (count, 3, 3))


def test_a_digest_is_blake2b_of_the_atomic_numbers_the_rounded_positions_and_the_charge():
    """Golden value computed here with hashlib, independently of the module: BLAKE2b-8 of Z as int16, R / 1e-3 Å
    and Q / 1e-3 e rounded as int64, little endian, read as a little-endian uint64. The anion and the neutral
    radical at one geometry (a formate probe: eval said 34 of 40 never-trained radical frames were training frames)
    differ."""
    z = np.array([[8, 1, 1, 0]] * 2)
    r = np.array([[[0.0, 0.0, 0.1234567], [0.9604999, 0.0, 0.0], [-0.2395001, 0.927, 0.0], [5.0, 5.0, 5.0]]] * 2)
    expected = []
    for charge in (0, -1000):
        h = hashlib.blake2b(np.array([8, 1, 1], "<i2").tobytes(), digest_size=8)
        h.update(np.array([[0, 0, 123], [960, 0, 0], [-240, 927, 0]], "<i8").tobytes())
        h.update(np.array(charge, "<i8").tobytes())
        expected.append(int.from_bytes(h.digest(), "little"))
    assert frame_digests(z, r, [3, 3], [0.0, -1.0]).tolist() == expected
    assert frame_digests(z[:1], r[:1], [3])[0] == expected[0]  # no charges given: neutral


def test_the_same_frames_in_npz_and_extxyz_have_the_same_digests_and_distinct_frames_distinct_ones(tmp_path):
    z, r = thermal_frames(50)
    energies = np.zeros(50)
    np.savez(tmp_path / "frames.npz", Z=z, R=r, N=np.full(50, 3), E=energies, F=np.zeros_like(r))
    images = []
    for zk, rk in zip(z, r):
        atoms = ase.Atoms(numbers=zk, positions=rk)
        atoms.calc = SinglePointCalculator(atoms, energy=0.0, forces=np.zeros((3, 3)))
        images.append(atoms)
    ase.io.write(tmp_path / "frames.extxyz", images[::-1])  # written with 8 decimals, in another order
    from_npz = dataset_digests(load_dataset(tmp_path / "frames.npz"))
    from_xyz = dataset_digests(load_dataset(tmp_path / "frames.extxyz"))
    assert len(np.unique(from_npz)) == 50
    np.testing.assert_array_equal(from_npz, from_xyz[::-1])
    with pytest.warns(UserWarning, match=r"50 duplicated frame\(s\): .*frames\.extxyz\[0\] = .*frames\.npz\[49\]"):
        padded = load_dataset([tmp_path / "frames.npz", tmp_path / "frames.extxyz"])  # the duplicates check's digests
    np.testing.assert_array_equal(dataset_digests(padded), np.concatenate([from_npz, from_xyz]))
    moved = r.copy()
    moved[:, 2, 1] += 0.01
    assert not np.isin(frame_digests(z, moved, np.full(50, 3)), from_npz).any()
    other_element = z.copy()
    other_element[:, 0] = 16
    assert not np.isin(frame_digests(other_element, r, np.full(50, 3)), from_npz).any()


def test_the_record_survives_the_checkpoint_metadata_and_another_scheme_is_not_read():
    z, r = thermal_frames(30)
    digests = frame_digests(z, r, np.full(30, 3))
    record = FrameRecord.of(digests)
    back = FrameRecord.from_metadata({fd.TRAINING_FRAMES_KEY: record.to_metadata()})
    assert back.complete and back.frames == 30
    np.testing.assert_array_equal(back.digests, np.sort(digests))
    share = back.share_of(np.concatenate([digests[:7], frame_digests(*thermal_frames(5, seed=1), np.full(5, 3))]))
    assert (share.matched, share.compared, share.total) == (7, 12, 12)
    assert share.describe() == "7 of the 12 frames"
    assert FrameRecord.from_metadata({fd.TRAINING_FRAMES_KEY: {**record.to_metadata(), "scheme": "md5"}}) is None
    assert FrameRecord.from_metadata({}) is None


def test_a_sampled_record_estimates_the_share_of_training_frames(monkeypatch):
    """Bottom-k: 3000 training frames, 300 digests kept. Of 2000 queried frames, 1000 training frames: the share is
    measured on the ~10 % of them below the largest digest kept (exact there), ~200 frames, so its binomial
    standard deviation is ~0.035; ±0.15 is 4 of them."""
    monkeypatch.setattr(fd, "MAX_RECORDED", 300)
    z, r = thermal_frames(4000)
    digests = frame_digests(z, r, np.full(4000, 3))
    record = FrameRecord.of(digests[:3000])
    assert not record.complete and record.frames == 3000 and len(record.digests) == 300
    np.testing.assert_array_equal(record.digests, np.sort(digests[:3000])[:300])
    share = record.share_of(digests[2000:])  # 1000 training frames, 1000 others
    assert share.total == 2000 and 120 < share.compared < 280
    assert share.matched / share.compared == pytest.approx(0.5, abs=0.15)
    assert share.describe().startswith("about ") and "of the 2000 frames (estimated from" in share.describe()
    union = record.union(FrameRecord.of(digests[2500:]))  # 3000 + 1500, 500 shared: 4000 distinct
    assert union.frames == pytest.approx(4000, rel=0.2)
    assert set(union.digests) <= set(digests) and len(union.digests) <= 300


def test_sampled_unions_and_shares_follow_the_bottom_k_formulas_exactly(monkeypatch):
    """Digests placed by hand at fractions of 2⁶⁴ (unit u = 2⁶⁰), k = 5 kept. A sample A (the 4 smallest of 16
    frames, up to 4u) joined with a complete B keeps B's digests up to A's largest, 4u included: 5 kept, 5 × 2⁶⁴ /
    (4u + 1) → 20 frames. Two samples are cut at the smaller of their largest digests (4u, not C's 6u): 16 frames.
    A sample whose digests lie at the top of the range estimates fewer frames than it keeps: it still counts one
    more. A share compares the digests up to the sample's largest, that one included; none matched is no match."""
    monkeypatch.setattr(fd, "MAX_RECORDED", 5)
    u = 2**60
    a = FrameRecord(digests=np.array([1, 2, 3, 4], np.uint64) * np.uint64(u), frames=16)
    b = FrameRecord.of(np.array([u // 2, 4 * u, 9 * u], np.uint64))
    c = FrameRecord(digests=np.array([2 * u, 6 * u], np.uint64), frames=8)
    assert not a.complete and b.complete and not c.complete
    for first, second in ((a, b), (b, a)):
        union = first.union(second)
        np.testing.assert_array_equal(union.digests, np.array([u // 2, u, 2 * u, 3 * u, 4 * u], np.uint64))
        assert union.frames == 20
    for first, second in ((a, c), (c, a)):
        union = first.union(second)
        np.testing.assert_array_equal(union.digests, np.array([1, 2, 3, 4], np.uint64) * np.uint64(u))
        assert union.frames == 16
    top = FrameRecord(digests=np.array([2**63, 2**64 - 2**12], np.uint64), frames=9)
    assert top.union(FrameRecord.of(np.array([2**63], np.uint64))).frames == 3

    share = a.share_of(np.array([4 * u, 5 * u, u, 7 * u], np.uint64))
    assert (share.matched, share.compared, share.total, share.any) == (2, 2, 4, True)
    assert share.describe() == "about 100 % of the 4 frames (estimated from 2 of them)"
    missed = a.share_of(np.array([u + 1, 8 * u], np.uint64))
    assert (missed.matched, missed.compared, missed.any) == (0, 1, False)


def test_more_frames_than_recorded_keep_the_smallest_digests():
    """MAX_RECORDED = 100 000 digests are kept of 100 001 distinct frames, and all of 100 000."""
    digests = np.arange(100_001, 0, -1).astype(np.uint64)
    sample, whole = FrameRecord.of(digests), FrameRecord.of(digests[1:])
    assert not sample.complete and sample.frames == 100_001 and len(sample.digests) == 100_000
    np.testing.assert_array_equal(sample.digests, np.arange(1, 100_001, dtype=np.uint64))
    assert whole.complete and whole.frames == 100_000


def test_union_of_complete_records_is_exact_and_unknown_when_any_is_missing():
    z, r = thermal_frames(40)
    digests = frame_digests(z, r, np.full(40, 3))
    union = union_of([FrameRecord.of(digests[:25]), FrameRecord.of(digests[15:])])
    assert union.complete and union.frames == 40
    assert union_of([FrameRecord.of(digests), None]) is None


def test_the_shipped_ethanol_model_names_its_1600_training_and_200_validation_frames_in_the_bundled_set():
    """The record added to the shipped model (its README: the split that reproduces its recorded validation MAEs):
    eval on the bundled set said nothing of the 80 % of frames the model had trained on, nor of the 10 % that
    validated it; both are exactly the parts of the split the README names."""
    from physnetjax import load_checkpoint
    from physnetjax.data import bundled_dataset_path
    from physnetjax.pretrained import example_model_path

    _, _, metadata = load_checkpoint(example_model_path(), with_metadata=True)
    dataset = load_dataset(bundled_dataset_path())
    split = random_split(len(dataset.E), 0.1, 0.1, seed=0)
    for key, part, count in ((TRAINING_FRAMES_KEY, "train", 1600), (VALIDATION_FRAMES_KEY, "valid", 200)):
        share = FrameRecord.from_metadata(metadata, key).share_of(dataset_digests(dataset))
        assert (share.matched, share.compared, share.total) == (count, 2000, 2000)
        share = FrameRecord.from_metadata(metadata, key).share_of(dataset_digests(dataset, split[part]))
        assert share.matched == count
