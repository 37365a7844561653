"""Implementations of the CLI commands, imported lazily by :mod:`amtcli.cli`."""
