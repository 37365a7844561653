"""``amtcli transcribe``: files and folders in, MIDI / CSV / PNG out.

Every input is handled on its own: a bad file is reported in one line and the
batch goes on; the exit code is 1 if any file failed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from amtcli.audio import AUDIO_SUFFIXES
from amtcli.errors import AmtError, ConfigError


@dataclass(frozen=True)
class TranscribeRequest:
    """Everything the command was asked to do (one field per CLI flag)."""

    inputs: tuple[Path, ...]
    output: Path | None
    output_dir: Path | None
    model: str
    formats: tuple[str, ...] | None
    overwrite: bool
    device: str
    recursive: bool
    skip_existing: bool
    onset_threshold: float | None
    frame_threshold: float | None


def collect_inputs(inputs: tuple[Path, ...], recursive: bool) -> list[tuple[Path, Path | None]]:
    """(audio file, input root or None) for every file named or found in a named folder.

    A folder contributes the audio files directly inside it (with ``recursive``, the
    whole tree), sorted. Named files are kept as given, even with an unknown suffix, so
    that the loader can report them.
    """
    found: list[tuple[Path, Path | None]] = []
    for item in inputs:
        if item.is_dir() and item.suffix.lower() not in AUDIO_SUFFIXES:
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in item.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            found.extend((p, item) for p in files)
        else:
            found.append((item, None))
    return found


def run_transcribe(request: TranscribeRequest, console) -> int:
    """Transcribe every input; print one line per file and a summary. Returns the exit code."""
    from amtcli.audio import load_audio
    from amtcli.checkpoint import load_checkpoint
    from amtcli.inference import pick_device, transcribe
    from amtcli.registry import resolve_model
    from amtcli.writers.naming import output_is_file, output_paths, write_outputs

    files = collect_inputs(request.inputs, request.recursive)
    if not files:
        raise ConfigError("no audio files found in the given inputs (wav, flac, ogg, mp3)")
    if request.output is not None and output_is_file(request.output) and len(files) > 1:
        raise ConfigError(f"-o {request.output} names one file but there are {len(files)} inputs; use -o DIR")
    device = pick_device(request.device)
    name, folder = resolve_model(request.model)
    model = load_checkpoint(folder, device, name=name)
    overrides = {"onset_threshold": request.onset_threshold, "frame_threshold": request.frame_threshold}
    options = replace(model.decode, **{k: v for k, v in overrides.items() if v is not None})

    failures = 0
    total_audio_s = 0.0
    total_notes = 0
    started = time.monotonic()
    for path, root in files:
        try:
            targets = output_paths(path, request.formats, request.output, request.output_dir, root)
            if request.skip_existing and all(p.exists() for p in targets.values()):
                console.print(f"[dim]skip[/dim] {path} (outputs exist)")
                continue
            audio = load_audio(path, model.features.sample_rate)
            result = transcribe(model, audio, options)
            written = write_outputs(result, targets, request.overwrite)
        except AmtError as exc:
            failures += 1
            console.print(f"[red]error[/red] {exc}", highlight=False)
            continue
        total_audio_s += result.duration_s
        total_notes += len(result.notes)
        console.print(
            f"[green]ok[/green] {path}: {len(result.notes)} notes -> {', '.join(str(p) for p in written)}",
            highlight=False,
        )
    elapsed = time.monotonic() - started
    if len(files) > 1 or failures:
        speed = f", {total_audio_s / elapsed:.0f}x real time" if elapsed > 0 and total_audio_s else ""
        console.print(
            f"{len(files) - failures}/{len(files)} files, {total_audio_s / 60:.1f} min of audio, "
            f"{total_notes} notes, {failures} failed, {elapsed:.1f} s{speed}"
        )
    return 1 if failures else 0
