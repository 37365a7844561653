"""The one output-naming rule of the CLI, and the dispatch from formats to writers.

Formats are ``mid``, ``csv`` and ``png`` (``--format mid,csv``; ``all`` means all three,
``midi`` is an alias of ``mid``). For one input file ``IN`` (say ``songs/a/take.wav``):

1. ``-o FILE`` -- ``FILE`` ends in a format suffix (``.mid``, ``.midi``, ``.csv``,
   ``.png``) and is not an existing directory. It is meant for a single input.
   Without an explicit ``--format`` the suffix picks the one format written
   (``-o out.csv`` writes only ``out.csv``). With ``--format``, every requested format
   is written next to it with the same stem and its own suffix (``-o out.mid --format
   mid,csv`` writes ``out.mid`` and ``out.csv``).
2. ``-o DIR`` or ``--output-dir DIR`` -- any other ``-o`` value (an existing directory,
   or a name without a format suffix). Outputs go to
   ``DIR/<path of IN relative to the input root, audio suffix replaced>.<fmt>``, so a
   folder of inputs is mirrored: with input root ``songs``, ``IN`` gives
   ``DIR/a/take.mid``. An input given as a single file (no root) gives ``DIR/take.mid``;
   when several named files share a name, the folder holding all of them is their root
   (``x/mix.wav`` and ``y/mix.wav`` give ``DIR/x/mix.mid`` and ``DIR/y/mix.mid``), and
   two inputs that would still write one output file are refused (the second fails).
3. Nothing given -- next to the input: ``songs/a/take.mid``.

Without ``--format`` (and outside case 1) the format is ``mid``. An output path equal
to the input path is refused. Existing outputs are never replaced without
``--overwrite``, and :func:`write_outputs` checks every target before writing any.
"""

from __future__ import annotations

import os
from pathlib import Path

from amtcli.errors import ConfigError, OutputError
from amtcli.types import Note, Transcription

FORMATS = ("mid", "csv", "png")
DEFAULT_FORMATS = ("mid",)
#: File suffix (lower case, with dot) -> format.
FORMAT_BY_SUFFIX = {".mid": "mid", ".midi": "mid", ".csv": "csv", ".png": "png"}
_ALIASES = {"midi": "mid"}


def parse_formats(text: str) -> tuple[str, ...]:
    """Parse a ``--format`` value such as ``"mid,csv"``, ``"all"`` or ``"midi"``.

    Returns the formats in the canonical order of :data:`FORMATS`, without repeats.
    Raises ConfigError (one line) for an empty value or an unknown format.
    """
    wanted: set[str] = set()
    for item in text.split(","):
        name = item.strip().lower().lstrip(".")
        if not name:
            continue
        if name == "all":
            wanted.update(FORMATS)
            continue
        name = _ALIASES.get(name, name)
        if name not in FORMATS:
            raise ConfigError(
                f"unknown output format {item.strip()!r}; choose from {', '.join(FORMATS)} or all"
            )
        wanted.add(name)
    if not wanted:
        raise ConfigError(f"no output format given; choose from {', '.join(FORMATS)} or all")
    return tuple(f for f in FORMATS if f in wanted)


def output_is_file(output: Path) -> bool:
    """True when ``-o output`` names one output file (rule 1), False for a directory."""
    return output.suffix.lower() in FORMAT_BY_SUFFIX and not output.is_dir()


def relative_stem(input_path: Path, input_root: Path | None) -> Path:
    """Path of the input under ``input_root`` (just its name when outside or no root)."""
    if input_root is not None:
        absolute = (Path(os.path.abspath(input_path)), Path(os.path.abspath(input_root)))
        for path, root in ((input_path, input_root), absolute, (input_path.resolve(), input_root.resolve())):
            try:
                return path.relative_to(root)
            except ValueError:
                continue
    return Path(input_path.name)


def check_output_format(output: Path, formats: tuple[str, ...] | None) -> str:
    """The format of a ``-o`` file (by its suffix); ConfigError when ``--format`` was
    given and leaves that format out (``-o x.csv --format mid`` would write only x.mid)."""
    own_format = FORMAT_BY_SUFFIX[output.suffix.lower()]
    if formats is not None and own_format not in formats:
        raise ConfigError(f"-o {output} is a {own_format} file but --format {','.join(formats)} leaves "
                          f"{own_format} out; add it to --format or give -o a name ending in the format you want")
    return own_format


def output_paths(
    input_path: Path,
    formats: tuple[str, ...] | None,
    output: Path | None = None,
    output_dir: Path | None = None,
    input_root: Path | None = None,
) -> dict[str, Path]:
    """Output path for each format, following the rule in the module docstring.

    Args:
        input_path: the audio file being transcribed.
        formats: formats from :func:`parse_formats`, or None when ``--format`` was not
            given explicitly.
        output: the ``-o`` value, a file or a directory.
        output_dir: the ``--output-dir`` value.
        input_root: the folder the input was found in when a folder was given, so that
            its tree is mirrored; None for inputs named one by one.

    Returns ``{format: path}`` in the order of ``formats``.
    Raises ConfigError for ``-o`` together with ``--output-dir``, an unknown format, a
    ``-o`` file whose own format ``--format`` leaves out, or an output that would replace
    the input file.
    """
    input_path = Path(input_path)
    if output is not None and output_dir is not None:
        raise ConfigError("give either -o/--output or --output-dir, not both")
    if formats is not None:
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or not formats:
            raise ConfigError(f"unknown output format(s) {unknown}; choose from {', '.join(FORMATS)}")

    if output is not None and output_is_file(Path(output)):
        output = Path(output)
        own_format = check_output_format(output, formats)
        chosen = formats if formats is not None else (own_format,)
        paths = {
            fmt: output if fmt == own_format else output.with_suffix("." + fmt) for fmt in chosen
        }
    else:
        chosen = formats if formats is not None else DEFAULT_FORMATS
        folder = output if output is not None else output_dir
        if folder is None:
            paths = {fmt: input_path.with_suffix("." + fmt) for fmt in chosen}
        else:
            relative = relative_stem(input_path, input_root)
            paths = {fmt: Path(folder) / relative.with_suffix("." + fmt) for fmt in chosen}

    for path in paths.values():
        if path == input_path or (path.exists() and path.resolve() == input_path.resolve()):
            raise ConfigError(f"output {path} would replace the input file")
    return paths


def write_outputs(
    transcription: Transcription,
    paths: dict[str, Path],
    overwrite: bool,
    reference: list[Note] | None = None,
) -> list[Path]:
    """Write ``transcription`` once per ``{format: path}`` and return the paths written.

    Every target is checked first: if any exists (without ``overwrite``) or is a
    directory, OutputError is raised and nothing is written. ``reference`` notes are
    drawn as outlines in the piano roll.
    """
    from amtcli.writers.csv import write_csv
    from amtcli.writers.midi import write_midi
    from amtcli.writers.pianoroll import write_pianoroll

    unknown = [fmt for fmt in paths if fmt not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown output format(s) {unknown}; choose from {', '.join(FORMATS)}")
    for path in paths.values():
        if Path(path).is_dir():
            raise OutputError(f"{path} is a directory; give a file name or use --output-dir")
        if Path(path).exists() and not overwrite:
            raise OutputError(f"{path} exists; pass --overwrite to replace it")

    written: list[Path] = []
    for fmt, path in paths.items():
        if fmt == "mid":
            write_midi(transcription, path, overwrite=overwrite)
        elif fmt == "csv":
            write_csv(transcription, path, overwrite=overwrite)
        else:
            write_pianoroll(transcription, path, reference=reference, overwrite=overwrite)
        written.append(Path(path))
    return written
