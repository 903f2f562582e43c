"""Same seed, same files, whatever the number of worker processes."""
import hashlib
from pathlib import Path

from ingest.synth import generate
from shards.publish import is_temporary


def _digests(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_files_with_one_or_two_workers(tmp_path):
    for layout in ("vindr", "optimam"):
        a, b, c = tmp_path / f"{layout}1", tmp_path / f"{layout}2", tmp_path / f"{layout}3"
        kw = dict(image_size=(192, 160), lesion_fraction=0.5, progress=False)
        generate(layout, 3, a, seed=4, workers=1, **kw)
        generate(layout, 3, b, seed=4, workers=2, **kw)
        generate(layout, 3, c, seed=5, workers=1, **kw)
        da, db, dc = _digests(a), _digests(b), _digests(c)
        assert len(da) > 12 and not any(is_temporary(Path(name).name) for name in da)
        assert da == db
        assert set(da.values()).isdisjoint(dc.values())


def test_default_pixels_are_pinned():
    """The default ("realistic") renders keep their exact pixels: caches of generated data and
    the pipeline's tests rely on it (options such as pair_variation must not change them)."""
    from ingest.synth import IMAGE_ORDER, plan_patient, render_image

    plan = plan_patient(0, 0, image_size=(128, 96), lesion_fraction=1.0, studies_per_patient=(2, 2))
    h = hashlib.sha256()
    for k in range(2):
        for lat, view in IMAGE_ORDER:
            h.update(render_image(plan, k, lat, view).pixels.tobytes())
    assert h.hexdigest() == "0ecd089980ecc915ea4782ad7f9233e76fe1542b33d70b09da07e853ddfcb9b0"
