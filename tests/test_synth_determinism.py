"""Same seed, same files, whatever the number of worker processes."""
import hashlib
from pathlib import Path

from ingest.synth import generate


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
        assert len(da) > 12 and not any(name.endswith(".tmp") for name in da)
        assert da == db
        assert set(da.values()).isdisjoint(dc.values())
