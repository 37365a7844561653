import numpy as np
import pytest
import torch

from amtcli.audio import Audio
from amtcli.checkpoint import load_checkpoint, save_checkpoint
from amtcli.errors import ModelError
from amtcli.families.onsets_frames import OnsetsFrames, OnsetsFramesConfig, onsets_frames_loss
from amtcli.batching import transcribe
from amtcli.options import DecodeOptions, FeatureSpec
from amtcli.training.steps import train_step
from amtcli.training.targets import frame_targets
from amtcli.types import Note

SMALL = OnsetsFramesConfig(conv_channels=4, model_dim=32, lstm_units=8)


def test_output_shapes_follow_the_frame_grid():
    model = OnsetsFrames(SMALL).eval()
    out = model(torch.zeros(2, 16000 * 3))
    assert set(out) == {"onset", "offset", "frame", "velocity"}
    assert all(v.shape == (2, 150, 88) for v in out.values())
    assert model.posteriorgram(torch.zeros(1, 16000)).shape == (1, 50, 88, 4)


def test_onset_stack_reads_its_own_short_window_spectrum(tmp_path):
    config = OnsetsFramesConfig(conv_channels=4, model_dim=32, lstm_units=8, onset_stack=True, onset_dim=16,
                                onset_n_fft=512, onset_n_bins=32)
    torch.manual_seed(0)
    model = OnsetsFrames(config).eval()
    assert model.onset_frontend.spec.n_fft == 512 and model.onset_frontend.spec.n_bins == 32
    click = torch.zeros(1, 16000)
    click[0, 8000] = 1.0
    out = model(click)
    assert all(v.shape == (1, 50, 88) for v in out.values())
    save_checkpoint(tmp_path / "ck", "onf", config.to_dict(), model)
    loaded = load_checkpoint(tmp_path / "ck")
    assert torch.allclose(loaded.module(click)["onset"], out["onset"])
    spread = lambda spec: (spec[0, :, 0] - spec[0, :, 0].min() > 1.0).sum().item()   # noqa: E731
    assert spread(model.onset_frontend(click)) < spread(model.frontend(click))      # the click stays sharper


def test_checkpoint_round_trip_is_strict(tmp_path):
    torch.manual_seed(0)
    model = OnsetsFrames(SMALL)
    save_checkpoint(tmp_path / "ck", "onf", SMALL.to_dict(), model)
    loaded = load_checkpoint(tmp_path / "ck")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value)
    other = OnsetsFramesConfig(conv_channels=8, model_dim=32, lstm_units=8)
    save_checkpoint(tmp_path / "bad", "onf", other.to_dict(), model)
    with pytest.raises(ModelError, match="do not match"):
        load_checkpoint(tmp_path / "bad")


def test_onset_support_in_a_checkpoint_needs_an_onset_head(tmp_path):
    import json

    from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig

    cnn_config = FramewiseCNNConfig(features=FeatureSpec(n_bins=64), stem_channels=4, model_dim=16, blocks=1,
                                    dilations=(1, 2))
    for family, config, model in (("onf", SMALL, OnsetsFrames(SMALL)),
                                  ("cnn", cnn_config, FramewiseCNN(cnn_config))):
        save_checkpoint(tmp_path / family, family, config.to_dict(), model)
        path = tmp_path / family / "config.json"
        payload = json.loads(path.read_text())
        payload["decode"] = {"note_start": "frame", "onset_support": 0.1}
        path.write_text(json.dumps(payload))
    assert load_checkpoint(tmp_path / "onf").decode.onset_support == 0.1
    with pytest.raises(ModelError, match="onset_support needs a frame model with an onset head"):
        load_checkpoint(tmp_path / "cnn")


def test_transcribe_random_model_covers_whole_file(random_onf_checkpoint):
    model = load_checkpoint(random_onf_checkpoint)
    audio = Audio(np.random.default_rng(0).normal(0, 0.1, 16000 * 23).astype(np.float32), 16000)
    result = transcribe(model, audio)
    assert result.duration_s == pytest.approx(23.0)
    assert result.stats["n_windows"] == 4
    assert all(0 <= n.onset_s < n.offset_s <= 23.0 for n in result.notes)


def test_targets_mark_onsets_frames_offsets():
    notes = [Note(0.1, 0.3, 60, velocity=127), Note(0.95, 1.5, 21)]
    t = frame_targets(notes, start_s=0.0, n_frames=50, frame_rate_hz=50.0)
    assert t["onset"][5:7, 39].all() and t["onset"].sum() == 4  # ONSET_FRAMES = 2 per note
    assert t["frame"][5:15, 39].all() and t["frame"][:, 39].sum() == 10
    assert t["offset"][15, 39] == 1
    assert t["velocity"][5, 39] == 1.0
    assert t["frame"][48:, 0].all()  # runs past the crop end


def test_a_note_that_began_before_the_crop_has_no_onset_in_it():
    # A crop that starts 1 s into a held note: frames from the first frame, no onset at all
    # (a negative slice end once marked most of the crop as onset).
    t = frame_targets([Note(0.0, 3.0, 60), Note(1.02, 1.5, 64)], start_s=1.0, n_frames=100, frame_rate_hz=50.0)
    assert t["frame"][:100, 39].all()
    assert t["onset"][:, 39].sum() == 0
    assert t["onset"][:, 43].sum() == 2 and t["onset"][1:3, 43].all()


def test_train_step_clips_between_backward_and_step():
    torch.manual_seed(0)
    model = OnsetsFrames(SMALL)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    audio = torch.randn(2, 16000)
    targets = {k: torch.from_numpy(v[None].repeat(2, 0)) for k, v in
               frame_targets([Note(0.1, 0.5, 60)], 0.0, 50, 50.0).items()}
    before = {k: v.clone() for k, v in model.named_parameters()}
    clip = 1e-3
    result = train_step(model, onsets_frames_loss, optimizer, audio, targets, clip)
    assert np.isfinite(result.total) and not result.skipped
    assert result.grad_norm > clip  # clipping had something to do
    # With SGD (lr 1) the update equals the clipped gradient: its global norm must be <= clip.
    with torch.no_grad():
        update = torch.sqrt(sum(((before[k] - p) ** 2).sum() for k, p in model.named_parameters()))
    assert 0 < float(update) <= clip * 1.001


def test_non_finite_loss_skips_the_update():
    model = OnsetsFrames(SMALL)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = {k: v.clone() for k, v in model.named_parameters()}

    def nan_loss(outputs, targets):
        return {"x": outputs["frame"].sum() * float("nan")}

    result = train_step(model, nan_loss, optimizer, torch.randn(1, 16000), {}, 1.0)
    assert result.skipped
    assert all(torch.equal(before[k], p) for k, p in model.named_parameters())


def test_reattack_gap_breaks_the_frame_target_before_a_repeated_note():
    notes = [Note(0.1, 0.5, 60), Note(0.5, 0.9, 60), Note(0.2, 0.6, 62), Note(0.6, 0.8, 62)]
    plain = frame_targets(notes, 0.0, 50, 50.0)
    split = frame_targets(notes, 0.0, 50, 50.0, reattack_gap_frames=1)
    assert plain["frame"][5:45, 39].all()                   # touching notes: one unbroken run
    assert split["frame"][5:24, 39].all() and split["frame"][24, 39] == 0 and split["frame"][25:45, 39].all()
    assert split["frame"][29, 41] == 0 and plain["frame"][29, 41] == 1
    assert np.array_equal(split["onset"], plain["onset"])   # onsets are untouched
    lone = frame_targets([Note(0.1, 0.5, 60)], 0.0, 50, 50.0, reattack_gap_frames=1)
    assert lone["frame"][:, 39].sum() == 20                 # a note without a successor keeps its end


DILATED = OnsetsFramesConfig(features=FeatureSpec(n_bins=64), acoustic="dilated", stem_channels=4, model_dim=16,
                             blocks=1, dilations=(1, 2), lstm_units=8)


def test_dilated_acoustic_model_takes_the_cnn_trunk_and_its_weights(tmp_path):
    """With acoustic = "dilated" the heads sit on the cnn family's trunk, whose weights
    copy over from a cnn checkpoint (trunk renamed transcriber -> acoustic); the result
    round-trips strictly through a checkpoint."""
    from amtcli.checkpoint import copy_weights
    from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig

    torch.manual_seed(0)
    cnn = FramewiseCNN(FramewiseCNNConfig(features=FeatureSpec(n_bins=64), stem_channels=4, model_dim=16, blocks=1,
                                          dilations=(1, 2)))
    save_checkpoint(tmp_path / "cnn", "cnn", cnn.config.to_dict(), cnn)
    model = OnsetsFrames(DILATED)
    copy_weights(model, tmp_path / "cnn", ("norm", "acoustic=transcriber"))
    cnn.eval(), model.eval()
    audio = torch.randn(1, 16000)
    with torch.no_grad():
        expected = cnn.transcriber.features(cnn.normalised_spectrum(audio)).transpose(1, 2)
        assert torch.allclose(model.acoustic_features(audio), expected, atol=1e-6)
    out = model(torch.zeros(2, 16000 * 2))
    assert all(v.shape == (2, 100, 88) for v in out.values())
    save_checkpoint(tmp_path / "onf", "onf", DILATED.to_dict(), model)
    loaded = load_checkpoint(tmp_path / "onf")
    assert loaded.config["acoustic"] == "dilated" and loaded.config["dilations"] == [1, 2]
    with pytest.raises(ValueError, match="acoustic"):
        OnsetsFramesConfig(acoustic="transformer")


def test_frame_readout_copied_from_a_cnn_starts_as_that_cnn(tmp_path):
    """With frame_readout the frame logits are a per-frame read-out of the trunk plus the
    conditioned BiLSTM head, which starts at zero: copied from a cnn checkpoint, the onf
    gives that cnn's frame probabilities before any training, and training moves them."""
    from dataclasses import replace

    from amtcli.checkpoint import copy_weights
    from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig

    torch.manual_seed(0)
    cnn = FramewiseCNN(FramewiseCNNConfig(features=FeatureSpec(n_bins=64), stem_channels=4, model_dim=16, blocks=1,
                                          dilations=(1, 2)))
    save_checkpoint(tmp_path / "cnn", "cnn", cnn.config.to_dict(), cnn)
    config = replace(DILATED, frame_readout=True)
    model = OnsetsFrames(config)
    copy_weights(model, tmp_path / "cnn", ("norm", "acoustic=transcriber", "frame_readout=transcriber.frame"))
    cnn.eval(), model.eval()
    audio = torch.randn(2, 16000)
    with torch.no_grad():
        assert torch.allclose(model(audio)["frame"], cnn(audio)["frame"], atol=1e-5)
    targets = {k: torch.from_numpy(v)[None].repeat(2, 1, 1) for k, v in
               frame_targets([Note(0.2, 0.6, 60)], 0.0, 50, 50.0).items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_step(model.train(), onsets_frames_loss, optimizer, audio, targets, 3.0)
    assert float(model.frame_head.out.weight.detach().abs().sum()) > 0  # the correction trains
    save_checkpoint(tmp_path / "onf", "onf", config.to_dict(), model)
    assert load_checkpoint(tmp_path / "onf").config["frame_readout"] is True


def test_transcription_and_tuning_paths_decode_the_same_notes(random_onf_checkpoint):
    """transcribe() decodes window by window (joins at each later window's first kept
    frame); tuning and validation decode the stitched posteriorgram in one piece
    (decode_chunks, joins from the recording's length). Both give the same notes."""
    from dataclasses import replace

    from amtcli.inference import decode_chunks, stitched_posteriors

    model = load_checkpoint(random_onf_checkpoint)
    audio = Audio(np.random.default_rng(3).normal(0, 0.3, 16000 * 23).astype(np.float32), 16000)
    for options in (DecodeOptions(onset_threshold=0.3, frame_threshold=0.3, note_start="onset"),
                    DecodeOptions(onset_threshold=0.3, frame_threshold=0.3, note_start="frame", reonset_threshold=0.05)):
        streamed = sorted(transcribe(model, audio, options).notes)
        whole = decode_chunks(model, [np.concatenate(list(stitched_posteriors(model, audio)))], options)
        assert streamed and streamed == sorted(whole)
        assert streamed == sorted(transcribe(model, audio, replace(options), batch_windows=1).notes)


def test_harmonic_negative_weight_makes_a_heard_partial_cost_more():
    targets = {key: torch.zeros(1, 4, 88) for key in ("onset", "offset", "frame", "velocity")}
    targets["frame"][0, :, 40] = 1.0                      # a note sounds at key 40
    outputs = {key: torch.full((1, 4, 88), -6.0) for key in ("onset", "offset", "frame", "velocity")}
    outputs["frame"][0, :, 40] = 6.0
    outputs["frame"][0, :, 52] = 6.0                      # its octave (+12) heard as a note
    def extra_cost() -> float:
        loss = lambda weight: onsets_frames_loss(outputs, targets, harmonic_negative_weight=weight)["frame"]  # noqa: E731
        return float(loss(3.0) - loss(1.0))

    partial_heard = extra_cost()
    outputs["frame"][0, :, 52] = -6.0
    outputs["frame"][0, :, 45] = 6.0                      # a non-harmonic false note instead
    assert partial_heard > 100 * extra_cost() > 0
