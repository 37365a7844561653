"""Instrument names <-> General MIDI programs (0-based, as in MIDI files).

MusicNet labels use 1-based program codes; that conversion lives in
:mod:`amtcli.datasets.musicnet` and nowhere else.
"""

from __future__ import annotations

#: Short, lower-case names used in CSV note lists, mapped to 0-based GM programs.
PROGRAM_BY_NAME: dict[str, int] = {
    "piano": 0,
    "harpsichord": 6,
    "guitar": 24,
    "electric_guitar": 27,
    "violin": 40,
    "viola": 41,
    "cello": 42,
    "contrabass": 43,
    "choir": 52,
    "voice": 53,
    "trumpet": 56,
    "trombone": 57,
    "horn": 60,
    "alto_sax": 65,
    "saxophone": 65,
    "soprano_sax": 64,
    "tenor_sax": 66,
    "baritone_sax": 67,
    "oboe": 68,
    "bassoon": 70,
    "clarinet": 71,
    "flute": 73,
}

#: Preferred short name for each program that has one.
NAME_BY_PROGRAM: dict[int, str] = {}
for _name, _program in PROGRAM_BY_NAME.items():
    NAME_BY_PROGRAM.setdefault(_program, _name)


def program_name(program: int | None) -> str:
    """Short name for a 0-based GM program; ``""`` for None (instrument unknown)."""
    if program is None:
        return ""
    if program in NAME_BY_PROGRAM:
        return NAME_BY_PROGRAM[program]
    import pretty_midi

    return pretty_midi.program_to_instrument_name(program)


def parse_instrument(text: str) -> int | None:
    """Parse an instrument cell: a short name, a GM name or a 0-based program number.

    Returns None for an empty cell. Raises ValueError for anything else.
    """
    cell = text.strip()
    if not cell:
        return None
    if cell.lstrip("-").isdigit():
        program = int(cell)
        if not 0 <= program <= 127:
            raise ValueError(f"program {program} is outside 0..127")
        return program
    key = cell.lower().replace(" ", "_")
    if key in PROGRAM_BY_NAME:
        return PROGRAM_BY_NAME[key]
    import pretty_midi

    try:
        return pretty_midi.instrument_name_to_program(cell)
    except ValueError:
        raise ValueError(f"unknown instrument {cell!r}") from None
