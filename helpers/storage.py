"""Files that survive crashes and load without running code: atomic writes, digests, checkpoints.

A leaf module (standard library and torch only): everything else in `helpers` that writes or reads a file uses it.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

try:
    import fcntl
except ImportError:  # Windows
    import msvcrt
    fcntl = None


class CorruptFileError(ValueError):
    """A file of the workbook (data, weights, checkpoint, cache) is damaged, unsafe or not what it should be."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file (``hashlib`` algorithm name), read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sweep_stale_parts(path: str | Path) -> list[Path]:
    """Delete the temporary files that killed writers of `path` left behind (``.<name>.<pid>.*.part`` of a process
    that no longer runs); returns what it deleted."""
    path = Path(path)
    swept = []
    for part in path.parent.glob(f".{path.name}.*.part"):
        pid = part.name[len(path.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            part.unlink(missing_ok=True)
            swept.append(part)
    return swept


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside `path`, fsync it, then rename it over `path`.

    A crash leaves either the old file or the new one, never half of one. The temporary file is removed when
    `write` fails; one left by a killed process is swept on the next write of the same `path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_parts(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        try:
            write(tmp)
        except (OSError, RuntimeError) as err:
            # torch.save reports a full disk as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos"
            if getattr(err, "errno", None) == errno.ENOSPC or "unexpected pos" in str(err) \
                    or "No space left" in str(err):
                raise OSError(errno.ENOSPC, f"no space left on the device while writing {path}; the old file is "
                                            "unchanged: free some space and run again") from None
            raise
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; give them the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def require_writable(folder: str | Path, why: str) -> Path:
    """Create `folder` if needed and check that a file can be written in it (by writing and deleting one), so that
    work that saves there stops before it starts, not after: a PermissionError naming the folder and `why`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".writable.", suffix=".part")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise PermissionError(f"{folder} must be writable: {why} ({err.strerror or err}). Fix: make it writable "
                              "(chmod u+w, or remount), or point AML_DATA_DIR at a writable copy of the data "
                              "folder") from None
    return folder


@contextlib.contextmanager
def locked(path: str | Path):
    """Hold an exclusive advisory lock on ``.<name>.lock`` beside `path` (POSIX ``flock``) for a read-modify-write of
    `path` that other processes may do at the same time; the lock goes with the process if it dies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a+b") as f:
        if fcntl is None:  # Windows: no flock; msvcrt locks one byte
            msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
            yield
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


_DIGEST = "_tensor_digest"


def tensor_digest(state: Any) -> str:
    """sha256 over every tensor in a nested dict/list (its place, dtype, shape and bytes) and every plain value, in a
    fixed order: what `save_checkpoint` records and `load_checkpoint` checks, so a flipped byte cannot load."""
    digest = hashlib.sha256()

    def walk(value: Any, where: str) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{where}:{t.dtype}:{tuple(value.shape)}:".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for k in sorted(value, key=repr):
                walk(value[k], f"{where}/{k!r}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")
        else:
            digest.update(f"{where}={value!r};".encode())

    walk(state, "")
    return digest.hexdigest()


def save_checkpoint(path: str | Path, **state: Any) -> Path:
    """`torch.save` a dict (model state, config, optimiser, step...) atomically, with the `tensor_digest` of its
    content. Only tensors, numbers, strings, None, lists, tuples and dicts, so that `load_checkpoint` reads it back
    without unpickling code."""
    state[_DIGEST] = tensor_digest(state)
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    fix: str = "delete it and run again", data: bytes | None = None) -> dict:
    """A file written by `save_checkpoint`, read with ``weights_only=True``: a file that holds any other Python
    object (a planted ``__reduce__`` payload, say) is refused before anything in it runs. A damaged or foreign file
    raises `CorruptFileError` naming the file, what is wrong and `fix`. `data`: the file's bytes, already read
    (and checked by the caller), so that what is loaded is exactly what was checked."""
    path = Path(path)
    if data is None and not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        # TorchVersion (a str subclass) is what older files stored as torch.__version__: harmless to allow
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            state = torch.load(io.BytesIO(data) if data is not None else path, map_location=map_location,
                               weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise CorruptFileError(f"{path} was refused: it holds Python objects other than tensors, numbers, "
                                   f"strings, lists and dicts, and loading it could run code. Fix: {fix}") from None
        raise CorruptFileError(f"{path} is not a readable torch file ({err}). Fix: {fix}") from None
    except Exception as err:  # RuntimeError (zip reader), EOFError, KeyError (legacy format), BadZipFile...
        raise CorruptFileError(f"{path} is damaged or truncated ({type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else 'no detail'}). Fix: {fix}") from None
    if not isinstance(state, dict):
        raise CorruptFileError(f"{path} does not hold a checkpoint (a dict), but {type(state).__name__}. Fix: {fix}")
    recorded = state.pop(_DIGEST, None)  # files written before digests were recorded load as they are
    if recorded is not None and recorded != tensor_digest(state):
        raise CorruptFileError(f"{path} is damaged: its content no longer matches the digest recorded when it was "
                               f"written (a changed byte). Fix: {fix}")
    return state


def dict_diff(saved: dict, wanted: dict, prefix: str = "") -> str:
    """The settings where two (nested) configuration dicts differ, as ``key: saved X, wanted Y; ...``."""
    out = []
    for k in sorted(set(saved) | set(wanted)):
        a, b = saved.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out.append(dict_diff(a, b, f"{prefix}{k}."))
        elif a != b:
            out.append(f"{prefix}{k}: saved {a!r}, wanted {b!r}")
    return "; ".join(o for o in out if o)
