"""Per-image positioning: how the breast lies on the detector in each exposure.

Coordinates are (row, col) pixels.  The *breast frame* is the canonical frame of a patient's
breast for one view: chest wall along col 0, nipple pointing to higher cols (the stored left-breast
orientation).  A ``Transform`` maps the breast frame onto the image in the same canonical
orientation:  p_img = center + shift + scale * R(rotation) @ (p_breast - center).
Right-breast images are then mirrored left-right when stored (``mirrored`` in the ground truth),
so the chest wall of a stored right breast lies on the right image edge.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MAX_ROTATION_DEG = 5.0
MAX_SCALE_CHANGE = 0.05
MAX_SHIFT_FRACTION = (0.04, 0.025)   # of (rows, cols): up/down, towards/away from the chest wall


@dataclass(frozen=True)
class Transform:
    rotation_deg: float
    shift_px: tuple[float, float]      # (d_row, d_col)
    scale: float
    center: tuple[float, float]        # (row, col) fixed point of rotation and scaling
    compression: float                 # > 1: flatter breast with a larger footprint

    def as_dict(self) -> dict:
        d = asdict(self)
        d["shift_px"] = [round(v, 4) for v in self.shift_px]
        d["center"] = [round(v, 4) for v in self.center]
        d["rotation_deg"] = round(self.rotation_deg, 6)
        d["scale"] = round(self.scale, 6)
        d["compression"] = round(self.compression, 6)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Transform":
        return cls(float(d["rotation_deg"]), tuple(d["shift_px"]), float(d["scale"]),
                   tuple(d["center"]), float(d["compression"]))


def sample_transform(rng: np.random.Generator, shape: tuple[int, int]) -> Transform:
    rows, cols = shape
    return Transform(
        rotation_deg=float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)),
        shift_px=(float(rng.uniform(-1, 1) * MAX_SHIFT_FRACTION[0] * rows),
                  float(rng.uniform(-1, 1) * MAX_SHIFT_FRACTION[1] * cols)),
        scale=float(rng.uniform(1 - MAX_SCALE_CHANGE, 1 + MAX_SCALE_CHANGE)),
        center=(rows / 2.0, 0.0),
        compression=float(rng.uniform(0.95, 1.05)),
    )


def _rotation(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


def breast_to_image_matrix(tf: Transform) -> np.ndarray:
    """3x3 homogeneous matrix taking breast-frame (row, col, 1) to canonical image (row, col, 1)."""
    a = tf.scale * _rotation(tf.rotation_deg)
    c = np.asarray(tf.center, dtype=float)
    m = np.eye(3)
    m[:2, :2] = a
    m[:2, 2] = c + np.asarray(tf.shift_px, dtype=float) - a @ c
    return m


def image_to_breast_matrix(tf: Transform) -> np.ndarray:
    return np.linalg.inv(breast_to_image_matrix(tf))


def breast_to_image(points: np.ndarray, tf: Transform) -> np.ndarray:
    """Map (N, 2) breast-frame (row, col) points into the canonical image."""
    p = np.asarray(points, dtype=float)
    m = breast_to_image_matrix(tf)
    return p @ m[:2, :2].T + m[:2, 2]


def image_to_breast(points: np.ndarray, tf: Transform) -> np.ndarray:
    p = np.asarray(points, dtype=float)
    m = image_to_breast_matrix(tf)
    return p @ m[:2, :2].T + m[:2, 2]


def to_breast_frame(image: np.ndarray, tf: Transform | dict, mirrored: bool,
                    order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Resample a stored image into its breast frame (undo mirroring and positioning).

    Two images of one patient and view brought to the breast frame are aligned up to the
    compression difference and the independent fine texture: what registration should achieve.
    """
    from scipy.ndimage import affine_transform

    if isinstance(tf, dict):
        tf = Transform.from_dict(tf)
    img = np.asarray(image)
    if mirrored:
        img = img[:, ::-1]
    m = breast_to_image_matrix(tf)       # output (breast) coords -> input (image) coords
    return affine_transform(img.astype(np.float32), m[:2, :2], offset=m[:2, 2],
                            output_shape=img.shape, order=order, mode="constant", cval=cval)


def pair_matrix(fixed: dict, moving: dict) -> np.ndarray:
    """3x3 matrix taking (row, col) of the *fixed* stored image, after un-mirroring, to (row, col)
    of the *moving* stored image, after un-mirroring, through their shared breast frame.

    ``fixed`` and ``moving`` are ground-truth records (with "transform", "mirrored", "cols") of
    the same patient and view, e.g. the L and R CC of one study.  With both images un-mirrored
    (``img[:, ::-1]`` where mirrored), ``scipy.ndimage.affine_transform(moving, m[:2, :2],
    offset=m[:2, 2])`` resamples the moving image onto the fixed one: the true registration.
    """
    to_breast = image_to_breast_matrix(Transform.from_dict(fixed["transform"]))
    to_moving = breast_to_image_matrix(Transform.from_dict(moving["transform"]))
    return to_moving @ to_breast
