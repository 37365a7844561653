"""Audio loading: any format libsndfile reads (wav, flac, ogg, mp3), any rate, any
channel count, int or float; mixed to mono and resampled with soxr.

Reading is done block by block so that a long multichannel file at a high rate is
never held in memory at its original size; :class:`AudioStream` hands the blocks
on as they come, so transcription holds only a window's worth of audio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amtcli.errors import AudioError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
_BLOCK_FRAMES = 1 << 18


@dataclass(frozen=True)
class Audio:
    """Mono audio.

    Attributes:
        samples: float32 array (n_samples,), nominally in [-1, 1].
        sample_rate: Hz.
        source: the file it came from ("" for in-memory audio).
    """

    samples: np.ndarray
    sample_rate: int
    source: str = ""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


class AudioStream:
    """An audio file opened for streaming: mono float32 blocks at ``sample_rate``.

    Opening checks what can be checked without decoding (missing file, directory,
    empty file, undecodable header, no samples) and notes in :attr:`warning` a WAV or
    AIFF file that ends before its header says (a cut-off download or copy; libsndfile
    reads the part that is there); :meth:`blocks` then reads the file
    once, block by block, mixing to mono and resampling with a streaming soxr
    resampler, so memory does not grow with the length of the recording. Decoding
    problems found on the way (corrupt data, NaN or infinite samples) raise AudioError.
    """

    def __init__(self, path: str | os.PathLike, sample_rate: int):
        import soundfile as sf

        path = Path(path)
        if str(path) == "-":
            raise AudioError("-: reading audio from standard input is not supported; give an audio file")
        if not path.exists():
            if path.is_symlink():
                raise AudioError(f"{path}: a symbolic link that leads nowhere (broken or looping)")
            raise AudioError(f"{path}: no such file")
        if path.is_dir():
            raise AudioError(f"{path}: is a directory, not an audio file")
        if not path.is_file():
            raise AudioError(f"{path}: not a regular file (a FIFO, socket or device); save the audio to a file first")
        if path.stat().st_size == 0:
            raise AudioError(f"{path}: file is empty (0 bytes)")
        try:
            with sf.SoundFile(str(path)) as handle:
                frames, self.source_rate = handle.frames, int(handle.samplerate)
                held_s = frames / self.source_rate
                short = _header_longer_than_file(handle.extra_info)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise AudioError(f"{path}: cannot decode audio ({_reason(exc)}); use wav, flac, ogg or mp3") from None
        if frames == 0:
            raise AudioError(f"{path}: contains no audio samples")
        check_source_rate(self.source_rate, path)
        self.path = path
        self.source = str(path)
        self.sample_rate = sample_rate
        self.n_samples = 0  #: Samples delivered so far (the length, once blocks() is exhausted).
        #: One line for the user when the file is shorter than its header says, else None.
        self.warning = (f"{path}: the file ends before its header says (cut off?); transcribed the "
                        f"{held_s:.1f} s it holds" if short else None)

    def blocks(self):
        """Yield mono float32 blocks at ``sample_rate``; raises AudioError on bad data."""
        import soundfile as sf
        import soxr

        path = self.path
        resampler = None
        if self.source_rate != self.sample_rate:
            resampler = soxr.ResampleStream(self.source_rate, self.sample_rate, 1, dtype="float32", quality="HQ")
        try:
            with sf.SoundFile(str(path)) as handle:
                while True:
                    block = handle.read(_BLOCK_FRAMES, dtype="float32", always_2d=True)
                    last = block.shape[0] < _BLOCK_FRAMES
                    mono = block.mean(axis=1, dtype=np.float32)
                    if not np.isfinite(mono).all():
                        raise AudioError(f"{path}: contains NaN or infinite samples")
                    if resampler is not None:
                        mono = resampler.resample_chunk(mono, last=last)
                    if mono.size:
                        self.n_samples += mono.size
                        yield np.ascontiguousarray(mono, dtype=np.float32)
                    if last:
                        break
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{path}: corrupt audio ({_reason(exc)})") from None
        if self.n_samples == 0:
            raise AudioError(f"{path}: contains no audio samples after resampling")


def load_audio(path: str | os.PathLike, sample_rate: int, warnings: list[str] | None = None) -> Audio:
    """Read ``path`` whole, mixed to mono and resampled to ``sample_rate`` Hz.

    Raises AudioError with a one-line message for a missing file, a directory, an
    empty file, an undecodable or corrupt file, and non-finite samples. Silence is
    valid. A file shorter than its header says is read as far as it goes, and its
    :attr:`AudioStream.warning` is appended to ``warnings`` when given. (Transcription
    streams instead: :class:`AudioStream`.)
    """
    stream = AudioStream(path, sample_rate)
    if stream.warning and warnings is not None:
        warnings.append(stream.warning)
    chunks = list(stream.blocks())
    return Audio(samples=np.concatenate(chunks), sample_rate=sample_rate, source=stream.source)


MIN_SOURCE_RATE_HZ = 1000      #: lowest input sample rate accepted (below, no music survives)
MAX_SOURCE_RATE_HZ = 768000    #: highest (the fastest rate audio interfaces record at)


def check_source_rate(rate: int, source: str | os.PathLike = "audio") -> None:
    """Raise AudioError unless ``rate`` Hz is one the resampler can take safely; checked
    before any resampling (a WAV header saying 1 Hz once crashed the whole process)."""
    if not MIN_SOURCE_RATE_HZ <= rate <= MAX_SOURCE_RATE_HZ:
        raise AudioError(f"{source}: sample rate {rate} Hz is outside {MIN_SOURCE_RATE_HZ}-{MAX_SOURCE_RATE_HZ} Hz "
                         "(a damaged header?); convert the file to a usual rate such as 44100 Hz")


def audio_from_array(samples: np.ndarray, sample_rate: int, target_rate: int) -> Audio:
    """Wrap an in-memory array (n,) or (n, channels) as mono Audio at ``target_rate``."""
    import soxr

    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 2:
        array = array.mean(axis=1)
    if array.ndim != 1 or array.size == 0:
        raise AudioError("audio array must be non-empty with shape (n,) or (n, channels)")
    if not np.isfinite(array).all():
        raise AudioError("audio contains NaN or infinite samples")
    check_source_rate(int(sample_rate))
    if sample_rate != target_rate:
        array = soxr.resample(array, sample_rate, target_rate, quality="HQ").astype(np.float32)
    return Audio(samples=array, sample_rate=target_rate)


#: Chunk sizes that programs writing to a pipe put in a header they cannot go back to fill
#: in (ffmpeg and sox write 0xFFFFFFFF): not a sign of a cut-off file.
_UNKNOWN_SIZES = (0, 0x7FFFFFFF, 0xFFFFFFFF)


def _header_longer_than_file(extra_info: str) -> bool:
    """True when libsndfile's description of a file says its audio chunk (WAV ``data``,
    AIFF ``SSND``) claims more bytes than the file holds: "data : 264600 (should be
    132278)". A size a streaming writer leaves unknown does not count."""
    import re

    for line in extra_info.splitlines():
        match = re.match(r"\s*(data|SSND)\s*:\s*(\d+)\s*\(should be \d+\)", line)
        if match and int(match.group(2)) not in _UNKNOWN_SIZES:
            return True
    return False


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[-1] if "Error opening" in text else text
