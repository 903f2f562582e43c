"""Breast tissue texture: power-law (1/f^beta) noise and its shaping by a density category.

Mammographic parenchyma has a power spectrum close to 1/f^beta with beta around 3 (Burgess et
al.), so the tissue is drawn as Gaussian noise filtered in Fourier space.  The field is split in
two parts that add up to one power law: a low-frequency part, drawn once per patient and view on
a small grid (shared by both breasts, hence a normal pair looks alike), and a fine part drawn per
image at full resolution (so the two sides are never identical).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.fft

# Frequencies are counted in cycles per image height, so the texture looks the same at any size.
CROSSOVER = 12.0          # below this the pattern is shared by the two breasts (cycles/height)
LOW_GRID_ROWS = 256       # rows of the shared low-frequency grid
LOW_GRID_EXTENT = 1.3     # the low grid spans this many image heights (margin for positioning)

# Density category -> threshold on the standardised field (higher: less glandular tissue).
DENSITY_THRESHOLD = {"A": 1.35, "B": 0.65, "C": 0.0, "D": -0.75}
DENSITY_SOFTNESS = 0.8


# Ducts and fibrous strands run from the chest wall towards the nipple (along the rows of the
# canonical frame): power is moved towards vertical frequencies, which elongates the texture
# horizontally without changing its radially averaged spectrum.
ANISOTROPY_LOW = 0.45
ANISOTROPY_FINE = 0.75


@lru_cache(maxsize=8)
def _radial_frequency(rows: int, cols: int) -> np.ndarray:
    """|f| in cycles per pixel on the rfft2 grid of a rows x cols image (float32)."""
    fy = np.fft.fftfreq(rows).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(cols).astype(np.float32)[None, :]
    return np.sqrt(fy * fy + fx * fx)


@lru_cache(maxsize=8)
def _orientation(rows: int, cols: int, strength: float) -> np.ndarray:
    """Amplitude factor sqrt(1 + s cos 2phi), phi the angle of f from the vertical frequency axis."""
    fy = np.fft.fftfreq(rows).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(cols).astype(np.float32)[None, :]
    f2 = fy * fy + fx * fx
    f2[0, 0] = 1.0
    return np.sqrt(1.0 + np.float32(strength) * (fy * fy - fx * fx) / f2).astype(np.float32)


def _low_weight(k: np.ndarray) -> np.ndarray:
    """Share of the power given to the shared low part: 1 below CROSSOVER, cos^2 roll-off to 0 at 2x."""
    t = np.clip((k - CROSSOVER) / CROSSOVER, 0.0, 1.0)
    return np.cos(0.5 * np.pi * t) ** 2


def _hermitian_weight(cols: int, rfft_cols: int) -> np.ndarray:
    """How many times each rfft column counts in the full spectrum (for the variance)."""
    w = np.full(rfft_cols, 2.0, dtype=np.float32)
    w[0] = 1.0
    if cols % 2 == 0:
        w[-1] = 1.0
    return w


def _filtered_noise(rng: np.random.Generator, rows: int, cols: int, amp: np.ndarray) -> np.ndarray:
    """Real field whose rfft2 coefficients are complex Gaussians scaled by ``amp``."""
    spec = np.empty(amp.shape, dtype=np.complex64)
    spec.real = rng.standard_normal(amp.shape, dtype=np.float32)
    spec.imag = rng.standard_normal(amp.shape, dtype=np.float32)
    spec *= amp * np.float32(np.sqrt(0.5))
    # norm="forward": the inverse is an unscaled sum, so both grids share one amplitude scale.
    return scipy.fft.irfft2(spec, s=(rows, cols), norm="forward", workers=1).astype(np.float32, copy=False)


def _power_law_amplitude(k: np.ndarray, beta: float) -> np.ndarray:
    amp = np.zeros_like(k)
    nz = k > 0
    amp[nz] = np.power(k[nz], np.float32(-beta / 2.0))
    return amp


def low_grid_shape(image_shape: tuple[int, int]) -> tuple[int, int]:
    """Shape of the shared low-frequency grid for an image of ``image_shape`` (rows, cols)."""
    rows = LOW_GRID_ROWS
    cell = LOW_GRID_EXTENT * image_shape[0] / rows          # image pixels per grid cell
    cols = int(np.ceil((image_shape[1] + (LOW_GRID_EXTENT - 1.0) * image_shape[0]) / cell))
    return rows, cols


def shared_low_field(rng: np.random.Generator, image_shape: tuple[int, int], beta: float):
    """The low-frequency part on its small grid, and its variance (same units as fine_field)."""
    rows, cols = low_grid_shape(image_shape)
    k = _radial_frequency(rows, cols) * np.float32(rows / LOW_GRID_EXTENT)   # cycles per height
    amp = _power_law_amplitude(k, beta) * np.sqrt(_low_weight(k)).astype(np.float32)
    amp *= _orientation(rows, cols, ANISOTROPY_LOW)
    field = _filtered_noise(rng, rows, cols, amp)
    var = float(np.sum((amp ** 2) * _hermitian_weight(cols, amp.shape[1])[None, :]))
    return field, var


def fine_field(rng: np.random.Generator, image_shape: tuple[int, int], beta: float,
               image_rows: int | None = None):
    """The high-frequency part at full resolution (independent per image), and its variance.

    ``image_rows``: the image height that frequencies are counted against when the grid is
    larger than the image (default: the grid's own rows).
    """
    rows, cols = image_shape
    amp = _fine_amplitude(rows, cols, round(float(beta), 6), int(image_rows or rows))
    field = _filtered_noise(rng, rows, cols, amp)
    var = float(np.sum((amp ** 2) * _hermitian_weight(cols, amp.shape[1])[None, :]))
    return field, var


@lru_cache(maxsize=2)
def _fine_amplitude(rows: int, cols: int, beta: float, image_rows: int) -> np.ndarray:
    """Amplitudes of the fine part (cached: all images of a patient share them)."""
    k = _radial_frequency(rows, cols) * np.float32(image_rows)
    amp = _power_law_amplitude(k, beta) * np.sqrt(1.0 - _low_weight(k)).astype(np.float32)
    amp *= _orientation(rows, cols, ANISOTROPY_FINE)
    amp.setflags(write=False)
    return amp


def power_law_field(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Standardised 1/f^beta Gaussian field of ``shape`` (one grid, no sharing): for tests and demos."""
    rows, cols = shape
    k = _radial_frequency(rows, cols) * np.float32(rows)
    amp = _power_law_amplitude(k, beta)
    field = _filtered_noise(rng, rows, cols, amp)
    return field / np.float32(field.std() + 1e-12)


def glandular_fraction(z: np.ndarray, density: str, envelope: np.ndarray,
                       centrality: np.ndarray | float = 0.5) -> np.ndarray:
    """Map the standardised field to a glandular fraction in [0, 1].

    ``envelope`` (1 in the breast's core, 0 at the skin) pushes the threshold up near the skin,
    leaving the subcutaneous fat free of glandular tissue; ``centrality`` (0 at the periphery, 1
    deep inside) gathers the glandular tissue towards the centre of the breast, as in real ones.
    """
    t = np.float32(DENSITY_THRESHOLD[density])
    x = (z - t + np.float32(2.5) * (envelope - np.float32(1.0))
         + np.float32(1.0) * (centrality - np.float32(0.5))) * np.float32(1.0 / DENSITY_SOFTNESS)
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


def power_spectrum_slope(image: np.ndarray, mask: np.ndarray | None = None,
                         band: tuple[float, float] = (1 / 64, 1 / 8)) -> float:
    """Slope beta of the radially averaged power spectrum P(f) ~ f^-beta of ``image``.

    The image is cropped to the bounding box of ``mask`` (when given), pixels outside the mask
    set to the mean inside, a Hann window applied, and log P fitted against log f over ``band``
    (cycles per pixel).  Returns beta (positive for a decaying spectrum).  The default band
    suits a 512-pixel crop of a rendered mammogram: below it the density shaping (glandular
    tissue saturates) flattens the spectrum, above it the detector noise does.
    """
    img = np.asarray(image, dtype=np.float64)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        ys, xs = np.nonzero(mask)
        if ys.size == 0:
            raise ValueError("empty mask")
        sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        img, m = img[sl].copy(), mask[sl]
        img[~m] = img[m].mean()
    img = img - img.mean()
    win = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    power = np.abs(np.fft.fft2(img * win)) ** 2
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.fftfreq(img.shape[1])[None, :]
    f = np.sqrt(fy ** 2 + fx ** 2).ravel()
    power = power.ravel()
    edges = np.geomspace(band[0], band[1], 16)
    idx = np.digitize(f, edges)
    logf, logp = [], []
    for i in range(1, len(edges)):
        sel = idx == i
        if sel.any():
            logf.append(np.log(f[sel].mean()))
            logp.append(np.log(power[sel].mean()))
    slope = np.polyfit(logf, logp, 1)[0]
    return float(-slope)
