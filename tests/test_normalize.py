import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ingest import normalize as nz
from ingest.phantom import phantom

SHAPE = (400, 320)
OUT = (144, 112)


def make_dataset(unit, *, monochrome1=False, bits=12, padding=None, pad_value=None,
                 text=True, window=None, sigmoid=False, slope=None):
    """A minimal single-frame DICOM Dataset from a [0, 1] image with the breast bright."""
    top = 2 ** bits - 1
    stored = np.rint(100 + unit * (top - 400)).astype(np.uint16)
    if text:  # burned-in text: small bright strokes in a background corner, not touching the breast
        for k in range(4):
            stored[8:20, SHAPE[1] - 60 + 12 * k: SHAPE[1] - 54 + 12 * k] = top - 10
    if monochrome1:
        stored = (top - stored).astype(np.uint16)
    if padding is not None:
        stored[padding] = pad_value
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, 0, "US"
    if padding is not None:
        ds.PixelPaddingValue = pad_value
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
        if sigmoid:
            ds.VOILUTFunction = "SIGMOID"
    ds.PixelData = stored.tobytes()
    return ds


def breast_fraction_ok(result, truth_mask, chest_right):
    """IoU of the normalised mask with the truth mask brought to the same geometry."""
    t = truth_mask[:, ::-1] if chest_right else truth_mask
    small = nz.resize_float(t.astype(np.float32), result.mask.shape) > 0.5
    inter = (small & result.mask).sum()
    return inter / (small | result.mask).sum()


@pytest.mark.parametrize("chest", ["left", "right"])
def test_orientation_mask_and_range(chest):
    unit, truth = phantom(SHAPE, seed=1, chest_wall=chest)
    r = nz.normalize_dataset(make_dataset(unit), out_shape=OUT)
    assert r.pixels.dtype == np.uint16 and r.pixels.shape == OUT
    assert r.flipped == (chest == "right")
    # chest wall on the left: the breast touches the left edge, not the right one
    assert r.mask[:, 0].sum() > 20 and r.mask[:, -1].sum() == 0
    assert r.pixels.max() == 65535 and r.pixels[r.mask].min() == 1
    assert np.all(r.pixels[~r.mask] == 0)
    assert breast_fraction_ok(r, truth, chest == "right") > 0.9
    import json
    meta = json.loads(json.dumps(r.meta()))
    assert meta["flipped"] == r.flipped and meta["source_shape"] == list(SHAPE)


def test_text_is_excluded():
    unit, _ = phantom(SHAPE, seed=2)
    r = nz.normalize_dataset(make_dataset(unit, text=True), out_shape=(400, 320))
    # no breast pixels in the text corner
    assert not r.mask[:25, -70:].any()


def test_monochrome1_is_inverted():
    unit, truth = phantom(SHAPE, seed=3, chest_wall="right")
    a = nz.normalize_dataset(make_dataset(unit), out_shape=OUT)
    b = nz.normalize_dataset(make_dataset(unit, monochrome1=True), out_shape=OUT)
    assert b.flipped and a.flipped
    assert (a.mask == b.mask).mean() > 0.99
    both = a.mask & b.mask
    corr = np.corrcoef(a.pixels[both].astype(float), b.pixels[both].astype(float))[0, 1]
    assert corr > 0.99   # same breast bright; without the inversion it would be about -1


def test_padding_value_is_background():
    unit, _ = phantom(SHAPE, seed=4)
    pad = np.zeros(SHAPE, bool)
    pad[:, -30:] = True         # a padded band on the far side
    pad[:15, :] = True
    # a padding value brighter than the breast: unless it is removed, it dominates Otsu and the mask
    ds = make_dataset(unit, padding=pad, pad_value=4095)
    r = nz.normalize_dataset(ds, out_shape=SHAPE)
    assert not r.mask[:, -30:].any() and not r.mask[:15].any()
    assert r.mask.sum() > 0.3 * r.mask.size


def test_padding_range_limit():
    stored = np.arange(20, dtype=np.uint16).reshape(4, 5)
    ds = Dataset()
    ds.PixelPaddingValue = 3
    ds.PixelPaddingRangeLimit = 0
    assert nz.padding_mask(stored, ds).sum() == 4


def test_sigmoid_voi_is_applied():
    unit, _ = phantom(SHAPE, seed=5)
    ds = make_dataset(unit, window=(2000, 800), sigmoid=True)
    values = nz.voi_values(nz.modality_values(ds), ds, "auto")
    raw = nz.modality_values(ds).astype(float)
    expected = 4095 / (1 + np.exp(-4 * (raw - 2000) / 800))
    np.testing.assert_allclose(values, expected, rtol=1e-6)
    # "none" keeps the raw values scaled by BitsStored
    np.testing.assert_allclose(nz.voi_values(nz.modality_values(ds), ds, "none"), raw / 4095)
    r = nz.normalize_dataset(ds, out_shape=OUT)
    assert r.mask.mean() > 0.3 and not r.flipped


def test_rescale_slope_and_voi_none_give_same_geometry():
    unit, _ = phantom(SHAPE, seed=6, chest_wall="right")
    a = nz.normalize_dataset(make_dataset(unit, slope=2.0), out_shape=OUT, voi="none")
    b = nz.normalize_dataset(make_dataset(unit), out_shape=OUT, voi="none")
    assert a.flipped and b.flipped
    assert (a.mask == b.mask).mean() > 0.999


def test_boxes_follow_flip_crop_and_resize():
    unit, _ = phantom(SHAPE, seed=7, chest_wall="right")
    # a bright square "lesion" at a known place of the original image
    unit = unit.copy()
    unit[200:240, 200:260] = 1.0
    for crop in ("none", "breast"):
        r = nz.normalize_dataset(make_dataset(unit), out_shape=(200, 160), crop=crop)
        (y0, x0, y1, x1), = r.map_boxes([[200, 200, 260, 240]])   # x0, y0, x1, y1
        assert r.flipped
        # the normalised box lies where the bright square went
        inner = r.pixels[int(np.ceil(y0)) + 1:int(y1) - 1, int(np.ceil(x0)) + 1:int(x1) - 1]
        assert inner.min() > 60000, crop
        assert x1 < 160 / 2          # it moved from the right half to the left half


def test_fit_keeps_aspect_and_pads_bottom():
    unit, _ = phantom((300, 320), seed=8)       # wider than the output's aspect ratio
    r = nz.normalize_dataset(make_dataset_shape(unit), out_shape=OUT)
    rh, rw = nz.fit_shape((300, 320), OUT)
    assert rw == OUT[1] and rh < OUT[0]
    assert not r.mask[rh:].any()
    assert r.scale[0] == pytest.approx(r.scale[1], rel=0.02)


def make_dataset_shape(unit):
    global SHAPE
    saved, SHAPE = SHAPE, unit.shape
    try:
        return make_dataset(unit, text=False)
    finally:
        SHAPE = saved


def test_empty_image_raises():
    with pytest.raises(ValueError):
        nz.normalize_array(np.zeros((50, 40), np.float32))


def test_breast_mask_cuts_thin_border():
    unit, truth = phantom(SHAPE, seed=9)
    unit = unit.copy()
    unit[:, -3:] = 1.0          # a bright scanner border along the far edge
    unit[:3, :] = 1.0           # and along the top, touching the breast's chest-wall column
    small = nz.resize_float(unit, (200, 160))
    mask = nz.breast_mask(small)
    assert not mask[:, -1].any()
    assert mask[100, 5]


def test_noisy_background_and_bright_pectoral():
    rng = np.random.default_rng(10)
    unit, truth = phantom(SHAPE, seed=10)
    unit = unit.copy()
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]]
    pectoral = truth & (xx < 90 - 0.5 * yy)          # a bright triangle on the chest wall, top
    unit[pectoral] = 0.95
    background = ~truth
    unit[background] = 0.2 + 0.0001 * yy[background] + 0.04 * rng.standard_normal(background.sum())
    r = nz.normalize_dataset(make_dataset(np.clip(unit, 0, 1), text=False), out_shape=SHAPE)
    assert breast_fraction_ok(r, truth, False) > 0.97


def test_generated_dicoms(tmp_path):
    """Images of the synthetic generator: orientation, mask and lesion boxes."""
    import json

    import pydicom

    from ingest.synth import generate

    generate(layout="vindr", patients=1, out=tmp_path / "s", seed=5, image_size=(384, 300),
             progress=False, lesion_fraction=1.0, studies_per_patient=(1, 1))
    images = json.loads((tmp_path / "s" / "ground_truth.json").read_text())["images"]
    assert len(images) == 4
    lesions = 0
    for im in images:
        ds = pydicom.dcmread(tmp_path / "s" / im["path"])
        truth = ds.pixel_array != ds.PixelPaddingValue     # the generator pads all the air
        r = nz.normalize_dataset(ds, out_shape=(384, 300))
        assert r.flipped == (im["laterality"] == "R")
        t = truth[:, ::-1] if r.flipped else truth
        assert (t & r.mask).sum() / (t | r.mask).sum() > 0.97
        for lesion in im["lesions"]:
            (y0, x0, y1, x1), = r.map_boxes([lesion["box"]])
            assert r.mask[int((y0 + y1) / 2), int((x0 + x1) / 2)]
            lesions += 1
    assert lesions >= 1


def test_voi_lut_sequence_is_applied():
    from pydicom.sequence import Sequence

    unit, _ = phantom(SHAPE, seed=11)
    ds = make_dataset(unit, slope=1.0)             # float modality output: indexed as integers
    item = Dataset()
    lut = np.rint(65535 * (np.arange(4096) / 4095.0) ** 0.5).astype(np.uint16)
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = lut.tolist()
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = Sequence([item])
    values = nz.voi_values(nz.modality_values(ds), ds, "auto")
    stored = np.frombuffer(ds.PixelData, np.uint16).reshape(SHAPE)
    np.testing.assert_array_equal(values, lut[stored])
    r = nz.normalize_dataset(ds, out_shape=OUT)
    assert r.mask.mean() > 0.3 and r.pixels.max() == 65535


@pytest.mark.parametrize("kind", ["plain", "mono1", "sigmoid", "slope", "padding"])
def test_lookup_table_path_equals_direct_chain(kind):
    unit, _ = phantom(SHAPE, seed=12)
    pad = np.zeros(SHAPE, bool)
    pad[:, -20:] = True
    kwargs = {"plain": {}, "mono1": {"monochrome1": True}, "slope": {"slope": 0.5},
              "sigmoid": {"window": (1800, 900), "sigmoid": True},
              "padding": {"padding": pad, "pad_value": 4095, "window": (2000, 3000)}}[kind]
    ds = make_dataset(unit, **kwargs)
    stored = ds.pixel_array
    padding = nz.padding_mask(stored, ds)
    direct = nz.to_unit_range(nz.voi_values(nz.modality_values(ds), ds, "auto"), padding,
                              ds.PhotometricInterpretation == "MONOCHROME1")
    np.testing.assert_allclose(nz.unit_values(ds, stored, padding), direct, atol=1e-6)


def test_mask_morphology_matches_scipy():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for i in range(30):
        noisy = rng.random((40, 30)) > 0.35
        blobs = ndimage.gaussian_filter(rng.random((50, 45)), 2) > 0.5
        for mask in (noisy, blobs):
            assert np.array_equal(nz.fill_holes(mask), ndimage.binary_fill_holes(mask))
            for it in (1, 2):
                assert np.array_equal(
                    nz.square_opening(mask, it),
                    ndimage.binary_opening(mask, structure=np.ones((3, 3), bool), iterations=it))
