"""amtcli: automatic music transcription from the command line.

Audio in, notes out. The package is organised as one module per stage; see
``README.md`` for the command-line tool and ``amtcli.inference.transcribe`` for the
library entry point.
"""

__version__ = "0.1.0"
