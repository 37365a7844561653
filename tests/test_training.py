"""The training loop end to end on a tiny tone dataset: run, resume, torchrun with 2 ranks."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amtcli.checkpoint import load_checkpoint
from amtcli.cli import app

RECIPE = """
family = "onf"
name = "tiny"
seed = 0
[model]
conv_channels = 4
model_dim = 32
lstm_units = 8
[data]
crop_s = 2.0
batch_size = 2
validation_files = 2
validation_max_s = 4.0
augment = false
[optim]
steps = {steps}
lr_decay_every = 100
[schedule]
eval_every = 2
log_every = 1
threads = 1
"""


def write_recipe(path: Path, steps: int) -> Path:
    path.write_text(RECIPE.format(steps=steps))
    return path


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as handle:
        return list(csv.DictReader(handle))


def test_train_then_resume(tmp_path, tiny_dataset):
    runner = CliRunner()
    run = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.toml", 4)
    result = runner.invoke(app, ["train", "--recipe", str(recipe), "--dataset", str(tiny_dataset), "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    rows = metrics(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert rows[1]["val_onset_f1"] != "" and rows[0]["val_onset_f1"] == ""
    assert (run / "metrics.png").stat().st_size > 0
    assert load_checkpoint(run / "best").family == "onf"
    assert json.loads((run / "last" / "config.json").read_text())["step"] == 4

    # Simulate a kill after step 4 that left later metric rows behind: resume drops them.
    with open(run / "metrics.csv", "a") as handle:
        handle.write("5,9.9,0.001,1.0,1.0,,,\n")
    recipe = write_recipe(tmp_path / "r.toml", 6)
    result = runner.invoke(app, ["train", "--recipe", str(recipe), "--dataset", str(tiny_dataset), "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    assert "resumed from step 4" in result.output
    steps = [int(r["step"]) for r in metrics(run)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_missing_dataset_is_a_one_line_error(tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", 2)
    result = CliRunner().invoke(app, ["train", "--recipe", str(recipe), "--dataset", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "does not exist" in result.output or "no train_data" in result.output


def test_bad_recipe_key_is_reported(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('family = "onf"\n[optim]\nsteps = 2\nlearning_rate = 1\n')
    result = CliRunner().invoke(app, ["train", "--recipe", str(bad)])
    assert result.exit_code == 2 and "learning_rate" in result.output


def test_recipe_init_tables_copy_from_several_checkpoints_in_order(tmp_path):
    """[[init]] tables: one warm start each; the frozen prefixes of all of them stay frozen."""
    from amtcli.training.config import load_recipe

    recipe = tmp_path / "r.toml"
    recipe.write_text('family = "seq2seq"\n[[init]]\ncheckpoint = "a"\nmodules = ["norm", "acoustic"]\n'
                      '[[init]]\ncheckpoint = "b"\nmodules = ["detector_norm=norm", "detector=transcriber"]\n'
                      'freeze = true\n')
    config = load_recipe(recipe)
    assert [(i.checkpoint, i.modules, i.freeze) for i in config.init] == [
        ("a", ("norm", "acoustic"), False), ("b", ("detector_norm=norm", "detector=transcriber"), True)]
    assert [p for i in config.init for p in i.frozen_prefixes()] == ["detector_norm", "detector"]
    single = tmp_path / "s.toml"
    single.write_text('family = "cnn"\n[init]\ncheckpoint = "a"\nmodules = ["norm"]\n')
    assert len(load_recipe(single).init) == 1
    none = tmp_path / "n.toml"
    none.write_text('family = "cnn"\n')
    assert load_recipe(none).init == ()


def test_recipe_augment_section_reaches_the_config(tmp_path):
    from amtcli.training.config import load_recipe

    good = tmp_path / "good.toml"
    good.write_text('family = "cnn"\n[augment]\neq_curve_prob = 0.5\nreverb_wet = [0.1, 0.4]\n')
    config = load_recipe(good)
    assert config.augment.eq_curve_prob == 0.5 and config.augment.reverb_wet == (0.1, 0.4)
    assert config.augment.noise_prob == 0.3  # unspecified keys keep the mild defaults
    for text, key in (("reverb_prob = 2.0", "reverb_prob"), ("eq_curve_points = 6.0", "whole number")):
        bad = tmp_path / "bad.toml"
        bad.write_text(f'family = "cnn"\n[augment]\n{text}\n')
        result = CliRunner().invoke(app, ["train", "--recipe", str(bad)])
        assert result.exit_code == 2 and key in result.output and "Traceback" not in result.output
    bad.write_text('family = "cnn"\n[init]\nmodules = ["norm"]\nfreeze = true\n')  # nothing to copy
    result = CliRunner().invoke(app, ["train", "--recipe", str(bad)])
    assert result.exit_code == 2 and "freeze = true needs a checkpoint" in result.output
    bad.write_text('family = "cnn"\n[data]\naugment = false\n[augment]\nnoise_prob = 0.5\n')  # would be ignored
    result = CliRunner().invoke(app, ["train", "--recipe", str(bad)])
    assert result.exit_code == 2 and "no effect" in result.output and "Traceback" not in result.output
    bad.write_text('family = "cnn"\ndata = 3\n')
    result = CliRunner().invoke(app, ["train", "--recipe", str(bad)])
    assert result.exit_code == 2 and "must be a table" in result.output and "Traceback" not in result.output


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_torchrun_two_ranks_agree(tmp_path, tiny_dataset):
    recipe = write_recipe(tmp_path / "r.toml", 3)
    run = tmp_path / "ddp"
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "amtcli", "train", "--recipe", str(recipe),
         "--dataset", str(tiny_dataset), "--run-dir", str(run)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranks = json.loads((run / "ranks.json").read_text())
    assert ranks["world_size"] == 2
    assert ranks["digests"][0] == pytest.approx(ranks["digests"][1], rel=1e-9)
    assert proc.stdout.count("best checkpoint") == 1


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_torchrun_two_nodes_meet_through_the_c10d_rendezvous(tmp_path, tiny_dataset):
    """Two torchrun launches, as on two machines (one process each), find each other
    through the c10d rendezvous at 127.0.0.1 and train as one world of 2."""
    import socket

    recipe = write_recipe(tmp_path / "r.toml", 3)
    run = tmp_path / "multi"
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    nodes = [subprocess.Popen(
        [torchrun, "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend", "c10d",
         "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "amtcli-test", "--node_rank", str(rank),
         "-m", "amtcli", "train", "--recipe", str(recipe), "--dataset", str(tiny_dataset), "--run-dir", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    ranks = json.loads((run / "ranks.json").read_text())
    assert ranks["world_size"] == 2
    assert ranks["digests"][0] == pytest.approx(ranks["digests"][1], rel=1e-9)


def test_plateau_schedule_and_early_stopping(tmp_path, tiny_dataset):
    """A learning rate too small to learn much: validation F1 barely moves (only
    batch-norm statistics change), ReduceLROnPlateau cuts the rate after every
    evaluation without a gain, and training stops after ``early_stop_patience`` such
    evaluations, but not before ``min_steps``. The expected stop is replayed from the
    logged scores."""
    recipe = RECIPE.format(steps=40).replace("lr_decay_every = 100", 'lr = 1e-6\nlr_schedule = "plateau"\nplateau_patience = 0')
    recipe = recipe.replace("threads = 1", "threads = 1\nearly_stop_patience = 2\nmin_steps = 8")
    (tmp_path / "r.toml").write_text(recipe)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--recipe", str(tmp_path / "r.toml"), "--dataset", str(tiny_dataset),
                                      "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    rows = metrics(run)
    best, since, expected_stop, lr, expected_lr = -1.0, 0, None, 1e-6, {}
    for row in rows:
        step = int(row["step"])
        expected_lr[step] = lr
        if row["val_onset_f1"] == "":
            continue
        f1 = float(row["val_onset_f1"])
        best, since = (f1, 0) if f1 > best else (best, since + 1)
        if since:
            lr *= 0.5
        if since >= 2 and step >= 8:
            expected_stop = step
            break
    assert expected_stop is not None and int(rows[-1]["step"]) == expected_stop < 40
    assert f"early stop at step {expected_stop}" in result.output
    assert all(float(r["lr"]) == pytest.approx(expected_lr[int(r["step"])], rel=1e-2) for r in rows)
    assert float(rows[-1]["lr"]) < 1e-6  # the evaluation before the stop had no gain and cut the rate


@pytest.mark.parametrize("family, model", [
    ("cnn", 'stem_channels = 4\nmodel_dim = 16\nblocks = 1\n[model.features]\nn_bins = 64'),
    ("ctc", 'stem_channels = 4\nmodel_dim = 16\nlstm_units = 8\nslots = 2\n[model.features]\nkind = "hcqt"\n'
            'n_fft = 2048\nn_bins = 96\nfmin_hz = 55.0\nharmonics = [1.0, 2.0]'),
    ("seq2seq", 'conv_channels = 4\nmodel_dim = 16\nencoder_units = 8\ndecoder_units = 16\nembedding_dim = 8\n'
                'max_target_tokens = 60\nmax_decode_tokens = 40\n[model.features]\nn_bins = 64'),
])
def test_every_family_trains_through_the_same_loop(tmp_path, tiny_dataset, family, model):
    head, rest = RECIPE.format(steps=2).split("[data]")
    head = head.replace('family = "onf"', f'family = "{family}"').split("[model]")[0]
    (tmp_path / "r.toml").write_text(f"{head}[model]\n{model}\n[windowing]\nwindow_s = 10.0\nhop_s = 8.0\n[data]{rest}")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--recipe", str(tmp_path / "r.toml"), "--dataset", str(tiny_dataset),
                                      "--run-dir", str(run)])
    assert result.exit_code == 0, result.output
    loaded = load_checkpoint(run / "best")
    assert loaded.family == family and (loaded.window_s, loaded.hop_s) == (10.0, 8.0)
    assert metrics(run)[-1]["val_onset_f1"] != ""


def test_validation_uses_the_recipes_windowing(tmp_path, tiny_dataset, monkeypatch):
    import amtcli.training.loop as loop

    seen = []
    real = loop.validate

    def spy(loaded, recordings):
        seen.append((loaded.window_s, loaded.hop_s))
        return real(loaded, recordings)

    monkeypatch.setattr(loop, "validate", spy)
    head, rest = RECIPE.format(steps=2).split("[data]")
    (tmp_path / "r.toml").write_text(f"{head}[windowing]\nwindow_s = 4.0\nhop_s = 3.0\n[data]{rest}")
    result = CliRunner().invoke(app, ["train", "--recipe", str(tmp_path / "r.toml"), "--dataset", str(tiny_dataset),
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert seen and set(seen) == {(4.0, 3.0)}


def test_a_bad_windowing_fails_before_training(tmp_path, tiny_dataset):
    """5 s windows with a 2.5 s hop overlap by 125 frames at 50 frames/s (odd): one line, no run."""
    head, rest = RECIPE.format(steps=2).split("[data]")
    (tmp_path / "r.toml").write_text(f"{head}[windowing]\nwindow_s = 5.0\nhop_s = 2.5\n[data]{rest}")
    result = CliRunner().invoke(app, ["train", "--recipe", str(tmp_path / "r.toml"), "--dataset", str(tiny_dataset),
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_validation_tries_the_decodings_a_family_is_tuned_over():
    from amtcli.training.loop import validation_decodings

    fake = lambda module: type("M", (), {"module": module})()  # noqa: E731
    ctc = type("C", (), {"OUTPUT": "ctc", "CHANNELS": ()})()
    onf = type("O", (), {"CHANNELS": ("onset", "frame", "offset", "velocity")})()
    cnn = type("F", (), {"CHANNELS": ("frame", "velocity")})()
    assert [o.blank_offset for o in validation_decodings(fake(ctc))] == [0.0, 1.0, 2.0, 3.0]
    assert [o.note_start for o in validation_decodings(fake(onf))] == ["onset", "frame"]
    assert [o.note_start for o in validation_decodings(fake(cnn))] == ["frame"]


def test_init_copies_named_modules_from_another_checkpoint(tmp_path):
    """[init] warm start: the seq2seq encoder's front (same shapes as onf's) is copied
    tensor for tensor; a missing module or a shape mismatch is a one-line ModelError."""
    import torch
    from safetensors.torch import load_file

    from amtcli.checkpoint import copy_weights, save_checkpoint
    from amtcli.errors import ModelError
    from amtcli.families.onsets_frames import OnsetsFrames, OnsetsFramesConfig
    from amtcli.families.seq2seq import Seq2SeqConfig, Seq2SeqTranscriber
    from amtcli.options import FeatureSpec

    torch.manual_seed(0)
    onf = OnsetsFramesConfig(features=FeatureSpec(n_bins=64), conv_channels=4, model_dim=16, lstm_units=8)
    save_checkpoint(tmp_path / "onf", "onf", onf.to_dict(), OnsetsFrames(onf))
    source = load_file(str(tmp_path / "onf" / "model.safetensors"))
    seq = Seq2SeqTranscriber(Seq2SeqConfig(features=FeatureSpec(n_bins=64), conv_channels=4, model_dim=16,
                                           encoder_units=8, decoder_units=16, embedding_dim=8))
    before = {k: v.clone() for k, v in seq.state_dict().items()}
    copied = copy_weights(seq, tmp_path / "onf", ("norm", "acoustic"))
    after = seq.state_dict()
    assert copied == sum(1 for k in after if k.startswith(("norm.", "acoustic.")))
    for name in after:
        if name.startswith(("norm.", "acoustic.")):
            assert torch.equal(after[name], source[name])
        else:
            assert torch.equal(after[name], before[name])
    with pytest.raises(ModelError, match="not in this model"):
        copy_weights(seq, tmp_path / "onf", ("decoder",))
    wide = Seq2SeqTranscriber(Seq2SeqConfig(features=FeatureSpec(n_bins=64), conv_channels=4, model_dim=24,
                                            encoder_units=8, decoder_units=16, embedding_dim=8))
    with pytest.raises(ModelError, match="needs"):
        copy_weights(wide, tmp_path / "onf", ("acoustic",))


def test_init_freeze_keeps_the_copied_modules_as_they_were(tmp_path, tiny_dataset):
    from safetensors.torch import load_file

    runner = CliRunner()
    first = runner.invoke(app, ["train", "--recipe", str(write_recipe(tmp_path / "a.toml", 2)),
                                "--dataset", str(tiny_dataset), "--run-dir", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    head, rest = RECIPE.format(steps=2).split("[data]")
    init = f'[init]\ncheckpoint = "{tmp_path / "a" / "last"}"\nmodules = ["norm", "acoustic"]\nfreeze = true\n'
    (tmp_path / "b.toml").write_text(f"{head}[data]{rest}{init}")
    second = runner.invoke(app, ["train", "--recipe", str(tmp_path / "b.toml"), "--dataset", str(tiny_dataset),
                                 "--run-dir", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    source = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    trained = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    frozen = [k for k in trained if k.startswith(("norm.", "acoustic."))]
    assert any("running_mean" in k for k in frozen)  # batch-norm statistics stay as copied too
    for name in frozen:
        assert torch_equal(trained[name], source[name]), name
    assert json.loads((tmp_path / "b" / "recipe.json").read_text())["init"][0]["freeze"] is True
    heads = [k for k in trained if k.startswith("onset_head.") and k.endswith("weight_ih_l0")]
    assert heads and not all(torch_equal(trained[k], source[k]) for k in heads)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_bad_init_section_is_a_one_line_error_before_training(tmp_path, tiny_dataset):
    head, rest = RECIPE.format(steps=2).split("[data]")
    bad_init = f'[init]\ncheckpoint = "{tmp_path / "missing"}"\nmodules = ["acoustic"]\n'
    (tmp_path / "r.toml").write_text(f"{head}[data]{rest}{bad_init}")
    result = CliRunner().invoke(app, ["train", "--recipe", str(tmp_path / "r.toml"), "--dataset", str(tiny_dataset),
                                      "--run-dir", str(tmp_path / "run")])
    assert result.exit_code != 0 and "missing" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "metrics.csv").exists()
    (tmp_path / "r.toml").write_text(f'{head}[data]{rest}[init]\ncheckpoint = "{tmp_path}"\n')
    result = CliRunner().invoke(app, ["train", "--recipe", str(tmp_path / "r.toml"), "--dataset", str(tiny_dataset)])
    assert result.exit_code == 2 and "modules" in result.output
