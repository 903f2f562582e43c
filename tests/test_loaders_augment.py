"""The batched torch augmentation: crops, both resize paths, photometric range, determinism."""
from __future__ import annotations

import math

import pytest
import torch

from loaders.augment import (AugmentSpec, augment_batch, batch_generator, crop_boxes,
                             crop_interpolate, crop_roi_align, scale_to_unit)


def test_crop_boxes_respect_bounds_scale_and_ratio():
    spec = AugmentSpec(size=32, scale=(0.3, 0.9), ratio=(0.5, 2.0))
    boxes = crop_boxes(2000, 64, 48, spec, torch.Generator().manual_seed(0))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 48).all() and (boxes[:, 3] <= 64).all()
    area = w * h / (64 * 48)
    assert area.min() > 0.25 and area.max() < 0.95      # scale, up to rounding
    ratio = w / h
    assert ratio.min() > 0.45 and ratio.max() < 2.2
    assert 0.4 < area.mean() < 0.8 and len(set(boxes[:, 0].tolist())) > 10


def test_both_resize_paths_agree_and_keep_whole_patches():
    x = torch.rand(6, 2, 40, 40)
    boxes = torch.tensor([[0, 0, 40, 40]] * 3 + [[5, 3, 35, 39]] * 3, dtype=torch.float32)
    a = crop_interpolate(x, boxes, 40)
    b = crop_roi_align(x, boxes, 40)
    assert torch.equal(a[:3], x[:3]) and torch.allclose(b[:3], x[:3], atol=1e-6)
    assert (a[3:] - b[3:]).abs().mean() < 0.02          # two linear filters, same crop
    small = crop_interpolate(x, boxes, 16), crop_roi_align(x, boxes, 16)
    assert (small[0] - small[1]).abs().mean() < 0.05


def test_scaling_uses_each_samples_bits():
    pixels = torch.tensor([4095, 65535], dtype=torch.int32).to(torch.uint16).view(2, 1, 1, 1)
    out = scale_to_unit(pixels, torch.tensor([12, 16]))
    assert out.dtype == torch.float32 and out.flatten().tolist() == [1.0, 1.0]


@pytest.mark.parametrize("spec", [AugmentSpec(size=24), AugmentSpec(size=48, gamma=(0.5, 2.0),
                                                                    contrast=(0.5, 1.8),
                                                                    vflip=0.5)])
def test_augment_range_shape_and_determinism(spec):
    x = torch.rand(16, 2, 40, 40)
    a = augment_batch(x.clone(), spec, batch_generator(1, 2, 0, 5))
    b = augment_batch(x.clone(), spec, batch_generator(1, 2, 0, 5))
    c = augment_batch(x.clone(), spec, batch_generator(1, 2, 0, 6))
    assert a.shape == (16, 2, spec.size, spec.size) and a.dtype == torch.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gamma_and_contrast_move_the_statistics():
    x = torch.full((200, 1, 8, 8), 0.25) + 0.1 * torch.rand(200, 1, 8, 8)
    spec = AugmentSpec(size=8, scale=(1, 1), ratio=(1, 1), gamma=(2.0, 2.0), contrast=(1, 1),
                       hflip=0)
    out = augment_batch(x.clone(), spec, batch_generator(0, 0, 0, 0))
    assert torch.allclose(out, x ** 2, atol=1e-6)
    spec = AugmentSpec(size=8, scale=(1, 1), ratio=(1, 1), gamma=(1, 1), contrast=(0.5, 0.5),
                       hflip=0)
    out = augment_batch(x.clone(), spec, batch_generator(0, 0, 0, 0))
    assert math.isclose(out.std().item(), 0.5 * x.std(dim=(1, 2, 3)).mean().item() * 1.0,
                        rel_tol=0.3)
    assert torch.allclose(out.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)), atol=1e-5)


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="scale"):
        AugmentSpec(scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="gamma"):
        AugmentSpec(gamma=(1.2, 0.8))
    with pytest.raises(ValueError, match="hflip"):
        AugmentSpec(hflip=2.0)


def test_flips_applied_in_the_resize_equal_flipping_afterwards():
    x = torch.rand(4, 2, 30, 30)
    boxes = torch.tensor([[2, 3, 27, 28]] * 4, dtype=torch.float32)
    hflip = torch.tensor([True, False, True, False])
    vflip = torch.tensor([True, True, False, False])
    plain = crop_interpolate(x, boxes, 20)
    into = torch.full((4, 2, 20, 20), -1.0)
    flipped = crop_interpolate(x, boxes, 20, hflip, vflip, out=into)
    assert flipped.data_ptr() == into.data_ptr()   # written where it was asked to be
    assert torch.equal(flipped[0], plain[0].flip(-1, -2))
    assert torch.equal(flipped[1], plain[1].flip(-2))
    assert torch.equal(flipped[2], plain[2].flip(-1))
    assert torch.equal(flipped[3], plain[3])


def test_opencv_resize_matches_torch_bilinear_and_shrinking_stays_antialiased():
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(3)
    x = torch.rand(16, 2, 48, 48, generator=g)
    boxes = crop_boxes(16, 48, 48, AugmentSpec(size=48, scale=(0.1, 1.0)), g)
    for size in (48, 32):   # enlarging (OpenCV) and, for 32, shrinking some (torch antialias)
        got = crop_interpolate(x, boxes, size)
        for i, (x0, y0, x1, y1) in enumerate(boxes.to(torch.int64).tolist()):
            want = F.interpolate(x[i:i + 1, :, y0:y1, x0:x1], size=(size, size),
                                 mode="bilinear", align_corners=False,
                                 antialias=(y1 - y0 > size or x1 - x0 > size))[0]
            assert torch.allclose(got[i], want, atol=2e-5), (size, i)


def test_photometric_equals_contrast_then_pow():
    from loaders.augment import photometric

    g = torch.Generator().manual_seed(4)
    x = torch.rand(8, 2, 16, 16, generator=g)
    x[0, 0, :2] = 0.0
    gamma, contrast = 0.5 + 1.5 * torch.rand(8, generator=g), 0.5 + torch.rand(8, generator=g)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    c = contrast.view(-1, 1, 1, 1)
    want = ((x - mean) * c + mean).clamp(0, 1).pow(gamma.view(-1, 1, 1, 1))
    got = photometric(x.clone(), gamma, contrast)
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.equal(got[want == 0], want[want == 0])   # 0 ** g stays exactly 0


def test_plain_bilinear_when_enlarging_matches_the_antialiased_kernel():
    import torch.nn.functional as F

    x = torch.rand(1, 2, 40, 40)
    out = crop_interpolate(x, torch.tensor([[4.0, 6.0, 34.0, 31.0]]), 48)
    ref = F.interpolate(x[:, :, 6:31, 4:34], size=(48, 48), mode="bilinear", antialias=True,
                        align_corners=False)
    assert torch.allclose(out, ref, atol=1e-6)


def test_photometric_keeps_zero_and_one_and_skips_fixed_steps():
    from loaders.augment import photometric

    x = torch.tensor([0.0, 0.25, 1.0]).view(1, 1, 1, 3)
    out = photometric(x.clone(), torch.tensor([1.7]), None)
    assert out.flatten().tolist()[0] == 0.0 and out.flatten().tolist()[2] == 1.0
    assert abs(out.flatten()[1].item() - 0.25 ** 1.7) < 1e-6
    assert torch.equal(photometric(x.clone(), None, None), x)


@pytest.mark.parametrize("spec", [AugmentSpec(size=24), AugmentSpec(size=16),
                                  AugmentSpec(size=24, contrast=(1.0, 1.0)),
                                  AugmentSpec.identity(24)])
def test_scaling_inside_the_augmentation_equals_scaling_first(spec):
    """The CPU path augments the stored uint16 values and divides by 2**bits - 1 on the way."""
    g = torch.Generator().manual_seed(9)
    pixels = torch.randint(0, 4096, (6, 2, 24, 24), generator=g).numpy().astype("uint16")
    bits = torch.tensor([12, 12, 12, 14, 12, 12])
    top = torch.pow(2.0, bits.to(torch.float32)) - 1.0
    want = augment_batch(scale_to_unit(pixels, bits), spec, batch_generator(1, 0, 0, 0))
    into = torch.empty_like(want)
    got = augment_batch(torch.from_numpy(pixels), spec, batch_generator(1, 0, 0, 0), out=into,
                        top=top)
    assert got.data_ptr() == into.data_ptr()
    if spec == AugmentSpec.identity(24):
        assert torch.equal(got, want)      # nothing but the scaling: bit for bit
    else:
        assert torch.allclose(got, want, atol=1e-5)
