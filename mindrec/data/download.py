"""Downloads the public Criteo datasets: streamed, resumable, verified, never half-named.

A file is written to ``NAME.part`` beside its final name and renamed only once it is
whole (and its checksum matches, where one is known): a reader never finds a partial file
under the final name. An interrupted download (a dropped connection, a killed process)
resumes from the end of ``NAME.part`` with an HTTP range request; a server that ignores
ranges is read again from the start. A checksum comes from the caller or, where the
server publishes one, from the response (Hugging Face, which hosts the 1TB logs, sends
each file's sha256 as its ``X-Linked-Etag``).
"""
from __future__ import annotations

import hashlib
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

CHUNK = 1 << 20
PART_SUFFIX = ".part"
_SHA256 = re.compile(r'^(W/)?"?([0-9a-f]{64})"?$')


@dataclass(frozen=True)
class Dataset:
    """A public dataset: where its files are and what to do by hand when that fails."""

    name: str
    base_url: str
    files: tuple[str, ...]  # every file; a dataset of days names them day_N
    manual: str

    def chosen(self, days: list[int] | None) -> list[str]:
        """The file names of ``days`` (None: every file)."""
        if days is None:
            return list(self.files)
        if not self.files[0].startswith("day_"):
            raise ValueError(f"--days: {self.name} is one file, not days")
        known = len(self.files)
        wrong = [d for d in days if not 0 <= d < known]
        if wrong:
            raise ValueError(f"--days: {self.name} has days 0-{known - 1}; got "
                             f"{', '.join(map(str, wrong))}")
        return [self.files[d] for d in days]


DATASETS = {
    "criteo-kaggle": Dataset(
        "criteo-kaggle", "https://go.criteo.net/",
        ("criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz",),
        "Download the Display Advertising Challenge data from "
        "https://go.criteo.net/criteo-research-kaggle-display-advertising-challenge-"
        "dataset.tar.gz (or https://www.kaggle.com/c/criteo-display-ad-challenge), put the "
        ".tar.gz in OUT, extract train.txt, then run mindrec-bench data convert --input "
        "OUT/train.txt."),
    "criteo-1tb": Dataset(
        "criteo-1tb", "https://huggingface.co/datasets/criteo/CriteoClickLogs/resolve/main/",
        tuple(f"day_{d}.gz" for d in range(24)),
        "Download the day files (day_N.gz, about 15 GB each) from "
        "https://huggingface.co/datasets/criteo/CriteoClickLogs into OUT (curl -C - -L -O "
        "URL resumes), then run mindrec-bench data convert --input OUT/day_N.gz."),
}


class DownloadError(RuntimeError):
    """A download that could not finish; the message says what to do next."""


def parse_days(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    days = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"--days: {part!r} is not N or N-M (e.g. 0-3,7)")
        days += range(int(first), int(last if dash else first) + 1)
    return sorted(set(days))


def download_dataset(name: str, out_dir: str | Path, days: list[int] | None = None,
                     base_url: str | None = None, progress: TextIO | None = None,
                     retries: int = 5, timeout_s: float = 60.0) -> list[Path]:
    """Download dataset ``name`` (:data:`DATASETS`) into ``out_dir``; returns the files.

    ``base_url`` replaces the dataset's host (a mirror). Files already whole are kept.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = base_url or dataset.base_url
    paths = []
    for file in dataset.chosen(days):
        url = urllib.parse.urljoin(base if base.endswith("/") else base + "/", file)
        try:
            paths.append(download_file(url, out_dir / file, progress=progress,
                                       retries=retries, timeout_s=timeout_s))
        except DownloadError as exc:
            raise DownloadError(f"{exc}\nBy hand: {dataset.manual}") from None
    return paths


def download_file(url: str, dest: str | Path, sha256: str | None = None,
                  progress: TextIO | None = None, retries: int = 5,
                  timeout_s: float = 60.0, pause_s: float = 1.0) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``, resuming it if it is there.

    A dropped connection is resumed up to ``retries`` times (pausing ``pause_s``,
    doubling). The file is checked against its size and ``sha256`` (or the one the
    server publishes) before it takes its final name; a mismatch removes the ``.part``
    file, which cannot be trusted, and raises. Raises DownloadError naming the file.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + PART_SUFFIX)
    if dest.exists():
        _say(progress, f"{dest}: already downloaded")
        return dest
    attempt = 0
    while True:
        try:
            total, published = _fetch(url, part, progress, timeout_s)
            break
        except _Interrupted as exc:
            attempt += 1
            if attempt > retries:
                raise DownloadError(f"{dest}: {exc}; {part.stat().st_size:,} bytes kept in "
                                    f"{part}: run again to resume") from None
            _say(progress, f"{dest}: {exc}; resuming in {pause_s:g} s "
                           f"(try {attempt} of {retries})")
            time.sleep(pause_s)
            pause_s *= 2
    _verify(part, dest, total, sha256 or published)
    os.replace(part, dest)
    _say(progress, f"{dest}: done, {dest.stat().st_size:,} bytes")
    return dest


class _Interrupted(Exception):
    """The connection ended before the whole file came: resume."""


def _fetch(url: str, part: Path, progress: TextIO | None,
           timeout_s: float) -> tuple[int | None, str | None]:
    """Append the rest of ``url`` to ``part``: (the file's size if the server said it,
    the sha256 the server publishes for it, if any)."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"}
                                     if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left past the offset: whole already
            return offset, _published_sha256(exc.headers)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"cannot reach {urllib.parse.urlsplit(url).netloc} for {url}: "
                            f"{reason}") from None
    with response:
        resumed = response.status == 206
        if offset and not resumed:
            _say(progress, f"{url}: the server ignores ranges; starting again from 0")
            offset = 0
        total = _total_size(response, offset if resumed else 0)
        meter = _Meter(progress, part.name.removesuffix(PART_SUFFIX), offset, total)
        with open(part, "r+b" if resumed else "wb") as out:
            out.seek(offset)
            out.truncate()
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    meter.add(len(chunk))
            except (OSError, urllib.error.URLError, ConnectionError) as exc:
                raise _Interrupted(f"connection lost ({exc})") from None
            finally:
                out.flush()
                os.fsync(out.fileno())
        if total is not None and part.stat().st_size < total:
            raise _Interrupted(f"connection closed at {part.stat().st_size:,} of "
                               f"{total:,} bytes")
        return total, _published_sha256(response.headers)


def _total_size(response, offset: int) -> int | None:
    """The whole file's size: from Content-Range on a resumed response, else the
    length of this one."""
    content_range = response.headers.get("Content-Range", "")
    match = re.match(r"bytes (\d+)-\d+/(\d+)", content_range)
    if match:
        if int(match.group(1)) != offset:
            raise DownloadError(f"{response.url}: asked for bytes from {offset:,}, the "
                                f"server sent {content_range}")
        return int(match.group(2))
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _published_sha256(headers) -> str | None:
    """A sha256 the server publishes for the file (X-Linked-Etag, else ETag), if any."""
    for name in ("X-Linked-Etag", "ETag"):
        match = _SHA256.match((headers.get(name) or "").strip())
        if match:
            return match.group(2)
    return None


def _verify(part: Path, dest: Path, total: int | None, sha256: str | None) -> None:
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{dest}: {size:,} bytes downloaded, the server announced "
                            f"{total:,}; {part} kept: run again to resume")
    if sha256 is None:
        return
    with open(part, "rb") as f:
        actual = hashlib.file_digest(f, "sha256").hexdigest()
    if actual != sha256.lower():
        part.unlink()
        raise DownloadError(f"{dest}: sha256 {actual}, expected {sha256}: the download is "
                            f"damaged; {part} removed: run again to download it afresh")


class _Meter:
    """Progress lines of one file: bytes, share, rate and time left, every 2 s."""

    def __init__(self, stream: TextIO | None, name: str, start: int, total: int | None):
        self.stream, self.name, self.total = stream, name, total
        self.done = self.start = start
        self.began = self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.stream is None or (now - self.last < 2 and self.done != self.total):
            return
        self.last = now
        rate = (self.done - self.start) / max(now - self.began, 1e-9)
        share = f" of {self.total / 2**20:,.1f} MiB ({self.done / self.total:.0%})" \
            if self.total else ""
        left = f", {(self.total - self.done) / rate:,.0f} s left" \
            if self.total and rate > 0 else ""
        print(f"[download] {self.name}: {self.done / 2**20:,.1f} MiB{share}, "
              f"{rate / 2**20:,.1f} MiB/s{left}", file=self.stream, flush=True)


def _say(stream: TextIO | None, text: str) -> None:
    if stream is not None:
        print(text, file=stream, flush=True)
