"""Where the packaged synthesis recipes live and how a ``--recipe`` value names one.

Only the standard library, so the CLI can list the names without importing the synthesizer.
"""

from __future__ import annotations

from pathlib import Path

RECIPES_DIR = Path(__file__).parent / "recipes"
DEFAULT_RECIPE = RECIPES_DIR / "default.toml"


def bundled_recipes() -> list[str]:
    """Names of the synthesis recipes shipped with the package (``--recipe NAME``)."""
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def resolve_recipe(path: str | Path | None) -> Path:
    """The recipe file for ``path``: the default when None, a bundled recipe when ``path``
    is one of :func:`bundled_recipes` and no such file exists, else ``path`` itself."""
    if path is None:
        return DEFAULT_RECIPE
    path = Path(path)
    if not path.is_file() and path.suffix == "" and (RECIPES_DIR / f"{path.name}.toml").is_file():
        return RECIPES_DIR / f"{path.name}.toml"
    return path
