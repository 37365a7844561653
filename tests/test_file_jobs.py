"""FileJob: what a retried file still has to write (no output written twice)."""

from __future__ import annotations

import os

from amtcli.file_jobs import FileJob


def test_a_retry_writes_only_what_no_earlier_attempt_renamed_into_place(tmp_path):
    old = tmp_path / "old.mid"
    old.write_bytes(b"before the run")
    targets = {"mid": old, "csv": tmp_path / "new.csv", "png": tmp_path / "new.png"}
    job = FileJob.plan(0, tmp_path / "in.wav", targets, overwrite=True)
    assert job.still_to_write() == targets                  # nothing written yet: all of them
    (tmp_path / "new.csv").write_text("written by the first attempt")
    replacement = tmp_path / ".old.mid.part"
    replacement.write_bytes(b"written by the first attempt")
    os.replace(replacement, old)                             # the first attempt's rename
    assert job.still_to_write() == {"png": tmp_path / "new.png"}


def test_without_overwrite_an_existing_output_is_never_rewritten(tmp_path):
    (tmp_path / "a.mid").write_bytes(b"x")
    job = FileJob.plan(0, tmp_path / "in.wav", {"mid": tmp_path / "a.mid"}, overwrite=False)
    assert job.still_to_write() == {}
