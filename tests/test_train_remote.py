"""Training straight from object storage (moto S3 on 127.0.0.1)."""
from __future__ import annotations

from train import loop
from train.config import TrainConfig
from train_data import one_torch_thread, split_set  # noqa: F401 (fixture)


def test_two_steps_from_s3(s3_server, tmp_path):
    bucket = s3_server.new_bucket("train")
    root = split_set(f"s3://{bucket}/pairs", counts={"train": (6, 6), "val": (4,)})
    out = tmp_path / "run"
    config = TrainConfig(shards=root, out=str(out), encoder="tiny", size=16, batch_size=4,
                         epochs=1, max_steps=2, workers=1, device="cpu", val_bootstrap=0,
                         cache_dir=str(tmp_path / "cache"))
    result = loop.train(config, progress=False)
    assert result.steps == 2
    rows = loop.read_metrics(out, "train")
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] > 0 for r in rows)
    assert (out / "last.pt").is_file()
    mixtures = loop.read_metrics(out, "mixture")
    assert [m["n"] for m in mixtures] == [12, 12]       # every training pair read from S3
