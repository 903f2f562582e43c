import numpy as np
import pytest

from ingest.tiling import cut, cut_tiles, grid, integral, tile_pair


def brute_fraction(mask, box):
    y0, x0, y1, x1 = box
    return mask[y0:y1, x0:x1].mean()


def test_rules_and_counts():
    h, w, s = 40, 30, 10
    left_mask = np.zeros((h, w), bool)
    left_mask[:, :20] = True                 # breast on the left two thirds
    right_mask = left_mask.copy()
    right_mask[:10, 10:20] = False           # the right breast misses tile (0, 1)
    right_mask[20:30, 10:14] = False         # 40% XOR in tile (2, 1), background 0.4 (kept by bg)
    img = np.arange(h * w, dtype=np.uint16).reshape(h, w)
    r = tile_pair(img, img, left_mask, right_mask, s, max_background=0.5, max_border_xor=0.2)
    assert r.total == 12                     # 4 rows x 3 cols
    # column 2 is all background (4 tiles) and tile (0, 1) is background on the right
    assert r.dropped == {"background": 5, "border": 1}
    assert len(r) == 12 - 5 - 1
    kept = set(zip(r.rows.tolist(), r.cols.tolist()))
    assert (2, 1) not in kept and (0, 1) not in kept and (1, 1) in kept and (0, 0) in kept
    for (y0, x0, y1, x1), bg, xor in zip(r.boxes, r.background, r.xor):
        assert bg[0] == pytest.approx(1 - brute_fraction(left_mask, (y0, x0, y1, x1)))
        assert bg[1] == pytest.approx(1 - brute_fraction(right_mask, (y0, x0, y1, x1)))
        assert xor == pytest.approx(brute_fraction(left_mask ^ right_mask, (y0, x0, y1, x1)))


def test_stride_and_random_masks_match_brute_force():
    rng = np.random.default_rng(0)
    lm = rng.random((37, 29)) < 0.8
    rm = rng.random((37, 29)) < 0.8
    img = np.zeros((37, 29), np.uint16)
    r = tile_pair(img, img, lm, rm, 8, stride=5, max_background=1.0, max_border_xor=1.0)
    rows, cols, y0, x0 = grid((37, 29), 8, 5)
    assert r.total == len(rows) == 6 * 5 and len(r) == r.total
    for (a, b, c, d), bg, xor in zip(r.boxes, r.background, r.xor):
        assert c - a == 8 and d - b == 8 and a % 5 == 0 and b % 5 == 0
        assert bg[0] == pytest.approx(1 - lm[a:c, b:d].mean())
        assert xor == pytest.approx((lm ^ rm)[a:c, b:d].mean())


def test_cut_and_cut_tiles():
    img = np.arange(20 * 20, dtype=np.uint16).reshape(20, 20)
    patch = cut(img, [2, 3, 7, 9])
    assert patch.dtype == np.uint16 and patch.shape == (5, 6) and patch[0, 0] == img[2, 3]
    with pytest.raises(ValueError, match="outside"):
        cut(img, [15, 15, 25, 25])
    mask = np.ones((20, 20), bool)
    r = tile_pair(img, img, mask, mask, 5)
    tiles = cut_tiles(img, r)
    assert tiles.shape == (16, 5, 5) and tiles.dtype == np.uint16
    for t, box in zip(tiles, r.boxes):
        np.testing.assert_array_equal(t, cut(img, box))


def test_integral_and_shape_check():
    m = np.ones((3, 4), bool)
    assert integral(m)[3, 4] == 12 and integral(m)[0].sum() == 0
    with pytest.raises(ValueError, match="shape"):
        tile_pair(m, m[:, :3], m, m, 2)


@pytest.mark.parametrize("size,stride", [(7, 7), (7, 3), (16, 5), (40, 40)])
def test_window_sums_match_the_full_summed_area_table(size, stride):
    from ingest.tiling import box_sums, window_sums

    rng = np.random.default_rng(size * 31 + stride)
    mask = rng.random((83, 61)) > 0.4
    _, _, y0, x0 = grid(mask.shape, size, stride)
    got = window_sums(mask, y0, x0, size)
    assert np.array_equal(got, box_sums(integral(mask), y0, x0, size))
    assert got[0] == mask[:size, :size].sum()
