"""The synthetic corpus factory: planning, performance, rendering, layout, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from amtcli.datasets import sources as src
from amtcli.datasets.augment import AugmentConfig, augment, eq_curve, shift_notes
from amtcli.datasets.layout import maestro_pairs, musicnet_pairs
from amtcli.datasets.musicnet import MUSICNET_SAMPLE_RATE, read_musicnet_labels
from amtcli.datasets.performance import (
    ENSEMBLES,
    PLAYABLE_RANGE,
    PerformanceStyle,
    assign_instruments,
    perform,
)
from amtcli.datasets.render import (AttackStyle, Renderer, RenderSettings, VibratoStyle, attack_swells, vibrato_bends,
                                    with_slow_attacks, with_vibrato)
from amtcli.datasets.stats import dataset_stats
from amtcli.datasets.synth import bundled_recipes, load_recipe, plan_items, synthesize
from amtcli.errors import ConfigError, DataError
from amtcli.types import Note, validate_notes

TIMGM = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")

pytest.importorskip("fluidsynth")
needs_soundfont = pytest.mark.skipif(not TIMGM.is_file(), reason="timgm6mb-soundfont not installed")


def _write_midi(path: Path) -> None:
    import pretty_midi

    midi = pretty_midi.PrettyMIDI()
    violin = pretty_midi.Instrument(program=40)
    for k, pitch in enumerate([67, 69, 71, 72, 74, 72, 71, 69]):
        violin.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=0.5 * k, end=0.5 * k + 0.45))
    piano = pretty_midi.Instrument(program=0)
    for k in range(4):
        for pitch in (48, 55, 60):
            piano.notes.append(pretty_midi.Note(velocity=70, pitch=pitch, start=float(k), end=k + 0.9))
    midi.instruments += [violin, piano]
    midi.write(str(path))


def _recipe(tmp_path: Path, hours: float = 0.006, generated_share: float = 0.7) -> Path:
    midi_dir = tmp_path / "midi"
    midi_dir.mkdir(exist_ok=True)
    _write_midi(midi_dir / "good.mid")
    (midi_dir / "broken.mid").write_bytes(b"MThd this is not a MIDI file")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f"""
[dataset]
hours = {hours}
tail_s = 0.5
validation_fraction = 0.2
test_fraction = 0.2
[soundfonts]
train = ["{TIMGM}"]
test = ["{TIMGM}"]
[[sources]]
name = "gen"
kind = "generated"
share = {generated_share}
length_beats = 12
bpm = [120, 140]
[sources.ensembles]
piano = 1
string_quartet = 1
[[sources]]
name = "user"
kind = "midi"
folder = "midi"
keep_programs = true
share = {1 - generated_share}
""",
        encoding="utf-8",
    )
    return recipe


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synth")
    recipe = load_recipe(_recipe(tmp))
    report = synthesize(tmp / "out", recipe, seed=3, jobs=1, cache_dir=tmp / "cache")
    return tmp, recipe, report


@needs_soundfont
def test_corpus_layout_metadata_and_bad_source(corpus):
    tmp, _, report = corpus
    out = tmp / "out"
    assert report.rendered > 0 and not report.failed
    assert [Path(p).name for p, _ in report.skipped_sources] == ["broken.mid"]
    header = (out / "metadata.csv").read_text().splitlines()[0].split(",")
    for column in ("id", "source_work", "composer", "ensemble", "instruments", "soundfont",
                   "render_settings", "duration_s", "seed"):
        assert column in header
    assert (out / "DATASET.md").read_text().startswith("# Synthetic")
    stats = dataset_stats(out)
    assert stats.total.items == report.rendered
    assert stats.total.notes > 0 and stats.total.hours > 0
    again = synthesize(out, load_recipe(_recipe(tmp)), seed=3, jobs=1, cache_dir=tmp / "cache")
    assert again.rendered == 0 and again.skipped == report.rendered
    label = sorted(out.glob("*_labels/*.csv"))[0]
    before = label.read_bytes()
    label.unlink()
    resumed = synthesize(out, load_recipe(_recipe(tmp)), seed=3, jobs=1, cache_dir=tmp / "cache")
    assert resumed.rendered == 1 and label.read_bytes() == before
    other = tmp / "other.toml"
    other.write_text(f'base = "{_recipe(tmp)}"\n[vibrato]\nprob = 1.0\n', encoding="utf-8")
    with pytest.raises(DataError, match="another recipe"):
        synthesize(out, load_recipe(other), seed=3, jobs=1, cache_dir=tmp / "cache")


@needs_soundfont
def test_vibrato_reaches_train_and_validation_renders_only(tmp_path):
    base = _recipe(tmp_path, hours=0.02)
    recipe = tmp_path / "vib.toml"
    recipe.write_text(f'base = "{base.name}"\n[vibrato]\nprob = 1.0\n', encoding="utf-8")  # next to it
    report = synthesize(tmp_path / "out", load_recipe(recipe), seed=1, jobs=1, cache_dir=tmp_path / "cache")
    assert report.rendered > 0 and not report.failed
    import csv

    rows = list(csv.DictReader(open(tmp_path / "out" / "metadata.csv")))
    assert {r["split"] for r in rows} >= {"train", "test"}
    for row in rows:
        assert ("vibrato_cents" in row["render_settings"]) == (row["split"] != "test"), row
    assert f"base recipe {base.name}" in (tmp_path / "out" / "recipe.toml").read_text()


def test_missing_soundfont_names_the_package(tmp_path):
    path = _recipe(tmp_path)
    path.write_text(path.read_text().replace(str(TIMGM), "/nowhere/FluidR3_GM.sf2"))
    with pytest.raises(DataError, match="fluid-soundfont-gm"):
        synthesize(tmp_path / "out", load_recipe(path), seed=0, cache_dir=tmp_path / "cache")


@needs_soundfont
def test_labels_match_audio(corpus):
    import soundfile

    tmp, recipe, _ = corpus
    pairs = [p for split in ("train", "validation", "test") for p in _pairs(tmp / "out", split)]
    assert pairs
    rises = []
    for audio_path, label_path in pairs:
        audio, rate = soundfile.read(audio_path, dtype="float32")
        notes = read_musicnet_labels(label_path)
        validate_notes(notes)
        end = max(n.offset_s for n in notes)
        assert abs(len(audio) / rate - (end + recipe.tail_s)) < 0.01
        first = min(n.onset_s for n in notes)
        assert np.max(np.abs(audio[: int((first - 0.05) * rate)]), initial=0.0) < 1e-3
        hop = rate // 100
        energy = np.array([np.sum(audio[i : i + hop] ** 2) for i in range(0, len(audio) - hop, hop)])
        onsets = sorted({round(n.onset_s, 2) for n in notes})
        for previous, onset in zip([-1.0] + onsets, onsets):
            if onset - previous < 0.15:
                continue
            frame = int(onset * 100)
            before = energy[max(frame - 5, 0) : frame].mean() if frame > 0 else 0.0
            after = energy[frame + 1 : frame + 6].mean()
            rises.append(after > before)
    assert len(rises) > 10
    assert np.mean(rises) > 0.8


def _pairs(root: Path, split: str):
    return musicnet_pairs(root, split) if (root / f"{split}_data").is_dir() else []


@needs_soundfont
def test_same_seed_gives_identical_labels(corpus, tmp_path):
    tmp, recipe, _ = corpus
    report = synthesize(tmp_path / "again", recipe, seed=3, jobs=2, cache_dir=tmp / "cache")
    assert not report.failed
    first = sorted((tmp / "out").glob("*_labels/*.csv"))
    second = sorted((tmp_path / "again").glob("*_labels/*.csv"))
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()


def test_split_by_work_and_held_out_soundfont(tmp_path):
    path = _recipe(tmp_path, hours=0.5, generated_share=0.9)
    text = path.read_text().replace(f'test = ["{TIMGM}"]', 'test = ["/held/out.sf2"]')
    path.write_text(text)
    recipe = load_recipe(path)
    items, failures = plan_items(recipe, seed=0, cache_dir=tmp_path / "cache")
    assert len(failures) == 1
    split_of: dict[str, set[str]] = {}
    for item in items:
        split_of.setdefault(item.group, set()).add(item.split)
        assert (item.soundfont == "/held/out.sf2") == (item.split == "test")
    assert all(len(s) == 1 for s in split_of.values())
    assert {s for v in split_of.values() for s in v} == {"train", "validation", "test"}
    again, _ = plan_items(recipe, seed=0, cache_dir=tmp_path / "cache")
    assert again == items


def test_recipe_base_replaces_only_the_keys_it_names(tmp_path):
    path = _recipe(tmp_path, hours=0.5, generated_share=0.9)
    derived = tmp_path / "derived.toml"
    derived.write_text(f'base = "{path}"\n[soundfonts]\ntrain = ["/a.sf2", "/b.sf2"]\n', encoding="utf-8")
    plain, with_base = load_recipe(path), load_recipe(derived)
    assert with_base.train_soundfonts == ("/a.sf2", "/b.sf2")
    assert with_base.test_soundfonts == plain.test_soundfonts and with_base.sources == plain.sources
    items, _ = plan_items(plain, seed=0, cache_dir=tmp_path / "cache")
    other, _ = plan_items(with_base, seed=0, cache_dir=tmp_path / "cache")
    assert [(i.item_id, i.split, i.bpm) for i in items] == [(i.item_id, i.split, i.bpm) for i in other]
    assert [i for i in items if i.split == "test"] == [i for i in other if i.split == "test"]
    assert {i.soundfont for i in other if i.split == "train"} <= {"/a.sf2", "/b.sf2"}
    loop = tmp_path / "loop.toml"
    loop.write_text(f'base = "{loop}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="cycle"):
        load_recipe(loop)


def test_bundled_synthesis_recipes_load_by_name():
    assert {"default", "five-soundfonts", "five-soundfonts-vibrato"} <= set(bundled_recipes())
    default, five = load_recipe(None), load_recipe("five-soundfonts")
    assert five.sources == default.sources and five.test_soundfonts == default.test_soundfonts
    assert set(default.train_soundfonts) < set(five.train_soundfonts) and len(five.train_soundfonts) == 5
    with pytest.raises(ConfigError, match="bundled recipes: corpus-v3, default"):
        load_recipe("no-such-recipe")


def test_a_folder_named_like_a_bundled_recipe_does_not_hide_it(tmp_path, monkeypatch):
    (tmp_path / "five-soundfonts").mkdir()
    monkeypatch.chdir(tmp_path)
    assert len(load_recipe("five-soundfonts").train_soundfonts) == 5


def test_music21_time_limit_skips_file(tmp_path, monkeypatch):
    music21 = pytest.importorskip("music21")
    import time

    # A parse that never finishes in time (music21 keeps its own parse cache, so a real
    # file can parse faster than any fixed limit on a second run).
    monkeypatch.setattr(music21.corpus, "parse", lambda *args, **kwargs: time.sleep(2.0))
    path, n_works, error = src.convert_music21_file("beethoven/opus18no1/movement1.mxl", str(tmp_path), 0.05)
    assert n_works == 0 and "longer than" in error
    assert src.load_music21_cached(tmp_path, path) == []


def test_performance_keeps_ranges_and_resolves_overlaps():
    rng = np.random.default_rng(0)
    rows = [[b * 0.5, 1.0, 60.0 + (b % 3), 0.0] for b in range(40)]
    high = src.Part("", None, np.array(rows) + [0, 0, 24, 0])
    low = src.Part("", None, np.array(rows) - [0, 0, 24, 0])
    score = src.Score("w", "w", "", "", (high, src.Part("", None, np.array(rows)), low), None)
    for name in ("string_quartet", "wind_quintet", "piano_trio", "accompanied_bassoon"):
        programs = assign_instruments(score.parts, ENSEMBLES[name])
        performance = perform(score, programs, 100.0, PerformanceStyle(), rng)
        validate_notes(list(performance.notes))
        for note in performance.notes:
            low_pitch, high_pitch = PLAYABLE_RANGE[note.program]
            assert low_pitch <= note.pitch <= high_pitch
        assert len(set(programs)) > 1


def test_assign_instruments_orders_voices():
    parts = tuple(src.Part("", None, np.array([[0.0, 1.0, p, 0.0]])) for p in (72, 65, 57, 45))
    assert assign_instruments(parts, ENSEMBLES["string_quartet"]) == [40, 40, 41, 42]
    assert assign_instruments(parts, ENSEMBLES["piano_trio"]) == [40, 0, 0, 42]
    assert assign_instruments(parts, ENSEMBLES["piano"]) == [0, 0, 0, 0]


def test_generated_material_covers_the_keyboard():
    pitches = np.concatenate(
        [p.notes[:, 2] for k in range(6) for p in src.generate_score(f"g{k}", k, 240).parts]
    )
    assert pitches.min() <= 24 and pitches.max() >= 104


def test_augmentation_pitch_shift_moves_labels():
    rate = 16000
    t = np.arange(rate) / rate
    audio = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    config = AugmentConfig(pitch_prob=1.0, max_pitch_semitones=2, noise_prob=0.0, eq_prob=0.0, reverb_prob=0.0)
    shifted, semitones = augment(audio, rate, config, np.random.default_rng(1))
    assert semitones != 0 and shifted.shape == audio.shape and shifted.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(shifted[2000:-2000] * np.hanning(len(shifted) - 4000)))
    peak_hz = np.argmax(spectrum) * rate / (len(shifted) - 4000)
    assert abs(12 * np.log2(peak_hz / 440.0) - semitones) < 0.3
    notes = shift_notes([Note(0.0, 1.0, 69, 80, 40), Note(0.0, 1.0, 108, 80, 0)], semitones)
    assert notes[0].pitch == 69 + semitones
    mild, none = augment(audio, rate, AugmentConfig(), np.random.default_rng(2))
    assert none == 0 and np.max(np.abs(mild)) <= 1.0


def _band_db(audio: np.ndarray, rate: int, low_hz: float, high_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1.0 / rate)
    return float(10 * np.log10(spectrum[(freqs >= low_hz) & (freqs < high_hz)].sum()))


def test_eq_curve_follows_its_control_points():
    rate = 16000
    audio = np.random.default_rng(0).standard_normal(rate).astype(np.float32)
    flat = eq_curve(audio, rate, np.zeros(4))
    np.testing.assert_allclose(flat, audio, atol=1e-5)
    louder = eq_curve(audio, rate, np.full(4, 6.0))
    np.testing.assert_allclose(louder, audio * 10 ** (6 / 20), rtol=1e-4, atol=1e-4)
    # control points at 50, 271, 1474 and 8000 Hz: cut the lows, boost the highs
    shaped = eq_curve(audio, rate, np.array([-12.0, -12.0, 0.0, 12.0]))
    assert shaped.shape == audio.shape and shaped.dtype == np.float32
    low_change = _band_db(shaped, rate, 60, 300) - _band_db(audio, rate, 60, 300)
    high_change = _band_db(shaped, rate, 5000, 7900) - _band_db(audio, rate, 5000, 7900)
    assert low_change < -10 and high_change > 5


def test_augment_applies_the_eq_curve_only_when_asked():
    rate = 16000
    audio = (0.1 * np.random.default_rng(1).standard_normal(rate)).astype(np.float32)
    quiet = dict(gain_db=(0.0, 0.0), noise_prob=0.0, eq_prob=0.0, reverb_prob=0.0)
    same, _ = augment(audio, rate, AugmentConfig(**quiet), np.random.default_rng(2))
    np.testing.assert_allclose(same, audio, atol=1e-6)
    curved, _ = augment(audio, rate, AugmentConfig(**quiet, eq_curve_prob=1.0, eq_curve_db=10.0),
                        np.random.default_rng(2))
    assert np.max(np.abs(curved - audio)) > 0.01
    with pytest.raises(ValueError, match="eq_curve_points"):
        AugmentConfig(eq_curve_points=1)


def test_maestro_reader(tmp_path):
    (tmp_path / "2004").mkdir()
    for name in ("a.wav", "a.midi", "b.wav", "b.midi"):
        (tmp_path / "2004" / name).write_bytes(b"x")
    (tmp_path / "maestro-v3.0.0.csv").write_text(
        "canonical_composer,split,midi_filename,audio_filename\n"
        "X,train,2004/a.midi,2004/a.wav\nY,test,2004/b.midi,2004/b.wav\nZ,train,2004/c.midi,2004/c.wav\n"
    )
    assert maestro_pairs(tmp_path, "train") == [(tmp_path / "2004/a.wav", tmp_path / "2004/a.midi")]
    assert len(maestro_pairs(tmp_path, "test")) == 1


def test_label_times_are_musicnet_samples(corpus):
    tmp, _, _ = corpus
    label = next((tmp / "out").glob("*_labels/*.csv"))
    first = label.read_text().splitlines()[1].split(",")
    notes = read_musicnet_labels(label)
    assert int(first[0]) == round(min(n.onset_s for n in notes) * MUSICNET_SAMPLE_RATE)
    assert 1 <= int(first[2]) <= 128


def _pitch_track_hz(audio: np.ndarray, rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Strongest spectral peak in [low_hz, high_hz] every 20 ms (64 ms frames, 0.5 Hz bins)."""
    freqs = np.fft.rfftfreq(32768, 1.0 / rate)
    band = (freqs > low_hz) & (freqs < high_hz)
    track = []
    for start in range(0, len(audio) - 1024, rate // 50):
        spectrum = np.abs(np.fft.rfft(audio[start:start + 1024] * np.hanning(1024), 32768))
        track.append(freqs[band][np.argmax(spectrum[band])])
    return np.array(track)


@needs_soundfont
def test_vibrato_bends_sustained_instruments_only():
    rate = 16000
    renderer = Renderer()
    events = [(0.1, 3.0, 0, 69, 90)]
    spans = {}
    for program in (73, 0):  # flute, piano
        for cents in (0.0, 30.0):
            settings = RenderSettings(soundfont=str(TIMGM), sample_rate=rate, reverb_level=0.0,
                                      vibrato_cents=cents, vibrato_hz=5.5, vibrato_delay_s=0.1)
            audio = renderer.render(events, {0: program}, settings)
            track = _pitch_track_hz(audio[int(0.8 * rate):int(2.8 * rate)], rate, 400.0, 480.0)
            spans[program, cents] = 1200 * np.log2(track.max() / track.min())
    renderer.close()
    assert spans[73, 30.0] > 45.0 and spans[73, 0.0] < 25.0  # +-30 cents is 60 peak to peak
    assert vibrato_bends(events, {0: 0}, RenderSettings(soundfont="x", vibrato_cents=30.0)) == []  # no piano vibrato
    bends = vibrato_bends(events, {0: 73}, RenderSettings(soundfont="x", vibrato_cents=30.0, vibrato_delay_s=0.5))
    assert bends[0][0] >= int(0.6 * 16000) and bends[-1] == (3 * 16000, 0, 0)  # starts late, ends centred
    assert max(abs(b) for _, _, b in bends) <= round(30 / 200 * 8192)


def test_vibrato_style_draws_nothing_when_off():
    settings = RenderSettings(soundfont="x")
    rng = np.random.default_rng(0)
    assert with_vibrato(settings, VibratoStyle(), rng) is settings
    assert rng.random() == np.random.default_rng(0).random()
    on = with_vibrato(settings, VibratoStyle(prob=1.0, cents=(10, 20)), np.random.default_rng(0))
    assert 10 <= on.vibrato_cents <= 20 and "vibrato_cents" in on.describe()
    assert "vibrato" not in settings.describe()
    with pytest.raises(ValueError, match="cents"):
        VibratoStyle(cents=(30, 10))


@needs_soundfont
def test_slow_attacks_swell_sustained_instruments_only():
    rate = 16000
    renderer = Renderer()
    events = [(0.2, 1.5, 0, 69, 100)]

    def rms(audio, start_s, stop_s):
        return float(np.sqrt(np.mean(audio[int(start_s * rate):int(stop_s * rate)] ** 2)))

    rise = {}
    for program in (40, 0):  # violin, piano
        for attack_s in (0.0, 0.3):
            settings = RenderSettings(soundfont=str(TIMGM), sample_rate=rate, reverb_level=0.0, peak=0.5,
                                      attack_s=attack_s, attack_floor=0.2)
            audio = renderer.render(events, {0: program}, settings)
            rise[program, attack_s] = rms(audio, 0.2, 0.26) / rms(audio, 0.6, 0.9)   # first 60 ms vs body
    renderer.close()
    assert rise[40, 0.3] < 0.5 * rise[40, 0.0]               # the violin swells in
    assert rise[0, 0.3] == pytest.approx(rise[0, 0.0])       # the piano does not
    swells = attack_swells([(0.0, 1.0, 0, 60, 90), (0.1, 1.0, 0, 64, 90)], {0: 40},
                           RenderSettings(soundfont="x", attack_s=0.2, attack_floor=0.25))
    assert swells[0] == (0, 0, 32) and swells[-1] == (1600 + 3200, 0, 127)
    assert [s for s in swells if s[0] == 1600] == [(1600, 0, 32)]   # the second note-on restarts the swell
    assert attack_swells([(0.0, 1.0, 0, 60, 90)], {0: 0}, RenderSettings(soundfont="x", attack_s=0.2)) == []


def test_attack_style_draws_nothing_when_off(tmp_path):
    settings = RenderSettings(soundfont="x")
    rng = np.random.default_rng(0)
    assert with_slow_attacks(settings, AttackStyle(), rng) is settings
    assert rng.random() == np.random.default_rng(0).random()
    on = with_slow_attacks(settings, AttackStyle(prob=1.0, attack_s=(0.05, 0.1)), np.random.default_rng(0))
    assert 0.05 <= on.attack_s <= 0.1 and "attack_s" in on.describe() and "attack" not in settings.describe()
    with pytest.raises(ValueError, match="floor"):
        AttackStyle(floor=(0.5, 2.0))
    path = _recipe(tmp_path, hours=0.5, generated_share=0.9)
    derived = tmp_path / "attack.toml"
    derived.write_text(f'base = "{path}"\n[attack]\nprob = 0.5\nattack_s = [0.05, 0.1]\n', encoding="utf-8")
    assert load_recipe(derived).attack == AttackStyle(prob=0.5, attack_s=(0.05, 0.1))
    derived.write_text(f'base = "{path}"\n[attack]\nlength = 5\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="length"):
        load_recipe(derived)


def test_vibrato_recipe_section(tmp_path):
    path = _recipe(tmp_path, hours=0.5, generated_share=0.9)
    derived = tmp_path / "vib.toml"
    derived.write_text(f'base = "{path}"\n[vibrato]\nprob = 0.5\ncents = [5, 20]\n', encoding="utf-8")
    assert load_recipe(derived).vibrato == VibratoStyle(prob=0.5, cents=(5.0, 20.0))
    assert load_recipe("five-soundfonts-vibrato").vibrato.prob == 0.6
    derived.write_text(f'base = "{path}"\n[vibrato]\ndepth = 5\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="depth"):
        load_recipe(derived)



@needs_soundfont
def test_note_timing_does_not_depend_on_what_was_rendered_before():
    # FluidSynth starts notes on its 64-frame block grid; each item must start on that grid
    settings = RenderSettings(soundfont=str(TIMGM), reverb_level=0.0)
    events = [(0.1003, 0.5, 0, 72, 100), (0.7011, 1.0, 0, 76, 100)]
    renderer = Renderer()
    first = renderer.render(events, {0: 0}, settings)
    renderer.render([(0.0, 0.0137, 0, 60, 90)], {0: 0}, RenderSettings(soundfont=str(TIMGM), tail_s=0.0123))
    again = renderer.render(events, {0: 0}, settings)
    renderer.close()
    assert first.shape == again.shape
    for start_s in (0.1, 0.7):
        seg = slice(int(start_s * 16000), int((start_s + 0.25) * 16000))
        lags = range(-64, 65)
        errors = [np.abs(first[seg] - np.roll(again, lag)[seg]).max() for lag in lags]
        assert lags[int(np.argmin(errors))] == 0
