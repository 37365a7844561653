import numpy as np
import pytest
import torch

from amtcli.audio import Audio
from amtcli.checkpoint import get_family, load_checkpoint, save_checkpoint
from amtcli.decoding.tokens import (EOS, NOTE_OFF_BASE, PAD, SHIFT_BASE, VOCAB_SIZE, Detokenizer, confirm_note_ons,
                                    encode_window, end_notes_by_activity)
from amtcli.errors import ConfigError, ModelError
from amtcli.families.seq2seq import (Seq2SeqConfig, Seq2SeqTranscriber, TokenGrammar, attack_evidence,
                                     guided_attention_loss, is_looping,
                                     token_positions)
from amtcli.batching import transcribe
from amtcli.options import DecodeOptions, FeatureSpec
from amtcli.training.steps import train_step
from amtcli.types import Note

SMALL = Seq2SeqConfig(features=FeatureSpec(n_bins=64), conv_channels=4, model_dim=16, encoder_units=8,
                      decoder_units=16, embedding_dim=8, max_target_tokens=40, max_decode_tokens=30)


def set_decode(folder, decode: dict) -> None:
    """Replace the 'decode' section of the checkpoint saved in ``folder``."""
    import json

    path = folder / "config.json"
    payload = json.loads(path.read_text())
    payload["decode"] = decode
    path.write_text(json.dumps(payload))


def tone_batch():
    t = np.arange(16000) / 16000
    audio = np.zeros(16000, dtype=np.float32)
    audio[3200:11200] = 0.5 * np.sin(2 * np.pi * 440 * t[3200:11200])
    notes = [Note(0.2, 0.7, 69)]
    tokens = get_family("seq2seq").note_targets(SMALL.to_dict())(notes, 0.0, 1.0)["tokens"]
    return torch.from_numpy(np.stack([audio, audio])), torch.from_numpy(np.stack([tokens, tokens])), notes


def test_teacher_forced_shapes_and_padding_trim():
    model = Seq2SeqTranscriber(SMALL)
    audio, tokens, _ = tone_batch()
    out = model(audio, tokens)
    n = int((tokens[0] != PAD).sum())
    assert out["logits"].shape == (2, n, VOCAB_SIZE) and out["tokens"].shape == (2, n)


def test_token_positions_follow_the_time_shifts():
    """0.2 s shift, NOTE_ON 69, 0.5 s shift, NOTE_OFF 69, EOS at 25 positions per second:
    a shift sits where it moves to, an event at its time."""
    tokens = torch.tensor([[SHIFT_BASE + 19, 69 - 21, SHIFT_BASE + 49, NOTE_OFF_BASE + 69 - 21, EOS, PAD]])
    positions = token_positions(tokens, positions_per_step=0.25)
    assert positions.tolist() == [[5.0, 5.0, 17.5, 17.5, 17.5, 17.5]]


def test_guided_attention_loss_is_zero_on_the_diagonal_and_grows_away_from_it():
    tokens = torch.tensor([[SHIFT_BASE + 19, 69 - 21, EOS, PAD]])  # positions 5, 5 (EOS, PAD ignored)
    on_time = torch.zeros(1, 4, 25)
    on_time[0, 0, 5] = on_time[0, 1, 5] = 1.0
    on_time[0, 2, 24] = on_time[0, 3, 24] = 1.0                   # EOS / PAD may look anywhere
    assert float(guided_attention_loss(on_time, tokens, 0.25, sigma=3.0)) == pytest.approx(0.0, abs=1e-6)
    late = torch.zeros(1, 4, 25)
    late[0, :, 20] = 1.0
    expected = 1 - np.exp(-(20 - 5) ** 2 / 18)
    assert float(guided_attention_loss(late, tokens, 0.25, sigma=3.0)) == pytest.approx(expected, rel=1e-5)


def test_guided_attention_term_trains_the_attention():
    config = Seq2SeqConfig(**{**SMALL.__dict__, "guided_attention_weight": 2.0})
    model = Seq2SeqTranscriber(config)
    audio, tokens, _ = tone_batch()
    out = model(audio, tokens)
    assert out["attention"].shape == (2, out["tokens"].shape[1], 25)
    losses = get_family("seq2seq").loss(config.to_dict())(out, {"tokens": tokens})
    assert set(losses) == {"tokens", "attention"} and float(losses["attention"].detach()) > 0
    losses["attention"].backward()
    assert model.attn_v.weight.grad.abs().sum() > 0
    assert set(get_family("seq2seq").loss(SMALL.to_dict())(model(audio, tokens), {"tokens": tokens})) == {"tokens"}


def test_attention_ignores_padded_frames():
    model = Seq2SeqTranscriber(SMALL).eval()
    memory, mask = model.encode(torch.randn(1, 16000), lengths=torch.tensor([40]))
    assert mask.shape == (1, 25)                             # 50 frames, 2 per attention position
    assert mask[0, :20].all() and not mask[0, 20:].any()
    keys = model.attn_memory(memory)
    with torch.no_grad():
        _, weights = model._attend(torch.randn(1, SMALL.decoder_units), keys, memory, mask, torch.zeros(1, 25),
                                   torch.zeros(1))
    assert weights.dtype == torch.float32
    assert float(weights[0, 20:].sum()) < 1e-6 and float(weights[0].sum()) == pytest.approx(1.0, abs=1e-5)


def test_training_steps_teach_it_one_note_then_greedy_and_beam_decode_it():
    torch.manual_seed(0)
    model = Seq2SeqTranscriber(SMALL)
    audio, tokens, notes = tone_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = get_family("seq2seq").loss(SMALL.to_dict())
    first = train_step(model, loss, optimizer, audio, {"tokens": tokens}, 3.0, teacher_forced=True, micro_batches=2)
    for _ in range(80):
        last = train_step(model, loss, optimizer, audio, {"tokens": tokens}, 3.0, teacher_forced=True)
    assert last.total < 0.05 * first.total
    model.eval()
    expected = encode_window(notes, 0.0, 1.0)[:-1]
    greedy = model.greedy(audio[:1], return_attention=True)[0]
    assert greedy["tokens"] == expected and greedy["stopped"] == "eos"
    assert greedy["attention"].shape == (len(expected), 25)
    assert model.beam(audio[:1], width=3)[0]["tokens"] == expected
    rows = model.decode_windows(audio, beam_width=1)
    assert rows.shape == (2, SMALL.max_decode_tokens + 2) and rows[0, -1] == 0  # stopped at EOS
    assert (rows[:, -2] == 0).all()                                             # nothing unconfirmed


def test_beam_with_frame_head_rules_encodes_each_window_once():
    """The rules need the encoder's memory; the beam search reuses it instead of encoding
    every window a second time, and decodes exactly as if it had encoded on its own."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(**{**SMALL.__dict__, "frame_loss_weight": 1.0})
    model = Seq2SeqTranscriber(config).eval()
    audio = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (3, 16000)).astype(np.float32))
    separate = model.beam(audio, width=2)
    calls = []
    original = model.encode
    model.encode = lambda *args, **kwargs: calls.append(args[0].shape[0]) or original(*args, **kwargs)
    shared = model.beam(audio, width=2, encoded=original(audio))
    assert calls == [] and [r["tokens"] for r in shared] == [r["tokens"] for r in separate]
    model.decode_windows(audio, beam_width=2, confirm_threshold=0.3, end_threshold=0.1)
    assert calls == [3]                                    # one batched encoding, not 1 + 3


def test_loops_are_detected():
    on, shift, off = 5, SHIFT_BASE, NOTE_OFF_BASE + 5
    assert is_looping([1, 2] + [on, off] * 4)      # the same events again and again at one instant
    assert is_looping([shift, 7, 7, 7, 7])
    assert not is_looping([shift] * 20)            # long silences are legal
    assert not is_looping([1, 2] + [on, shift, off] * 6)    # a repeated note moves time on: music
    assert not is_looping([on, shift + 9, off, on + 4, shift + 9, off + 4] * 5)   # an alternating figure
    assert not is_looping([on, shift, on + 1, shift, on + 2, shift, on + 3, shift])


def test_micro_batches_accumulate_to_the_full_batch_gradient():
    torch.manual_seed(0)
    model = Seq2SeqTranscriber(SMALL).eval()  # eval: batch norm uses running stats, so parts match the whole
    audio, tokens, _ = tone_batch()            # two identical examples: each half's mean is the whole's
    loss = get_family("seq2seq").loss(SMALL.to_dict())
    grads = []
    for parts in (1, 2):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        train_step(model, loss, optimizer, audio, {"tokens": tokens}, 1e9, teacher_forced=True, micro_batches=parts)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert grads[0].norm() > 0
    assert float((grads[0] - grads[1]).norm() / grads[0].norm()) < 1e-3  # a wrong share would be off by 2x


def test_transcribe_a_long_file_with_a_random_model_never_crashes(tmp_path):
    torch.manual_seed(1)
    model = Seq2SeqTranscriber(SMALL)
    save_checkpoint(tmp_path / "ck", "seq2seq", SMALL.to_dict(), model)
    loaded = load_checkpoint(tmp_path / "ck")
    audio = Audio(np.random.default_rng(0).normal(0, 0.1, 16000 * 23).astype(np.float32), 16000)
    result = transcribe(loaded, audio, DecodeOptions())
    assert result.stats["n_windows"] == 4
    stops = sum(result.stats[f"windows_stopped_{k}"] for k in Seq2SeqTranscriber.STOP_CODES)
    assert stops == 4
    assert all(0 <= n.onset_s < n.offset_s <= 23.0 for n in result.notes)
    assert {"invalid_tokens", "dropped_tokens", "n_tokens", "unconfirmed_note_ons"} <= set(result.stats)


def test_token_stats_count_decoded_tokens_not_the_rows_padding(tmp_path):
    """A model that says EOS at once decodes no token: none counted, none invalid."""
    model = Seq2SeqTranscriber(SMALL)
    with torch.no_grad():
        model.out[-1].bias.fill_(-100.0)
        model.out[-1].bias[EOS] = 100.0
    save_checkpoint(tmp_path / "ck", "seq2seq", SMALL.to_dict(), model)
    audio = Audio(np.random.default_rng(0).normal(0, 0.1, 16000 * 12).astype(np.float32), 16000)
    result = transcribe(load_checkpoint(tmp_path / "ck"), audio, DecodeOptions())
    assert result.stats["windows_stopped_eos"] == result.stats["n_windows"] > 0
    assert result.stats["n_tokens"] == result.stats["invalid_tokens"] == 0 and not result.notes


def test_attention_png_per_window_and_refused_for_other_families(tmp_path, random_onf_checkpoint):
    from typer.testing import CliRunner

    import soundfile as sf

    from amtcli.cli import app

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ck", "seq2seq", SMALL.to_dict(), Seq2SeqTranscriber(SMALL))
    sf.write(tmp_path / "a.wav", np.random.default_rng(0).normal(0, 0.1, 16000 * 12).astype(np.float32), 16000)
    runner = CliRunner()
    result = runner.invoke(app, ["transcribe", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.csv"),
                                 "--model", str(tmp_path / "ck"), "--attention-png", str(tmp_path / "att")])
    assert result.exit_code == 0, result.output
    pngs = sorted(p.name for p in (tmp_path / "att").iterdir())
    assert pngs == ["a.window000.attention.png", "a.window001.attention.png"]
    assert all((tmp_path / "att" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    refused = runner.invoke(app, ["transcribe", str(tmp_path / "a.wav"), "-o", str(tmp_path / "b.csv"),
                                  "--model", random_onf_checkpoint, "--attention-png", str(tmp_path / "att2")])
    assert refused.exit_code == 2 and "needs a seq2seq model" in refused.output
    # existing maps are refused before anything is written: no new a2.csv
    again = runner.invoke(app, ["transcribe", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a2.csv"),
                                "--model", str(tmp_path / "ck"), "--attention-png", str(tmp_path / "att")])
    assert again.exit_code == 0 and (tmp_path / "att" / "a2.window000.attention.png").exists()  # named by output
    rerun = runner.invoke(app, ["transcribe", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a3.csv"),
                                "--model", str(tmp_path / "ck"), "--attention-png", str(tmp_path / "att"),
                                "--format", "csv"])
    assert rerun.exit_code == 0
    (tmp_path / "a3.csv").unlink()
    clash = runner.invoke(app, ["transcribe", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a3.csv"),
                                "--model", str(tmp_path / "ck"), "--attention-png", str(tmp_path / "att")])
    assert clash.exit_code == 1 and "a3.window000.attention.png exists" in clash.output
    assert not (tmp_path / "a3.csv").exists()
    # two inputs with one name: the second is refused before its outputs are written
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "mix.wav", np.zeros(16000, dtype=np.float32), 16000)
    both = runner.invoke(app, ["transcribe", str(tmp_path / "x" / "mix.wav"), str(tmp_path / "y" / "mix.wav"),
                               "-o", str(tmp_path / "out"), "--model", str(tmp_path / "ck"),
                               "--attention-png", str(tmp_path / "att3")])
    assert both.exit_code == 1 and "would also be written for" in both.output
    assert (tmp_path / "out" / "x" / "mix.mid").exists() and not (tmp_path / "out" / "y").exists()


def test_location_sensitive_attention_and_time_features_decode_like_the_plain_model():
    """Same shapes and stop rules with location_kernel and position_dim; greedy equals
    beam width 1's first choice path, and the memory grows by the time features."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(**{**SMALL.__dict__, "location_kernel": 5, "location_channels": 2, "position_dim": 4})
    model = Seq2SeqTranscriber(config).eval()
    audio, tokens, _ = tone_batch()
    memory, _ = model.encode(audio)
    assert memory.shape == (2, 25, 2 * 8 + 4)
    out = model(audio, tokens)
    assert out["logits"].shape[:2] == out["attention"].shape[:2] == tokens[:, : out["tokens"].shape[1]].shape
    greedy = model.greedy(audio[:1])[0]
    beam = model.beam(audio[:1], width=1)[0]
    assert greedy["tokens"] == beam["tokens"] and greedy["stopped"] in Seq2SeqTranscriber.STOP_CODES
    out["logits"].sum().backward()
    assert model.attn_location_conv.weight.grad.abs().sum() > 0


def test_encoder_frame_loss_uses_frame_targets_pooled_to_memory_positions():
    from amtcli.training.targets import frame_targets

    config = Seq2SeqConfig(**{**SMALL.__dict__, "frame_loss_weight": 1.0})
    model = Seq2SeqTranscriber(config)
    audio, tokens, notes = tone_batch()
    frames = torch.from_numpy(np.stack([frame_targets(notes, 0.0, 50, 50.0)["frame"]] * 2))
    out = model(audio, tokens)
    assert out["frame"].shape == (2, 25, 88)
    losses = get_family("seq2seq").loss(config.to_dict())(out, {"tokens": tokens, "frame": frames})
    pooled = frames.reshape(2, 25, 2, 88).amax(dim=2)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out["frame"], pooled)
    assert torch.allclose(losses["frame"], expected) and float(pooled[0, :, 69 - 21].sum()) > 0
    losses["frame"].backward()
    assert model.encoder.weight_ih_l0.grad.abs().sum() > 0


WINDOWED = Seq2SeqConfig(**{**SMALL.__dict__, "attention_window_s": 0.6, "attention_back": 1, "relative_dim": 4})


def test_windowed_attention_stays_between_just_before_now_and_the_window_ahead():
    """At 25 positions/s a 0.6 s window covers 15 positions ahead; now = 20 steps (0.2 s)
    is position 5, so only positions 4..20 may get weight, and the context carries
    the relative-offset embedding."""
    torch.manual_seed(0)
    model = Seq2SeqTranscriber(WINDOWED).eval()
    memory, mask = model.encode(torch.randn(1, 16000))
    keys = model.attn_memory(memory)
    with torch.no_grad():
        context, weights = model._attend(torch.randn(1, 16), keys, memory, mask, torch.zeros(1, 25),
                                         torch.tensor([20.0]))
    assert context.shape == (1, 2 * 8 + 4)
    assert float(weights[0, 4:21].sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(weights[0, :4].sum() + weights[0, 21:].sum()) < 1e-6


def test_current_time_is_the_sum_of_shifts_read_so_far_under_teacher_forcing():
    torch.manual_seed(0)
    model = Seq2SeqTranscriber(WINDOWED)
    audio, tokens, _ = tone_batch()      # SHIFT(20) ON(69) SHIFT(50) OFF(69) EOS
    assert tokens[0, :5].tolist() == [SHIFT_BASE + 19, 69 - 21, SHIFT_BASE + 49, NOTE_OFF_BASE + 69 - 21, EOS]
    with torch.no_grad():
        attention = model(audio, tokens)["attention"][0]
    for step, now_steps in enumerate([0, 20, 20, 70, 70]):
        position = now_steps // 4                           # 4 steps of 10 ms per 40 ms position
        inside = attention[step, max(position - 1, 0): position + 16].sum()
        assert float(attention[step].sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(inside) == pytest.approx(1.0, abs=1e-5), step


def test_windowed_model_learns_one_note_and_decodes_it():
    torch.manual_seed(0)
    model = Seq2SeqTranscriber(WINDOWED)
    audio, tokens, notes = tone_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = get_family("seq2seq").loss(WINDOWED.to_dict())
    for _ in range(80):
        train_step(model, loss, optimizer, audio, {"tokens": tokens}, 3.0, teacher_forced=True)
    model.eval()
    expected = encode_window(notes, 0.0, 1.0)[:-1]
    assert model.greedy(audio[:1])[0]["tokens"] == expected
    assert model.beam(audio[:1], width=3)[0]["tokens"] == expected
    assert model.relative.weight.grad is not None


def test_decoding_stops_when_time_passes_the_window_end():
    """A decoder that only ever says TIME_SHIFT(1 s) reaches the end of a 1 s window
    after one token and stops there (stop code "end"), greedy and beam alike."""
    model = Seq2SeqTranscriber(SMALL).eval()
    with torch.no_grad():
        model.out[-1].bias.fill_(-100.0)
        model.out[-1].bias[SHIFT_BASE + 99] = 100.0
    audio, _, _ = tone_batch()
    assert model._end_steps(model.encode(audio[:1])[1]) == [100.0]
    greedy = model.greedy(audio[:1])[0]
    assert greedy == {"tokens": [SHIFT_BASE + 99], "stopped": "end"}
    assert model.beam(audio[:1], width=2)[0] == greedy
    assert model.decode_windows(audio[:1])[0, -1] == Seq2SeqTranscriber.STOP_CODES.index("end")


def test_encoder_onset_loss_uses_onset_targets():
    from amtcli.training.targets import frame_targets

    config = Seq2SeqConfig(**{**SMALL.__dict__, "onset_loss_weight": 2.0})
    model = Seq2SeqTranscriber(config)
    audio, tokens, notes = tone_batch()
    onsets = torch.from_numpy(np.stack([frame_targets(notes, 0.0, 50, 50.0)["onset"]] * 2))
    out = model(audio, tokens)
    losses = get_family("seq2seq").loss(config.to_dict())(out, {"tokens": tokens, "onset": onsets})
    pooled = onsets.reshape(2, 25, 2, 88).amax(dim=2)
    expected = 2.0 * torch.nn.functional.binary_cross_entropy_with_logits(out["onset"], pooled)
    assert torch.allclose(losses["onset"], expected) and float(pooled[0, :, 69 - 21].sum()) == 1.0
    assert "frame" not in losses


def test_relative_embeddings_need_a_window():
    with pytest.raises(ValueError, match="attention_window_s"):
        Seq2SeqTranscriber(Seq2SeqConfig(**{**SMALL.__dict__, "relative_dim": 4}))


def test_token_grammar_forbids_echoes_and_offs_of_silent_pitches():
    from amtcli.decoding.tokens import SOS
    from amtcli.families.seq2seq import TokenGrammar

    on, off = (lambda p: p - 21), (lambda p: NOTE_OFF_BASE + p - 21)
    grammar = TokenGrammar.start(1, "cpu")
    now = torch.zeros(1)

    def read(token, shift=0):
        nonlocal grammar, now
        now = now + shift
        grammar = TokenGrammar.update(*grammar, torch.tensor([token]), now)
        return TokenGrammar.allowed(*grammar, now)[0]

    allowed = TokenGrammar.allowed(*grammar, now)[0]
    assert allowed[off(62)] and allowed[on(60)] and not allowed[PAD] and not allowed[SOS] and allowed[EOS]
    allowed = read(on(60))
    assert not allowed[on(60)] and not allowed[off(60)] and allowed[on(61)]   # no echo, no zero-length note
    allowed = read(SHIFT_BASE + 3, shift=4)                                   # 40 ms later
    assert not allowed[on(60)] and allowed[off(60)]
    allowed = read(SHIFT_BASE, shift=1)                                       # 50 ms: a re-attack is fine
    assert allowed[on(60)]
    allowed = read(off(60))
    assert allowed[on(60)]
    allowed = read(on(60))
    allowed = read(SHIFT_BASE + 4, shift=5)
    allowed = read(off(62))                                                   # rang from before the window
    assert not allowed[off(62)] and allowed[on(62)]
    allowed = read(off(60))
    assert not allowed[off(60)] and allowed[on(60)]
    allowed = read(on(64))
    allowed = read(SHIFT_BASE, shift=1)
    allowed = read(off(64))                                # on and off again 10 ms later ...
    assert not allowed[on(64)]                                                # ... is no licence to echo


def test_soft_shift_targets_spread_only_shifts_and_match_plain_cross_entropy_when_sharp():
    from amtcli.families.seq2seq import seq2seq_loss, shift_soft_targets

    tokens = torch.tensor([[SHIFT_BASE + 9, 40, EOS, PAD]])
    soft = shift_soft_targets(tokens, 2.0)
    assert torch.allclose(soft.sum(dim=-1), torch.ones(1, 4))
    assert soft[0, 0, SHIFT_BASE + 9] == soft[0, 0, SHIFT_BASE:EOS].max() and soft[0, 0, SHIFT_BASE + 11] > 0.05
    assert soft[0, 1, 40] == 1.0 and soft[0, 2, EOS] == 1.0
    torch.manual_seed(0)
    logits = torch.randn(1, 4, VOCAB_SIZE)
    weights = SMALL.class_weights()
    plain = seq2seq_loss({"logits": logits, "tokens": tokens}, {}, weights)["tokens"]
    sharp = seq2seq_loss({"logits": logits, "tokens": tokens}, {}, weights, shift_sigma_steps=1e-3)["tokens"]
    assert torch.allclose(plain, sharp, atol=1e-5)


def test_dilated_encoder_starts_from_a_cnn_checkpoint(tmp_path):
    from amtcli.checkpoint import copy_weights
    from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig

    cnn_config = FramewiseCNNConfig(features=FeatureSpec(n_bins=64), stem_channels=4, model_dim=16, blocks=1,
                                    dilations=(1, 2))
    save_checkpoint(tmp_path / "cnn", "cnn", cnn_config.to_dict(), FramewiseCNN(cnn_config))
    config = Seq2SeqConfig(**{**SMALL.__dict__, "acoustic": "dilated", "stem_channels": 4, "blocks": 1,
                              "dilations": (1, 2)})
    model = Seq2SeqTranscriber(config)
    assert copy_weights(model, tmp_path / "cnn", ("norm", "acoustic=transcriber")) > 0
    memory, mask = model.encode(torch.randn(2, 16000))
    assert memory.shape == (2, 25, 16) and bool(mask.all())


def test_frame_readout_gives_a_cnns_key_probabilities_to_the_memory_and_the_rules(tmp_path):
    """With frame_readout, copied from a cnn checkpoint, the 88 key probabilities in the
    memory are exactly that cnn's frame probabilities; they are the frame activity the
    confirm rule uses (no auxiliary frame head needed), and the checkpoint loads with
    the rules on."""

    from amtcli.checkpoint import copy_weights
    from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig

    torch.manual_seed(0)
    cnn_config = FramewiseCNNConfig(features=FeatureSpec(n_bins=64), stem_channels=4, model_dim=16, blocks=1,
                                    dilations=(1, 2))
    cnn = FramewiseCNN(cnn_config)
    with torch.no_grad():
        cnn.transcriber.frame.bias.normal_(0, 2)   # distinct per-key probabilities
    save_checkpoint(tmp_path / "cnn", "cnn", cnn_config.to_dict(), cnn)
    config = Seq2SeqConfig(**{**SMALL.__dict__, "acoustic": "dilated", "stem_channels": 4, "blocks": 1,
                              "dilations": (1, 2), "memory_stride": 1, "position_dim": 4, "frame_readout": True})
    model = Seq2SeqTranscriber(config)
    assert copy_weights(model, tmp_path / "cnn",
                        ("norm", "acoustic=transcriber", "frame_readout=transcriber.frame")) > 0
    model.eval(), cnn.eval()
    audio = torch.randn(2, 16000)
    with torch.no_grad():
        memory, _ = model.encode(audio)
        expected = torch.sigmoid(cnn(audio)["frame"])
    assert memory.shape == (2, 50, 2 * 8 + 88 + 4)
    assert torch.allclose(model.frame_activity(memory), expected, atol=1e-5)
    audio, tokens, _ = tone_batch()
    assert model.train()(audio, tokens)["logits"].shape[-1] == VOCAB_SIZE
    model.eval()
    with torch.no_grad():
        model.out[-1].bias[40] += 50.0            # NOTE_ON(61) until the decoder loops
        model.frame_readout.weight.zero_()
        model.frame_readout.bias.fill_(-10.0)     # the read-out hears no key
    ruled = model.decode_windows(audio, grammar=False, confirm_threshold=0.5)
    assert int((ruled[:, :-2] < NOTE_OFF_BASE).sum()) == 0 and int(ruled[:, -2].sum()) > 0
    save_checkpoint(tmp_path / "s2s", "seq2seq", config.to_dict(), model)
    set_decode(tmp_path / "s2s", {"confirm_threshold": 0.35, "end_threshold": 0.1})
    assert load_checkpoint(tmp_path / "s2s").config["frame_readout"] is True


def test_grammar_can_be_switched_off():
    """A decoder that always prefers NOTE_ON(60): the grammar lets it through every 50 ms
    only; without the grammar it repeats at once and the loop detector stops it."""
    model = Seq2SeqTranscriber(SMALL).eval()
    with torch.no_grad():
        model.out[-1].bias.fill_(-100.0)
        model.out[-1].bias[60 - 21] = 100.0
        model.out[-1].bias[SHIFT_BASE] = 50.0
    audio, _, _ = tone_batch()
    free = model.greedy(audio[:1], grammar=False)[0]
    assert free == {"tokens": [60 - 21] * 4, "stopped": "loop"}
    constrained = model.greedy(audio[:1])[0]["tokens"]
    assert constrained[:7] == [60 - 21] + [SHIFT_BASE] * 5 + [60 - 21]
    assert model.decode_windows(audio[:1], grammar=False)[0, -1] == Seq2SeqTranscriber.STOP_CODES.index("loop")


def test_confirm_note_ons_drops_unheard_pitches_with_their_note_offs():
    activity = np.zeros((250, 88))             # 50 positions per second, 5 s
    activity[48:60, 40] = 0.9                  # key 40 sounds from 0.96 s to 1.2 s
    activity[53, 12] = 0.9                     # key 12 only at 1.06 s: the edge of the window after 1.0 s
    shift_1s, shift_100ms = SHIFT_BASE + 99, SHIFT_BASE + 9
    tokens = [shift_1s, 40, 10, 12, shift_100ms, NOTE_OFF_BASE + 10, NOTE_OFF_BASE + 40, NOTE_OFF_BASE + 12, 10, EOS]
    kept, dropped = confirm_note_ons(tokens, activity, 0.5, 50.0)
    # key 10 was not mentioned before its NOTE_ON, so its NOTE_OFF may end a carried note and stays
    assert kept == [shift_1s, 40, 12, shift_100ms, NOTE_OFF_BASE + 10, NOTE_OFF_BASE + 40, NOTE_OFF_BASE + 12,
                    EOS] and dropped == 2
    # a dropped re-attack of a sounding key keeps the NOTE_OFF that ends the kept note ...
    reattack = [shift_1s, 40, shift_1s, 40, SHIFT_BASE + 49, NOTE_OFF_BASE + 40, EOS]
    assert confirm_note_ons(reattack, activity, 0.5, 50.0) == (reattack[:3] + reattack[4:], 1)
    # ... while a dropped note of a key that is silent again loses its NOTE_OFF
    again = [shift_1s, 40, shift_100ms, NOTE_OFF_BASE + 40, shift_1s, 40, shift_100ms, NOTE_OFF_BASE + 40, EOS]
    assert confirm_note_ons(again, activity, 0.5, 50.0) == (again[:5] + [shift_100ms, EOS], 1)
    assert confirm_note_ons(tokens, activity, 0.0, 50.0) == (tokens, 0)
    assert confirm_note_ons(tokens, activity, 0.95, 50.0)[1] == 4
    # a NOTE_OFF of a key whose NOTE_ON was kept (or that rings from before the window) stays
    assert confirm_note_ons([NOTE_OFF_BASE + 7, EOS], activity, 0.5, 50.0) == ([NOTE_OFF_BASE + 7, EOS], 0)


def test_confirm_note_ons_can_also_ask_the_onset_head():
    frames = np.zeros((250, 88))
    frames[45:150, 40] = 0.9                   # key 40 sounds from 0.9 s to 3.0 s
    onsets = np.zeros((250, 88))
    onsets[50, 40] = 0.3                       # ... and starts once, at 1.0 s
    shift_1s = SHIFT_BASE + 99
    tokens = [shift_1s, 40, shift_1s, 40, shift_1s, NOTE_OFF_BASE + 40, EOS]    # NOTE_ONs at 1 s and 2 s
    # the frame head hears both NOTE_ONs; the onset head only the first: the re-attack goes
    assert confirm_note_ons(tokens, frames, 0.5, 50.0) == (tokens, 0)
    assert confirm_note_ons(tokens, frames, 0.5, 50.0, onsets=onsets, onset_threshold=0.2) == (
        [shift_1s, 40, shift_1s, shift_1s, NOTE_OFF_BASE + 40, EOS], 1)
    # the onset test alone, and a threshold the onset peak does not reach
    assert confirm_note_ons(tokens, frames, 0.0, 50.0, onsets=onsets, onset_threshold=0.2)[1] == 1
    assert confirm_note_ons(tokens, frames, 0.5, 50.0, onsets=onsets, onset_threshold=0.35)[1] == 2


def test_confirm_note_ons_rise_test_keeps_new_attacks_and_drops_keys_already_sounding():
    frames = np.zeros((250, 88))
    frames[45:150, 40] = 0.9                   # key 40 sounds from 0.9 s to 3.0 s, without a dip
    frames[45:150, 41] = 0.9                   # key 41 sounds 0.9-3.0 s but dips to 0.6 at 1.8-2.0 s
    frames[90:100, 41] = 0.6
    shift_1s = SHIFT_BASE + 99
    tokens = [shift_1s, 40, 41, shift_1s, 40, 41, shift_1s, NOTE_OFF_BASE + 40, NOTE_OFF_BASE + 41, EOS]
    assert confirm_note_ons(tokens, frames, 0.5, 50.0) == (tokens, 0)
    # at 1 s both keys rose from 0 within the 200 ms before; at 2 s key 40 had been at 0.9
    # all along (dropped), key 41 rose from 0.6 to 0.9 (kept with a rise of 0.3, not 0.35)
    ruled = [shift_1s, 40, 41, shift_1s, 41, shift_1s, NOTE_OFF_BASE + 40, NOTE_OFF_BASE + 41, EOS]
    assert confirm_note_ons(tokens, frames, 0.5, 50.0, rise=0.25) == (ruled, 1)
    assert confirm_note_ons(tokens, frames, 0.0, 50.0, rise=0.25) == (ruled, 1)   # the rise test alone
    assert confirm_note_ons(tokens, frames, 0.5, 50.0, rise=0.35)[1] == 2
    # no position before the NOTE_ON (the window's start): the floor counts as 0
    assert confirm_note_ons([41, shift_1s, NOTE_OFF_BASE + 41, EOS], frames[45:], 0.5, 50.0, rise=0.5)[1] == 0
    # a note the decoder breaks into pieces (key 40 attacked at 1.0 s, then NOTE_OFF /
    # NOTE_ON every 40-60 ms): the look back starts at the last kept attack, where the key
    # already sounded, so only the first attack stays, and the note goes on to the last
    # piece's NOTE_OFF (the NOTE_OFFs between the pieces go with the dropped NOTE_ONs)
    step_40ms, step_60ms = SHIFT_BASE + 3, SHIFT_BASE + 5
    pieces = [shift_1s, 40, step_40ms, NOTE_OFF_BASE + 40, 40, step_60ms, NOTE_OFF_BASE + 40, 40,
              step_60ms, NOTE_OFF_BASE + 40, EOS]
    fresh = np.zeros((250, 88))
    fresh[50:150, 40] = 0.9                    # key 40 silent until 1.0 s, then sounding
    assert confirm_note_ons(pieces, fresh, 0.5, 50.0) == (pieces, 0)
    assert confirm_note_ons(pieces, fresh, 0.5, 50.0, rise=0.2) == (
        [shift_1s, 40, step_40ms, step_60ms, step_60ms, NOTE_OFF_BASE + 40, EOS], 2)
    # a piece the detector does not hear at all is dropped with its NOTE_OFF, and the note
    # before it keeps its own end
    short = np.zeros((250, 88))
    short[50:55, 40] = 0.9                     # key 40 sounds 1.0-1.1 s only
    step_100ms, step_200ms = SHIFT_BASE + 9, SHIFT_BASE + 19
    late = [shift_1s, 40, step_100ms, NOTE_OFF_BASE + 40, step_200ms, 40, step_100ms, NOTE_OFF_BASE + 40, EOS]
    assert confirm_note_ons(late, short, 0.5, 50.0, rise=0.2) == (
        [shift_1s, 40, step_100ms, NOTE_OFF_BASE + 40, step_200ms, step_100ms, EOS], 1)


def test_frame_detector_gives_a_cnns_frames_to_the_rules_and_leaves_training_as_it_was(tmp_path):
    """frame_detector: a copied cnn's frame probabilities are the rules' activity; the
    other modules initialise exactly as without it and the teacher-forced pass does not
    touch it; checkpoints with rise_threshold need a frame-activity source."""

    from amtcli.checkpoint import copy_weights
    from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig

    cnn_config = FramewiseCNNConfig(features=FeatureSpec(n_bins=64), stem_channels=4, model_dim=16, blocks=1,
                                    dilations=(1, 2))
    torch.manual_seed(1)
    cnn = FramewiseCNN(cnn_config)
    with torch.no_grad():
        cnn.transcriber.frame.bias.normal_(0, 2)
    save_checkpoint(tmp_path / "cnn", "cnn", cnn_config.to_dict(), cnn)
    base = Seq2SeqConfig(**{**SMALL.__dict__, "memory_stride": 1})
    config = Seq2SeqConfig(**{**base.__dict__, "frame_detector": True, "detector_stem_channels": 4,
                              "detector_model_dim": 16, "detector_blocks": 1, "detector_dilations": (1, 2)})
    torch.manual_seed(0)
    plain = Seq2SeqTranscriber(base)
    torch.manual_seed(0)
    model = Seq2SeqTranscriber(config)
    for name, value in plain.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    copy_weights(model, tmp_path / "cnn", ("detector_norm=norm", "detector=transcriber"))
    model.eval(), cnn.eval(), plain.eval()
    audio, tokens, _ = tone_batch()
    with torch.no_grad():
        memory, _ = model.encode(audio)
        assert torch.allclose(model.key_activity(model.frontend(audio), memory), torch.sigmoid(cnn(audio)["frame"]), atol=1e-5)
        assert torch.equal(model(audio, tokens)["logits"], plain(audio, tokens)["logits"])
    save_checkpoint(tmp_path / "s2s", "seq2seq", config.to_dict(), model)
    for folder, cfg in (("s2s", config), ("bare", base)):
        if folder == "bare":
            save_checkpoint(tmp_path / folder, "seq2seq", cfg.to_dict(), Seq2SeqTranscriber(cfg))
        set_decode(tmp_path / folder, {"rise_threshold": 0.1})    # the rise test alone needs an activity too
    assert load_checkpoint(tmp_path / "s2s").config["frame_detector"] is True
    with pytest.raises(ModelError, match="rise_threshold"):
        load_checkpoint(tmp_path / "bare")


def test_the_rules_read_the_detector_not_the_frame_head_and_transcribe_passes_the_rise_test(tmp_path):
    """A model with both an auxiliary frame head and a frame detector: the rules follow the
    detector. ``transcribe`` hands rise_threshold on to the decoder."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(**{**SMALL.__dict__, "memory_stride": 1, "frame_loss_weight": 1.0,
                              "frame_detector": True, "detector_stem_channels": 4, "detector_model_dim": 16,
                              "detector_blocks": 1, "detector_dilations": (1, 2)})
    half_s = SHIFT_BASE + 49
    tokens = [half_s, 40, half_s, NOTE_OFF_BASE + 40, EOS]       # key 40 from 0.5 s to 1.0 s

    def decoder_says(audio, grammar=True, encoded=None, fusion=None):
        return [{"tokens": list(tokens), "stopped": "eos"} for _ in range(audio.shape[0])]

    model = Seq2SeqTranscriber(config).eval()
    with torch.no_grad():
        model.frame_head.weight.zero_()
        model.frame_head.bias.fill_(-10.0)       # the frame head hears nothing ...
        model.detector.frame.weight.zero_()
        model.detector.frame.bias.fill_(10.0)    # ... the detector hears every key, all the time
    model.greedy = decoder_says
    audio = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype(np.float32))
    confirmed = model.decode_windows(audio, grammar=False, confirm_threshold=0.5)
    assert confirmed[0, :5].tolist() == tokens and int(confirmed[:, -2].sum()) == 0
    # key 40 sounds throughout, so its NOTE_ON at 0.5 s is no new attack: the rise test drops
    # it (its NOTE_OFF stays: it may end a note carried in from the previous window)
    risen = model.decode_windows(audio, grammar=False, rise_threshold=0.2)
    assert risen[0, :4].tolist() == [half_s, half_s, NOTE_OFF_BASE + 40, EOS] and int(risen[:, -2].sum()) == 2
    save_checkpoint(tmp_path / "ck", "seq2seq", config.to_dict(), model)
    loaded = load_checkpoint(tmp_path / "ck")
    loaded.module.greedy = decoder_says
    clip = Audio(audio[0].numpy(), 16000)
    assert len(transcribe(loaded, clip, DecodeOptions(token_grammar=False)).notes) == 1
    ruled = transcribe(loaded, clip, DecodeOptions(token_grammar=False, rise_threshold=0.2))
    assert not ruled.notes and ruled.stats["unconfirmed_note_ons"] == 1


def test_decode_windows_confirms_note_ons_with_the_frame_head():
    torch.manual_seed(0)
    config = Seq2SeqConfig(**{**SMALL.__dict__, "frame_loss_weight": 1.0})
    model = Seq2SeqTranscriber(config).eval()
    audio = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype(np.float32))
    with torch.no_grad():
        model.out[-1].bias[40] += 50.0         # the decoder says NOTE_ON(61) until it loops
    plain = model.decode_windows(audio, grammar=False)
    n_on = int((plain[:, :-2] < NOTE_OFF_BASE).sum())
    assert n_on > 0
    with torch.no_grad():
        model.frame_head.weight.zero_()
        model.frame_head.bias.fill_(-10.0)     # the frame head hears nothing
    silent = model.decode_windows(audio, grammar=False, confirm_threshold=0.5)
    assert int((silent[:, :-2] < NOTE_OFF_BASE).sum()) == 0 and int(silent[:, -2].sum()) == n_on
    ended = model.decode_windows(audio, grammar=False, end_threshold=0.5)
    assert int((ended[:, :-2] < NOTE_OFF_BASE).sum()) == n_on   # the notes stay, each now ends
    assert int(((ended[:, :-2] >= NOTE_OFF_BASE) & (ended[:, :-2] < SHIFT_BASE)).sum()) > 0
    with torch.no_grad():
        model.frame_head.bias.fill_(10.0)      # ... or everything
    assert (model.decode_windows(audio, grammar=False, confirm_threshold=0.5) == plain).all()
    with pytest.raises(ConfigError, match="no frame-activity head"):
        Seq2SeqTranscriber(SMALL).decode_windows(audio, confirm_threshold=0.5)


def test_decode_windows_confirms_note_ons_with_the_onset_head():
    torch.manual_seed(0)
    config = Seq2SeqConfig(**{**SMALL.__dict__, "frame_loss_weight": 1.0, "onset_loss_weight": 1.0})
    model = Seq2SeqTranscriber(config).eval()
    audio = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (2, 16000)).astype(np.float32))
    with torch.no_grad():
        model.out[-1].bias[40] += 50.0         # the decoder says NOTE_ON(61) until it loops
        model.frame_head.weight.zero_()
        model.frame_head.bias.fill_(10.0)      # the frame head hears every key
        model.onset_head.weight.zero_()
        model.onset_head.bias.fill_(-10.0)     # the onset head hears no start
    plain = model.decode_windows(audio, grammar=False, confirm_threshold=0.5)
    n_on = int((plain[:, :-2] < NOTE_OFF_BASE).sum())
    assert n_on > 0 and int(plain[:, -2].sum()) == 0
    ruled = model.decode_windows(audio, grammar=False, confirm_threshold=0.5, onset_confirm_threshold=0.2)
    assert int((ruled[:, :-2] < NOTE_OFF_BASE).sum()) == 0 and int(ruled[:, -2].sum()) == n_on
    with torch.no_grad():
        model.onset_head.bias.fill_(10.0)
    assert (model.decode_windows(audio, grammar=False, confirm_threshold=0.5, onset_confirm_threshold=0.2)
            == plain).all()
    no_head = Seq2SeqConfig(**{**SMALL.__dict__, "frame_loss_weight": 1.0})
    with pytest.raises(ConfigError, match="no onset-activity head"):
        Seq2SeqTranscriber(no_head).decode_windows(audio, onset_confirm_threshold=0.2)


def test_transcription_counts_unconfirmed_note_ons_and_checkpoints_check_the_rules(tmp_path):
    torch.manual_seed(0)
    config = Seq2SeqConfig(**{**SMALL.__dict__, "frame_loss_weight": 1.0})
    model = Seq2SeqTranscriber(config).eval()
    with torch.no_grad():
        model.out[-1].bias[40] += 50.0         # NOTE_ON(61) until the decoder loops
        model.frame_head.weight.zero_()
        model.frame_head.bias.fill_(-10.0)     # that the frame head never hears
    save_checkpoint(tmp_path / "ck", "seq2seq", config.to_dict(), model)
    loaded = load_checkpoint(tmp_path / "ck")
    audio = Audio(np.random.default_rng(0).normal(0, 0.1, 16000 * 3).astype(np.float32), 16000)
    plain = transcribe(loaded, audio, DecodeOptions(token_grammar=False))
    ruled = transcribe(loaded, audio, DecodeOptions(token_grammar=False, confirm_threshold=0.5))
    assert plain.notes and plain.stats["unconfirmed_note_ons"] == 0
    assert not ruled.notes and ruled.stats["unconfirmed_note_ons"] >= len(plain.notes)

    for folder, cfg in (("no-head", SMALL), ("head", config)):
        save_checkpoint(tmp_path / folder, "seq2seq", cfg.to_dict(), Seq2SeqTranscriber(cfg))
        set_decode(tmp_path / folder, {"confirm_threshold": 0.3 if folder == "no-head" else 1.5})
        with pytest.raises(ModelError, match="config.json"):
            load_checkpoint(tmp_path / folder)
    set_decode(tmp_path / "head", {"onset_confirm_threshold": 0.2})    # a frame head but no onset head
    with pytest.raises(ModelError, match="onset_confirm_threshold"):
        load_checkpoint(tmp_path / "head")


def test_end_notes_by_activity_ends_notes_where_the_frame_head_stops():
    activity = np.zeros((250, 88))             # 50 positions per second, 5 s
    activity[50:60, 40] = 0.9                  # key 40 sounds from 1.0 s to 1.2 s
    activity[50:250, 5] = 0.9                  # key 5 from 1.0 s to the window's end
    activity[50:52, 7] = 0.9                   # key 7 only 40 ms: the 50 ms minimum holds
    on_1s, off_at_2_5s = [SHIFT_BASE + 99, 40, 5, 7], [SHIFT_BASE + 99, SHIFT_BASE + 49, NOTE_OFF_BASE + 40]
    tokens = on_1s + off_at_2_5s + [NOTE_OFF_BASE + 5, EOS]
    rewritten = end_notes_by_activity(tokens, activity, 0.5, 50.0)
    notes = Detokenizer().push(rewritten, 0.0, 0.0, 5.0) + Detokenizer().push(tokens, 0.0, 0.0, 5.0)
    assert [(n.pitch, round(n.onset_s, 2), round(n.offset_s, 2)) for n in notes[:3]] == [(28, 1.0, 1.06), (61, 1.0, 1.2), (26, 1.0, 2.5)]
    assert rewritten == [SHIFT_BASE + 99, 40, 5, 7, SHIFT_BASE + 5, NOTE_OFF_BASE + 7, SHIFT_BASE + 13,
                         NOTE_OFF_BASE + 40, SHIFT_BASE + 99, SHIFT_BASE + 29, NOTE_OFF_BASE + 5]
    # events at one instant keep their order: a zero-length NOTE_ON / NOTE_OFF pair stays closed
    pair = [SHIFT_BASE + 99, 30, NOTE_OFF_BASE + 30, 40, EOS]
    rewritten_pair = end_notes_by_activity(pair, activity, 0.5, 50.0)
    assert rewritten_pair[:4] == pair[:4] and NOTE_OFF_BASE + 40 in rewritten_pair
    assert end_notes_by_activity(pair[:3] + [EOS], activity, 0.5, 50.0) == pair[:3] + [EOS]   # nothing to end
    # a key sounding from the window's start (carried in) ends where its activity falls
    carried = np.zeros((250, 88))
    carried[:25, 20] = 0.9
    assert end_notes_by_activity([SHIFT_BASE + 99, EOS], carried, 0.5, 50.0) == [SHIFT_BASE + 49, NOTE_OFF_BASE + 20]
    assert end_notes_by_activity(tokens, activity, 0.0, 50.0) == tokens
    # a re-attack before the activity falls ends the first note; the second ends at 1.2 s
    reattack = [SHIFT_BASE + 99, 40, SHIFT_BASE + 9, 40, EOS]
    assert end_notes_by_activity(reattack, activity, 0.5, 50.0) == reattack[:-1] + [SHIFT_BASE + 9, NOTE_OFF_BASE + 40]


def test_attack_evidence_is_the_rise_test_of_confirm_note_ons():
    """For every time and key, attack_evidence >= r exactly when confirm_note_ons' rise test
    keeps a NOTE_ON there (first attack, and a re-attack after a kept one), over 5 s, for
    the rule's span and the fusion's, at 50 and 25 positions per second."""
    rng = np.random.default_rng(3)
    activity = rng.uniform(0, 1, (260, 88)).astype(np.float32)
    activity[:, 5] = 0.0
    activity[12:, 5] = 1.0                        # key 5 starts at position 12 (0.24 s)
    steps = np.arange(0, 501)
    now = torch.from_numpy(steps).float()
    never = torch.full((len(steps), 88), TokenGrammar.NEVER)
    checked = 0
    for per_step, before, after in ((0.5, 0.04, 0.06), (0.5, 0.02, 0.0), (0.25, 0.04, 0.06), (0.25, 0.02, 0.02)):
        heard = activity[: int(501 * per_step) + 1]
        evidence = attack_evidence(torch.from_numpy(heard)[None].expand(len(steps), -1, -1), now, never, per_step,
                                   before_s=before, after_s=after).numpy()
        if per_step == 0.5 and before == 0.04:
            assert evidence[24, 5] == pytest.approx(1.0) and evidence[10, 5] == 0.0 and evidence[50, 5] == 0.0
        for r in (0.1, 0.3, 0.6):
            for i, step in enumerate(steps):
                for key in (0, 5, 17, 60):
                    if abs(evidence[i, key] - r) < 1e-4:
                        continue
                    kept, _ = confirm_note_ons(with_shift(step) + [key], heard, 0.0, per_step * 100, before_s=before,
                                               after_s=after, rise=r)
                    assert (key in kept) == (evidence[i, key] >= r), (per_step, before, after, r, step, key)
                    checked += 1
    # a re-attack looks back no further than the key's last kept NOTE_ON
    for first, second in ((3, 20), (10, 14), (20, 50), (8, 40)):
        last_on = never[:1].clone().fill_(float(first))
        ev = attack_evidence(torch.from_numpy(activity)[None], torch.tensor([float(second)]), last_on, 0.5)[0].numpy()
        for key in range(88):
            for r in (0.1, 0.3):
                opening = with_shift(first) + [key]
                if abs(ev[key] - r) < 1e-4 or key not in confirm_note_ons(opening, activity, 0.0, 50.0, rise=r)[0]:
                    continue                      # the first NOTE_ON must be kept for the look-back to start there
                kept, _ = confirm_note_ons(opening + with_shift(second - first) + [key], activity, 0.0, 50.0, rise=r)
                assert (kept.count(key) == 2) == (ev[key] >= r), (first, second, key, r)
                checked += 1
    assert checked > 20000


def with_shift(step: int) -> list[int]:
    """TIME_SHIFT tokens that move time by ``step`` 10 ms steps."""
    tokens = []
    while step > 0:
        tokens.append(SHIFT_BASE + min(step, 100) - 1)
        step -= min(step, 100)
    return tokens


def test_fusion_pushes_the_decoder_toward_keys_that_start_sounding_and_only_once():
    """fusion_weight adds the detector's attack evidence to the NOTE_ON logits: a large
    weight makes the first token the NOTE_ON of the key that starts at the window's start,
    and no second NOTE_ON of it follows from the fusion; weight 0 decodes as before."""
    torch.manual_seed(0)
    config = Seq2SeqConfig(**{**SMALL.__dict__, "memory_stride": 1, "frame_detector": True,
                              "detector_stem_channels": 4, "detector_model_dim": 16, "detector_blocks": 1,
                              "detector_dilations": (1, 2)})
    model = Seq2SeqTranscriber(config).eval()
    key = 40
    with torch.no_grad():
        model.detector.frame.weight.zero_()
        model.detector.frame.bias.fill_(-10.0)
        model.detector.frame.bias[key] = 10.0      # the detector hears key 40 from the start, nothing else
    audio = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (1, 16000)).astype(np.float32))
    plain = model.decode_windows(audio, grammar=False)
    assert plain[0, 0] != key                      # the random decoder does not say it by itself
    assert np.array_equal(model.decode_windows(audio, grammar=False, fusion_weight=0.0), plain)
    for width in (1, 2):
        fused = model.decode_windows(audio, beam_width=width, grammar=False, fusion_weight=20.0)[0].tolist()
        assert fused[0] == key and fused.count(key) == 1, width


def test_fusion_options_are_checked_and_need_a_frame_activity(tmp_path):

    for bad in ({"fusion_weight": -1.0}, {"fusion_weight": 25.0}, {"fusion_before_s": 0.2},
                {"fusion_after_s": -0.01}, {"fusion_weight": 1.0, "fusion_before_s": 0.0, "fusion_after_s": 0.0}):
        with pytest.raises(ConfigError, match="fusion"):
            DecodeOptions(**bad)
    bare = Seq2SeqConfig(**{**SMALL.__dict__, "frame_loss_weight": 0.0})
    save_checkpoint(tmp_path / "bare", "seq2seq", bare.to_dict(), Seq2SeqTranscriber(bare))
    set_decode(tmp_path / "bare", {"fusion_weight": 2.0})
    with pytest.raises(ModelError, match="fusion_weight"):
        load_checkpoint(tmp_path / "bare")


def test_attention_on_the_window_only_equals_attention_over_the_whole_memory():
    """_attend_window (the decoding path) gives the context and weights of the plain
    Bahdanau formula over every position with those outside the window masked, at the
    start, in the middle and at the end of a window, for a batch of different times."""
    torch.manual_seed(0)
    model = Seq2SeqTranscriber(WINDOWED).eval()
    memory, mask = model.encode(torch.randn(3, 16000))
    keys = model.attn_memory(memory)
    query, now = torch.randn(3, 16), torch.tensor([0.0, 37.0, 99.0])
    with torch.no_grad():
        context, weights = model._attend(query, keys, memory, mask, torch.zeros(3, 25), now)
        config = model.config
        grid = torch.arange(keys.shape[1]).float()
        relative = grid[None, :] - torch.floor(now * config.positions_per_step)[:, None]
        allowed = mask & (relative >= -config.attention_back) & (relative <= config.window_ahead)
        offsets = (relative.clamp(-config.attention_back, config.window_ahead) + config.attention_back).long()
        hidden = keys + model.attn_query(query)[:, None, :] + model.attn_relative(model.relative.weight)[offsets]
        energy = model.attn_v(torch.tanh(hidden)).squeeze(-1).masked_fill(~allowed, -1e4)
        expected = torch.softmax(energy, dim=-1)
        expected_context = torch.cat([torch.bmm(expected[:, None, :], memory).squeeze(1),
                                      torch.bmm(expected[:, None, :], model.relative.weight[offsets]).squeeze(1)], dim=-1)
    assert torch.allclose(weights, expected, atol=1e-6)
    assert torch.allclose(context, expected_context, atol=1e-5)


def test_beam_over_a_batch_gives_each_window_its_own_search():
    """The batched beam search (all windows' beams in one decoder call per step) returns
    for each window what a search over that window alone returns, with and without fusion."""
    torch.manual_seed(2)
    config = Seq2SeqConfig(**{**WINDOWED.__dict__, "memory_stride": 1, "frame_detector": True,
                              "detector_stem_channels": 4, "detector_model_dim": 16, "detector_blocks": 1,
                              "detector_dilations": (1, 2)})
    model = Seq2SeqTranscriber(config).eval()
    rng = np.random.default_rng(5)
    audio = torch.from_numpy(rng.normal(0, 0.2, (3, 16000)).astype(np.float32))
    audio[1, 8000:] = 0.0
    for weight in (0.0, 3.0):
        together = model.decode_windows(audio, beam_width=3, grammar=False, fusion_weight=weight)
        for i in range(3):
            alone = model.decode_windows(audio[i : i + 1], beam_width=3, grammar=False, fusion_weight=weight)
            width = min(together.shape[1], alone.shape[1]) - 2
            assert together[i, :width].tolist() == alone[0, :width].tolist(), (weight, i)
            assert together[i, -1] == alone[0, -1]


def test_confirm_note_ons_reattack_gap_drops_a_slow_attack_read_twice():
    """reattack_s: a NOTE_ON of a key less than that soon after its last kept NOTE_ON is no
    new attack (its NOTE_OFF ends the kept note); one later is kept; other keys are free."""
    frames = np.zeros((250, 88))
    frames[50:150, 40] = np.linspace(0.2, 1.0, 100)      # a slow rise from 1.0 s
    frames[50:150, 41] = 0.9
    shift_1s, step_70ms, step_200ms = SHIFT_BASE + 99, SHIFT_BASE + 6, SHIFT_BASE + 19
    tokens = [shift_1s, 40, step_70ms, 40, 41, step_200ms, 40, shift_1s, NOTE_OFF_BASE + 40, NOTE_OFF_BASE + 41, EOS]
    assert confirm_note_ons(tokens, frames, 0.1, 50.0) == (tokens, 0)
    kept, dropped = confirm_note_ons(tokens, frames, 0.1, 50.0, reattack_s=0.1)
    assert dropped == 1 and kept == [shift_1s, 40, step_70ms, 41, step_200ms, 40, shift_1s, NOTE_OFF_BASE + 40,
                                     NOTE_OFF_BASE + 41, EOS]
    assert confirm_note_ons(tokens, None, 0.0, 50.0, reattack_s=0.1) == (kept, 1)   # the gap alone needs no activity
    assert DecodeOptions(reattack_s=0.1).reattack_s == 0.1
    with pytest.raises(ConfigError, match="reattack_s"):
        DecodeOptions(reattack_s=0.6)


def test_skip_existing_rewrites_an_incomplete_set_of_attention_maps(tmp_path):
    from typer.testing import CliRunner

    import soundfile as sf

    from amtcli.cli import app

    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ck", "seq2seq", SMALL.to_dict(), Seq2SeqTranscriber(SMALL))
    sf.write(tmp_path / "a.wav", np.random.default_rng(0).normal(0, 0.1, 16000 * 12).astype(np.float32), 16000)
    args = ["transcribe", str(tmp_path / "a.wav"), "-o", str(tmp_path / "a.csv"), "--model", str(tmp_path / "ck"),
            "--attention-png", str(tmp_path / "att"), "--skip-existing"]
    runner = CliRunner()
    assert runner.invoke(app, args).exit_code == 0
    maps = sorted((tmp_path / "att").iterdir())
    assert len(maps) == 2
    maps[1].unlink()                                       # a run killed after the first map
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "att").iterdir()) == [p.name for p in maps]
    done = runner.invoke(app, args)
    assert done.exit_code == 0 and "skip" in done.output    # every map and output there: nothing to do
