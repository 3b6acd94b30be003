"""physnetjax.md.close_contacts: the closest pair of a frame, periodic images included (brute-force checked)."""

import itertools

import numpy as np

from physnetjax.md.close_contacts import CloseContact, closer, closest_contact


def _brute_force_closest(positions, cell, reach: int = 2):
    """(i, j, d) of the closest pair over images n ∈ [-reach, reach]³ (i == j: an atom and its own image)."""
    best = (None, None, np.inf)
    for i, j in itertools.combinations_with_replacement(range(len(positions)), 2):
        for n in itertools.product(range(-reach, reach + 1), repeat=3):
            if i == j and not any(n):
                continue
            d = np.linalg.norm(positions[j] - positions[i] + np.asarray(n) @ cell)
            if d < best[2]:
                best = (i, j, d)
    return best


def test_isolated_frame_gives_the_closest_pair_below_half_an_angstrom():
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.1], [0.0, 0.31, 1.2], [3.0, 0.0, 0.0]])
    contact = closest_contact(positions, None, np.zeros(3, bool), step=40)
    assert (contact.i, contact.j, contact.step) == (1, 2, 40)
    np.testing.assert_allclose(contact.distance, np.hypot(0.31, 0.1), rtol=1e-12)
    assert not contact.overlapping
    assert "atoms 1-2 0.3257 Å apart at step 40 (below 0.5 Å, shorter than any bond)" == contact.describe()
    assert closest_contact(positions[[0, 1, 3]], None, np.zeros(3, bool), step=0) is None


def test_periodic_images_count_and_match_brute_force():
    rng = np.random.default_rng(3)
    cell = np.array([[2.2, 0.0, 0.0], [0.7, 2.5, 0.0], [0.3, -0.4, 2.9]])
    for _ in range(20):
        positions = rng.uniform(0, 2.5, (4, 3))
        i, j, d = _brute_force_closest(positions, cell)
        contact = closest_contact(positions, cell, np.ones(3, bool), step=1)
        if d >= 0.5:
            assert contact is None
            continue
        assert (contact.i, contact.j) == (i, j)
        np.testing.assert_allclose(contact.distance, d, rtol=1e-12)


def test_an_atom_near_its_own_image_and_overlaps():
    cell = np.diag([0.45, 10.0, 10.0])
    contact = closest_contact(np.array([[0.0, 0.0, 0.0], [0.0, 3.0, 0.0]]), cell, np.ones(3, bool), step=2)
    assert (contact.i, contact.j) == (0, 0) and "atoms 0-0 (periodic image) 0.45 Å" in contact.describe()
    overlap = CloseContact(step=5, i=0, j=1, distance=0.05)
    assert overlap.overlapping and "(below 0.1 Å, overlapping)" in overlap.describe()


def test_closer_keeps_the_nearer_and_the_earlier_on_a_tie():
    a, b, c = CloseContact(1, 0, 1, 0.3), CloseContact(2, 0, 1, 0.2), CloseContact(3, 0, 1, 0.2)
    assert closer(None, None) is None and closer(None, a) is a and closer(a, None) is a
    assert closer(a, b) is b and closer(b, a) is b and closer(b, c) is b
