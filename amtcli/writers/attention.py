"""Seq2seq attention maps -> PNG (decoder step vs encoder position), one per window."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amtcli.atomic import atomic_path


def write_attention_png(weights: np.ndarray, tokens: list[int], path: Path, window_start_s: float,
                        seconds_per_position: float, overwrite: bool = False) -> Path:
    """Plot ``weights`` (n_tokens, n_positions) with encoder time in seconds on x and the
    decoder step on y (note events are marked on the right axis). Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from amtcli.decoding.tokens import token_kind

    n_tokens, n_positions = weights.shape if weights.ndim == 2 else (0, 0)    # (0, n_positions): no token
    fig = Figure(figsize=(8, max(3.0, min(12.0, 2 + n_tokens / 30))))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    extent = (window_start_s, window_start_s + max(n_positions, 1) * seconds_per_position, max(n_tokens, 1) - 0.5,
              -0.5)
    ax.imshow(weights if weights.size else np.zeros((1, max(n_positions, 1))), aspect="auto", cmap="magma",
              extent=extent,
              interpolation="nearest", vmin=0.0)
    ax.set_xlabel("encoder time (s)")
    ax.set_ylabel("decoder step")
    onsets = sum(token_kind(t) == "on" for t in tokens)
    ax.set_title(f"attention, window at {window_start_s:.1f} s: {n_tokens} tokens, {onsets} note-ons")
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
