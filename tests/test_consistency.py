"""Consistency rows from a stack of masks, at the end of training and in snapshots (the same
code), on hand-built parameter stacks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlottery import consistency, masks, stacks

SHAPES = {"conv": {"kernel": (3, 3, 2, 4), "bias": (4,)}, "dense": {"kernel": (8, 5)}}
DENSITIES = (0.5, 0.3)  # one compiled snapshot program for every test here


def params_stack(k: int, seed: int = 0, shared: float = 0.0):
    """k members: a shared random part (weight `shared`) plus each member's own."""
    rng = np.random.default_rng(seed)
    base = {n: {p: rng.normal(size=s) for p, s in leaves.items()} for n, leaves in SHAPES.items()}
    members = []
    for _ in range(k):
        members.append({n: {p: jnp.asarray(shared * base[n][p] + rng.normal(size=s), jnp.float32)
                            for p, s in leaves.items()} for n, leaves in SHAPES.items()})
    return stacks.stack(members)


def test_a_row_is_the_mean_over_pairs_of_the_pairwise_statistics():
    ms = masks.magnitude_prune(params_stack(4, shared=1.0), DENSITIES[1], stacked=True)
    ref = stacks.stack([masks.magnitude_prune(stacks.index(params_stack(1, seed=9), 0), DENSITIES[1])] * 4)
    row = consistency.row(jax.device_get(consistency.agreement(ms, ref)))
    upper = np.triu_indices(4, 1)  # the 6 pairs
    kappas = np.asarray(masks.pairwise_kappa(ms))[upper]
    assert row["pairs"] == 6
    assert row["kappa_mean"] == pytest.approx(np.mean(kappas), abs=1e-6)
    assert row["kappa_std"] == pytest.approx(np.std(kappas, ddof=1), abs=1e-6)
    assert row["iou_mean"] == pytest.approx(np.mean(np.asarray(masks.pairwise_iou(ms))[upper]),
                                            abs=1e-6)
    assert row["pruned_iou_mean"] == pytest.approx(
        np.mean(np.asarray(masks.pairwise_pruned_iou(ms))[upper]), abs=1e-6)
    assert row["kappa_with_spawn_mask"] == pytest.approx(
        np.mean(np.asarray(masks.kappa(ms, ref, stacked=True))), abs=1e-6)
    assert row["achieved_density"] == pytest.approx(0.3, abs=0.01)
    layers = consistency.layer_rows(jax.device_get(consistency.agreement(ms)))
    assert [r["layer"] for r in layers] == ["conv/kernel", "dense/kernel"]


def test_shared_structure_raises_kappa_and_independent_members_sit_near_zero():
    def kappa(shared):
        start = stacks.index(params_stack(4, shared=shared), 0)
        refs = consistency.references(start, DENSITIES, 4, stacked=False)
        return consistency.snapshot_rows(params_stack(4, seed=3, shared=shared), refs, DENSITIES)[1]

    alike, apart = kappa(3.0), kappa(0.0)
    assert alike["kappa_mean"] > 0.5 and abs(apart["kappa_mean"]) < 0.15
    assert alike["iou_mean"] > alike["layer_matched_chance_iou"]


def test_a_snapshot_equals_the_statistics_of_the_masks_it_makes():
    """The compiled snapshot (pruning and counting in one program, every density) gives the
    consistency stage's numbers for the same weights."""
    p, start = params_stack(4, seed=1, shared=0.5), params_stack(4, seed=2)
    refs = consistency.references(start, DENSITIES, 4, stacked=True)
    rows = consistency.snapshot_rows(p, refs, DENSITIES)
    for d, ref, row in zip(DENSITIES, refs, rows):
        direct = consistency.row(jax.device_get(consistency.agreement(
            masks.magnitude_prune(p, d, stacked=True), ref)))
        assert row["density"] == d and len(row["layers"]) == 2
        for key, value in direct.items():
            assert row[key] == pytest.approx(value, abs=1e-6), key
