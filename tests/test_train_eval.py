"""Linear evaluation, figures and the report, on small data made here."""
from __future__ import annotations

import numpy as np
import pytest

from train import figures
from train.linear_eval import Embedded, HeadConfig, LinearProbe, task_aucs
from train.metrics import binary_auc
from train_data import patch_set

PNG = b"\x89PNG\r\n\x1a\n"


def _toy(n, dim, rng, shift):
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (2, n, dim)) * 5.0 + 100.0     # offset and scale: standardised away
    x[:, :, 0] += shift * y * 5.0
    return Embedded(x, y, [f"synthetic_p{i % 20}_s_CC_0_0" for i in range(n)])


def test_linear_probe_beats_chance_on_a_separable_toy_and_not_on_noise():
    rng = np.random.default_rng(0)
    train, test = _toy(200, 8, rng, 3.0), _toy(100, 8, rng, 3.0)
    config = HeadConfig(epochs=20)
    probs = LinearProbe(2, config).fit(train).predict(test)
    assert probs.shape == (100, 2) and np.allclose(probs.sum(1), 1)
    assert binary_auc(test.y, probs[:, 1], n_bootstrap=0).auc > 0.95
    noise_train, noise_test = _toy(200, 8, rng, 0.0), _toy(100, 8, rng, 0.0)
    noise = LinearProbe(2, config).fit(noise_train).predict(noise_test)
    assert abs(binary_auc(noise_test.y, noise[:, 1], n_bootstrap=0).auc - 0.5) < 0.2


def test_probe_averages_one_head_per_encoder():
    rng = np.random.default_rng(1)
    data = _toy(60, 4, rng, 3.0)
    probe = LinearProbe(2, HeadConfig(epochs=5)).fit(data)
    assert len(probe.heads) == 2
    single = [LinearProbe(2, HeadConfig(epochs=5)).fit(Embedded(data.x[k:k + 1], data.y,
                                                                  data.keys)) for k in range(2)]
    expected = np.mean([p.predict(Embedded(data.x[k:k + 1], data.y, data.keys))
                        for k, p in enumerate(single)], axis=0)
    assert np.allclose(probe.predict(data), expected, atol=1e-6)


def test_task_aucs_give_one_vs_rest_per_class_and_the_mean():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 90)
    probs = rng.dirichlet(np.ones(3), 90)
    keys = [f"synthetic_p{i % 9}_1_CC_left_y0x0_left_0" for i in range(90)]
    out = task_aucs(y, probs, ["background", "benign", "malignant"], keys, n_bootstrap=20)
    assert out["binary"] is None
    assert set(out["ovr"]) == {"background", "benign", "malignant", "mean"}
    assert out["ovr"]["mean"].ci_method == "bootstrap-groups"


def test_figures_are_written(tmp_path):
    from train.mixture import fit_mixture

    rng = np.random.default_rng(3)
    d = np.concatenate([rng.normal(1, 0.2, (2, 300)), rng.normal(3, 0.3, (2, 60))], axis=1)
    mixtures = [fit_mixture(d[k], "gmm") for k in range(2)]
    paths = [figures.d_histograms(d, mixtures, tmp_path / "f" / "d.png")]
    area = np.where(rng.random(60) < 0.3, rng.random(60), 0.0)
    emb = rng.normal(0, 1, (2, 60, 12)) + area[None, :, None]
    paths.append(figures.embedding_map(emb, area, tmp_path / "f" / "tsne.png", max_points=40))
    rows = [{"kind": "train", "step": s, "epoch": 0, "loss": 1.0 / (s + 1), "lr": 0.1}
            for s in range(5)] + [{"kind": "eval", "step": 4, "pair_auc": 0.6}]
    paths.append(figures.training_curves(rows, tmp_path / "f" / "curves.png"))
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == PNG
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["curves.png", "d.png",
                                                                   "tsne.png"]


def test_area_bins():
    assert figures.area_bins(np.array([0.0, 0.2, 0.5, 0.51, 1.0])).tolist() == [0, 1, 1, 2, 2]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A two-step run of the tiny encoder on a small pair set with train, val and test."""
    from tests.train_data import split_set
    from train.config import TrainConfig
    from train.loop import train

    root = tmp_path_factory.mktemp("tiny")
    shards = split_set(root / "shards", {"train": (16,), "val": (16,), "test": (16,)})
    out = root / "run"
    config = TrainConfig(shards=shards, out=str(out), encoder="tiny", size=16, batch_size=8,
                         epochs=1, max_steps=2, workers=0, device="cpu", warmup_epochs=0.0)
    train(config, progress=False)
    return out, shards


def _main(argv):
    from shards.cmdline import Parser, run_main
    from train import eval_commands

    parser = Parser(prog="train")
    eval_commands.register(parser.add_subparsers(dest="command", parser_class=Parser))
    return run_main(parser, argv)


def test_commands_evaluate_linear_eval_and_report_from_a_tiny_run(tiny_run, tmp_path, capsys):
    import json

    run, shards = tiny_run
    assert _main(["evaluate", "--run", str(run), "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    assert "trained test 1-q" in printed and "random val D net1" in printed
    assert "random_bn test 1-q" in printed
    ev = json.loads((run / "evaluation.json").read_text())
    assert ev["trained"]["test"]["pair_auc"]["n"] == 16
    assert ev["random_bn"]["test"]["pair_auc"]["n"] == 16 and "batchnorm_statistics" in ev
    assert ev["trained"]["test"]["pair_auc"]["n_positive"] == 13   # A = 0.01 * (number % 5), numbers 32..47

    patches = patch_set(tmp_path / "patches")
    assert _main(["linear-eval", "--run", str(run), "--shards", patches, "--task", "abnormal",
                  "--epochs", "30", "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    assert "abnormal trained   test AUC" in printed and "abnormal random    test AUC" in printed
    assert "abnormal random_bn test AUC" in printed
    lin = json.loads((run / "linear_eval_abnormal.json").read_text())
    assert set(lin["random_bn"]["splits"]) == set(lin["random"]["splits"]) == {"test", "val"}
    assert lin["head_split"] == "train" and lin["report_split"] == "test"
    assert lin["counts"]["train"] == [20, 20]

    assert _main(["report", str(run), "--bootstrap", "20"]) == 0
    text = (run / "report.md").read_text()
    assert "Table 1: pair AUC" in text and "0.722" in text and "0.728" in text
    assert "random init, BN statistics from the pairs, score 1 - q" in text
    assert "Table 2: linear evaluation" in text and "0.927" in text and "| random init |" in text
    assert "random init, BN statistics from the pairs" in text
    assert "Not run: `train linear-eval" in text          # birads and outcome
    for name in ("d_histograms.png", "tsne_test.png", "training_curves.png"):
        assert (run / "figures" / name).read_bytes()[:8] == PNG
        assert f"figures/{name}" in text


def test_commands_report_errors_in_one_line(tmp_path, capsys, tiny_run):
    assert _main(["report", str(tmp_path / "missing")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    run, _ = tiny_run
    assert _main(["linear-eval", "--run", str(run), "--shards", str(tmp_path / "none"),
                  "--task", "birads"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


def test_patients_come_from_metadata_else_from_the_key():
    from train.evaluate import patients_of

    keys = ["synthetic_p7_1-2_CC_3_4", "vindr_abc_s_MLO_0_1"]
    assert patients_of(keys) == ["p7", "abc"]
    assert patients_of(keys, [{"patient": "x"}, {}]) == ["x", "abc"]
