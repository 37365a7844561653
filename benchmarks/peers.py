"""Peers side by side: Basic Pitch and Transkun next to amtcli's models, in one run.

Each peer is installed into its own virtual environment (under --venv-root, reused
on later runs), runs on every recording as its own command, and its MIDI output is
scored by the same code as ours (`amtcli.evaluation`, mir_eval underneath). Run by
hand, not in CI; needs the package index the first time:

    python benchmarks/peers.py --realdev ../shared/data/realdev --model onf --model cnn \
        --json benchmarks/results/peers-realdev.json
    python benchmarks/peers.py --dataset data/synth-v1 --split test --model none \
        --json benchmarks/results/peers-synthetic-test.json

Peers:
  basic-pitch  basic-pitch 0.4.0 without TensorFlow: its ONNX model under onnxruntime
  transkun     transkun (piano model) on the pinned CPU torch, setuptools<81 for its CLI,
               input converted to 16-bit WAV; slow (about 0.25x real time here)
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

PEERS = {
    "basic-pitch": {
        "install": [
            ["pip", "install", "--no-deps", "basic-pitch==0.4.0"],
            ["pip", "install", "onnxruntime", "librosa", "mir_eval", "pretty_midi", "resampy<0.4.3",
             "scikit-learn", "scipy", "typing-extensions", "numpy<2.3"],
        ],
        "check": "import basic_pitch, onnxruntime",
        "run": (
            "import sys\n"
            "from basic_pitch import ICASSP_2022_MODEL_PATH\n"
            "from basic_pitch.inference import predict\n"
            "_, midi, _ = predict(sys.argv[1], ICASSP_2022_MODEL_PATH)\n"
            "midi.write(sys.argv[2])\n"
        ),
    },
    "transkun": {
        "install": [
            ["pip", "install", "torch==2.13.0"],
            ["pip", "install", "transkun", "setuptools<81", "soundfile"],
        ],
        "check": "import transkun, soundfile",
        "run": (  # transkun reads 16-bit WAV only: convert first (timed with the rest)
            "import pathlib, subprocess, sys, tempfile, soundfile as sf\n"
            "cli = str(pathlib.Path(sys.executable).parent / 'transkun')\n"
            "data, rate = sf.read(sys.argv[1])\n"
            "with tempfile.NamedTemporaryFile(suffix='.wav') as tmp:\n"
            "    sf.write(tmp.name, data, rate, subtype='PCM_16')\n"
            "    sys.exit(subprocess.call([cli, tmp.name, sys.argv[2], '--device', 'cpu']))\n"
        ),
    },
}


def venv_python(root: Path, peer: str) -> Path:
    """Create (once) and return the Python of ``peer``'s virtual environment."""
    env = root / peer
    python = env / "bin" / "python"
    if python.exists() and subprocess.call([str(python), "-c", PEERS[peer]["check"]],
                                           stderr=subprocess.DEVNULL) == 0:
        return python
    subprocess.check_call([sys.executable, "-m", "venv", str(env)])
    for command in PEERS[peer]["install"]:
        subprocess.check_call([str(python), "-m", *command])
    return python


def run_peer(python: Path, peer: str, items, out_dir: Path) -> tuple[list[tuple[str, Path]], float]:
    """Transcribe every (name, audio, labels) item; returns ((name, midi), ...) and seconds."""
    script = out_dir / f"run_{peer}.py"
    script.write_text(PEERS[peer]["run"], encoding="utf-8")
    outputs, elapsed = [], 0.0
    for name, audio, _labels in items:
        midi = out_dir / f"{peer}-{name}.mid"
        started = time.perf_counter()
        done = subprocess.run([str(python), str(script), str(audio), str(midi)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        elapsed += time.perf_counter() - started
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{peer} failed on {audio}: {tail}")
        outputs.append((name, midi))
    return outputs, elapsed


def score_peer(peer: str, items, outputs, elapsed: float, audio_s: float) -> dict:
    from amtcli.evaluation import evaluate_notes, mean_result, token_metrics
    from amtcli.references import load_notes

    labels = {name: path for name, _audio, path in items}
    files, results = [], []
    for name, midi in outputs:
        reference, estimate = load_notes(labels[name]), load_notes(midi)
        results.append(evaluate_notes(reference, estimate, name=name, errors=True))
        files.append({**results[-1].as_dict(), "tokens": token_metrics(reference, estimate)})
    mean = mean_result(results).as_dict()
    mean["tokens"] = {key: sum(f["tokens"][key] for f in files) / len(files) for key in files[0]["tokens"]}
    return {"model": peer, "files": files, "mean": mean, "audio_s": audio_s, "transcribe_s": elapsed,
            "timing": "whole command per file, start-up included"}


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from accuracy import add_set_arguments, chosen_sets, print_table, score

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_set_arguments(parser)
    parser.add_argument("--model", action="append", default=None,
                        help="amtcli model (repeatable; default cnn; 'none' for peers only)")
    parser.add_argument("--peer", action="append", choices=sorted(PEERS), default=None,
                        help="peer to run (repeatable; default basic-pitch)")
    parser.add_argument("--venv-root", type=Path, default=Path.home() / ".cache" / "amtcli" / "peers")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import soundfile as sf

    sets = chosen_sets(args, parser)
    report = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {args.threads} threads",
              "set": ", ".join(sets), "results": []}
    models = [m for m in (args.model or ["cnn"]) if m != "none"]
    for title, items in sets.items():
        for model in models:
            result = score(model, items, args.threads, None, None)
            result["set"] = title
            print_table(title, result)
            report["results"].append(result)
    with tempfile.TemporaryDirectory() as tmp:
        for peer in args.peer or ["basic-pitch"]:
            for title, items in sets.items():
                audio_s = sum(sf.info(str(audio)).duration for _, audio, _ in items)
                try:
                    python = venv_python(args.venv_root, peer)
                    outputs, elapsed = run_peer(python, peer, items, Path(tmp))
                except (subprocess.CalledProcessError, RuntimeError) as exc:
                    print(f"{peer}: skipped on {title} ({exc})")
                    report["results"].append({"model": peer, "set": title, "error": str(exc)})
                    continue
                result = score_peer(peer, items, outputs, elapsed, audio_s)
                result["set"] = title
                print_table(title, result)
                report["results"].append(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
