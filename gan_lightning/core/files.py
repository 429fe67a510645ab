"""Writing outputs so that a failed write is one line and never a corrupt file.

Whole files are written beside their destination (`NAME.partial`) and renamed over it once complete, so a full
disk, a quota or a kill mid-write leaves the previous version (or nothing) in place and no partial file behind;
appended records are rolled back to the last complete line.
"""

from __future__ import annotations

import errno
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from gan_lightning.core.errors import ConfigError, DataError, WriteError


def reason(err: OSError) -> str:
    """What the operating system said, without the paths it repeats (`No space left on device`)."""
    return err.strerror or str(err) or type(err).__name__


def nearest_existing(path: Path) -> Path:
    """`path` itself when it exists, else its nearest ancestor that does: where creating it would start."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_dir(path: str | Path, flag: str) -> None:
    """Fail with one line unless `path` is, or can be created as, a directory this process can write into."""
    path = Path(path)
    existing = nearest_existing(path)
    if not existing.is_dir():
        what = "is a file" if existing == path else f"is inside {existing}, which is a file"
        raise ConfigError(f"{flag} {path} {what}, not a directory; pass a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {existing} is not writable; pass a directory you can write to")


def check_writable_file(path: str | Path, flag: str) -> None:
    """Fail with one line unless the file `path` can be written: not a directory, and its folder is, or can be
    created as, a directory this process can write into."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a directory; give the path of the file to write")
    existing = nearest_existing(path.parent)
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path}: {existing} is a file, not a folder; pass another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: {existing} is not writable; pass a path you can write to")


def make_dirs(path: str | Path, flag: str) -> list[Path]:
    """Create the directory `path` and its missing parents; returns those this call created, deepest first (for
    `remove_empty_dirs`). A directory that cannot be created is one line: ConfigError, or WriteError when the disk
    is full."""
    path, missing = Path(path), []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    made: list[Path] = []
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue  # another process made it at the same moment: not ours to remove
        except OSError as err:
            remove_empty_dirs(made[::-1])
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise WriteError(f"could not create {directory} for {flag} ({reason(err)})") from None
            raise ConfigError(f"{flag} {missing[0]}: cannot create {directory} ({reason(err)}); pass a directory "
                              "you can write to") from None  # fmt: skip
        made.append(directory)
    return made[::-1]


def claim_version(root: str | Path, flag: str = "--log-dir") -> tuple[int, list[Path]]:
    """Claim the next free `root/version_N` by creating it exclusively (the next N on a clash), so runs started
    together never share one; returns N and the directories this call created, deepest first (`remove_empty_dirs`
    gives them back when the run stops before writing into them)."""
    root = Path(root)
    made = make_dirs(root, flag)
    taken = [int(p.name[8:]) for p in root.glob("version_*") if p.name[8:].isdigit()]
    version = max(taken, default=-1) + 1
    while True:
        try:
            (root / f"version_{version}").mkdir()
        except FileExistsError:  # another run claimed it between the listing and now
            version += 1
            continue
        except OSError as err:
            remove_empty_dirs(made)
            raise ConfigError(f"{flag}: cannot create {root / f'version_{version}'} ({reason(err)}); pass a "
                              "directory you can write to") from None  # fmt: skip
        return version, [root / f"version_{version}", *made]


def remove_empty_dirs(dirs: list[Path]) -> None:
    """Remove each of `dirs` (deepest first) that is empty; one still in use by another process stays."""
    for directory in dirs:
        try:
            directory.rmdir()
        except OSError:
            pass


def remove_quietly(path: str | Path) -> None:
    """Delete `path` if it exists; a failure to delete is not worth a second error."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def atomic_write(path: str | Path, write: Callable[[Path], object], what: str, shared: bool = False) -> Path:
    """Call `write(partial_path)`, then rename the result over `path`; on any OSError remove the partial file and
    raise one-line `WriteError` naming `what`, the path and the reason (the previous `path`, if any, is untouched).
    `shared`: a cache other processes may be writing at the same time, so each writes its own partial file.
    """
    path = Path(path)
    # shared: one name per process and machine (a cache on shared storage is written from several nodes)
    partial = path.with_name(f"{path.name}.partial" + (f"{socket.gethostname()}-{os.getpid()}" if shared else ""))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        os.replace(partial, path)
    except OSError as err:
        remove_quietly(partial)
        kept = "; the previous one is intact" if path.is_file() else ""
        raise WriteError(f"could not write {what} {path} ({reason(err)}){kept}") from None
    return path


class WholeWrites:
    """A binary file whose `write` writes all of its bytes or raises the OSError saying why.

    `torch.save` checks the file position after each write; on a full disk a buffered file takes part of a
    record and returns, and torch then fails with "unexpected pos" and no errno. Writing through this, the
    same disk gives `OSError(ENOSPC)`, which names the cause.
    """

    def __init__(self, path: str | Path) -> None:
        self.raw = open(path, "wb", buffering=0)
        self.error: OSError | None = None  # the first failed write: torch's cleanup raises its own error after it

    def write(self, data: bytes) -> int:
        """Write every byte of `data` (raw writes may take part of it), or raise."""
        view, done = memoryview(data).cast("B"), 0
        try:
            while done < len(view):
                written = self.raw.write(view[done:])
                if not written:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += written
        except OSError as err:
            self.error = self.error or err
            raise
        return done

    def flush(self) -> None:
        """Nothing is buffered here; present because torch calls it."""

    def sync(self) -> None:
        """Flush the operating system's cache to the device, so a rename that follows publishes whole bytes."""
        os.fsync(self.raw.fileno())

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> WholeWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def save_torch(obj: object, path: str | Path) -> None:
    """`torch.save(obj, path)`, synced to disk; a full or failing disk raises OSError with its errno."""
    import torch

    with WholeWrites(path) as f:
        try:
            torch.save(obj, f)
        except RuntimeError:
            if f.error is not None:  # torch's own "unexpected pos" from closing the archive after the real error
                raise f.error from None
            raise
        f.sync()


def write_text(path: str | Path, text: str, what: str) -> Path:
    """`atomic_write` of a text file."""
    return atomic_write(path, lambda p: p.write_text(text), what)


def append_text(path: str | Path, text: str, what: str) -> Path:
    """Append `text` (whole records, e.g. JSON lines) to `path`; a failed append is truncated back to the records
    already there and raises one-line `WriteError`."""
    path = Path(path)
    data = text.encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # unbuffered: a buffered file would flush (and fail) again inside truncate, leaving the partial record
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
            except OSError:
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
    except OSError as err:
        raise WriteError(f"could not append to {what} {path} ({reason(err)}); the earlier records are intact") from None
    return path


def preallocate(f: BinaryIO, size: int) -> None:
    """Make the open file `f` at least `size` bytes with every block allocated now, so a disk without room fails
    here with ENOSPC, not later: a write into a sparse file's hole on a full disk fails, and through a memory map
    it is a SIGBUS that kills the process."""
    f.flush()
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(f.fileno(), 0, size)
            return
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    # no fallocate here (macOS, some network filesystems): zeros written allocate their blocks as well
    end = f.seek(0, os.SEEK_END)
    zeros = bytes(1 << 20)
    while end < size:
        end += f.write(zeros[: min(len(zeros), size - end)])
    f.flush()


def lock_file(path: Path, wait: bool, mode: int = 0o644) -> int:
    """An open descriptor of `path` (created if missing) holding its exclusive flock; OSError as the OS gives it
    (BlockingIOError: another process holds it and not `wait`). A file its holder removed after we opened it is
    opened again, so every process locks the file that is at `path`."""
    import fcntl

    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def unlock_file(path: Path, fd: int) -> None:
    """Release `lock_file`'s lock and remove the file, before unlocking: a process opening it from now on gets a
    new one."""
    remove_quietly(path)
    os.close(fd)


@contextmanager
def exclusive_lock(path: str | Path, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if missing, removed on release) while the block runs;
    one-line ConfigError `busy` at once when another process holds it. The kernel releases a killed holder's lock.
    Where `fcntl` does not exist (Windows) nothing is locked."""
    if os.name != "posix":
        yield
        return
    path = Path(path)
    try:
        fd = lock_file(path, wait=False)
    except (BlockingIOError, FileNotFoundError):  # held; or its directory just removed by a refused run
        raise ConfigError(busy) from None
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise WriteError(f"could not create the lock file {path} ({reason(err)})") from None
        raise ConfigError(f"cannot create the lock file {path} ({reason(err)})") from None
    try:
        yield
    finally:
        unlock_file(path, fd)


@contextmanager
def data_lock(data_dir: str | Path | None, name: str = ".gan_lightning_data.lock") -> Iterator[None]:
    """Processes that find, download or extract a dataset in `data_dir` (or create any shared store there: `name`
    says which) take turns (every task of an `srun` job starts together): a lock file in `data_dir`, or in its
    nearest existing ancestor before a first download, held while the block runs. Best effort: where nothing can be
    written, or the filesystem has no `flock` (NFS without lockd, Lustre's noflock), nothing is locked, as before."""
    root = nearest_existing(Path(data_dir).absolute()) if data_dir is not None else None
    if os.name != "posix" or root is None or not (root.is_dir() and os.access(root, os.W_OK)):
        yield
        return
    path = root / name
    try:
        fd = lock_file(path, wait=True, mode=0o666)  # 0o666: users sharing a data folder take turns too
    except OSError:
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            unlock_file(path, fd)


def load_weights_file(path: str | Path, what: str, hint: str, map_location: str = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`, every failure turned into one line about `what` the file should be.

    Every failure is a DataError: missing, a directory, truncated, not written by `torch.save`, or refused by the
    weights-only unpickler (a pickled object whose loading would run code, or bytes it cannot parse).
    """
    import torch

    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a directory, not {what}; {hint}")
    if not path.is_file():
        raise DataError(f"no {what} at {path}; {hint}")
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols would add lines to a one-line error
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        text = str(err)
        if "Weights only load failed" in text:
            # torch's message cannot tell a pickled object (code would run) from a damaged or foreign file
            lines = [x.strip() for x in text.split("Check the documentation")[0].splitlines() if x.strip()]
            raise DataError(f"refusing to load {path}: not a plain weights file, so unpickling it would run code or "
                              f"it is damaged ({lines[-1][:120]}); {hint}") from None  # fmt: skip
        raise DataError(f"{path} is not a readable {what} (truncated, or not written by torch.save); {hint}") from None
