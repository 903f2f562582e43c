"""The training loop: gradient accumulation, resume, checkpoints, the command line."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from train import checkpoint, loop
from train.cli import main
from train.config import TrainConfig
from train import mixture as mixture_mod
from train.methods import siamese, soft_labels
from train_data import one_torch_thread, split_set  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def shard_root(tmp_path_factory):
    # 24 training pairs in two shards, 8 validation pairs
    return split_set(tmp_path_factory.mktemp("train-shards"))


def _config(shards, out, **changes) -> TrainConfig:
    base = dict(shards=shards, out=str(out), encoder="tiny", size=16, batch_size=8, epochs=3,
                workers=0, warmup_epochs=1.0, lr=0.5, device="cpu", val_bootstrap=0)
    return TrainConfig(**{**base, **changes})


def _batch(n=8, pads=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    is_pad = torch.zeros(n, dtype=torch.bool)
    is_pad[n - pads:] = True
    return {"left": torch.rand(n, 1, size, size, generator=g),
            "right": torch.rand(n, 1, size, size, generator=g), "is_pad": is_pad}


def test_four_sub_batches_give_the_batchs_gradient(shard_root, tmp_path):
    """On a BatchNorm-free encoder, accumulating 4 sub-batches equals one batch's gradient
    (padding slots included in the batch and left out of both)."""
    grads = []
    labels = torch.rand(2, 8, generator=torch.Generator().manual_seed(1)).numpy()
    for parts in (1, 4):
        run = loop.build(_config(shard_root, tmp_path, sub_batches=parts))
        batch = _batch()
        batch["key"] = [f"k{i}" for i in range(8)]
        run.method.labels = siamese.PairLabels(batch["key"], labels)
        loop.train_step(run, batch)
        grads.append([p.grad.clone() for p in run.model.parameters()])
        run.loader.close()
    for one, four in zip(*grads):
        torch.testing.assert_close(one, four, rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in grads[0])


def _losses(run_dir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in loop.read_metrics(run_dir, "train")]


def test_resume_mid_epoch_reproduces_the_uninterrupted_losses(shard_root, tmp_path):
    config = _config(shard_root, tmp_path / "whole", refit_steps=5)
    whole = loop.train(config, progress=False)
    assert whole.steps == 9 and whole.epochs == 3
    expected = _losses(tmp_path / "whole")
    assert [s for s, _ in expected] == list(range(1, 10))

    parted = config.replace(out=str(tmp_path / "parted"))
    first = loop.train(parted, stop_at=4, progress=False)      # stops inside epoch 2
    assert first.steps == 4
    state = checkpoint.load_checkpoint(tmp_path / "parted" / "last.pt")
    assert state["loader"]["batches_done"] == 1 and state["step"] == 4
    loop.train(parted, resume=True, progress=False)
    assert _losses(tmp_path / "parted") == expected            # exactly, not approximately
    evals = [r["pair_auc"] for r in loop.read_metrics(tmp_path / "parted", "eval")]
    assert evals == [r["pair_auc"] for r in loop.read_metrics(tmp_path / "whole", "eval")]
    assert len(evals) == 3


def test_run_folder_and_load_run(shard_root, tmp_path):
    out = tmp_path / "run"
    loop.train(_config(shard_root, out, epochs=1, mixture="beta"), progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["best.pt", "config.json", "last.pt", "metrics.jsonl", "summary.json"]
    config = TrainConfig.from_dict(json.loads((out / "config.json").read_text()))
    assert config.mixture == "beta"
    rows = loop.read_metrics(out)
    mix = [r for r in rows if r["kind"] == "mixture"]
    assert [r["net"] for r in mix] == [1, 2] and all(r["seconds"] > 0 for r in mix)
    assert all(r["mixture"] == "beta" and r["when"] == "initial" for r in mix)
    (ev,) = [r for r in rows if r["kind"] == "eval"]
    assert ev["split"] == "val" and ev["n_pairs"] == 8
    loaded = checkpoint.load_run(out)
    assert loaded.step == 3 and loaded.epoch == 1 and not loaded.model.training
    assert [m.kind for m in loaded.mixtures] == ["beta", "beta"]
    assert not list(out.glob("*.tmp"))


def test_constant_prior_before_the_first_fit(shard_root, tmp_path):
    out = tmp_path / "run"
    loop.train(_config(shard_root, out, epochs=1, prior_p="0.5", val_split=""),
               progress=False)
    rows = loop.read_metrics(out)
    assert not [r for r in rows if r["kind"] == "mixture"]     # no refit after the last epoch
    assert all(r["p_mean"] == [0.5, 0.5] for r in rows if r["kind"] == "train")
    assert not (out / "best.pt").exists()


def test_command_line_errors_are_one_line_exit_2(shard_root, tmp_path, capsys):
    assert main(["siamese", "--out", str(tmp_path / "r")]) == 2
    assert main(["siamese", "--shards", str(tmp_path / "none"), "--out",
                 str(tmp_path / "r")]) == 2
    assert main(["siamese", "--shards", shard_root, "--out", str(tmp_path / "r"),
                 "--batch-size", "6", "--sub-batches", "4"]) == 2
    assert main(["siamese", "--out", str(tmp_path / "r"), "--resume"]) == 2
    assert main(["siamese", "--shards", shard_root, "--out", str(tmp_path / "r"),
                 "--split", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5 and all(line.startswith("train: error: ") for line in err)
    assert "manifest" in err[1] and "sub_batches" in err[2] and "last.pt" in err[3]
    assert "nosuch" in err[4]


def test_command_trains_and_resumes(shard_root, tmp_path, capsys):
    out = str(tmp_path / "r")
    args = ["siamese", "--shards", shard_root, "--out", out, "--encoder", "tiny", "--size", "16",
            "--batch-size", "8", "--epochs", "1", "--workers", "0", "--no-progress"]
    assert main(args + ["--stop-at", "2"]) == 0
    assert main(args) == 2                                     # the folder holds a run
    assert main(["siamese", "--out", out, "--resume", "--no-progress"]) == 0
    assert "3 steps, 1 epochs" in capsys.readouterr().out
    assert [s for s, _ in _losses(out)] == [1, 2, 3]


def test_resume_from_a_checkpoint_taken_before_the_epochs_end(shard_root, tmp_path,
                                                                monkeypatch):
    """``checkpoint_every`` can save at an epoch's last step, before the refit and validation
    of that epoch's end: resuming from there runs them and matches the uninterrupted run."""
    import shutil

    saves = []
    real_save = checkpoint.save_checkpoint

    def spy(path, state):
        real_save(path, state)
        copy = tmp_path / f"save{len(saves)}.pt"
        shutil.copy(path, copy)
        saves.append((state["step"], state["loader"]["batches_done"], copy))

    monkeypatch.setattr(loop.ckpt, "save_checkpoint", spy)
    config = _config(shard_root, tmp_path / "whole", epochs=2, checkpoint_every=3)
    loop.train(config, progress=False)
    (early,) = [copy for step, done, copy in saves if step == 3 and done == 3]
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        shutil.copy(tmp_path / "whole" / name, crashed / name)
    shutil.copy(early, crashed / "last.pt")
    loop.train(config.replace(out=str(crashed)), resume=True, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k and  # noqa: E731
                           k != "steps_per_s"} for r in rows]
    assert strip(loop.read_metrics(crashed)) == strip(loop.read_metrics(tmp_path / "whole"))


def test_background_pairs_are_left_out_like_padding(shard_root, tmp_path):
    """``max_background``: a pair with more background on either side has no weight in the
    loss; the gradient is the one of the same batch with that pair as padding."""
    labels = torch.rand(2, 8, generator=torch.Generator().manual_seed(1)).numpy()
    keys = [f"k{i}" for i in range(8)]
    metas = [{"background": {"left": 0.0, "right": 0.0}}] * 6 + \
            [{"background": {"left": 0.0, "right": 0.4}}, {"background": {"left": 0.3}}]
    grads = []
    for max_background, pads in ((0.2, 0), (1.0, 2)):
        run = loop.build(_config(shard_root, tmp_path, max_background=max_background))
        batch = {**_batch(pads=pads), "key": keys, "meta": metas}
        run.method.labels = siamese.PairLabels(keys, labels)
        loop.train_step(run, batch)
        grads.append([p.grad.clone() for p in run.model.parameters()])
        run.loader.close()
    for kept, padded in zip(*grads):
        torch.testing.assert_close(kept, padded)
    assert any(g.abs().sum() > 0 for g in grads[0])


def test_kept_pairs_and_the_mixture_fit(shard_root, tmp_path):
    metas = [{"background": {"left": 0.1, "right": 0.0}}, {"background": {"left": 0.0}},
             {}, {"background": {"left": 0.0, "right": 0.5}}]
    assert soft_labels.background_of(metas).tolist() == pytest.approx([0.1, 0.0, 0.0, 0.5])
    assert soft_labels.kept_pairs(metas, 0.1).tolist() == [True, True, True, False]
    with pytest.raises(ValueError, match="max_background"):
        _config(shard_root, tmp_path, max_background=1.5)
    # every fixture pair has background 0.2
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="keeps 0 of 24 training pairs"):
        loop.train(_config(shard_root, out, epochs=1, val_split="", max_background=0.1),
                   progress=False)


def test_the_mixture_is_fitted_on_the_kept_pairs_only(shard_root, tmp_path, monkeypatch):
    fitted = []
    fit = mixture_mod.fit_mixture
    monkeypatch.setattr(mixture_mod, "fit_mixture",
                        lambda d, *a, **k: fitted.append(len(d)) or fit(d, *a, **k))
    # every other pair of the fixture mostly background
    monkeypatch.setattr(soft_labels, "background_of",
                        lambda metas: np.array([0.9 * (i % 2) for i in range(len(metas))]))
    out = tmp_path / "run"
    loop.train(_config(shard_root, out, epochs=1, val_split="", max_background=0.5),
               progress=False)
    mix = loop.read_metrics(out, "mixture")
    assert [(r["pairs_fitted"], r["pairs_labelled"]) for r in mix] == [(12, 24)] * 2
    assert fitted == [12, 12]
