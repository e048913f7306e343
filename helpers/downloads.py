"""Downloads that cannot hang or leave half a file, and verification of what is on disk.

A `Remote` names a file of the data directory and the URLs it comes from (with its checksum); `fetch` returns local
paths, downloading what is missing within one time budget, or raises one `DataUnavailableError` that says how to
provision the data offline. `verified` runs a file's check once per size and modification time.
"""
from __future__ import annotations

import hashlib
import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import setup, storage
from .storage import CorruptFileError

# How long a loader waits for the network in all before its offline error, and for any one connection or read.
DOWNLOAD_BUDGET_S = 60.0
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Remote:
    """A file of the data directory and where it comes from."""
    path: str                 # relative to the data directory
    urls: tuple[str, ...]     # tried in order
    md5: str | None = None    # None: the content is checked by its parser instead
    sha256: str | None = None



class DataUnavailableError(RuntimeError):
    """The data is neither in the data directory nor downloadable."""


def _missing_message(missing: list[Remote], errors: list[str]) -> str:
    root = setup.data_dir()
    lines = [f"data not found in {root} and could not be downloaded:"]
    for remote in missing:
        lines.append(f"  - {remote.path}  (from {' or '.join(remote.urls)})")
    if errors:
        lines.append("download errors: " + "; ".join(errors))
    lines.append(f"Fix: connect to the internet, or provision an offline copy with "
                 f"`python ../shared/data/provision.py {root}`, or point AML_DATA_DIR at a folder that holds these "
                 "files.")
    return "\n".join(lines)


def md5sum(path: str | Path) -> str:
    return storage.file_digest(path, "md5")


def check_sums(path: Path, remote: Remote, what: str) -> None:
    for algorithm, expected in (("md5", remote.md5), ("sha256", remote.sha256)):
        if expected is not None and (got := storage.file_digest(path, algorithm)) != expected:
            raise CorruptFileError(f"checksum mismatch for {what}: {algorithm} {got}, expected {expected}")


def download(url: str, dest: str | Path, md5: str | None = None, timeout: float = CONNECT_TIMEOUT_S,
             sha256: str | None = None) -> Path:
    """Download `url` to `dest` atomically. `timeout` bounds the connection and every read (a server that accepts
    and never answers fails after it). A checksum mismatch raises `CorruptFileError` and leaves nothing."""
    dest = Path(dest)

    def write(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        try:
            check_sums(tmp, Remote(dest.name, (url,), md5, sha256), url)
        except CorruptFileError as err:
            raise CorruptFileError(f"{err}; the download was discarded") from None

    return storage.atomic_write(dest, write)


def fetch(*remotes: Remote, budget: float | None = None) -> list[Path]:
    """Local paths of `remotes`, downloading the missing ones; one clear error if any stays missing.

    All downloads of one call wait at most `budget` seconds (``DOWNLOAD_BUDGET_S``) for the network before giving
    up: each connection gets the smaller of ``CONNECT_TIMEOUT_S`` and what is left of the budget.
    """
    root = setup.data_dir()
    deadline = time.monotonic() + (DOWNLOAD_BUDGET_S if budget is None else budget)
    missing, errors = [], []
    for remote in remotes:
        path = root / remote.path
        if path.exists():
            continue
        for url in remote.urls:
            left = deadline - time.monotonic()
            if left <= 0:
                errors.append(f"{url}: not tried, the {DOWNLOAD_BUDGET_S if budget is None else budget:.0f} s "
                              "download budget was spent")
                continue
            try:
                download(url, path, remote.md5, timeout=min(CONNECT_TIMEOUT_S, left), sha256=remote.sha256)
                break
            except CorruptFileError:
                raise
            except OSError as err:  # no network, host down, 404, timed out...
                errors.append(f"{url}: {err}")
        else:
            missing.append(remote)
    if missing:
        raise DataUnavailableError(_missing_message(missing, errors))
    return [root / remote.path for remote in remotes]


# ------------------------------------------------------------------------------- verification on load

_VERIFIED = ".verified.json"


_WHOLE = 8 << 20  # files up to this size are hashed whole for the verification record; larger ones by samples


def quick_digest(path: Path) -> str:
    """sha256 of the whole file up to 8 MiB; of a larger file, of its size and three 1 MiB blocks (start, middle,
    end). Cheap enough for every load, and a same-size edit of a small file (or of a sampled block) changes it."""
    size = path.stat().st_size
    if size <= _WHOLE:
        return storage.file_digest(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for offset in (0, size // 2, size - (1 << 20)):
            f.seek(offset)
            digest.update(f.read(1 << 20))
    return digest.hexdigest()


def verified(path: Path, check, kind: str) -> None:
    """Run ``check(path)`` unless `path` passed it before with the same size, modification time and `quick_digest`
    (recorded in ``<data>/.verified.json``), so that verifying on every load costs little the second time. `check`
    raises `CorruptFileError`; the file is then left for the caller to delete or report."""
    record = setup.data_dir() / _VERIFIED
    try:
        seen = json.loads(record.read_text()) if record.exists() else {}
    except (OSError, ValueError):
        seen = {}
    if not isinstance(seen, dict):  # valid JSON of another shape: it is only a cache
        seen = {}
    stat = path.stat()
    key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns, kind, quick_digest(path)]
    if seen.get(key) == stamp:
        return
    check(path)
    seen[key] = stamp
    try:
        storage.atomic_write(record, lambda tmp: tmp.write_text(json.dumps(seen, indent=1)))
    except OSError:
        pass  # a read-only data folder: verify again next time


def fix_for(path: Path) -> str:
    return (f"delete {path} and run again to download it (or provision it with "
            f"`python ../shared/data/provision.py {setup.data_dir()}`)")
