"""mir_eval wrappers: known scores on hand-made cases, tolerances, instruments, edge cases,
and the evaluate command's pairing, table and JSON."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from amtcli.commands.evaluate import print_results, score_paths, write_json
from amtcli.errors import LabelError, OutputError
from amtcli.evaluation import evaluate_notes, mean_result, note_frames
from amtcli.types import EvalResult, Note, NoteScores, Transcription
from amtcli.writers.csv import write_csv

REFERENCE = [
    Note(0.0, 0.5, 60, program=40),
    Note(1.0, 1.5, 64, program=40),
    Note(2.0, 2.5, 67, program=71),
]


def _scores(s: NoteScores) -> tuple[float, float, float]:
    return (s.precision, s.recall, s.f1)


def _shift(notes: list[Note], onset_shift_s: float) -> list[Note]:
    return [Note(n.onset_s + onset_shift_s, n.offset_s, n.pitch, n.velocity, n.program) for n in notes]


def test_self_evaluation_is_perfect() -> None:
    result = evaluate_notes(REFERENCE, REFERENCE, name="self", by_instrument=True)
    for scores in (result.note_onset, result.note_offset, result.frame):
        assert _scores(scores) == pytest.approx((1.0, 1.0, 1.0))
    assert (result.name, result.n_ref, result.n_est) == ("self", 3, 3)
    assert all(sub.note_onset.f1 == pytest.approx(1.0) for sub in result.by_instrument.values())


def test_two_hits_one_miss_one_wrong() -> None:
    estimate = [REFERENCE[0], REFERENCE[1], Note(2.0, 2.5, 70, program=71)]
    result = evaluate_notes(REFERENCE, estimate)
    assert _scores(result.note_onset) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert _scores(result.note_offset) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert _scores(result.frame) == pytest.approx((2 / 3, 2 / 3, 2 / 3))


def test_extra_note_lowers_precision_only() -> None:
    estimate = REFERENCE + [Note(3.0, 3.5, 72, program=40)]
    result = evaluate_notes(REFERENCE, estimate)
    assert _scores(result.note_onset) == pytest.approx((3 / 4, 1.0, 6 / 7))
    assert result.n_est == 4


@pytest.mark.parametrize(("shift_s", "matched"), [(0.04, True), (-0.04, True), (0.06, False), (-0.06, False)])
def test_onset_tolerance_is_50_ms(shift_s: float, matched: bool) -> None:
    reference = [Note(1.0, 1.5, 60)]
    result = evaluate_notes(reference, _shift(reference, shift_s))
    assert result.note_onset.f1 == (1.0 if matched else 0.0)


def test_offset_tolerance() -> None:
    reference = [Note(1.0, 2.0, 60)]  # offset tolerance max(0.2 * 1.0 s, 50 ms) = 200 ms
    near = evaluate_notes(reference, [Note(1.0, 2.15, 60)])
    far = evaluate_notes(reference, [Note(1.0, 2.3, 60)])
    assert near.note_offset.f1 == 1.0
    assert far.note_offset.f1 == 0.0 and far.note_onset.f1 == 1.0


def test_frames_grid_definition() -> None:
    roll = note_frames([Note(0.02, 0.05, 60), Note(0.0, 0.001, 61)], n_frames=7)
    assert roll.shape == (7, 128)
    assert np.flatnonzero(roll[:, 60]).tolist() == [2, 3, 4]  # 0.02 <= t < 0.05
    assert np.flatnonzero(roll[:, 61]).tolist() == [0]


def test_frame_scores_from_partial_overlap() -> None:
    reference = [Note(0.0, 1.0, 60)]  # frames 0..99
    estimate = [Note(0.5, 1.5, 60)]  # frames 50..149: 50 of 100 right
    result = evaluate_notes(reference, estimate)
    assert _scores(result.frame) == pytest.approx((0.5, 0.5, 0.5))


def test_instruments_are_pooled_but_split_on_request() -> None:
    estimate = [
        Note(0.0, 0.5, 60, program=40),
        Note(1.0, 1.5, 64, program=0),  # right pitch and time, wrong instrument
        Note(2.0, 2.5, 67, program=71),
    ]
    pooled = evaluate_notes(REFERENCE, estimate)
    assert pooled.note_onset.f1 == pytest.approx(1.0) and pooled.by_instrument == {}
    split = evaluate_notes(REFERENCE, estimate, by_instrument=True)
    assert split.note_onset.f1 == pytest.approx(1.0)
    assert list(split.by_instrument) == ["piano", "violin", "clarinet"]
    violin = split.by_instrument["violin"]
    assert _scores(violin.note_onset) == pytest.approx((1.0, 0.5, 2 / 3))
    assert (violin.n_ref, violin.n_est) == (2, 1)
    piano = split.by_instrument["piano"]
    assert _scores(piano.note_onset) == (0.0, 0.0, 0.0) and (piano.n_ref, piano.n_est) == (0, 1)
    assert split.by_instrument["clarinet"].note_onset.f1 == pytest.approx(1.0)


def test_unknown_program_key() -> None:
    result = evaluate_notes([Note(0.0, 1.0, 60)], [Note(0.0, 1.0, 60)], by_instrument=True)
    assert list(result.by_instrument) == ["unknown"]


@pytest.mark.parametrize(
    ("reference", "estimate", "expected"),
    [([], [], 1.0), (REFERENCE, [], 0.0), ([], REFERENCE, 0.0)],
)
def test_empty_cases(reference, estimate, expected) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate_notes(reference, estimate, by_instrument=True)
    for scores in (result.note_onset, result.note_offset, result.frame):
        assert _scores(scores) == (expected, expected, expected)
    assert (result.n_ref, result.n_est) == (len(reference), len(estimate))


def test_no_warnings_leak() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_notes(REFERENCE, [Note(5.0, 5.001, 30)])


def test_mean_result() -> None:
    perfect = evaluate_notes(REFERENCE, REFERENCE, name="a", by_instrument=True)
    half = evaluate_notes([Note(0.0, 1.0, 60, program=40)], [Note(0.5, 1.5, 60, program=40)], "b", True)
    mean = mean_result([perfect, half])
    assert mean.name == "mean"
    assert mean.note_onset.f1 == pytest.approx(0.5)
    assert mean.frame.f1 == pytest.approx(0.75)
    assert (mean.n_ref, mean.n_est) == (4, 4)
    assert mean.by_instrument["violin"].note_onset.f1 == pytest.approx(0.5)
    assert mean.by_instrument["clarinet"].note_onset.f1 == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mean_result([])


def _csv(path: Path, notes: list[Note]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(Transcription(tuple(notes), duration_s=3.0), path)
    return path


def test_score_paths_single_pair(tmp_path: Path) -> None:
    ref = _csv(tmp_path / "ref.csv", REFERENCE)
    est = _csv(tmp_path / "est.csv", REFERENCE[:2])
    report = score_paths(ref, est, by_instrument=False)
    assert [r.name for r in report.results] == ["est"]
    assert report.results[0].note_onset.recall == pytest.approx(2 / 3)
    assert report.unpaired == [] and report.failed == []


def test_score_paths_folders(tmp_path: Path) -> None:
    _csv(tmp_path / "ref" / "a.csv", REFERENCE)
    _csv(tmp_path / "ref" / "sub" / "b.csv", REFERENCE)
    _csv(tmp_path / "ref" / "only_ref.csv", REFERENCE)
    _csv(tmp_path / "est" / "a.csv", REFERENCE)
    (tmp_path / "est" / "a.mid").write_bytes(b"not read: the CSV wins")
    (tmp_path / "est" / "a.png").write_bytes(b"ignored")
    _csv(tmp_path / "est" / "sub" / "b.csv", REFERENCE[:1])
    _csv(tmp_path / "est" / "only_est.csv", REFERENCE)
    report = score_paths(tmp_path / "ref", tmp_path / "est", by_instrument=True)
    assert [r.name for r in report.results] == ["a", "only_ref", "sub/b"]
    assert report.results[0].note_onset.f1 == pytest.approx(1.0)
    assert report.results[1].note_onset.f1 == 0.0 and report.results[1].n_est == 0   # no estimate: all missed
    assert report.results[1].n_ref == len(REFERENCE)
    assert report.results[2].note_onset.recall == pytest.approx(1 / 3)
    assert report.unpaired == ["reference only: only_ref.csv", "estimate only: only_est.csv"]


def test_score_paths_bad_file_fails_only_its_pair(tmp_path: Path) -> None:
    _csv(tmp_path / "ref" / "a.csv", REFERENCE)
    _csv(tmp_path / "ref" / "b.csv", REFERENCE)
    _csv(tmp_path / "est" / "a.csv", REFERENCE)
    (tmp_path / "est" / "b.csv").write_text("onset,offset,pitch\n1,0,60\n")
    report = score_paths(tmp_path / "ref", tmp_path / "est", by_instrument=False)
    assert [r.name for r in report.results] == ["a"]
    assert len(report.failed) == 1 and "b.csv:2" in report.failed[0]


def test_score_paths_errors(tmp_path: Path) -> None:
    _csv(tmp_path / "ref" / "a.csv", REFERENCE)
    _csv(tmp_path / "est" / "b.csv", REFERENCE)
    with pytest.raises(LabelError, match="same name"):
        score_paths(tmp_path / "ref", tmp_path / "est", by_instrument=False)
    with pytest.raises(LabelError, match="no such"):
        score_paths(tmp_path / "ref", tmp_path / "nothing", by_instrument=False)
    with pytest.raises(LabelError, match="two files or two folders"):
        score_paths(tmp_path / "ref", tmp_path / "est" / "b.csv", by_instrument=False)
    (tmp_path / "bad.csv").write_text("onset,offset\n")
    with pytest.raises(LabelError, match="bad.csv:1"):
        score_paths(tmp_path / "ref" / "a.csv", tmp_path / "bad.csv", by_instrument=False)


def _two_results() -> list[EvalResult]:
    return [
        evaluate_notes(REFERENCE, REFERENCE, name="first", by_instrument=True),
        evaluate_notes(REFERENCE, REFERENCE[:1], name="second", by_instrument=True),
    ]


def test_print_results_table() -> None:
    console = Console(record=True, width=120)
    print_results(_two_results(), console)
    text = console.export_text()
    for word in ("first", "second", "mean", "violin", "onset F1", "frame F1", "n_ref", "0.333"):
        assert word in text


def test_write_json(tmp_path: Path) -> None:
    path = tmp_path / "scores.json"
    write_json(_two_results(), path)
    document = json.loads(path.read_text())
    assert [f["name"] for f in document["files"]] == ["first", "second"]
    assert document["mean"]["name"] == "mean"
    assert document["mean"]["note_onset"]["recall"] == pytest.approx((1 + 1 / 3) / 2)
    assert "violin" in document["files"][0]["by_instrument"]
    with pytest.raises(OutputError):
        write_json(_two_results(), path)
    write_json([], path, overwrite=True)
    assert json.loads(path.read_text()) == {"files": [], "mean": None}


def test_token_metrics_count_bags_edits_and_length():
    from amtcli.evaluation import token_metrics

    ref = [Note(0.0, 1.0, 60), Note(0.0, 1.0, 64), Note(1.0, 2.0, 67), Note(12.0, 13.0, 72)]
    assert token_metrics(ref, ref) == {"token_f1": 1.0, "token_error_rate": 0.0, "length_ratio": 1.0}
    est = [Note(0.0, 1.0, 60), Note(1.0, 2.0, 67), Note(1.5, 2.0, 69), Note(12.0, 13.0, 72)]
    scores = token_metrics(ref, est)
    assert scores["token_f1"] == pytest.approx(0.75)          # 3 of 4 on both sides
    assert scores["token_error_rate"] == pytest.approx(2 / 4)  # delete 64, insert 69
    assert scores["length_ratio"] == 1.0
    # A token in the wrong 10 s segment does not match.
    assert token_metrics([Note(1.0, 2.0, 60)], [Note(11.0, 12.0, 60)])["token_f1"] == 0.0
    assert token_metrics([], [])["length_ratio"] == 1.0
