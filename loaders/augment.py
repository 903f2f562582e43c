"""The augmentation, defined once as parameters, and its batched torch implementation.

Output contract (both backends): float32 NCHW in ``[0, 1]``. A uint16 patch is divided by
``2**bits - 1`` (``bits`` from the sample's metadata), then, per sample:

1. random resized crop: area fraction uniform in ``scale``, aspect ratio log-uniform in ``ratio``
   (10 attempts, then a centre crop clamped to ``ratio``, as torchvision and DALI do), resized to
   ``size x size`` (default: the shard set's patch size) with bilinear sampling that averages
   several points when shrinking;
2. contrast ``(x - m) * c + m`` around the sample's mean ``m``, ``c`` uniform in ``contrast``,
   clamped to ``[0, 1]``;
3. gamma ``x ** g``, ``g`` log-uniform in ``gamma`` (stays in ``[0, 1]``);
4. horizontal flip with probability ``hflip``, vertical with probability ``vflip``.

Channels of one sample (the left and right patch of a pair) share one draw, so a pair stays
aligned. ``AugmentSpec.identity(size)`` changes nothing but the scaling; the DALI pipeline in
``dali_pipeline.py`` implements the crop, resize and flips with DALI operators and draws contrast
and gamma there, which ``photometric`` below then applies (one implementation for both).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

CROP_ATTEMPTS = 10


@dataclass(frozen=True)
class AugmentSpec:
    size: int | None = None   # output side; None: the shard set's patch size (``resolve``)
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    gamma: tuple[float, float] = (0.8, 1.25)
    contrast: tuple[float, float] = (0.8, 1.2)
    hflip: float = 0.5
    vflip: float = 0.0

    def __post_init__(self):
        for name in ("scale", "ratio", "gamma", "contrast"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"AugmentSpec.{name} must be 0 < low <= high, got {(lo, hi)}")
            object.__setattr__(self, name, (float(lo), float(hi)))
        if self.scale[1] > 1.0:
            raise ValueError(f"AugmentSpec.scale must be at most 1, got {self.scale}")
        for name in ("hflip", "vflip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentSpec.{name} is a probability, got {getattr(self, name)}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"AugmentSpec.size must be positive, got {self.size}")

    def resolve(self, patch_size) -> "AugmentSpec":
        """This spec with its size decided: ``size=None`` becomes ``patch_size`` (an int, or a
        function giving it, called only then), so a loader's crops keep the stored patch's side
        unless asked otherwise."""
        if self.size is not None:
            return self
        return replace(self, size=int(patch_size() if callable(patch_size) else patch_size))

    @classmethod
    def identity(cls, size: int | None = None) -> "AugmentSpec":
        """Only the scaling to ``[0, 1]``: the crop is the whole patch, no photometric change."""
        return cls(size=size, scale=(1.0, 1.0), ratio=(1.0, 1.0), gamma=(1.0, 1.0),
                   contrast=(1.0, 1.0), hflip=0.0, vflip=0.0)

    def to_dict(self) -> dict:
        return asdict(self)


class ViewSpecs(NamedTuple):
    """One ``AugmentSpec`` per view of ssl mode (BYOL augments its two views with different
    strengths). Any pair ``(spec1, spec2)`` passed as ``augment`` becomes one."""
    view1: AugmentSpec
    view2: AugmentSpec


def resolve_views(augment, views: int, patch_size, mode: str = "this mode"
                  ) -> AugmentSpec | ViewSpecs:
    """``make_loader``'s ``augment`` checked and sized: ``None`` (``AugmentSpec()``), one
    ``AugmentSpec`` (every view draws from it) or, when a mode has two views (``views=2``), a
    pair of them, one per view; ``size=None`` becomes ``patch_size`` per view (see
    ``AugmentSpec.resolve``), and both views must come out at the same size. ``mode``: named
    in the errors."""
    if augment is None or isinstance(augment, AugmentSpec):
        return (augment if augment is not None else AugmentSpec()).resolve(patch_size)
    if not (isinstance(augment, (tuple, list)) and len(augment) == 2
            and all(isinstance(s, AugmentSpec) for s in augment)):
        raise ValueError("augment must be an AugmentSpec or a pair of them (one per ssl view), "
                         f"got {augment!r}")
    if views != 2:
        raise ValueError(f"one AugmentSpec per view is for mode 'ssl' (two views); {mode} has "
                         "one view: pass one AugmentSpec")
    if callable(patch_size):   # asked for once (it may read the shard set), only if needed
        patch_size = patch_size() if any(s.size is None for s in augment) else None
    first, second = (s.resolve(patch_size) for s in augment)
    if first.size != second.size:
        raise ValueError(f"both ssl views must have the same output size: view1 has size "
                         f"{first.size}, view2 size {second.size}")
    return ViewSpecs(first, second)


def per_view(augment: AugmentSpec | ViewSpecs, views: int) -> tuple[AugmentSpec, ...]:
    """The spec of each of ``views`` views (one spec: the same for all)."""
    if isinstance(augment, AugmentSpec):
        return (augment,) * views
    if len(augment) != views:
        raise ValueError(f"{len(augment)} augmentation specs for {views} view(s)")
    return tuple(augment)


def unit_scale(bits: torch.Tensor) -> torch.Tensor:
    """``2**bits - 1`` per sample (float32): what a sample's stored values are divided by."""
    return torch.pow(2.0, bits.to(torch.float32)) - 1.0


def scale_to_unit(pixels, bits: torch.Tensor) -> torch.Tensor:
    """uint16 ``[B, C, H, W]`` (numpy array or tensor) -> float32 in ``[0, 1]``, each sample
    divided by its own ``2**bits - 1``."""
    if isinstance(pixels, np.ndarray):
        # numpy's uint16 -> float32 cast is vectorised (torch's is not, 7x slower on the CPU);
        # the division afterwards is the same float32 division as torch's promoting one
        pixels = torch.from_numpy(pixels.astype(np.float32))
    top = unit_scale(bits).to(pixels.device).view(-1, 1, 1, 1)
    if pixels.dtype == torch.float32:
        return pixels.div_(top)
    if pixels.device.type == "cpu":
        return torch.div(pixels, top)   # promotes uint16 to float32 in one pass
    # CUDA kernels for uint16 are few; a conversion copy is always there (same values)
    return pixels.to(torch.float32).div_(top)


def crop_boxes(batch: int, height: int, width: int, spec: AugmentSpec,
               generator: torch.Generator) -> torch.Tensor:
    """``[B, 4]`` float boxes ``x0, y0, x1, y1`` (pixel edges) of random resized crops."""
    area = float(height * width)
    lo, hi = spec.scale
    log_lo, log_hi = math.log(spec.ratio[0]), math.log(spec.ratio[1])
    target = area * (lo + (hi - lo) * torch.rand(batch, CROP_ATTEMPTS, generator=generator))
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(batch, CROP_ATTEMPTS,
                                                                generator=generator))
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
    first = torch.argmax(ok.to(torch.int8), dim=1)              # first valid attempt
    any_ok = ok.any(dim=1)
    pick = torch.arange(batch)
    w, h = w[pick, first], h[pick, first]
    # Fallback (no valid attempt): centre crop with the aspect ratio clamped into range.
    in_ratio = width / height
    if in_ratio < spec.ratio[0]:
        fw, fh = width, round(width / spec.ratio[0])
    elif in_ratio > spec.ratio[1]:
        fw, fh = round(height * spec.ratio[1]), height
    else:
        fw, fh = width, height
    w = torch.where(any_ok, w, torch.full_like(w, fw))
    h = torch.where(any_ok, h, torch.full_like(h, fh))
    u = torch.rand(batch, 2, generator=generator)
    x0 = torch.where(any_ok, torch.floor(u[:, 0] * (width - w + 1)), (width - w) // 2)
    y0 = torch.where(any_ok, torch.floor(u[:, 1] * (height - h + 1)), (height - h) // 2)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int,
                 hflip: torch.Tensor | None = None, vflip: torch.Tensor | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """Crop ``boxes`` out of ``[B, C, H, W]``, resize each to ``size`` (linear filter that
    averages when shrinking; the whole patch at its own size comes back unchanged) and mirror
    the samples flagged in ``hflip`` / ``vflip`` (bool ``[B]``, flips commute with the
    pixel-wise steps, so they are applied here, on the way out of the resize). ``out``: a
    float32 ``[B, C, size, size]`` CPU tensor to write into (used on the CPU only).

    On a GPU: one ``roi_align`` call for the whole batch (``ceil(box/size)`` samples per output
    pixel). On the CPU, torch's bilinear ``interpolate`` kernels per sample are two to three
    times as fast as ``roi_align``'s generic one, so the CPU path takes them.
    """
    if boxes.shape[0] == 0:
        return images.new_zeros((0, images.shape[1], size, size))
    if images.device.type == "cpu":
        return crop_interpolate(images, boxes, size, hflip, vflip, out)
    return _flip(crop_roi_align(images, boxes, size), hflip, vflip)


def crop_interpolate(images: torch.Tensor, boxes: torch.Tensor, size: int,
                     hflip: torch.Tensor | None = None, vflip: torch.Tensor | None = None,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """The CPU resize, one call per sample and channel, written into a preallocated batch.

    Crops no larger than ``size`` (the usual case: a crop of a patch enlarged back to the
    patch's size) go through OpenCV's bilinear ``resize``: the same sampling as torch's
    ``interpolate(mode="bilinear", align_corners=False)`` (half-pixel centres, edges clamped;
    values agree to 1e-5) at a third of its cost, most of torch's being per-call overhead at
    96 px. A crop larger than ``size`` in either direction is shrunk by torch's antialiased
    kernel (its support grows with the scale, as DALI's does; plain bilinear would alias).
    ``images`` may be float32 or the stored uint16 (each crop is converted as it is read).
    """
    shape = (images.shape[0], images.shape[1], size, size)
    if out is None:
        out = torch.empty(shape, dtype=torch.float32)
    elif tuple(out.shape) != shape or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous float32 tensor of shape {shape}")
    n = boxes.shape[0]
    hf = [False] * n if hflip is None else hflip.tolist()
    vf = [False] * n if vflip is None else vflip.tolist()
    src = images.contiguous().numpy()
    dst = out.numpy()
    for i, (x0, y0, x1, y1) in enumerate(boxes.to(torch.int64).tolist()):
        if y1 - y0 > size or x1 - x0 > size:
            crop = torch.from_numpy(src[i:i + 1, :, y0:y1, x0:x1].astype(np.float32))
            out[i] = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True,
                                   align_corners=False)[0]
        elif (y1 - y0, x1 - x0) == (size, size):
            dst[i] = src[i, :, y0:y1, x0:x1]
        else:
            for c in range(shape[1]):
                crop = src[i, c, y0:y1, x0:x1]
                if crop.dtype != np.float32:   # uint16: only the crop, while it is small
                    crop = crop.astype(np.float32)
                cv2.resize(crop, (size, size), dst=dst[i, c], interpolation=cv2.INTER_LINEAR)
        if hf[i] or vf[i]:
            # flipCode 1: around the vertical axis (left-right), 0: up-down, -1: both
            code = -1 if hf[i] and vf[i] else (1 if hf[i] else 0)
            for c in range(shape[1]):
                cv2.flip(dst[i, c], code, dst=dst[i, c])
    return out


def crop_roi_align(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    rois = torch.cat([torch.arange(len(boxes), dtype=boxes.dtype).view(-1, 1), boxes], dim=1)
    return roi_align(images, rois.to(images.device, images.dtype), output_size=(size, size),
                     spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def _flip(x: torch.Tensor, hflip, vflip) -> torch.Tensor:
    for axis, chosen in ((-1, hflip), (-2, vflip)):
        if chosen is not None and bool(chosen.any()):
            index = torch.nonzero(chosen).flatten().to(x.device)
            x[index] = x[index].flip(axis)   # only the flipped samples are copied
    return x


def photometric(x: torch.Tensor, gamma: torch.Tensor | None, contrast: torch.Tensor | None,
                top: torch.Tensor | None = None) -> torch.Tensor:
    """Contrast around each sample's mean, clamped to ``[0, 1]``, then gamma; ``None`` skips a
    step. ``x`` is overwritten (pass a copy to keep it). ``top``: ``x`` is not yet scaled to
    ``[0, 1]``; each sample is divided by its ``top`` first (folded into the contrast step).

    Vectorised passes over the pixels after the mean: ``mul_`` and ``add_`` (contrast; one
    ``addcmul`` with broadcast factors is three times slower on the CPU), ``clamp_``, and the
    gamma as ``exp2(g * log2(x))`` in place (``log(0) = -inf`` gives ``0 ** g = 0``), twice as
    fast as ``pow`` with a per-sample exponent. On the CPU the logarithm is OpenCV's (a sixth
    of torch's ``log2_`` there, same values to 3e-7 relative).
    """
    t = None if top is None else top.to(x.device, x.dtype).view(-1, 1, 1, 1)
    if contrast is not None:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        c = contrast.to(x.device, x.dtype).view(-1, 1, 1, 1)
        if t is None:
            x = x.mul_(c).add_(mean * (1.0 - c))
        else:   # (x / t - m / t) * c + m / t
            x = x.mul_(c / t).add_(mean * ((1.0 - c) / t))
        x = x.clamp_(0.0, 1.0)
    elif t is not None:
        x = x.div_(t)
    if gamma is not None:
        g = gamma.to(x.device, x.dtype).view(-1, 1, 1, 1)
        if x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous():
            flat = x.numpy().reshape(-1, x.shape[-1])
            cv2.log(flat, dst=flat)                 # natural log, in place
            x = x.mul_(g * (1.0 / math.log(2.0))).exp2_()
        else:
            x = x.log2_().mul_(g).exp2_()
    return x


def augment_batch(x: torch.Tensor, spec: AugmentSpec, generator: torch.Generator,
                  out: torch.Tensor | None = None, top: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """Augment a float ``[B, C, H, W]`` batch in ``[0, 1]`` (any device); random draws are made
    on the CPU ``generator`` so a seed gives the same batch on every device. On the CPU the
    crop, resize and flips are one pass into a new batch and the photometric steps run in place
    on it (``x`` is never overwritten). ``out``: a contiguous float32 CPU tensor of the output's
    shape to write the result into (a DataLoader worker's output slot); ignored off the CPU.

    ``top`` (CPU only): ``x`` holds the stored uint16 values and sample ``i`` is divided by
    ``top[i]`` (``2**bits - 1``) on the way, inside the contrast step; the same values as
    ``augment_batch(scale_to_unit(x, bits), ...)`` to float rounding (exactly when nothing but the
    scaling is asked for), with two passes over the batch fewer and the crops read while small."""
    b, _, height, width = x.shape
    boxes = crop_boxes(b, height, width, spec, generator)
    g = _log_uniform(b, spec.gamma, generator)
    c = _uniform(b, spec.contrast, generator)
    flips = torch.rand(b, 2, generator=generator)
    hflip, vflip = flips[:, 0] < spec.hflip, flips[:, 1] < spec.vflip
    if x.device.type != "cpu":
        out = None
    identity_crop = (spec.size == height == width) and bool(
        (boxes == torch.tensor([0.0, 0.0, width, height])).all())
    if not identity_crop or bool(hflip.any()) or bool(vflip.any()):
        x = resized_crop(x, boxes, spec.size, hflip, vflip, out)
    elif out is not None:
        np.copyto(out.numpy(), x.numpy())   # numpy's uint16 -> float32 cast is vectorised
        x = out
    elif x.dtype != torch.float32:
        x = torch.from_numpy(x.numpy().astype(np.float32))
    elif spec.gamma != (1.0, 1.0) or spec.contrast != (1.0, 1.0):
        x = x.clone()   # the caller's batch stays as it was (ssl augments it twice)
    return photometric(x, g if spec.gamma != (1.0, 1.0) else None,
                       c if spec.contrast != (1.0, 1.0) else None, top).contiguous()


def batch_generator(seed: int, epoch: int, rank: int, batch_index: int, view: int = 0):
    """The CPU generator for one batch: a function of where the batch sits, not of workers."""
    g = torch.Generator()
    parts = [int(p) & 0xFFFFFFFF for p in (seed, epoch, rank, batch_index, view)]
    g.manual_seed(int(np.random.SeedSequence(parts).generate_state(1, np.uint64)[0] >> 1))
    return g


def _uniform(n, bounds, generator):
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def _log_uniform(n, bounds, generator):
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return torch.exp(lo + (hi - lo) * torch.rand(n, generator=generator))
