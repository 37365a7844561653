"""The ``amtcli`` command line. Thin: parse flags, call a command module, map errors
to one line and an exit code. Heavy libraries are imported inside commands so that
``amtcli --help`` answers instantly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from amtcli import __version__
from amtcli.registry import DEFAULT_MODEL

app = typer.Typer(
    name="amtcli",
    help="Automatic music transcription: audio in, notes out (MIDI, CSV, piano roll).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="List, inspect, download and verify transcription models.", no_args_is_help=True)
data_app = typer.Typer(help="Make and inspect training datasets.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    _console(stderr=True).print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _raise_terminated(signum, frame) -> None:
    from amtcli.errors import Terminated

    raise Terminated()


def _run(func, *args, **kwargs) -> None:
    """Call a command; AmtError becomes one line on stderr and exit code 2. Ctrl-C
    (exit 130) and SIGTERM (exit 143) unwind the same way: finished outputs stay,
    partial ones are removed, one line says so."""
    import signal
    import threading

    from amtcli.errors import AmtError, Terminated

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code = func(*args, **kwargs)
    except AmtError as exc:
        _fail(str(exc))
    except Terminated:
        _fail("terminated (SIGTERM); finished outputs are complete, nothing half-written was left", 143)
    except KeyboardInterrupt:
        _fail("interrupted; finished outputs are complete, nothing half-written was left", 130)
    raise typer.Exit(code or 0)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"amtcli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Automatic music transcription: audio in, notes out."""


@app.command()
def transcribe(
    inputs: list[Path] = typer.Argument(..., help="Audio files and/or folders (wav, flac, ogg, mp3)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (one input) or folder."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", help="Folder for outputs; mirrors input folders."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="Model name, checkpoint folder or hf://ORG/REPO@REV."),
    formats: Optional[str] = typer.Option(None, "--format", "-f", help="mid,csv,png or all (default: from -o, else mid)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Search folders recursively."),
    skip_existing: bool = typer.Option(False, "--skip-existing", help="Resume: skip inputs whose outputs all exist, write only the missing outputs of the others."),
    onset_threshold: Optional[float] = typer.Option(
        None, help="Onset probability that starts or re-attacks a note (default: tuned per model; the "
                   "bundled cnn and onf start notes where frames rise and use it only for re-attacks)."),
    frame_threshold: Optional[float] = typer.Option(
        None, help="Frame probability that keeps a note sounding (default: tuned per model)."),
    onset_support: Optional[float] = typer.Option(
        None, "--onset-support", help="Models with an onset head that start notes where frames rise (the bundled "
                                      "cnn and onf): onset probability a note that fades in needs within 60 ms "
                                      "of its start (0: off; default: tuned per model)."),
    beam_width: Optional[int] = typer.Option(
        None, "--beam-width", help="CTC and seq2seq models: beam width (1 = greedy; default from the checkpoint)."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Files decoded and resampled ahead in background threads."),
    attention_png: Optional[Path] = typer.Option(
        None, "--attention-png", help="Seq2seq models: write each window's attention map into this folder."),
    shard: Optional[str] = typer.Option(
        None, "--shard", help="K/N: transcribe only part K (from 0) of N; N processes together do every file once."),
    ray: Optional[str] = typer.Option(
        None, "--ray", help="Run on Ray workers: local (start Ray here), auto (the joined cluster) or ray://HOST:PORT. "
                            "Needs pip install 'amtcli[ray]'."),
    ray_workers: Optional[int] = typer.Option(
        None, "--ray-workers", help="Ray workers, each holding the model (default: fill the cluster)."),
    ray_threads: Optional[int] = typer.Option(
        None, "--ray-threads", help="CPU threads per Ray worker (default 1; with --device cuda, one GPU each)."),
) -> None:
    """Transcribe audio files or folders to MIDI, CSV note lists and piano-roll PNGs."""
    from amtcli.commands.transcribe import TranscribeRequest, run_transcribe
    from amtcli.errors import AmtError
    from amtcli.sharding import parse_shard
    from amtcli.writers.naming import parse_formats

    try:
        request = TranscribeRequest(
            inputs=tuple(inputs), output=output, output_dir=output_dir, model=model,
            formats=parse_formats(formats) if formats else None, overwrite=overwrite, device=device,
            recursive=recursive, skip_existing=skip_existing, onset_threshold=onset_threshold,
            frame_threshold=frame_threshold, onset_support=onset_support, beam_width=beam_width, jobs=jobs, attention_png=attention_png,
            shard=parse_shard(shard) if shard is not None else None, ray=ray, ray_workers=ray_workers,
            ray_threads=ray_threads,
        )
    except AmtError as exc:
        _fail(str(exc))
    _run(run_transcribe, request, _console())


@app.command("eval")
def evaluate(
    reference: Optional[Path] = typer.Argument(None, help="Reference file or folder (MusicNet CSV, CSV, MIDI)."),
    estimate: Optional[Path] = typer.Argument(None, help="Estimate file or folder, paired with the reference by stem."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Transcribe --dataset with this model, then score."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="MusicNet-layout dataset to transcribe and score."),
    split: Optional[str] = typer.Option(None, "--split", show_default=False,
                                        help="Split of --dataset: train, validation or test (default: test)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Score only the first N recordings of the split."),
    png_dir: Optional[Path] = typer.Option(None, "--png-dir", help="Write prediction-over-reference piano rolls here."),
    device: Optional[str] = typer.Option(None, "--device", show_default=False,
                                         help="auto, cpu or cuda, with --model (default: auto)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores as JSON."),
    by_instrument: bool = typer.Option(False, "--by-instrument", help="Also score each instrument separately."),
    errors: bool = typer.Option(False, "--errors",
                                help="Also count the unmatched notes by class (harmonic, split, timing, ...)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing JSON / PNG files."),
) -> None:
    """Score transcriptions against references with mir_eval (onset, onset+offset, frame).

    Either REFERENCE ESTIMATE (files or folders), or --model M --dataset DIR [--split test].
    """
    from rich.markup import escape

    from amtcli.commands.evaluate import print_errors, print_results, score_model, score_paths, write_json
    from amtcli.errors import AmtError

    use_model = model is not None or dataset is not None
    if use_model and (model is None or dataset is None or reference is not None):
        _fail("give --model and --dataset together, without REFERENCE/ESTIMATE")
    if not use_model and (reference is None or estimate is None):
        _fail("give REFERENCE and ESTIMATE (files or folders), or --model M --dataset DIR")
    if not use_model:
        model_only = [flag for flag, given in (("--limit", limit is not None), ("--png-dir", png_dir is not None),
                                               ("--split", split is not None), ("--device", device is not None))
                      if given]
        if model_only:
            verb = "applies" if len(model_only) == 1 else "apply"
            _fail(f"{', '.join(model_only)} {verb} only with --model and --dataset (which transcribe first); "
                  "REFERENCE ESTIMATE scores existing files")
    if limit is not None and limit < 1:
        _fail(f"--limit must be at least 1, got {limit}")
    if json_out is not None and not overwrite and (json_out.exists() or json_out.is_symlink()):
        _fail(f"{json_out} exists; pass --overwrite to replace it")
    console = _console()
    try:
        if use_model:
            report = score_model(model, dataset, split or "test", device or "auto", by_instrument, png_dir,
                                 overwrite, limit, console, errors)
        else:
            report = score_paths(reference, estimate, by_instrument, errors)
        for name in report.unpaired:
            scored = " (scored as all missed)" if name.startswith("reference only") and not use_model else ""
            console.print(f"[yellow]unpaired[/yellow] {escape(name)}{scored}", highlight=False, soft_wrap=True)
        if report.unlabelled:
            shown = ", ".join(report.unlabelled[:3]) + (", ..." if len(report.unlabelled) > 3 else "")
            console.print(f"[yellow]note[/yellow] {len(report.unlabelled)} estimate(s) have no instrument labels "
                          f"({shown}): scored with instruments pooled; --by-instrument needs labelled estimates",
                          highlight=False, soft_wrap=True)
        for line in report.left_out:
            console.print(f"[yellow]note[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
        for line in report.failed:
            _console(stderr=True).print(f"[red]error:[/red] {escape(line)}", soft_wrap=True)
        if report.results:
            print_results(report.results, console)
            print_errors(report.results, console)
        if json_out is not None:
            write_json(report.results, json_out, overwrite)
    except AmtError as exc:
        _fail(str(exc))
    missing_estimates = [n for n in report.unpaired if n.startswith("reference only")]
    if report.failed or (missing_estimates and not use_model):
        raise typer.Exit(1)


@app.command()
def train(
    recipe: Path = typer.Option(..., "--recipe", help="Training recipe (TOML), e.g. models/onf/recipe.toml."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="MusicNet-layout dataset (overrides the recipe)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Folder for checkpoints and metrics (default runs/NAME)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Total optimizer steps (overrides the recipe)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from RUN_DIR/last if present."),
) -> None:
    """Train a model from a recipe; under torchrun, scales out with DistributedDataParallel."""
    from amtcli.training.config import load_recipe
    from amtcli.training.loop import train as run_training

    def go() -> int:
        overrides = {"data": {"dataset": str(dataset) if dataset else None}, "optim": {"steps": steps}}
        config = load_recipe(recipe, overrides)
        best = run_training(config, run_dir or Path("runs") / config.name, resume=resume, console=_console())
        if os.environ.get("RANK", "0") == "0":
            _console().print(f"best checkpoint: {best}")
        return 0

    _run(go)


@models_app.command("list")
def models_list() -> None:
    """List the registered models: family, bundled / cached / download needed, headline metrics."""
    from amtcli.commands.models import run_list

    _run(run_list, _console())


@models_app.command("info")
def models_info(
    name: str = typer.Argument(..., help="Model name, checkpoint folder or hf://ORG/REPO[@REV]."),
) -> None:
    """Show a model's registry facts and its model card (README.md)."""
    from amtcli.commands.models import run_info

    _run(run_info, name, _console())


@models_app.command("download")
def models_download(
    name: str = typer.Argument(..., help="Model name, 'all', or hf://ORG/REPO[@REV]."),
) -> None:
    """Fetch models into the Hugging Face cache, verified by sha256, for offline use."""
    from amtcli.commands.models import run_download

    _run(run_download, name, _console())


@models_app.command("verify")
def models_verify() -> None:
    """Check every bundled and cached model file against the registry (exit 1 on a mismatch)."""
    from amtcli.commands.models import run_verify

    _run(run_verify, _console())


from amtcli.datasets.recipe_files import bundled_recipes  # noqa: E402  (standard library only)


@data_app.command("synth")
def data_synth(
    out_dir: Path = typer.Argument(..., help="Output folder (MusicNet layout)."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help=f"Synthesis recipe: a TOML file or a bundled name ({', '.join(bundled_recipes())})."),
    hours: Optional[float] = typer.Option(None, "--hours", help="Scale the recipe to about this many hours."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives identical labels."),
    jobs: int = typer.Option(2, "--jobs", "-j", help="Parallel render workers."),
) -> None:
    """Render symbolic music into a MusicNet-layout training dataset."""
    from amtcli.commands.data import run_synth

    _run(run_synth, out_dir, recipe, hours, seed, jobs)


@data_app.command("stats")
def data_stats(dataset: Path = typer.Argument(..., help="A MusicNet-layout dataset folder.")) -> None:
    """Print hours, notes, instruments, pitches and polyphony of a dataset."""
    from amtcli.commands.data import run_stats

    _run(run_stats, dataset)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. A usage error (unknown option or command, missing
    argument, bad value) is one line on stderr that names the command's ``--help``,
    exit code 2; help, exit codes and Ctrl-C are otherwise as typer gives them."""
    import sys

    try:
        code = app(args=argv, prog_name="amtcli", standalone_mode=False)
    except typer.Abort:
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:
        if not (hasattr(exc, "exit_code") and hasattr(exc, "format_message") and hasattr(exc, "show")):
            raise                                     # not a click / typer usage exception
        if type(exc).__name__ == "NoArgsIsHelpError" or not hasattr(exc, "ctx"):
            if exc.format_message().strip():          # bare ``amtcli``: typer printed the help already
                exc.show()
            sys.exit(exc.exit_code)
        where = exc.ctx.command_path if exc.ctx is not None else "amtcli"
        message = " ".join(exc.format_message().split())
        print(f"error: {message} (see '{where} --help')", file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)

if __name__ == "__main__":
    main()
