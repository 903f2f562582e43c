"""ssl mode with one AugmentSpec per view (``ViewSpecs``), on both backends."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from loaders import AugmentSpec, ViewSpecs, make_loader, synthetic

HAVE_DALI = importlib.util.find_spec("nvidia") is not None and \
    importlib.util.find_spec("nvidia.dali") is not None
BACKENDS = ["torch", pytest.param("dali", marks=pytest.mark.skipif(
    not HAVE_DALI, reason="nvidia.dali is not installed"))]

# no size: both resolve to the set's patch size; view1 is the whole patch, unchanged
WEAK = AugmentSpec(scale=(1.0, 1.0), ratio=(1.0, 1.0), gamma=(1.0, 1.0), contrast=(1.0, 1.0),
                   hflip=0.0)
STRONG = AugmentSpec(scale=(0.2, 0.5), gamma=(0.5, 2.0), contrast=(0.5, 1.5), hflip=0.5,
                     vflip=0.5)
SPEC = AugmentSpec(size=8, scale=(0.3, 1.0), gamma=(0.6, 1.6), contrast=(0.6, 1.4), vflip=0.5)


@pytest.fixture(scope="module")
def views_root(tmp_path_factory):
    # 200 pairs, 400 ssl examples: enough for the statistics below
    return synthetic.pair_set(tmp_path_factory.mktemp("views") / "set", counts=(100, 100),
                              size=16)


def by_key(batches, name: str) -> dict:
    return {k: b[name][i] for b in batches for i, (k, pad) in
            enumerate(zip(b["key"], b["is_pad"].tolist())) if not pad}


def ssl_views(root, backend: str, augment, **kwargs) -> tuple[dict, dict]:
    batches = list(make_loader(root, mode="ssl", backend=backend, batch_size=50,
                               augment=augment, seed=5, **kwargs))
    return by_key(batches, "view1"), by_key(batches, "view2")


def image_stats(views: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image means and standard deviations."""
    x = torch.stack([views[k] for k in sorted(views)]).flatten(1)
    return x.mean(1), x.std(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_views_follow_their_own_spec(views_root, backend):
    workers = 1
    plain, _ = ssl_views(views_root, backend, AugmentSpec.identity(), workers=workers)
    view1, view2 = ssl_views(views_root, backend, (WEAK, STRONG), workers=workers)
    assert sorted(view1) == sorted(view2) == sorted(plain)
    assert next(iter(view2.values())).shape == (1, 16, 16)
    # view1: only the scaling, exactly the unaugmented patch; view2: far from it
    assert all(torch.equal(view1[k], plain[k]) for k in plain)
    diff2 = torch.stack([(view2[k] - plain[k]).abs().mean() for k in plain])
    assert diff2.mean() > 0.05, diff2.mean()
    # the strong view's brightness spreads much more from patch to patch
    means1, _ = image_stats(view1)
    means2, _ = image_stats(view2)
    assert means2.std() > 1.5 * means1.std(), (means1.std(), means2.std())


@pytest.mark.skipif(not HAVE_DALI, reason="nvidia.dali is not installed")
def test_backends_agree_per_view(views_root):
    out = {backend: ssl_views(views_root, backend, ViewSpecs(WEAK, STRONG), workers=1)
           for backend in ("torch", "dali")}
    (t1, t2), (d1, d2) = out["torch"], out["dali"]
    assert sorted(t1) == sorted(d1) and sorted(t2) == sorted(d2)
    # the identity-like view: bit-identical, as AugmentSpec.identity is
    assert all(torch.equal(t1[k], d1[k]) for k in t1)
    # the strong view: the same distribution (the tolerances of the one-spec agreement test)
    for t, d in zip(image_stats(t2), image_stats(d2)):
        assert abs(t.mean() - d.mean()) < 0.02, (t.mean(), d.mean())
        assert abs(t.std() - d.std()) < 0.2 * t.std(), (t.std(), d.std())


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_spec_twice_is_one_spec(pairs_root, backend):
    one = ssl_views(pairs_root, backend, SPEC, workers=0 if backend == "torch" else 1)
    two = ssl_views(pairs_root, backend, (SPEC, SPEC), workers=0 if backend == "torch" else 1)
    for a, b in zip(one, two):
        assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_one_spec_draws_view_1_and_2_streams(pairs_root):
    """One spec: each view is ``augment_batch`` with the batch's view-1 / view-2 generator, as
    it always was (the per-view specs did not move a random draw)."""
    from loaders.augment import augment_batch, batch_generator

    batch = next(iter(make_loader(pairs_root, mode="ssl", batch_size=4, augment=SPEC,
                                  workers=0, seed=7)))
    plain = next(iter(make_loader(pairs_root, mode="ssl", batch_size=4, workers=0, seed=7,
                                  augment=AugmentSpec.identity())))
    assert batch["key"] == plain["key"]
    for name, view in (("view1", 1), ("view2", 2)):
        want = augment_batch(plain["view1"].clone(), SPEC, batch_generator(7, 0, 0, 0, view))
        assert torch.allclose(batch[name], want, atol=1e-6)


def test_size_none_resolves_per_view(pairs_root):
    loader = make_loader(pairs_root, mode="ssl", batch_size=4, workers=0,
                         augment=(AugmentSpec(), AugmentSpec(size=16)))
    assert loader.augment == ViewSpecs(AugmentSpec(size=16), AugmentSpec(size=16))
    assert next(iter(loader))["view1"].shape == (4, 1, 16, 16)


@pytest.mark.parametrize("augment, match", [
    ((AugmentSpec(size=8), AugmentSpec(size=12)), "view1 has size 8, view2 size 12"),
    ((AugmentSpec(size=8), AugmentSpec()), "view1 has size 8, view2 size 16"),
    ((AugmentSpec(),), "pair of them"),
    ((AugmentSpec(), AugmentSpec(), AugmentSpec()), "pair of them"),
    ((AugmentSpec(), {"size": 8}), "pair of them"),
    ("strong", "pair of them"),
])
def test_bad_view_specs_are_refused(pairs_root, augment, match):
    with pytest.raises(ValueError, match=match):
        make_loader(pairs_root, mode="ssl", batch_size=4, augment=augment)


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_view_specs_need_ssl_mode(tmp_path, pairs_root, backend):
    with pytest.raises(ValueError, match="for mode 'ssl' .*; mode 'pairs' has one view"):
        make_loader(pairs_root, mode="pairs", backend=backend, augment=(WEAK, STRONG))
    root = synthetic.patch_set(tmp_path / "patches", counts=(3,))
    with pytest.raises(ValueError, match="for mode 'ssl'"):
        make_loader(root, mode="labelled", backend=backend, augment=ViewSpecs(WEAK, STRONG))
