"""``amtcli data synth`` and ``amtcli data stats``: build and describe training corpora."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def run_synth(out_dir: Path, recipe: Path | None, hours: float | None, seed: int, jobs: int) -> int:
    """Render a MusicNet-layout corpus into ``out_dir`` (resuming a previous run).

    Args:
        out_dir: output folder (created; finished items are kept and skipped).
        recipe: recipe TOML, or None for the packaged default.
        hours: total hours overriding the recipe's, or None.
        seed: run seed; the same seed gives byte-identical labels.
        jobs: worker processes.

    Returns 0 when every planned item exists, 1 if some item failed to render.
    Raises ConfigError / DataError for a bad recipe or a missing soundfont or FluidSynth.
    """
    from amtcli.datasets.synth import load_recipe, recipe_with_hours, synthesize
    from amtcli.errors import ConfigError

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file, not a folder; give a new or existing folder for the corpus")
    console = Console()
    plan = recipe_with_hours(load_recipe(recipe), hours)
    report = synthesize(Path(out_dir), plan, seed=seed, jobs=jobs, console=console)
    console.print(
        f"{report.rendered} rendered, {report.skipped} already there, {len(report.failed)} failed, "
        f"{len(report.skipped_sources)} sources skipped; {report.elapsed_s / 60:.1f} min -> {out_dir}"
    )
    return 1 if report.failed else 0


def run_stats(dataset_dir: Path) -> int:
    """Print hours, notes, polyphony, instrument and pitch histograms of a dataset. An item
    whose audio or labels cannot be read is reported in one line and left out of the
    numbers. Returns 0, or 1 if any item was left out."""
    from amtcli.datasets.stats import dataset_stats, octave_histogram

    console = Console()
    stats = dataset_stats(Path(dataset_dir), skip_bad=True)
    for line in stats.skipped:
        Console(stderr=True).print(f"[red]error:[/red] {escape(line)} (left out of the numbers)", highlight=False,
                                   soft_wrap=True)
    table = Table(title=str(dataset_dir))
    for column in ("split", "items", "hours", "notes", "mean polyphony", "max polyphony"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for name, s in stats.splits.items():
        table.add_row(name, str(s.items), f"{s.hours:.2f}", f"{s.notes:,}", f"{s.mean_polyphony:.2f}", str(s.max_polyphony))
    console.print(table)
    total = stats.total
    instruments = Table(title="instruments")
    instruments.add_column("instrument")
    instruments.add_column("notes", justify="right")
    instruments.add_column("share", justify="right")
    for name, count in total.instruments.items():
        instruments.add_row(name, f"{count:,}", f"{count / max(total.notes, 1):.1%}")
    console.print(instruments)
    pitches = Table(title="pitches")
    pitches.add_column("octave")
    pitches.add_column("notes", justify="right")
    for label, count in octave_histogram(total.pitches):
        pitches.add_row(label, f"{count:,}")
    console.print(pitches)
    return 1 if stats.skipped else 0
