"""Synthetic bilateral screening mammograms in the VinDr-Mammo and OPTIMAM layouts.

``generate`` writes a dataset; ``render_exam`` / ``render_image`` render in memory (for tests);
``power_spectrum_slope`` measures the texture; ``positioning.to_breast_frame`` undoes the known
positioning of an image (ground truth for registration tests).
"""
# Bumped whenever the same seed and parameters give different files: caches keyed on the
# generator's parameters should include it.
GENERATOR_VERSION = 2

from .exam import IMAGE_ORDER, PAIR_VARIATIONS, plan_patient, render_exam, render_image, rng_for
from .generate import generate
from .positioning import Transform, to_breast_frame
from .tissue import power_law_field, power_spectrum_slope

__all__ = ["GENERATOR_VERSION", "IMAGE_ORDER", "PAIR_VARIATIONS", "generate", "render_exam", "render_image", "plan_patient", "rng_for", "Transform",
           "to_breast_frame", "power_law_field", "power_spectrum_slope"]
