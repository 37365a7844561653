import math

import numpy as np
import pytest
import torch

from amtcli.decoding.ctc import (BLANK, N_CTC_CLASSES, CTCGreedyDecoder, CTCLayout, CTCPrefixBeamDecoder,
                                 notes_to_tokens, onset_tokens)
from amtcli.families.ctc import CTCConfig, CTCTranscriber, aligned_slot_targets, ctc_loss_terms
from amtcli.options import FeatureSpec
from amtcli.training.targets import frame_targets
from amtcli.types import Note, validate_notes

LAYOUT = CTCLayout(slots=2)
RATE = 50.0


def rows(n_frames: int, fires: dict[tuple[int, int], int], active: dict[int, tuple[int, int]],
         confidence: float = 0.98) -> np.ndarray:
    """Hand-made stitched rows: ``fires[(frame, slot)] = token``; ``active[key] = (lo, hi)`` frames."""
    out = np.zeros((n_frames, LAYOUT.width), dtype=np.float32)
    log_probs, frames, velocity = LAYOUT.split(out)
    rest = math.log((1 - confidence) / (N_CTC_CLASSES - 1))
    log_probs[:] = rest
    log_probs[:, :, BLANK] = math.log(confidence)
    for (frame, slot), token in fires.items():
        log_probs[frame, slot, :] = rest
        log_probs[frame, slot, token] = math.log(confidence)
    for key, (lo, hi) in active.items():
        frames[lo:hi, key] = 0.9
    velocity[:] = 0.5
    return out


CHORD = rows(60, {(10, 0): 39, (10, 1): 43, (30, 0): 39}, {39: (10, 50), 43: (10, 20)})
EXPECTED = [Note(0.2, 0.4, 64), Note(0.2, 0.6, 60), Note(0.6, 1.0, 60)]


def decode(decoder, data: np.ndarray, chunk: int) -> list[Note]:
    notes = []
    for start in range(0, len(data), chunk):
        notes += decoder.push(data[start : start + chunk])
    return sorted(notes + decoder.finish())


def same(a: list[Note], b: list[Note]) -> bool:
    key = lambda n: (round(n.onset_s, 6), round(n.offset_s, 6), n.pitch)  # noqa: E731
    return sorted(map(key, a)) == sorted(map(key, b))


@pytest.mark.parametrize("chunk", [60, 7, 1])
def test_greedy_places_chords_in_one_frame_and_ends_notes_from_frame_activity(chunk):
    decoder = CTCGreedyDecoder(LAYOUT, RATE, min_duration_s=0.02)
    assert same(decode(decoder, CHORD, chunk), EXPECTED)
    assert decoder.n_tokens == 3


@pytest.mark.parametrize("chunk", [60, 7, 1])
def test_beam_search_agrees_with_greedy_on_confident_outputs(chunk):
    decoder = CTCPrefixBeamDecoder(LAYOUT, RATE, beam_width=4, min_duration_s=0.02)
    assert same(decode(decoder, CHORD, chunk), EXPECTED)
    assert decoder.n_tokens == 3


def test_repeats_collapse_unless_a_blank_separates_them():
    held = rows(20, {(5, 0): 39, (5, 1): 39, (6, 0): 39, (8, 1): 39}, {39: (5, 15)})
    notes = decode(CTCGreedyDecoder(LAYOUT, RATE, min_duration_s=0.02), held, 20)
    assert [n.onset_s for n in notes] == [0.1, 0.16]   # slots 5/0, 5/1, 6/0 are one token; 8/1 re-attacks


def test_beam_search_finds_the_label_greedy_misses():
    """The classic case: the best path is all blanks (0.55 ** 2 = 0.30), but the
    paths that spell the token sum to 0.70."""
    data = rows(1, {}, {39: (0, 1)})
    log_probs = LAYOUT.split(data)[0]
    log_probs[:] = math.log(1e-6)
    log_probs[0, :, BLANK] = math.log(0.55)
    log_probs[0, :, 39] = math.log(0.45)
    assert decode(CTCGreedyDecoder(LAYOUT, RATE), data, 1) == []
    notes = decode(CTCPrefixBeamDecoder(LAYOUT, RATE, beam_width=8, min_duration_s=0.02), data, 1)
    assert [n.pitch for n in notes] == [60]


def test_blank_offset_makes_greedy_emit_more():
    data = rows(10, {}, {39: (2, 8)})
    LAYOUT.split(data)[0][2, 0, 39] = math.log(0.3)
    assert decode(CTCGreedyDecoder(LAYOUT, RATE), data, 10) == []
    assert len(decode(CTCGreedyDecoder(LAYOUT, RATE, blank_offset=4.0), data, 10)) == 1


def test_tokens_are_ordered_by_onset_then_pitch():
    notes = [Note(0.5, 1.0, 64), Note(0.1, 0.2, 67), Note(0.1, 0.3, 60), Note(0.2, 0.4, 10)]
    assert notes_to_tokens(notes) == [39, 46, 43]
    targets = frame_targets(notes, 0.0, 60, 50.0)
    assert onset_tokens(targets["onset"]) == [39, 46, 43]


@pytest.mark.parametrize("frame_cue", [False, True])
def test_model_shapes_and_loss_trains_the_token_head(frame_cue):
    torch.manual_seed(0)
    config = CTCConfig(features=FeatureSpec(kind="hcqt", n_fft=2048, n_bins=96, fmin_hz=55.0, harmonics=(1.0, 2.0)),
                       stem_channels=4, model_dim=16, lstm_units=8, slots=2, frame_cue=frame_cue)
    model = CTCTranscriber(config)
    audio = torch.randn(2, 16000)
    out = model(audio)
    assert out["tokens"].shape == (2, 100, N_CTC_CLASSES) and out["frame"].shape == (2, 50, 88)
    assert model.posteriorgram(audio).shape == (2, 50, LAYOUT.width)
    targets = {k: torch.from_numpy(v[None].repeat(2, 0)) for k, v in
               frame_targets([Note(0.1, 0.5, 60), Note(0.1, 0.5, 64)], 0.0, 50, 50.0).items()}
    losses = ctc_loss_terms(out, targets, max_tokens=90, frame_loss_weight=1.0)
    assert losses["ctc"] > 0 and set(losses) == {"ctc", "frame", "velocity"}
    losses["ctc"].backward()
    assert model.tokens.weight.grad.abs().sum() > 0
    assert model.tokens.in_features == 16 + (176 if frame_cue else 0)
    assert model.frame.weight.grad is None  # the CTC term never trains the frame head (the cue is detached)
    filtered = ctc_loss_terms(model(audio), targets, max_tokens=1, frame_loss_weight=1.0)
    assert float(filtered["ctc"].detach()) == 0.0  # crops over the token limit are left out


def test_aligned_slot_targets_is_a_ctc_path_of_the_onset_tokens():
    """Chords fill their onset frame's slots in pitch order; overflow waits for free slots."""
    onset = np.zeros((6, 88), dtype=np.float32)
    onset[1, [40, 30, 50]] = 1.0     # three notes at frame 1, two slots: 50 spills to frame 2
    onset[2, 45] = 1.0               # frame 2: 50 (spilled) then 45
    onset[4, 10] = onset[5, 10] = 1.0  # a two-frame onset label is one token
    path = aligned_slot_targets(onset, slots=2).reshape(6, 2)
    assert path.tolist() == [[BLANK, BLANK], [30, 40], [50, 45], [BLANK, BLANK], [10, BLANK], [BLANK, BLANK]]
    collapsed = [int(t) for t in path.reshape(-1) if t != BLANK]
    assert collapsed == onset_tokens(onset) == [30, 40, 50, 45, 10]  # the CTC target, in order


def test_alignment_loss_is_added_only_when_weighted():
    torch.manual_seed(0)
    config = CTCConfig(features=FeatureSpec(kind="hcqt", n_fft=2048, n_bins=96, fmin_hz=55.0, harmonics=(1.0, 2.0)),
                       stem_channels=4, model_dim=16, lstm_units=8, slots=2, frame_cue=True)
    model = CTCTranscriber(config)
    out = model(torch.randn(1, 16000))
    targets = {k: torch.from_numpy(v[None]) for k, v in
               frame_targets([Note(0.1, 0.5, 60), Note(0.3, 0.5, 64)], 0.0, 50, 50.0).items()}
    assert "alignment" not in ctc_loss_terms(out, targets, max_tokens=90, frame_loss_weight=1.0)
    weighted = ctc_loss_terms(out, targets, max_tokens=90, frame_loss_weight=1.0, alignment_loss_weight=2.0)
    path = torch.from_numpy(aligned_slot_targets(targets["onset"][0].numpy(), 2))
    expected = torch.nn.functional.cross_entropy(out["tokens"][0].float(), path)
    assert torch.allclose(weighted["alignment"], 2.0 * expected, atol=1e-5)
    weighted["alignment"].backward()
    assert model.tokens.weight.grad.abs().sum() > 0


def test_a_quick_re_attack_never_overlaps_the_note_before():
    """Min duration 100 ms, re-attack after 40 ms: the first note ends where the second starts."""
    data = rows(20, {(5, 0): 39, (7, 0): 39, (7, 1): 41, (9, 0): 39, (9, 1): 41}, {39: (5, 15), 41: (7, 15)})
    log_probs = LAYOUT.split(data)[0]
    log_probs[9, 0] = log_probs[8, 0]  # frame 9 slot 0 back to blank: 39 fires at 5 and 7 only
    for decoder in (CTCGreedyDecoder(LAYOUT, RATE, min_duration_s=0.1),
                    CTCPrefixBeamDecoder(LAYOUT, RATE, beam_width=4, min_duration_s=0.1)):
        notes = decode(decoder, data, 20)
        c4 = sorted(n for n in notes if n.pitch == 60)
        assert [(n.onset_s, n.offset_s) for n in c4] == [(0.1, 0.14), (0.14, 0.3)]
        validate_notes(notes)  # no same-pitch overlap anywhere
