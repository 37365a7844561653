import numpy as np
import pytest
import torch

from amtcli.audio import Audio
from amtcli.checkpoint import load_checkpoint, save_checkpoint
from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig, framewise_cnn_loss
from amtcli.batching import transcribe
from amtcli.inference import stitched_posteriors
from amtcli.options import FeatureSpec
from amtcli.training.steps import train_step
from amtcli.training.targets import frame_targets
from amtcli.types import Note

SMALL = FramewiseCNNConfig(features=FeatureSpec(n_bins=64), stem_channels=4, model_dim=16, blocks=2)


def test_outputs_follow_the_frame_grid():
    model = FramewiseCNN(SMALL).eval()
    out = model(torch.zeros(2, 16000 * 3))
    assert set(out) == {"frame", "velocity"}
    assert all(v.shape == (2, 150, 88) for v in out.values())
    assert model.posteriorgram(torch.zeros(1, 16000)).shape == (1, 50, 88, 2)


def test_reconstruction_adds_a_second_pass_and_its_losses():
    config = FramewiseCNNConfig(features=FeatureSpec(kind="cqt", n_fft=4096, n_bins=96, fmin_hz=55.0),
                                stem_channels=4, model_dim=16, blocks=1, reconstruction=True)
    model = FramewiseCNN(config)
    out = model(torch.randn(2, 16000))
    assert out["reconstruction"].shape == out["spectrum"].shape == (2, 50, 96, 1)
    targets = {k: torch.from_numpy(v[None].repeat(2, 0)) for k, v in
               frame_targets([Note(0.1, 0.5, 60)], 0.0, 50, 50.0).items()}
    losses = framewise_cnn_loss(out, targets)
    assert set(losses) == {"frame", "velocity", "frame_first", "reconstruction"}
    sum(losses.values()).backward()
    assert model.reconstructor.net[0].weight.grad.abs().sum() > 0


def test_a_few_steps_learn_a_held_tone():
    torch.manual_seed(0)
    model = FramewiseCNN(SMALL)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    t = np.arange(16000) / 16000
    tone = np.zeros(16000, dtype=np.float32)
    tone[4000:12000] = 0.5 * np.sin(2 * np.pi * 440 * t[4000:12000])
    audio = torch.from_numpy(np.stack([tone, tone]))
    targets = {k: torch.from_numpy(v[None].repeat(2, 0)) for k, v in
               frame_targets([Note(0.25, 0.75, 69)], 0.0, 50, 50.0).items()}
    first = train_step(model, framewise_cnn_loss, optimizer, audio, targets, 3.0).total
    for _ in range(60):
        last = train_step(model, framewise_cnn_loss, optimizer, audio, targets, 3.0).total
    assert last < 0.3 * first
    model.eval()
    frames = model.posteriorgram(audio[:1])[0, :, 69 - 21, 0]
    assert frames[20:30].mean() > 0.5 > frames[:5].mean()


def test_checkpoint_windowing_is_used_and_matches_the_default(tmp_path):
    """A 1 s margin covers the CNN's receptive field: posteriors equal the 5 s hop's."""
    torch.manual_seed(0)
    model = FramewiseCNN(SMALL)
    save_checkpoint(tmp_path / "ck", "cnn", SMALL.to_dict(), model,
                    extra={"windowing": {"window_s": 10.0, "hop_s": 8.0}})
    loaded = load_checkpoint(tmp_path / "ck")
    assert (loaded.window_s, loaded.hop_s) == (10.0, 8.0)
    audio = Audio(np.random.default_rng(0).normal(0, 0.1, 16000 * 27).astype(np.float32), 16000)
    wide = np.concatenate(list(stitched_posteriors(loaded, audio)))
    default = np.concatenate(list(stitched_posteriors(loaded, audio, 10.0, 5.0)))
    assert wide.shape == default.shape == (27 * 50, 88, 2)
    np.testing.assert_allclose(wide, default, atol=1e-4)
    assert transcribe(loaded, audio).stats["n_windows"] == 4  # windows start at 0, 8, 16 and 24 s


def test_bad_windowing_in_config_is_a_model_error(tmp_path):
    from amtcli.errors import ModelError

    save_checkpoint(tmp_path / "ck", "cnn", SMALL.to_dict(), FramewiseCNN(SMALL),
                    extra={"windowing": {"window_s": 10.0, "hop_s": 8.01}})
    with pytest.raises(ModelError, match="windowing"):
        load_checkpoint(tmp_path / "ck")


def test_harmonic_negatives_mark_the_partials_of_sounding_keys_only():
    from amtcli.families.losses import harmonic_negatives

    target = torch.zeros(1, 2, 88)
    target[0, 0, 10] = target[0, 0, 22] = 1.0       # a key and its octave, both sounding
    mask = harmonic_negatives(target)
    assert mask[0, 0].nonzero().flatten().tolist() == [29, 34, 38, 41, 46, 50, 53]
    assert mask[0, 1].sum() == 0                     # nothing sounds in frame 1


def test_harmonic_negative_weight_raises_the_cost_of_hearing_a_partial():
    from amtcli.families.framewise_cnn import framewise_cnn_loss

    target = {"frame": torch.zeros(1, 1, 88), "onset": torch.zeros(1, 1, 88), "velocity": torch.zeros(1, 1, 88)}
    target["frame"][0, 0, 20] = 1.0
    partial_heard = torch.full((1, 1, 88), -5.0)
    partial_heard[0, 0, 20] = partial_heard[0, 0, 32] = 5.0    # key 32 = 20 + 12, a false note at the octave
    other_heard = partial_heard.clone()
    other_heard[0, 0, 32], other_heard[0, 0, 33] = -5.0, 5.0  # the false note elsewhere
    outputs = {"velocity": torch.zeros(1, 1, 88)}
    plain = [framewise_cnn_loss({**outputs, "frame": f}, target)["frame"] for f in (partial_heard, other_heard)]
    weighted = [framewise_cnn_loss({**outputs, "frame": f}, target, harmonic_negative_weight=4.0)["frame"]
                for f in (partial_heard, other_heard)]
    assert torch.isclose(plain[0], plain[1])
    assert weighted[0] > 2 * weighted[1]


def test_onset_readout_adds_an_onset_channel_learned_beside_the_frozen_trunk(tmp_path):
    """The onset read-out is a third output; copied from a cnn without it and trained with
    the trunk and frame read-out frozen, only the read-out moves and the frames stay."""
    from amtcli.checkpoint import copy_weights
    from amtcli.inference import stitched_posteriors as stitched

    torch.manual_seed(0)
    base = FramewiseCNN(SMALL)
    save_checkpoint(tmp_path / "base", "cnn", SMALL.to_dict(), base)
    config = FramewiseCNNConfig(**{**SMALL.__dict__, "onset_readout": True})
    model = FramewiseCNN(config)
    assert model.CHANNELS == ("frame", "onset", "velocity") and FramewiseCNN.CHANNELS == ("frame", "velocity")
    trunk = ("norm", "transcriber.stem", "transcriber.project", "transcriber.blocks", "transcriber.frame",
             "transcriber.velocity")
    copy_weights(model, tmp_path / "base", trunk)
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("transcriber.onset.")
    model.eval()                                # batch norms keep their statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    audio = torch.randn(2, 16000)
    targets = {k: torch.from_numpy(v[None].repeat(2, 0)) for k, v in
               frame_targets([Note(0.2, 0.6, 60)], 0.0, 50, 50.0).items()}
    losses = framewise_cnn_loss(model(audio), targets)
    assert set(losses) == {"frame", "velocity", "onset"}
    train_step(model, framewise_cnn_loss, optimizer, audio, targets, 3.0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("transcriber.onset."))
    assert not torch.equal(before["transcriber.onset.2.weight"], after["transcriber.onset.2.weight"])
    assert torch.equal(model(audio)["frame"], base.eval()(audio)["frame"])
    save_checkpoint(tmp_path / "onset", "cnn", config.to_dict(), model)
    loaded = load_checkpoint(tmp_path / "onset")
    probs = np.concatenate(list(stitched(loaded, Audio(audio[0].numpy(), 16000))))
    assert probs.shape == (50, 88, 3)
