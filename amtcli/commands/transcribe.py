"""``amtcli transcribe``: files and folders in, MIDI / CSV / PNG out.

Every input is handled on its own: a bad file is reported in one line and the
batch goes on; the exit code is 1 if any file failed. Audio is streamed in blocks,
so memory stays flat with recording length; ``--jobs`` background threads decode and
resample the next files while the model runs, and windows from several files share
model batches (:mod:`amtcli.batching`). Outputs are written with a temporary file
and a rename, so an interrupted run leaves finished files complete and nothing
half-written; ``--skip-existing`` resumes it. With ``--ray`` the files go to Ray workers
instead (:mod:`amtcli.ray_backend`); planning, naming and reporting stay here.
"""

from __future__ import annotations

import os
import time
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from rich.markup import escape

from amtcli.audio import AUDIO_SUFFIXES
from amtcli.errors import AmtError, ConfigError, OutputError
from amtcli.file_jobs import FileJob, FileOutcome, write_job_outputs


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
    beam_width: int | None = None
    onset_support: float | None = None
    jobs: int = 1
    batch_windows: int = 4  #: windows per model call: 4 keeps peak memory near a 10 s file's
    attention_png: Path | None = None
    shard: tuple[int, int] | None = None   #: (K, N): transcribe only part K of N (amtcli.sharding)
    ray: str | None = None                 #: Ray address (local, auto, ray://HOST:PORT): run on Ray workers
    ray_workers: int | None = None         #: Ray workers to start (default: fill the cluster)
    ray_threads: int | None = None         #: torch CPU threads per Ray worker (default 1)


def collect_inputs(inputs: tuple[Path, ...], recursive: bool) -> list[tuple[Path, Path | None]]:
    """(audio file, input root or None) for every file named or found in a named folder.

    A folder contributes the audio files directly inside it (with ``recursive``, the
    whole tree), sorted. Named files are kept as given, even with an unknown suffix, so
    that the loader can report them. Named files have no root (their outputs take just
    their name); a folder is the root of the files found in it. When two files would get
    outputs of one name (named ``a/mix.wav`` and ``b/mix.wav``, or the ``mix.wav`` of two
    named folders ``a`` and ``b``), their root moves up to the folder that holds them
    both (for a found file, the one that holds its named folder), so their outputs keep
    apart: ``a/mix.*``, ``b/mix.*``. A file listed twice is kept once.
    """
    found: list[tuple[Path, Path | None]] = []
    for item in inputs:
        if item.is_dir() and item.suffix.lower() not in AUDIO_SUFFIXES:
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in item.glob(pattern) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            found.extend((p, item) for p in files)
        else:
            found.append((item, None))
    seen: set[str] = set()
    unique = []
    for path, root in found:  # a file named twice (or also found in a named folder) runs once
        key = os.path.abspath(path)  # not resolve(): a symlink keeps its own name and place
        if key not in seen:
            seen.add(key)
            unique.append((path, root))
    found = unique
    from amtcli.writers.naming import relative_stem

    by_stem: dict[str, list[tuple[Path, Path | None]]] = {}
    for path, root in found:
        by_stem.setdefault(str(relative_stem(path, root).with_suffix("")), []).append((path, root))
    roots: dict[str, Path] = {}
    for members in by_stem.values():
        if len(members) > 1:  # only files whose outputs would share a name keep one more folder
            anchors = [os.path.dirname(os.path.abspath(root if root is not None else path))
                       for path, root in members]
            try:
                common = Path(os.path.commonpath(anchors))
            except ValueError:  # different drives: no common folder; the clash is refused later
                continue
            roots.update((os.path.abspath(path), common) for path, _ in members)
    found = [(path, roots.get(os.path.abspath(path), root)) for path, root in found]
    return found


def _open_ahead(paths: list[Path], sample_rate: int, jobs: int, warnings: dict | None = None):
    """Yield ``(index, stream | AmtError)`` in order; while one file is transcribed, the
    next ``jobs`` files are already opened and being decoded in background threads.
    ``warnings`` receives ``{index: line}`` for files that open with a warning (a file
    shorter than its header says)."""
    from collections import deque

    from amtcli.audio import AudioStream
    from amtcli.batching import ReadAhead

    pending: deque = deque()
    opened: list = []           # every reader, closed when the batch ends or is interrupted
    upcoming = iter(enumerate(paths))

    def open_next() -> None:
        opened[:] = [reader for reader in opened if reader.reading]   # finished ones hold nothing
        for index, path in upcoming:
            try:
                reader = ReadAhead(AudioStream(path, sample_rate))
                if reader.warning and warnings is not None:
                    warnings[index] = reader.warning
                opened.append(reader)
                pending.append((index, reader))
            except AmtError as exc:
                pending.append((index, exc))
            return

    try:
        for _ in range(jobs):
            open_next()
        while pending:
            item = pending.popleft()
            open_next()
            yield item
    finally:
        for reader in opened:
            reader.close()


def run_transcribe(request: TranscribeRequest, console, err_console=None) -> int:
    """Transcribe every input; print one line per file and a summary. Returns the exit code.

    ``ok`` lines and the summary go to ``console`` (stdout), in the order of the inputs;
    ``error: PATH: reason`` and ``warning: ...`` lines to ``err_console`` (stderr by
    default). Outputs are written the moment a file is done, whatever the order of
    the lines.
    """
    from rich.console import Console

    from amtcli.checkpoint import load_checkpoint
    from amtcli.inference import pick_device
    from amtcli.registry import resolve_model
    from amtcli.writers.naming import output_is_file, output_paths

    err_console = err_console or Console(stderr=True, highlight=False)
    check_output_option(request)
    check_decoding_values(request)
    if request.skip_existing and request.overwrite:
        raise ConfigError("--skip-existing keeps existing outputs and --overwrite replaces them; give one of them")
    files = collect_inputs(request.inputs, request.recursive)
    if not files:
        raise ConfigError("no audio files found in the given inputs (wav, flac, ogg, mp3)")
    n_inputs = len(files)
    if request.shard is not None:
        from amtcli.sharding import select_shard

        files = select_shard(files, *request.shard)
    if request.output is not None and output_is_file(request.output) and len(files) > 1:
        raise ConfigError(f"-o {request.output} names one file but there are {len(files)} inputs; use -o DIR")
    if request.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {request.jobs}")
    if request.attention_png is not None and request.attention_png.exists() and not request.attention_png.is_dir():
        raise ConfigError(f"--attention-png {request.attention_png} is a file; give a folder")
    check_ray_options(request)
    device = pick_device("cpu" if request.ray is not None else request.device)   # with Ray the workers run it
    name, folder = resolve_model(request.model)
    model = load_checkpoint(folder, device, name=name)
    overrides = {"onset_threshold": request.onset_threshold, "frame_threshold": request.frame_threshold,
                 "beam_width": request.beam_width, "onset_support": request.onset_support}
    check_decoding_flags(request, model)
    options = replace(model.decode, **{k: v for k, v in overrides.items() if v is not None})
    if request.attention_png is not None and getattr(model.module, "OUTPUT", "") != "tokens":
        raise ConfigError(f"--attention-png needs a seq2seq model; {request.model!r} has no attention")

    summary = BatchSummary(len(files))
    if request.shard is not None:
        summary.shard = f"shard {request.shard[0]}/{request.shard[1]}: {len(files)} of {n_inputs} files"
    todo: list[tuple[FileJob, Path | None, bool]] = []   # (job, attention map stem, overwrite maps)
    claimed: dict[Path, Path] = {}  # output file -> the input that writes it in this batch
    for path, root in files:
        try:
            targets = output_paths(path, request.formats, request.output, request.output_dir, root)
            for target in targets.values():
                other = claimed.get(target.resolve())
                if other is not None:
                    raise OutputError(f"{target} would also be written for {other}; rename {path}, or "
                                      "transcribe it in a separate command with its own -o or --output-dir")
            maps, maps_found = None, []
            if request.attention_png is not None:
                maps = attention_stem(request.attention_png, targets)
                other = claimed.get(maps.resolve())
                if other is not None:
                    raise OutputError(f"attention maps {maps}.window*.attention.png would also be written for "
                                      f"{other}; give {path} its own --attention-png folder")
                maps_found = [] if request.overwrite else existing_maps(maps)
                if maps_found and not request.skip_existing:
                    raise OutputError(f"{maps_found[0]} exists; pass --overwrite to replace it")
        except AmtError as exc:
            summary.failed += 1
            err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            continue
        claimed.update((target.resolve(), path) for target in targets.values())
        if maps is not None:
            claimed[maps.resolve()] = path
        maps_overwrite = request.overwrite
        if request.skip_existing:
            missing = {fmt: target for fmt, target in targets.items() if not target.exists()}
            if maps_found and len(maps_found) >= expected_map_count(path, model):
                maps = None                   # every window's map is there: not written again
            elif maps_found:
                maps_overwrite = True         # an interrupted run's maps: all written anew
            if not missing and maps is None:
                summary.skipped += 1
                console.print(f"[dim]skip[/dim] {escape(str(path))} (outputs exist)", soft_wrap=True)
                continue
            if len(missing) < len(targets):   # resume a file whose outputs were partly written
                written_now = ', '.join(str(t) for t in missing.values()) or 'its attention maps'
                console.print(f"[dim]resume[/dim] {escape(str(path))}: writing only {escape(written_now)}",
                              highlight=False, soft_wrap=True)
            targets = missing
        todo.append((FileJob.plan(len(todo), path, targets, request.overwrite), maps, maps_overwrite))

    if request.ray is not None:
        summary.backend = f"ray {request.ray}"
        outcomes = _ray_outcomes(request, [job for job, _, _ in todo])
    else:
        outcomes = _local_outcomes(model, options, request, todo)
    total_s = _audio_seconds([job.path for job, _, _ in todo]) if console.is_terminal else None
    with _progress(console) as progress:
        overall = progress.add_task("files", total=len(todo), hours=_hours_text(0.0, total_s))
        lines: dict[int, list[tuple[bool, str]]] = {}   # finished files' lines, printed in input order
        done_s = 0.0

        def show(index: int) -> None:
            for ok, text in lines.pop(index):
                (console if ok else err_console).print(text, highlight=False, soft_wrap=True)

        printed = 0
        try:
            with closing(outcomes):   # on Ctrl-C too: stop readers or workers before exiting
                for index, outcome in outcomes:
                    done_s += outcome.duration_s
                    progress.update(overall, advance=1, hours=_hours_text(done_s, total_s))
                    lines[index] = [_outcome_line(summary, todo[index][0], outcome)]
                    if outcome.warning:          # after the file's ok or error line
                        lines[index].append((False, f"[yellow]warning:[/yellow] {escape(outcome.warning)}"))
                    while printed in lines:
                        show(printed)
                        printed += 1
        finally:
            for index in sorted(lines):   # interrupted: what was written is still reported
                show(index)
    if len(files) > 1 or request.shard is not None or request.ray is not None:   # one file: its line says it all
        summary.print(console)
    return 1 if summary.failed else 0


def _local_outcomes(model, options, request: TranscribeRequest,
                    todo: list[tuple[FileJob, Path | None, bool]]) -> Iterator[tuple[int, FileOutcome]]:
    """Transcribe the jobs in this process (windows of several files share model batches);
    yield ``(index, outcome)`` in input order as each file's outputs are written."""
    from amtcli.batching import transcribe_stream

    warnings: dict[int, str] = {}
    loaded = _open_ahead([job.path for job, _, _ in todo], model.features.sample_rate, request.jobs, warnings)
    with closing(loaded):
        for index, result in transcribe_stream(model, loaded, options, request.batch_windows):
            job, maps, maps_overwrite = todo[index]
            outcome = write_job_outputs(result, job)
            if outcome.error is None and maps is not None:
                try:
                    maps_written = write_attention_maps(model, job.path, maps, maps_overwrite)
                    outcome = replace(outcome, written=outcome.written + tuple(maps_written))
                except AmtError as exc:
                    outcome = FileOutcome(error=str(exc))
            yield index, replace(outcome, warning=warnings.pop(index, None))


def _ray_outcomes(request: TranscribeRequest, jobs: list[FileJob]) -> Iterator[tuple[int, FileOutcome]]:
    """Run the jobs on Ray workers (:mod:`amtcli.ray_backend`) with absolute paths, and
    report them with the paths as the user gave them."""
    from amtcli.ray_backend import WorkerSpec, run_on_ray

    def absolute(job: FileJob) -> FileJob:
        return FileJob(job.index, Path(os.path.abspath(job.path)),
                       {fmt: Path(os.path.abspath(t)) for fmt, t in job.targets.items()}, job.overwrite,
                       {os.path.abspath(t): key for t, key in job.existing.items()})

    model_ref = os.path.abspath(request.model) if Path(request.model).exists() else request.model
    changed = (("onset_threshold", request.onset_threshold), ("frame_threshold", request.frame_threshold),
               ("beam_width", request.beam_width), ("onset_support", request.onset_support))
    spec = WorkerSpec(model_ref, _ray_device(request.device), request.ray_threads or 1,
                      tuple((name, value) for name, value in changed if value is not None), request.batch_windows)
    outcomes = run_on_ray([absolute(job) for job in jobs], spec, request.ray, request.ray_workers)
    try:
        for index, outcome in outcomes:
            job = jobs[index]
            if outcome.error is None:
                outcome = replace(outcome, written=tuple(job.targets.values()))
            else:
                outcome = replace(outcome, error=outcome.error.replace(os.path.abspath(job.path), str(job.path)))
            yield index, outcome
    finally:
        outcomes.close()


def _ray_device(device: str) -> str:
    """The workers' device for ``--device``: auto means cpu unless asked (the driver's
    machine cannot tell whether the cluster's nodes have GPUs)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")
    return "cuda" if device == "cuda" else "cpu"


def _outcome_line(summary: "BatchSummary", job: FileJob, outcome: FileOutcome) -> tuple[bool, str]:
    """Count one finished file in ``summary``; returns (ok, its ``ok`` or ``error:`` line)."""
    if outcome.error is not None:
        summary.failed += 1
        return False, f"[red]error:[/red] {escape(outcome.error)}"
    summary.add(outcome.duration_s, outcome.n_notes)
    notes = f"{outcome.n_notes} note{'' if outcome.n_notes == 1 else 's'}"
    return True, (f"[green]ok[/green] {escape(str(job.path))}: {notes} -> "
                  f"{escape(', '.join(str(p) for p in outcome.written))}")


def _audio_seconds(paths: list[Path]) -> float | None:
    """Total duration of ``paths`` from their headers (files that cannot be read count 0);
    None when there are none."""
    import soundfile

    total = 0.0
    for path in paths:
        try:
            info = soundfile.info(str(path))
            total += info.frames / info.samplerate
        except Exception:  # its own error line comes from the loader
            continue
    return total or None


def _hours_text(done_s: float, total_s: float | None) -> str:
    return f"{done_s / 3600:.2f}/{total_s / 3600:.2f} h of audio" if total_s else ""


def check_output_option(request: TranscribeRequest) -> None:
    """Usage errors of ``-o`` / ``--output-dir``, before any work: both given, or a ``-o``
    value that is neither an output file (``.mid``, ``.midi``, ``.csv``, ``.png``) nor
    a folder (an existing one, or a new name without a suffix)."""
    from amtcli.writers.naming import FORMAT_BY_SUFFIX, check_output_format

    if request.output is not None and request.output_dir is not None:
        raise ConfigError("give either -o/--output or --output-dir, not both")
    if request.output_dir is not None and request.output_dir.exists() and not request.output_dir.is_dir():
        raise ConfigError(f"--output-dir {request.output_dir} is a file; give a folder")
    output = request.output
    if output is None or output.is_dir():
        return
    suffix = output.suffix.lower()
    if not suffix and output.exists():
        raise ConfigError(f"-o {output} is an existing file without an output suffix; give a .mid, .csv or .png "
                          "file, or a folder")
    if suffix in AUDIO_SUFFIXES:
        raise ConfigError(f"-o {output} names an audio file; give a .mid, .csv or .png file or a folder")
    if suffix and suffix not in FORMAT_BY_SUFFIX:
        raise ConfigError(f"-o {output}: unknown output type {output.suffix!r}; give a .mid, .csv or .png "
                          "file, or a folder (create a folder whose name has a dot first)")
    if suffix:
        check_output_format(output, request.formats)


def check_ray_options(request: TranscribeRequest) -> None:
    """Usage errors of ``--ray`` and its flags, before any model loads: a bad address,
    Ray not installed (the error names the extra), ``--ray-workers`` / ``--ray-threads``
    without ``--ray`` or below 1, and ``--attention-png`` (local runs only)."""
    if request.ray is None:
        for flag, value in (("--ray-workers", request.ray_workers), ("--ray-threads", request.ray_threads)):
            if value is not None:
                raise ConfigError(f"{flag} applies to Ray runs; add --ray local, --ray auto or --ray ray://HOST:PORT")
        return
    from amtcli.ray_backend import check_address, import_ray

    check_address(request.ray)
    for flag, value in (("--ray-workers", request.ray_workers), ("--ray-threads", request.ray_threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if request.attention_png is not None:
        raise ConfigError("--attention-png is written by local runs only; run it without --ray")
    _ray_device(request.device)
    import_ray()


def check_decoding_values(request: TranscribeRequest) -> None:
    """Out-of-range decoding flags, named as the user typed them, before any model loads."""
    for flag, value in (("--onset-threshold", request.onset_threshold), ("--frame-threshold", request.frame_threshold)):
        if value is not None and not 0.0 < value < 1.0:
            raise ConfigError(f"{flag} must be between 0 and 1 (exclusive), got {value}")
    if request.beam_width is not None and request.beam_width < 1:
        raise ConfigError(f"--beam-width must be at least 1, got {request.beam_width}")
    if request.onset_support is not None and not 0.0 <= request.onset_support < 1.0:
        raise ConfigError(f"--onset-support must be at least 0 and below 1, got {request.onset_support}")


def check_decoding_flags(request: TranscribeRequest, model) -> None:
    """Refuse decoding flags the model does not use, instead of ignoring them: the onset
    threshold needs an onset head (``onf``, a ``cnn`` with ``onset_readout``), onset support
    one whose notes start where frames rise, the frame threshold frame or CTC outputs with
    a frame head (not ``seq2seq``), the beam width a CTC or seq2seq model."""
    from amtcli.inference import output_kind

    kind = output_kind(model)
    channels = getattr(model.module, "CHANNELS", ())
    uses = {
        "--onset-threshold": kind == "frames" and "onset" in channels,
        "--frame-threshold": kind in ("frames", "ctc"),
        "--beam-width": kind in ("ctc", "tokens"),
        "--onset-support": kind == "frames" and "onset" in channels and model.decode.note_start == "frame",
    }
    given = {"--onset-threshold": request.onset_threshold, "--frame-threshold": request.frame_threshold,
             "--beam-width": request.beam_width, "--onset-support": request.onset_support}
    for flag, value in given.items():
        if value is not None and not uses[flag]:
            users = {"--onset-threshold": "models with an onset head (onf, the bundled cnn)",
                     "--frame-threshold": "frame and CTC models (cnn, onf, ctc)",
                     "--beam-width": "ctc and seq2seq models",
                     "--onset-support": "models with an onset head that start notes where frames rise "
                                        "(the bundled cnn and onf)"}[flag]
            raise ConfigError(f"{flag} has no effect on {request.model!r} ({model.family} model); "
                              f"it applies to {users}")


def attention_stem(folder: Path, targets: dict[str, Path]) -> Path:
    """``folder/<stem>``: the attention maps of the input whose outputs are ``targets``
    are ``<stem>.window<NNN>.attention.png``, ``stem`` being that of its first output
    file. Two inputs of one batch that would share a stem are refused before anything is
    written (:func:`run_transcribe`)."""
    return folder / next(iter(targets.values())).stem


def existing_maps(stem: Path) -> list[Path]:
    """Attention maps already written for ``stem`` (see :func:`attention_stem`)."""
    import glob

    pattern = f"{glob.escape(stem.name)}.window*.attention.png"    # names may hold [ ] * ?
    return sorted(stem.parent.glob(pattern)) if stem.parent.is_dir() else []


def expected_map_count(path: Path, model) -> int:
    """How many attention maps a complete run writes for ``path`` (one per window), from
    the file's header; 0 when the header cannot be read (the loader reports that file)."""
    import soundfile

    from amtcli.inference import window_spec
    from amtcli.windowing import total_frames, window_count

    try:
        info = soundfile.info(str(path))
    except Exception:  # unreadable: its own error line comes from the loader
        return 0
    n_samples = int(round(info.frames * model.features.sample_rate / info.samplerate))
    spec = window_spec(model)
    return window_count(total_frames(n_samples, spec), spec)


def write_attention_maps(model, path: Path, stem: Path, overwrite: bool) -> list[Path]:
    """Decode each window of ``path`` again with attention kept and write
    ``<stem>.window<NNN>.attention.png`` per window (``stem`` from :func:`attention_stem`)."""
    import torch

    from amtcli.audio import load_audio
    from amtcli.inference import window_spec
    from amtcli.windowing import iter_windows
    from amtcli.writers.attention import write_attention_png

    from amtcli.errors import OutputError

    audio = load_audio(path, model.features.sample_rate)
    spec = window_spec(model)
    folder = stem.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}") from None
    seconds_per_position = model.module.config.memory_stride / model.features.frame_rate_hz
    written = []
    for index, window in enumerate(iter_windows(audio.samples, spec)):
        result = model.module.greedy(torch.from_numpy(window[None]).to(model.device), return_attention=True)[0]
        target = folder / f"{stem.name}.window{index:03d}.attention.png"
        start_s = index * spec.hop_frames / model.features.frame_rate_hz
        written.append(write_attention_png(result["attention"], result["tokens"], target, start_s,
                                           seconds_per_position, overwrite))
    return written


def _progress(console):
    """An overall progress bar (hidden when the console is not a terminal)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("transcribing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[hours]}"),
                    TimeElapsedColumn(), console=console, disable=not console.is_terminal, transient=True)


class BatchSummary:
    """Counts for the table printed after a batch."""

    def __init__(self, n_files: int):
        self.n_files = n_files
        self.done = self.failed = self.skipped = self.notes = 0
        self.audio_s = 0.0
        self.started = time.monotonic()
        self.shard = ""   #: "shard K/N: M of T files" when the batch is one part of several
        self.backend = ""  #: "ray ADDRESS" when Ray workers ran the batch

    def add(self, audio_s: float, notes: int) -> None:
        self.done += 1
        self.audio_s += audio_s
        self.notes += notes

    def print(self, console) -> None:
        from rich.table import Table

        elapsed = time.monotonic() - self.started
        table = Table(title="transcription summary", title_justify="left")
        for column in ("files", "done", "skipped", "failed", "audio (h)", "notes", "time (s)", "speed (x real time)"):
            table.add_column(column, justify="right")
        speed = f"{self.audio_s / elapsed:.0f}" if elapsed > 0 and self.audio_s else "-"
        table.add_row(str(self.n_files), str(self.done), str(self.skipped), str(self.failed),
                      f"{self.audio_s / 3600:.3f}", str(self.notes), f"{elapsed:.1f}", speed)
        console.print(table)
        console.print(f"{self.done}/{self.n_files} files transcribed, {self.skipped} skipped, {self.failed} failed"
                      + "".join(f" ({part})" for part in (self.shard, self.backend) if part), soft_wrap=True)
