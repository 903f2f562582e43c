"""SimCLR and BYOL in the shared loop: a short run of each, their checkpoints, resume, the
target network, the best model by validation loss, and ``train compare`` end to end."""
from __future__ import annotations

import json

import pytest
import torch

from train import loop
from train.checkpoint import load_checkpoint, load_run
from train.cli import main
from train.config import TrainConfig
from train.methods import byol
from train_data import one_torch_thread, patch_set, split_set  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def shard_root(tmp_path_factory):
    # 24 training pairs (48 patches in ssl mode), 8 validation pairs
    return split_set(tmp_path_factory.mktemp("ssl-shards"))


def _config(shards, out, method, **changes) -> TrainConfig:
    base = dict(shards=shards, out=str(out), method=method, encoder="tiny", size=16,
                batch_size=8, epochs=2, workers=0, warmup_epochs=0.5, device="cpu",
                head_hidden=32, head_out=16)
    return TrainConfig(**{**base, **changes})


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_two_steps_log_losses_and_checkpoint(shard_root, tmp_path, method):
    out = tmp_path / method
    result = loop.train(_config(shard_root, out, method, epochs=1, max_steps=2),
                        progress=False)
    assert result.steps == 2
    rows = loop.read_metrics(out, "train")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["loss"] > 0 and r["loss"] == r["loss"] for r in rows)
    state = load_checkpoint(out / "last.pt")
    assert state["config"]["method"] == method and state["step"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == method
    run = load_run(out, "last")
    assert type(run.model).__name__ == {"simclr": "SimCLRModel", "byol": "BYOLModel"}[method]


def test_ssl_epochs_read_every_patch_and_keep_the_lowest_validation_loss(shard_root, tmp_path):
    out = tmp_path / "simclr"
    result = loop.train(_config(shard_root, out, "simclr", epochs=3), progress=False)
    assert result.steps == 3 * 6          # 48 patches of 24 pairs, batch 8
    evals = loop.read_metrics(out, "eval")
    assert [r["epoch"] for r in evals] == [1, 2, 3]
    assert all(r["n_samples"] == 16 for r in evals)   # both patches of the 8 val pairs
    lowest = min(evals, key=lambda r: r["val_loss"])
    assert result.best == {"val_loss": lowest["val_loss"], "step": lowest["step"],
                           "epoch": lowest["epoch"]}
    assert load_checkpoint(out / "best.pt")["step"] == lowest["step"]


def test_byol_target_follows_the_online_network_with_the_scheduled_momentum(shard_root,
                                                                           tmp_path):
    run = loop.build(_config(shard_root, tmp_path, "byol", epochs=1))
    model = run.model
    target = [p.clone() for p in model.target_encoder.parameters()]
    for t, o in zip(target, model.encoder.parameters()):
        assert torch.equal(t, o)              # the target starts as a copy
    batch = next(iter(run.loader))
    result = loop.train_step(run, batch, 1)
    tau = result["tau"]
    assert tau == pytest.approx(0.996)        # the first update uses ema_base
    for t0, t1, o in zip(target, model.target_encoder.parameters(), model.encoder.parameters()):
        torch.testing.assert_close(t1, tau * t0 + (1 - tau) * o)
    assert not any(p.requires_grad for p in model.target_parameters())
    run.loader.close()


def test_byol_views_are_augmented_differently():
    strong, mild = byol.view_specs(16)
    assert strong.size == mild.size == 16
    assert mild.contrast[1] - mild.contrast[0] < strong.contrast[1] - strong.contrast[0]
    assert mild.gamma[1] / mild.gamma[0] < strong.gamma[1] / strong.gamma[0]


def test_byol_resume_reproduces_the_uninterrupted_losses(shard_root, tmp_path):
    whole = _config(shard_root, tmp_path / "whole", "byol", epochs=2)
    loop.train(whole, progress=False)
    parted = whole.replace(out=str(tmp_path / "parted"))
    loop.train(parted, stop_at=4, progress=False)
    loop.train(parted, resume=True, progress=False)

    def losses(d):
        return [(r["step"], r["loss"]) for r in loop.read_metrics(d, "train")]

    assert losses(tmp_path / "parted") == losses(tmp_path / "whole")


def test_method_commands_hide_other_methods_flags(capsys):
    with pytest.raises(SystemExit):
        main(["simclr", "--help"])
    text = capsys.readouterr().out
    assert "--temperature" in text and "--mixture" not in text and "--ema-base" not in text
    with pytest.raises(SystemExit):
        main(["siamese", "--help"])
    text = capsys.readouterr().out
    assert "--mixture" in text and "--temperature" not in text


def test_resuming_with_another_methods_command_is_refused(shard_root, tmp_path, capsys):
    out = tmp_path / "run"
    loop.train(_config(shard_root, out, "simclr", epochs=1, max_steps=1), progress=False)
    assert main(["byol", "--out", str(out), "--resume"]) == 2
    assert "holds a simclr run, not byol" in capsys.readouterr().err


def test_compare_trains_evaluates_and_tabulates_then_skips_what_is_done(shard_root, tmp_path,
                                                                       capsys):
    patches = patch_set(tmp_path / "patches")
    out = tmp_path / "cmp"
    argv = ["compare", "--pairs", shard_root, "--downstream", patches, "--out", str(out),
            "--methods", "simclr,byol,random,random-bn", "--encoder", "tiny", "--size", "16",
            "--batch-size", "8", "--epochs", "1", "--max-steps", "2", "--workers", "0",
            "--device", "cpu", "--head-hidden", "32", "--head-out", "16",
            "--head-epochs", "5", "--bootstrap", "10", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "abnormal simclr" in printed and "abnormal random" in printed
    table = (out / "comparison.md").read_text()
    assert "Table 2: linear evaluation, abnormal vs normal" in table
    for label in ("SimCLR", "BYOL", "random init", "random init, BN statistics from the pairs"):
        assert f"| {label} |" in table
    assert "0.908" in table and "0.737" in table    # the paper's BYOL and SimCLR, labelled
    figures = json.loads((out / "comparison.json").read_text())["figures"]["abnormal"]
    assert set(figures) == {"simclr", "byol", "random", "random-bn"}
    recalibrated = json.loads((out / "random-bn" / "linear_eval_abnormal.json").read_text())
    assert recalibrated["batchnorm_statistics"]["patches"] == 0     # tiny: no BatchNorm
    assert all(f["auc"]["n"] == 12 for f in figures.values())
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert main(argv) == 0                         # a rerun: nothing trained or evaluated
    assert "finished earlier" in capsys.readouterr().out
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    # another downstream set of the same task: evaluated again, the runs reused
    other = patch_set(tmp_path / "patches-2")
    argv[argv.index(patches)] = other
    assert main(argv) == 0
    assert "linear evaluation on " + other in capsys.readouterr().out
    assert mtimes == {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}
    assert json.loads((out / "comparison.json").read_text())["downstream"]["abnormal"] == other

    # an SSL run's report: linear evaluation and curves, no pair AUC (it needs q and D)
    assert main(["report", str(out / "simclr"), "--bootstrap", "10"]) == 0
    report = (out / "simclr" / "report.md").read_text()
    assert "| SimCLR (this run) |" in report and "Table 1" not in report
    assert (out / "simclr" / "figures" / "training_curves.png").is_file()
    assert main(["evaluate", "--run", str(out / "simclr")]) == 2
    assert "a simclr run has neither" in capsys.readouterr().err


def test_random_bn_takes_batchnorm_statistics_from_the_pairs_and_keeps_the_weights(shard_root):
    from train.compare import random_encoder
    from train.evaluate import pair_loader, recalibrate_batchnorm

    encoder = random_encoder("small", seed=3)
    weights = {k: v.clone() for k, v in encoder.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    first_bn = encoder.features[1]
    assert torch.all(first_bn.running_mean == 0) and torch.all(first_bn.running_var == 1)
    assert recalibrate_batchnorm(encoder, shard_root, size=16, patches=10) == 10
    assert not encoder.training
    loader = pair_loader(shard_root, "train", batch_size=256, size=16)
    batch = next(iter(loader))
    loader.close()
    real = ~batch["is_pad"]
    images = torch.cat([batch["left"][real], batch["right"][real]])[:10].float()
    with torch.no_grad():
        stem = encoder.features[0](images)         # what the first BatchNorm sees
    torch.testing.assert_close(first_bn.running_mean, stem.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(first_bn.running_var, stem.var(dim=(0, 2, 3), unbiased=True))
    assert all(torch.equal(v, encoder.state_dict()[k]) for k, v in weights.items())


def test_compare_refuses_a_set_without_a_task_before_training(shard_root, tmp_path, capsys):
    argv = ["compare", "--pairs", shard_root, "--downstream", shard_root, "--out",
            str(tmp_path / "cmp"), "--max-steps", "1"]
    assert main(argv) == 2
    assert "not a downstream set" in capsys.readouterr().err
    assert not (tmp_path / "cmp" / "siamese").exists()
