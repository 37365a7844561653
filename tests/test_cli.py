"""The command line end to end, with a random-initialised checkpoint folder."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from amtcli.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version_and_help():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("amtcli ")
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("transcribe", "eval", "train", "models", "data"):
        assert command in result.output


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from amtcli.cli import app; "
        "heavy = [m for m in ('torch', 'librosa', 'pretty_midi', 'mir_eval', 'matplotlib') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def write_tone(path, seconds=2.0, rate=22050):
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)


def test_transcribe_one_file_all_formats(tmp_path, random_onf_checkpoint):
    write_tone(tmp_path / "a.wav")
    result = invoke("transcribe", tmp_path / "a.wav", "-o", tmp_path / "out" / "a.mid", "--format", "all",
                    "--model", random_onf_checkpoint, "--device", "cpu")
    assert result.exit_code == 0, result.output
    for suffix in ("mid", "csv", "png"):
        assert (tmp_path / "out" / f"a.{suffix}").stat().st_size > 0
    assert (tmp_path / "out" / "a.csv").read_text().startswith("onset,offset,pitch,velocity,instrument\n")


def test_existing_output_is_not_overwritten(tmp_path, random_onf_checkpoint):
    write_tone(tmp_path / "a.wav")
    (tmp_path / "a.csv").write_text("keep me")
    result = invoke("transcribe", tmp_path / "a.wav", "-o", tmp_path / "a.csv", "--model", random_onf_checkpoint)
    assert result.exit_code == 1
    assert "--overwrite" in result.output
    assert (tmp_path / "a.csv").read_text() == "keep me"
    result = invoke("transcribe", tmp_path / "a.wav", "-o", tmp_path / "a.csv", "--model", random_onf_checkpoint,
                    "--overwrite")
    assert result.exit_code == 0
    assert (tmp_path / "a.csv").read_text().startswith("onset,")


def test_batch_goes_on_after_a_bad_file(tmp_path, random_onf_checkpoint):
    songs = tmp_path / "songs"
    (songs / "sub").mkdir(parents=True)
    write_tone(songs / "good.wav")
    write_tone(songs / "sub" / "deep.flac")
    (songs / "bad.wav").write_text("not audio")
    (songs / "empty.mp3").write_bytes(b"")
    out = tmp_path / "out"
    result = invoke("transcribe", songs, "--recursive", "--output-dir", out, "--format", "csv",
                    "--model", random_onf_checkpoint)
    assert result.exit_code == 1
    assert (out / "good.csv").exists() and (out / "sub" / "deep.csv").exists()
    assert not (out / "bad.csv").exists() and not (out / "empty.csv").exists()
    assert "bad.wav" in result.output and "Traceback" not in result.output
    assert "2/4 files transcribed, 0 skipped, 2 failed" in result.output
    again = invoke("transcribe", songs, "--recursive", "--output-dir", out, "--format", "csv",
                   "--model", random_onf_checkpoint, "--skip-existing")
    assert sum(line.startswith("skip ") for line in again.output.splitlines()) == 2
    assert "0/4 files transcribed, 2 skipped, 2 failed" in again.output


def test_named_files_with_one_name_keep_apart(tmp_path, random_onf_checkpoint):
    for piece in ("p1", "p2"):
        (tmp_path / "set" / piece).mkdir(parents=True)
        write_tone(tmp_path / "set" / piece / "mix.wav")
    write_tone(tmp_path / "set" / "p2" / "mix.flac")
    write_tone(tmp_path / "solo.wav")
    out = tmp_path / "out"
    named = [tmp_path / "set" / "p1" / "mix.wav", tmp_path / "set" / "p2" / "mix.wav"]
    result = invoke("transcribe", *named, named[0], tmp_path / "solo.wav", "--output-dir", out, "--format", "csv",
                    "--model", random_onf_checkpoint)
    assert result.exit_code == 0, result.output  # the file named twice runs once
    assert (out / "p1" / "mix.csv").exists() and (out / "p2" / "mix.csv").exists()
    assert (out / "solo.csv").exists()  # a file without a clash keeps the plain name
    assert "3/3 files transcribed" in result.output
    # two inputs that would write the same output: the second fails, the first is kept
    clash = invoke("transcribe", named[1], tmp_path / "set" / "p2" / "mix.flac", "--output-dir", tmp_path / "o2",
                   "--format", "csv", "--model", random_onf_checkpoint, "--overwrite")
    assert clash.exit_code == 1 and "would also be written for" in clash.output
    assert "1/2 files transcribed, 0 skipped, 1 failed" in clash.output
    assert (tmp_path / "o2" / "mix.csv").exists()  # both named files live in p2, the root
    # the mix.wav of two named folders: each output keeps its folder's name, before any work
    folders = invoke("transcribe", tmp_path / "set" / "p1", tmp_path / "set" / "p2", "--output-dir",
                     tmp_path / "o3", "--format", "csv", "--model", random_onf_checkpoint)
    assert folders.exit_code == 1 and "would also be written for" in folders.output  # p2's mix.flac
    assert (tmp_path / "o3" / "p1" / "mix.csv").exists() and (tmp_path / "o3" / "p2" / "mix.csv").exists()
    assert "2/3 files transcribed" in folders.output


def test_unknown_model_and_format_are_one_line_errors(tmp_path):
    write_tone(tmp_path / "a.wav")
    result = invoke("transcribe", tmp_path / "a.wav", "--model", "nonexistent")
    assert result.exit_code == 2 and "unknown model 'nonexistent'" in result.output
    result = invoke("transcribe", tmp_path / "a.wav", "--format", "mp4")
    assert result.exit_code == 2 and "unknown output format" in result.output


def test_eval_self_is_perfect_and_writes_json(tmp_path):
    csv = tmp_path / "ref.csv"
    csv.write_text("onset,offset,pitch,instrument\n0.1,0.5,60,violin\n0.6,1.0,64,violin\n")
    result = invoke("eval", csv, csv, "--json", tmp_path / "s.json")
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["files"][0]["note_onset"]["f1"] == 1.0


def test_eval_bad_reference_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("onset,offset,pitch\n0.1,0.5,60\n0.2,oops,61\n")
    result = invoke("eval", bad, bad)
    assert result.exit_code == 2
    assert "bad.csv:3" in result.output and "Traceback" not in result.output


def test_eval_model_on_dataset(tmp_path, tiny_dataset, random_onf_checkpoint):
    result = invoke("eval", "--model", random_onf_checkpoint, "--dataset", tiny_dataset, "--split", "test",
                    "--json", tmp_path / "s.json", "--png-dir", tmp_path / "png", "--device", "cpu")
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "s.json").read_text())
    assert [f["name"] for f in scores["files"]] == ["test0", "test1"]
    assert all(0.0 <= f["note_onset"]["f1"] <= 1.0 for f in scores["files"])
    assert (tmp_path / "png" / "test0.png").stat().st_size > 0


def test_eval_model_needs_dataset():
    result = invoke("eval", "--model", "onf")
    assert result.exit_code == 2 and "--dataset" in result.output


def test_output_option_mistakes_are_usage_errors(tmp_path, random_onf_checkpoint):
    write_tone(tmp_path / "a.wav")
    for args, message in ((("-o", tmp_path / "x.txt"), "unknown output type '.txt'"),
                          (("-o", tmp_path / "a.wav"), "names an audio file"),
                          (("-o", tmp_path / "b.mid", "--output-dir", tmp_path / "d"), "not both")):
        result = invoke("transcribe", tmp_path / "a.wav", *args, "--model", random_onf_checkpoint)
        assert result.exit_code == 2 and message in result.output, result.output
        assert "summary" not in result.output
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "d").exists()
    both = invoke("transcribe", tmp_path / "a.wav", "--skip-existing", "--overwrite", "--model", random_onf_checkpoint)
    assert both.exit_code == 2 and "give one of them" in both.output
    (tmp_path / "plain").write_text("not a folder")
    for args, message in ((("-o", tmp_path / "plain"), "existing file without an output suffix"),
                          (("--output-dir", tmp_path / "plain"), "is a file; give a folder")):
        result = invoke("transcribe", tmp_path / "a.wav", *args, "--model", random_onf_checkpoint)
        assert result.exit_code == 2 and message in result.output, result.output
    assert (tmp_path / "plain").read_text() == "not a folder"
    stdin = invoke("transcribe", "-", "--model", random_onf_checkpoint)
    assert stdin.exit_code == 1 and "standard input is not supported" in stdin.output
    dotted = tmp_path / "run.v2"
    dotted.mkdir()                                      # an existing folder may have a dot
    assert invoke("transcribe", tmp_path / "a.wav", "-o", dotted, "--model", random_onf_checkpoint).exit_code == 0
    assert (dotted / "a.mid").exists()


def test_decoding_flags_a_model_does_not_use_are_refused(tmp_path, random_onf_checkpoint):
    """A cnn without an onset read-out has no onset head and frame models no beam search: the
    flags would do nothing."""
    from amtcli.checkpoint import save_checkpoint
    from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig

    write_tone(tmp_path / "a.wav")
    config = FramewiseCNNConfig(stem_channels=4, model_dim=16, blocks=1, dilations=(1,))
    save_checkpoint(tmp_path / "cnn", "cnn", config.to_dict(), FramewiseCNN(config))
    result = invoke("transcribe", tmp_path / "a.wav", "--model", tmp_path / "cnn", "--onset-threshold", "0.3")
    assert result.exit_code == 2 and "--onset-threshold has no effect" in result.output
    result = invoke("transcribe", tmp_path / "a.wav", "--model", tmp_path / "cnn", "--beam-width", "3")
    assert result.exit_code == 2 and "--beam-width has no effect" in result.output
    assert not (tmp_path / "a.mid").exists()
    result = invoke("transcribe", tmp_path / "a.wav", "--model", random_onf_checkpoint, "--onset-threshold", "0.3")
    assert result.exit_code == 0, result.output                     # onf has an onset head
    result = invoke("transcribe", tmp_path / "a.wav", "--model", random_onf_checkpoint, "--onset-threshold", "1.5",
                    "--overwrite")
    assert result.exit_code == 2 and "--onset-threshold must be between 0 and 1" in result.output


def test_onset_support_flag_overrides_the_checkpoint_or_is_refused(tmp_path, random_onf_checkpoint):
    """--onset-support replaces the tuned value of a model that starts notes where frames
    rise (the bundled cnn), and is refused where it would do nothing."""
    import csv

    from amtcli.checkpoint import save_checkpoint
    from amtcli.families.framewise_cnn import FramewiseCNN, FramewiseCNNConfig

    t = np.arange(6 * 16000) / 16000
    fade_in = np.where(t < 1.0, 0.0, np.minimum(1.0, (t - 1.0) / 2.5)) ** 2     # from 1 s over 2.5 s
    tone = 0.15 * fade_in * sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 8))
    sf.write(tmp_path / "fade.wav", tone.astype(np.float32), 16000)
    counts = {}
    for value in ("0", "0.99"):
        result = invoke("transcribe", tmp_path / "fade.wav", "--model", "cnn", "--onset-support", value,
                        "-o", tmp_path / f"{value}.csv")
        assert result.exit_code == 0, result.output
        with open(tmp_path / f"{value}.csv", newline="") as handle:
            counts[value] = len(list(csv.DictReader(handle)))
    assert counts["0"] > counts["0.99"]             # the fade-in has no onset near 0.99
    result = invoke("transcribe", tmp_path / "fade.wav", "--model", "cnn", "--onset-support", "1")
    assert result.exit_code == 2 and "--onset-support must be at least 0 and below 1" in result.output
    config = FramewiseCNNConfig(stem_channels=4, model_dim=16, blocks=1, dilations=(1,))
    save_checkpoint(tmp_path / "plain-cnn", "cnn", config.to_dict(), FramewiseCNN(config))
    for model in (tmp_path / "plain-cnn", random_onf_checkpoint):      # no onset head; onset-start decoding
        result = invoke("transcribe", tmp_path / "fade.wav", "--model", model, "--onset-support", "0.1")
        assert result.exit_code == 2 and "--onset-support has no effect" in result.output


def test_skip_existing_writes_only_the_missing_outputs(tmp_path, random_onf_checkpoint):
    songs = tmp_path / "songs"
    songs.mkdir()
    write_tone(songs / "a.wav")
    write_tone(songs / "b.wav")
    assert invoke("transcribe", songs, "--format", "mid", "--model", random_onf_checkpoint).exit_code == 0
    (songs / "a.mid").write_bytes(b"kept")                          # a finished output is not redone
    result = invoke("transcribe", songs, "--format", "mid,csv", "--skip-existing", "--model", random_onf_checkpoint)
    assert result.exit_code == 0, result.output
    assert "writing only" in result.output and (songs / "a.mid").read_bytes() == b"kept"
    assert (songs / "a.csv").exists() and (songs / "b.csv").exists()
    again = invoke("transcribe", songs, "--format", "mid,csv", "--skip-existing", "--model", random_onf_checkpoint)
    assert again.exit_code == 0 and "2 skipped" in again.output


def test_eval_options_that_need_a_model_and_bad_limits_are_refused(tmp_path, tiny_dataset, random_onf_checkpoint):
    csv = tmp_path / "ref.csv"
    csv.write_text("onset,offset,pitch,instrument\n0.1,0.5,60,violin\n")
    for extra in (("--png-dir", tmp_path / "p"), ("--limit", "2"), ("--split", "validation"), ("--split", "test"),
                  ("--device", "auto")):                       # given explicitly, even at their defaults
        result = invoke("eval", csv, csv, *extra)
        assert result.exit_code == 2 and "only with --model and --dataset" in result.output, result.output
    assert not (tmp_path / "p").exists()
    result = invoke("eval", "--model", random_onf_checkpoint, "--dataset", tiny_dataset, "--limit", "0")
    assert result.exit_code == 2 and "--limit must be at least 1" in result.output
    (tmp_path / "s.json").write_text("keep")                        # refused before any transcription
    result = invoke("eval", "--model", random_onf_checkpoint, "--dataset", tiny_dataset, "--json", tmp_path / "s.json")
    assert result.exit_code == 2 and "--overwrite" in result.output and "test0" not in result.output
    assert (tmp_path / "s.json").read_text() == "keep"


def test_by_instrument_with_an_unlabelled_estimate_says_so(tmp_path):
    ref = tmp_path / "ref.csv"
    ref.write_text("onset,offset,pitch,instrument\n0.1,0.5,60,violin\n0.6,1.0,64,cello\n")
    est = tmp_path / "est.csv"
    est.write_text("onset,offset,pitch,velocity,instrument\n0.1,0.5,60,80,\n0.6,1.0,64,80,\n")
    result = invoke("eval", ref, est, "--by-instrument", "--json", tmp_path / "s.json")
    assert result.exit_code == 0 and "no instrument labels" in result.output
    scores = json.loads((tmp_path / "s.json").read_text())["files"][0]
    assert scores["note_onset"]["f1"] == 1.0 and "by_instrument" not in scores
    labelled = invoke("eval", ref, ref, "--by-instrument", "--json", tmp_path / "t.json")
    assert labelled.exit_code == 0 and "no instrument labels" not in labelled.output
    assert set(json.loads((tmp_path / "t.json").read_text())["files"][0]["by_instrument"]) == {"violin", "cello"}


def test_attention_map_lookup_takes_names_literally(tmp_path):
    from amtcli.commands.transcribe import existing_maps

    (tmp_path / "take [live].window000.attention.png").write_bytes(b"x")
    assert existing_maps(tmp_path / "take [live]") == [tmp_path / "take [live].window000.attention.png"]
    assert existing_maps(tmp_path / "take *") == []


def test_an_existing_file_with_an_unknown_suffix_is_not_an_output_folder(tmp_path, random_onf_checkpoint):
    write_tone(tmp_path / "a.wav")
    (tmp_path / "notes.txt").write_text("keep")
    result = invoke("transcribe", tmp_path / "a.wav", "-o", tmp_path / "notes.txt", "--model", random_onf_checkpoint)
    assert result.exit_code == 2 and "unknown output type" in result.output
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_one_failing_file_is_one_error_line_without_a_summary(tmp_path):
    result = invoke("transcribe", tmp_path / "missing.wav")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"error: {tmp_path / 'missing.wav'}: no such file"]


def test_the_console_script_prints_usage_errors_as_one_line(capsys):
    """``main`` (the installed ``amtcli``): an unknown option, a missing argument and an
    unknown command each give one stderr line naming the right --help, exit code 2;
    --version and bare ``amtcli`` (help) keep their exit codes."""
    from amtcli.cli import main

    for argv, message, where in ((["transcribe", "--bogus", "x.wav"], "No such option: --bogus", "amtcli transcribe"),
                                 (["transcribe"], "Missing argument 'inputs'", "amtcli transcribe"),
                                 (["nosuchcmd"], "No such command 'nosuchcmd'", "amtcli")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        captured = capsys.readouterr()
        assert exit_info.value.code == 2, argv
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), captured.err
        assert lines[0].endswith(f"(see '{where} --help')")
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and "amtcli" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2 and "Usage" in capsys.readouterr().out


def test_eval_warns_about_a_cut_off_recording_and_scores_it(tmp_path, tiny_dataset, random_onf_checkpoint):
    import shutil

    dataset = tmp_path / "ds"
    shutil.copytree(tiny_dataset, dataset)
    flac = dataset / "test_data" / "test0.flac"
    samples, rate = sf.read(flac, dtype="float32")
    wav = flac.with_suffix(".wav")
    sf.write(wav, samples, rate)
    flac.unlink()
    data = wav.read_bytes()
    wav.write_bytes(data[: len(data) // 2])
    result = invoke("eval", "--model", random_onf_checkpoint, "--dataset", dataset, "--split", "test",
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "test0.wav: the file ends before its header says" in warnings[0], result.output


def test_eval_on_a_dataset_names_the_files_it_leaves_out(tmp_path, tiny_dataset, random_onf_checkpoint):
    import shutil

    dataset = tmp_path / "ds"
    shutil.copytree(tiny_dataset, dataset)
    samples, rate = sf.read(dataset / "test_data" / "test0.flac", dtype="float32")
    sf.write(dataset / "test_data" / "test0.wav", samples, rate)          # a second file of id test0
    sf.write(dataset / "test_data" / "extra.flac", samples, rate)         # audio without labels
    shutil.copy(dataset / "test_labels" / "test1.csv", dataset / "test_labels" / "ghost.csv")  # labels only
    result = invoke("eval", "--model", random_onf_checkpoint, "--dataset", dataset, "--split", "test",
                    "--device", "cpu")
    assert result.exit_code == 0, result.output
    unpaired = [line for line in result.output.splitlines() if line.startswith("unpaired ")]
    assert len(unpaired) == 3, result.output
    assert any("test0.wav: not scored, test0.flac has the same id" in line for line in unpaired)  # flac first
    assert any("extra.flac: no labels" in line for line in unpaired)
    assert any("ghost.csv: no audio" in line for line in unpaired)
    wrong = invoke("eval", "--model", random_onf_checkpoint, "--dataset", dataset, "--split", "dev")
    assert wrong.exit_code != 0 and "train, validation and test" in wrong.output


def test_data_stats_reports_a_bad_item_and_counts_the_rest(tmp_path, tiny_dataset):
    """One unreadable recording (an empty file) is one error line and exit code 1; the
    other items are still counted. The strict form (dataset cards) still raises."""
    import shutil

    from amtcli.datasets.stats import dataset_stats
    from amtcli.errors import AudioError

    dataset = tmp_path / "ds"
    shutil.copytree(tiny_dataset, dataset)
    good = invoke("data", "stats", dataset)
    assert good.exit_code == 0, good.output
    (dataset / "test_data" / "test0.flac").write_bytes(b"")
    result = invoke("data", "stats", dataset)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "test0.flac" in errors[0] and "left out of the numbers" in errors[0]
    stats = dataset_stats(dataset, skip_bad=True)
    assert stats.splits["test"].items == 1 and stats.total.items == 5 and len(stats.skipped) == 1
    with pytest.raises(AudioError):
        dataset_stats(dataset)
