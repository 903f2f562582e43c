"""Epoch plans: exactly once, equal batch counts, bounded shuffle, resume continuation."""
from __future__ import annotations

import numpy as np
import pytest

from loaders import epochs


@pytest.mark.parametrize("counts", [(5, 7, 3), (1,), (4, 4, 4, 4), (0, 9, 2)])
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 4, 5])
def test_plan_is_exactly_once_and_balanced(counts, world, batch):
    plans = [epochs.plan_rank(counts, seed=3, epoch=1, rank=r, world_size=world,
                              batch_size=batch, shuffle_buffer=4) for r in range(world)]
    assert len({p.batches for p in plans}) == 1
    assert all(len(p.positions) == p.batches * batch for p in plans)
    real = np.concatenate([p.positions[~p.is_pad] for p in plans])
    assert sorted(real.tolist()) == list(range(sum(counts)))
    for p in plans:  # pads sit at the end of the rank's sequence
        assert not p.is_pad[: p.real_samples].any() and p.is_pad[p.real_samples:].all()


def test_locate_maps_positions_to_shard_offsets():
    plan = epochs.plan_rank([3, 2, 4], seed=0, epoch=5, rank=0, world_size=1, batch_size=9)
    shard, offset = plan.locate(np.arange(9))
    pairs = sorted(zip(shard.tolist(), offset.tolist()))
    assert pairs == [(s, o) for s, n in enumerate([3, 2, 4]) for o in range(n)]


def test_order_depends_on_seed_and_epoch_only():
    a = epochs.plan_rank([50, 50], seed=1, epoch=0, rank=0, world_size=1, batch_size=10)
    b = epochs.plan_rank([50, 50], seed=1, epoch=0, rank=0, world_size=1, batch_size=10)
    c = epochs.plan_rank([50, 50], seed=1, epoch=1, rank=0, world_size=1, batch_size=10)
    assert np.array_equal(a.positions, b.positions)
    assert not np.array_equal(a.positions, c.positions)


def test_window_shuffle_bounds_displacement():
    perm = epochs.window_shuffle(5000, 16, np.random.default_rng(0))
    assert sorted(perm.tolist()) == list(range(5000))
    assert np.abs(perm - np.arange(5000)).max() <= 16
    assert (perm != np.arange(5000)).mean() > 0.5


@pytest.mark.parametrize("n_batches", [0, 1, 7, 8, 13])
@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_resume_blocks_continue_the_sequence(n_batches, workers):
    full = epochs.round_robin([list(b) for b in epochs.worker_blocks(n_batches, workers)])
    assert sorted(full) == list(range(n_batches))
    for done in range(n_batches + 1):
        rest = epochs.round_robin(epochs.resume_blocks(n_batches, workers, done))
        assert full[:done] + rest == full


def test_state_round_trip():
    state = epochs.EpochState(seed=4, epoch=2, world_size=2, rank=1, workers=3, batch_size=8,
                              batches_done=5)
    assert epochs.EpochState.from_dict(state.to_dict()) == state
