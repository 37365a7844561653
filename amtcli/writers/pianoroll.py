"""Transcription -> piano-roll PNG (matplotlib, Agg canvas, no pyplot)."""

from __future__ import annotations

import os
from pathlib import Path

from amtcli.atomic import atomic_path
from amtcli.instruments import program_name
from amtcli.types import PIANO_LOW, N_KEYS, Note, Transcription

DPI = 100
#: Legend label for notes whose instrument is unknown (program None).
UNKNOWN_LABEL = "notes"
#: Colour of the reference outlines.
REFERENCE_COLOUR = "black"


def _note_name(pitch: int) -> str:
    import pretty_midi

    return pretty_midi.note_number_to_name(int(pitch))


def _pitch_ticks(low: int, high: int) -> list[int]:
    """Every pitch when the range is small, otherwise every C (MIDI multiples of 12)."""
    if high - low <= 24:
        return list(range(low, high + 1))
    return [p for p in range(low, high + 1) if p % 12 == 0]


def _bars_by_pitch(notes) -> dict[int, list[tuple[float, float]]]:
    """Group notes into ``{pitch: [(onset_s, duration_s), ...]}`` for ``broken_barh``."""
    bars: dict[int, list[tuple[float, float]]] = {}
    for note in notes:
        bars.setdefault(int(note.pitch), []).append((note.onset_s, note.duration_s))
    return bars


def write_pianoroll(
    transcription: Transcription,
    path: str | os.PathLike,
    reference: list[Note] | None = None,
    overwrite: bool = False,
    title: str | None = None,
) -> None:
    """Draw the notes as a piano roll and save it as a PNG, atomically.

    x is time in seconds (0 to the end of the audio or the last note), y is pitch with
    note names (``C4`` = MIDI 60) on the ticks. Each instrument (program) gets one filled
    colour and a legend entry. ``reference`` notes, when given, are drawn on top as
    black outlined boxes, so a correct prediction shows as a filled box inside an
    outline. ``title`` defaults to the file name of ``transcription.source``.

    The figure is rendered with an Agg canvas attached to a standalone
    ``matplotlib.figure.Figure``: no display is needed and pyplot state is untouched.

    Raises OutputError if ``path`` exists and ``overwrite`` is False.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    notes = list(transcription.notes)
    reference = list(reference or [])
    everything = notes + reference
    if everything:
        low = min(n.pitch for n in everything) - 1
        high = max(n.pitch for n in everything) + 1
    else:
        low, high = PIANO_LOW, PIANO_LOW + N_KEYS - 1
    end_s = max([transcription.duration_s] + [n.offset_s for n in everything])
    end_s = end_s if end_s > 0 else 1.0

    width_in = min(max(8.0, 0.25 * end_s), 40.0)
    height_in = min(max(4.0, 0.12 * (high - low + 1)), 16.0)
    figure = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)

    programs = sorted({n.program for n in notes}, key=lambda p: (p is not None, p or 0))
    colours = {program: f"C{i % 10}" for i, program in enumerate(programs)}
    handles = []
    for program in programs:
        for pitch, bars in _bars_by_pitch(n for n in notes if n.program == program).items():
            axes.broken_barh(
                bars, (pitch - 0.4, 0.8), facecolors=colours[program], alpha=0.8, zorder=2
            )
        label = program_name(program) or UNKNOWN_LABEL
        handles.append(Patch(facecolor=colours[program], alpha=0.8, label=label))
    if reference:
        for pitch, bars in _bars_by_pitch(reference).items():
            axes.broken_barh(
                bars,
                (pitch - 0.45, 0.9),
                facecolors="none",
                edgecolors=REFERENCE_COLOUR,
                linewidth=0.8,
                zorder=3,
            )
        handles.append(Patch(facecolor="none", edgecolor=REFERENCE_COLOUR, label="reference"))

    axes.set_xlim(0.0, end_s)
    axes.set_ylim(low - 0.5, high + 0.5)
    ticks = _pitch_ticks(low, high)
    axes.set_yticks(ticks)
    axes.set_yticklabels([_note_name(p) for p in ticks])
    axes.set_xlabel("time (s)")
    axes.set_ylabel("pitch")
    axes.grid(alpha=0.3)
    if handles:
        axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    if title is None and transcription.source:
        title = Path(transcription.source).name
    if title:
        axes.set_title(title)
    figure.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
