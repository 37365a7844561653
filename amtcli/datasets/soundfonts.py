"""Finding soundfonts by name, and the single-instrument real-sample soundfonts of a recipe.

A recipe names a soundfont by path or by bare file name. A bare name is looked up in
the recipe's ``[soundfonts] search_path`` (folders relative to the recipe), then in the
folders of the ``AMTCLI_SOUNDFONT_PATH`` environment variable (``:``-separated), then
in Debian's ``/usr/share/sounds/sf2`` and ``sf3``. So a recipe never holds the path of
one machine, and a missing file is an error naming every folder searched.

A :class:`SampleFont` is a soundfont recorded from one real instrument: one preset
(bank 0, program 0) that stands for the GM programs it lists, over the keys it was
sampled on (a note outside them would be silent, so such a part is never given it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amtcli.errors import DataError

#: Debian package that ships each known soundfont, used in error messages.
SOUNDFONT_PACKAGES: dict[str, str] = {
    "FluidR3_GM.sf2": "fluid-soundfont-gm",
    "TimGM6mb.sf2": "timgm6mb-soundfont",
    "MuseScore_General.sf3": "musescore-general-soundfont",
    "MuseScore_General_Full.sf3": "musescore-general-soundfont",
    "MuseScore_General_Lite.sf3": "musescore-general-soundfont",
    "FluidR3Mono_GM.sf3": "fluidr3mono-gm-soundfont",
    "sf_GMbank.sf2": "csound-soundfont",
    "OPL-3_FM_128M.sf2": "opl3-soundfont",
}

ENV_VAR = "AMTCLI_SOUNDFONT_PATH"
SYSTEM_FOLDERS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3")


@dataclass(frozen=True)
class SampleFont:
    """One ``[[sample_soundfonts]]`` entry of a recipe.

    Attributes:
        file: path or bare file name of the soundfont.
        programs: 0-based GM programs it may play.
        keys: (lowest, highest) MIDI key it has samples for.
        weight: relative chance among the sample fonts that fit a part.
        preset: preset number (bank 0) holding the instrument.
    """

    file: str
    programs: tuple[int, ...]
    keys: tuple[int, int] = (0, 127)
    weight: float = 1.0
    preset: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "programs", tuple(int(p) for p in self.programs))
        object.__setattr__(self, "keys", (int(self.keys[0]), int(self.keys[1])))
        if not self.programs or not all(0 <= p < 128 for p in self.programs):
            raise ValueError(f"sample soundfont {self.file}: programs must be GM programs 0..127")
        if not 0 <= self.keys[0] <= self.keys[1] <= 127 or self.weight <= 0:
            raise ValueError(f"sample soundfont {self.file}: need 0 <= keys[0] <= keys[1] <= 127 and weight > 0")

    def fits(self, program: int, pitches: np.ndarray) -> bool:
        """True if this font stands for ``program`` and has samples for every pitch."""
        pitches = np.asarray(pitches)
        return program in self.programs and bool(len(pitches)) and \
            int(pitches.min()) >= self.keys[0] and int(pitches.max()) <= self.keys[1]


def search_folders(recipe_folders: tuple[str, ...] = ()) -> list[Path]:
    """The folders searched for a bare soundfont name, in order."""
    env = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return [Path(p) for p in (*recipe_folders, *env, *SYSTEM_FOLDERS)]


def find_soundfont(name: str, recipe_folders: tuple[str, ...] = ()) -> Path:
    """The file a recipe's soundfont name stands for.

    Raises DataError naming the folders searched (and the Debian package, for the
    General MIDI soundfonts) when it is not found.
    """
    path = Path(name)
    if path.is_absolute() or len(path.parts) > 1:
        if path.is_file():
            return path
        folders: list[Path] = []
    else:
        folders = search_folders(recipe_folders)
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
    package = SOUNDFONT_PACKAGES.get(path.name)
    hint = f"; install it with: apt-get install {package}" if package else \
        f"; put its folder in {ENV_VAR} (':'-separated)"
    searched = f" (searched {', '.join(str(f) for f in folders)})" if folders else ""
    raise DataError(f"soundfont {name} not found{searched}{hint}")


def pick_sample_font(fonts: tuple[SampleFont, ...], program: int, pitches: np.ndarray,
                     rng: np.random.Generator) -> SampleFont | None:
    """A font that fits the part, drawn by weight, or None when none fits (no draw then)."""
    fitting = [f for f in fonts if f.fits(program, pitches)]
    if not fitting:
        return None
    weights = np.array([f.weight for f in fitting], dtype=float)
    return fitting[int(rng.choice(len(fitting), p=weights / weights.sum()))]
