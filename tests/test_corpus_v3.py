"""Corpus v3: stems, single lines, per-stem timbre, sample soundfonts, pedal, piano test split."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from amtcli.datasets.musicnet import read_musicnet_labels
from amtcli.datasets.performance import PerformanceStyle, pedal_segments, perform, sustained_notes
from amtcli.datasets.soundfonts import ENV_VAR, SampleFont, find_soundfont, pick_sample_font
from amtcli.datasets.sources import generate_score
from amtcli.datasets.synth import load_recipe, plan_items, synthesize
from amtcli.datasets.timbre import StemTimbre, TimbreStyle, apply_timbre, draw_timbre, envelope_db
from amtcli.errors import ConfigError, DataError
from amtcli.types import Note, validate_notes

TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
needs_soundfont = pytest.mark.skipif(not TIMGM.is_file(), reason="timgm6mb-soundfont not installed")


# ----------------------------------------------------------------------------- pedal


def test_sustained_notes_follow_the_maestro_convention():
    notes = (Note(0.0, 0.5, 60, program=0), Note(0.2, 0.4, 64, program=0), Note(1.5, 1.8, 60, program=0),
             Note(3.0, 3.2, 67, program=0), Note(0.1, 0.3, 72, program=0))
    channels = (0, 0, 0, 0, 1)
    sustain = ((0, 0.3, 2.5),)          # channel 0's pedal down 0.3-2.5 s; channel 1 has none
    out = sustained_notes(notes, channels, sustain)
    assert out[0].offset_s == 1.5       # released under the pedal, cut where the key is struck again
    assert out[1].offset_s == 2.5       # released under the pedal: sounds until it is lifted
    assert out[2].offset_s == 2.5
    assert out[3].offset_s == 3.2       # released after the pedal was lifted: unchanged
    assert out[4].offset_s == 0.3       # another channel's pedal does not hold it
    assert [n.onset_s for n in out] == [n.onset_s for n in notes]
    validate_notes(out)


def test_pedal_segments_change_after_each_new_harmony():
    rng = np.random.default_rng(0)
    onsets = [0.3, 1.3, 1.8, 2.3, 3.3]
    segments = pedal_segments(onsets, np.array([1.3, 2.3, 3.3]), rng)
    assert len(segments) == 4
    for (down, up), strike in zip(segments, [0.3, 1.3, 2.3, 3.3]):
        assert strike + 0.06 <= down <= strike + 0.16 and up > down
    for (_, up), (down, _) in zip(segments, segments[1:]):
        assert up < down                # lifted before it is pressed again
    assert pedal_segments([], np.array([1.0]), rng) == []


def test_pedal_only_on_pianos_and_only_when_asked():
    score = generate_score("generated:t/0", 5, 16)
    rng = np.random.default_rng(1)
    plain = perform(score, [0] * len(score.parts), 120.0, PerformanceStyle(), np.random.default_rng(1))
    assert plain.sustain == ()
    pedalled = perform(score, [0] * len(score.parts), 120.0, PerformanceStyle(pedal_prob=1.0), rng)
    assert pedalled.sustain and {c for c, _, _ in pedalled.sustain} <= set(pedalled.programs)
    strings = perform(score, [40] * len(score.parts), 120.0, PerformanceStyle(pedal_prob=1.0),
                      np.random.default_rng(1))
    assert strings.sustain == ()


# ----------------------------------------------------------------------------- timbre


def test_rolloff_weakens_the_fundamental_more_than_the_partials():
    timbre = StemTimbre(rolloff_hz=200.0, rolloff_db=15.0)
    low, second, high = envelope_db(timbre, np.array([100.0, 200.0, 2000.0]))
    assert low < second < high and high == pytest.approx(0.0, abs=0.01) and low < -13


def test_apply_timbre_is_a_filter_of_the_same_length():
    rate = 16000
    t = np.arange(rate) / rate
    audio = (np.sin(2 * np.pi * 100 * t) + np.sin(2 * np.pi * 2000 * t)).astype(np.float32)
    assert np.allclose(apply_timbre(audio, rate, StemTimbre()), audio, atol=1e-5)
    out = apply_timbre(audio, rate, StemTimbre(rolloff_hz=300.0, rolloff_db=20.0))
    spectrum = np.abs(np.fft.rfft(out))
    assert out.shape == audio.shape and out.dtype == np.float32
    assert spectrum[100] < 0.15 * spectrum[2000]


def test_draw_timbre_gives_only_a_gain_when_off():
    rng = np.random.default_rng(0)
    assert draw_timbre(TimbreStyle(prob=0.0), 48, rng).peaks == ()
    drawn = [draw_timbre(TimbreStyle(prob=1.0, rolloff_prob=1.0), 40, rng) for _ in range(5)]
    assert all(t.rolloff_hz > 0 and t.peaks for t in drawn)
    with pytest.raises(ValueError):
        TimbreStyle(prob=2.0)


# ----------------------------------------------------------------------------- soundfonts


def test_find_soundfont_searches_recipe_folders_then_the_environment(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.sf3").write_bytes(b"x")
    monkeypatch.setenv(ENV_VAR, f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert find_soundfont("x.sf3") == tmp_path / "b" / "x.sf3"
    (tmp_path / "a" / "x.sf3").write_bytes(b"y")
    assert find_soundfont("x.sf3", (str(tmp_path / "a"),)) == tmp_path / "a" / "x.sf3"
    with pytest.raises(DataError, match=f"missing.sf3 not found .*{ENV_VAR}"):
        find_soundfont("missing.sf3")
    with pytest.raises(DataError, match="apt-get install fluid-soundfont-gm"):
        find_soundfont("/nowhere/FluidR3_GM.sf2")


def test_sample_font_fits_program_and_range():
    sax = SampleFont("sax.sf3", (65,), (49, 80))
    assert sax.fits(65, np.array([50, 80])) and not sax.fits(65, np.array([48, 60]))
    assert not sax.fits(66, np.array([60]))
    rng = np.random.default_rng(0)
    assert pick_sample_font((sax,), 65, np.array([40]), rng) is None
    assert pick_sample_font((sax,), 65, np.array([60]), rng) is sax
    with pytest.raises(ValueError):
        SampleFont("bad.sf3", (65,), (80, 49))


def test_bundled_corpus_v3_recipe_parses():
    recipe = load_recipe("corpus-v3")
    assert recipe.stems.enabled and recipe.stems.solo_share > 0.2
    assert recipe.style.pedal_prob > 0 and recipe.piano_test is not None
    assert all("/" not in f.file for f in recipe.sample_fonts)   # names, never a machine's path
    assert set(recipe.piano_test.soundfonts).isdisjoint(f.file for f in recipe.sample_fonts)


def test_unknown_stems_key_is_a_config_error(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('base = "default"\n[stems]\nsolo = 0.3\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown \\[stems\\] keys: solo"):
        load_recipe(path)


# ----------------------------------------------------------------------------- rendering


def _v3_recipe(tmp_path: Path) -> Path:
    """A tiny corpus-v3-like recipe whose "real-sample" fonts are TimGM6mb under other names."""
    fonts = tmp_path / "fonts"
    fonts.mkdir(exist_ok=True)
    for name in ("real-violin.sf2", "held-out-piano.sf2"):
        if not (fonts / name).exists():
            (fonts / name).symlink_to(TIMGM)
    path = tmp_path / "v3.toml"
    path.write_text(f"""
[dataset]
hours = 0.08
tail_s = 0.5
validation_fraction = 0.2
test_fraction = 0.2
[soundfonts]
train = ["{TIMGM}"]
test = ["{TIMGM}"]
search_path = ["fonts"]
[performance]
pedal_prob = 1.0
[stems]
enabled = true
solo_share = 0.5
duet_share = 0.2
sample_font_prob = 1.0
[stems.timbre]
prob = 1.0
[piano_test]
soundfonts = ["held-out-piano.sf2"]
sources = ["gen"]
[[sample_soundfonts]]
file = "real-violin.sf2"
programs = [40]
keys = [21, 108]
[[sources]]
name = "gen"
kind = "generated"
length_beats = 12
bpm = [120, 140]
[sources.ensembles]
piano = 1
string_quartet = 2
""", encoding="utf-8")
    return path


@needs_soundfont
def test_v3_corpus_renders_lines_stems_pedal_and_piano_test(tmp_path):
    pytest.importorskip("fluidsynth")
    recipe = load_recipe(_v3_recipe(tmp_path))
    items, _ = plan_items(recipe, seed=2, cache_dir=tmp_path / "cache")
    assert any(len(i.parts) == 1 for i in items) and any(i.split == "piano_test" for i in items)
    for item in items:
        if item.split == "piano_test":
            assert item.ensemble == "piano" and item.soundfont == "held-out-piano.sf2" and not item.parts
    report = synthesize(tmp_path / "out", recipe, seed=2, jobs=1, cache_dir=tmp_path / "cache")
    assert not report.failed and report.rendered == len(items)
    rows = list(csv.DictReader(open(tmp_path / "out" / "metadata.csv", encoding="utf-8")))
    by_id = {r["id"]: r for r in rows}
    for item in items:
        row = by_id[item.item_id]
        labels = read_musicnet_labels(tmp_path / "out" / f"{item.split}_labels" / f"{item.item_id}.csv")
        validate_notes(labels)
        if item.parts:
            assert row["parts"] == ";".join(map(str, item.parts))
        if "violin" in row["instruments"].split(";") and item.split == "train":
            assert "real-violin.sf2" in row["soundfont"]       # violins took the sample font
        elif item.split == "train":
            assert "real-violin.sf2" not in row["soundfont"]
        if item.ensemble == "piano":
            assert int(row["pedal_presses"]) > 0
    again = synthesize(tmp_path / "again", recipe, seed=2, jobs=2, cache_dir=tmp_path / "cache")
    assert not again.failed
    for first in sorted((tmp_path / "out").glob("*_labels/*.csv")):
        assert first.read_bytes() == (tmp_path / "again" / first.parent.name / first.name).read_bytes()
