"""JPEG 2000 decoded at a reduced resolution (``ingest.decode``) against the full decode."""
import numpy as np
import pydicom
import pytest
from scipy import ndimage

from ingest import decode
from ingest import normalize as nz

SIZE, OUT = (1024, 768), (256, 200)     # grid 256x192, mask copy 512x384: one level dropped


@pytest.fixture(scope="module")
def j2k_files(tmp_path_factory):
    """One RSNA-layout exam (4 images) written as JPEG 2000 lossless, as RSNA's files are."""
    from ingest.bench_realsize import write_files

    pairs = write_files(tmp_path_factory.mktemp("j2k"), 1, SIZE, 0, ("j2k", "uncompressed"))
    return [(l, u) for pair in pairs for l, u in zip(pair["paths"]["j2k"],
                                                       pair["paths"]["uncompressed"])]


def test_level_never_goes_below_the_grid_or_the_mask_copy():
    assert decode.reduction_level((4000, 3000), (1152, 896), "none", 5) == 1   # 2000x1500
    assert decode.reduction_level((4000, 3000), (512, 384), "none", 5) == 2    # mask copy 512
    assert decode.reduction_level((4000, 3000), (512, 384), "none", 1) == 1    # codestream's levels
    assert decode.reduction_level((4000, 3000), (2304, 1792), "none", 5) == 0
    assert decode.reduction_level((4000, 3000), (1152, 896), "breast", 5) == 0
    assert decode.reduced_shape((4001, 3000), 1) == (2001, 1500)


def test_reduced_decode_is_close_to_full_decode(j2k_files):
    for j2k, _ in j2k_files:
        ds = pydicom.dcmread(j2k)
        assert decode.decomposition_levels(decode._frame(ds)) >= 1
        stored = decode.stored_pixels(ds, OUT)
        assert stored.shape == (SIZE[0] // 2, SIZE[1] // 2)
        fast = nz.normalize_dataset(ds, out_shape=OUT, stored=stored)
        full = nz.normalize_dataset(ds, out_shape=OUT, reduced_decode=False)
        # Geometry in the source's pixels: crop box, scale, mirroring, box map all equal.
        assert fast.meta() == full.meta()
        box = [[100.0, 200.0, 400.0, 500.0]]
        np.testing.assert_array_equal(fast.map_boxes(box), full.map_boxes(box))
        # The masks differ by at most a pixel along the breast's edge.
        edge = ndimage.binary_dilation(full.mask) & ~ndimage.binary_erosion(full.mask)
        assert ((fast.mask ^ full.mask) & ~edge).sum() <= 0.005 * full.mask.sum()
        # Pixels: the same up to the stretch's end points (min and max inside each mask).
        both = fast.mask & full.mask
        x, y = full.pixels[both].astype(float), fast.pixels[both].astype(float)
        assert np.abs(x - y).mean() < 0.1 * 65535
        a = np.vstack([x, np.ones_like(x)]).T
        residual = np.abs(a @ np.linalg.lstsq(a, y, rcond=None)[0] - y)
        assert residual.mean() < 0.01 * 65535


def test_other_syntaxes_and_option_off_decode_in_full(j2k_files):
    j2k, plain = j2k_files[0]
    ds = pydicom.dcmread(plain)
    np.testing.assert_array_equal(decode.stored_pixels(ds, OUT), ds.pixel_array)
    ds = pydicom.dcmread(j2k)
    assert decode.stored_pixels(ds, OUT, reduced_decode=False).shape == SIZE
    assert decode.stored_pixels(ds, OUT, crop="breast").shape == SIZE
    big = decode.stored_pixels(ds, (SIZE[0], SIZE[1]))
    np.testing.assert_array_equal(big, pydicom.dcmread(plain).pixel_array)   # lossless, level 0
