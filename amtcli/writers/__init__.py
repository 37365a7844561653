"""Writers: a Transcription to MIDI, CSV or a piano-roll PNG, plus the output-naming rule.

Writers only write; every one writes atomically and refuses to overwrite unless told.
Heavy libraries (pretty_midi, matplotlib) are imported inside the writer functions, so
importing this package is cheap.
"""

from amtcli.writers.csv import write_csv
from amtcli.writers.midi import write_midi
from amtcli.writers.naming import FORMATS, output_paths, parse_formats, write_outputs
from amtcli.writers.pianoroll import write_pianoroll

__all__ = [
    "FORMATS",
    "output_paths",
    "parse_formats",
    "write_csv",
    "write_midi",
    "write_outputs",
    "write_pianoroll",
]
