"""Content-addressed blob store: every blob is named by the sha256 of its bytes.

Writes go to a temporary file in the store, are fsynced, then renamed into place, so a crash leaves
either no blob or a whole one, never a partial one. Reads verify the hash, so a blob altered on
disk is refused with an error naming it instead of being used; writing the same bytes again
repairs it.

Examples:
    >>> import tempfile
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> sha = store.put_bytes(b"hello")
    >>> sha[:12], store.get_bytes(sha)
    ('2cf24dba5fb0', b'hello')
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mlprod.diskspace import full_error, is_disk_full
from mlprod.errors import ArtifactCorruptedError, ArtifactError, ArtifactNotFoundError

_CHUNK = 1 << 20
_TMP_DIR = "tmp"
_STALE_TMP_SECONDS = 3600


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


class ArtifactStore:
    """Blobs under ``root/ab/cdef…`` (first two hex digits as a fan-out directory)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        try:
            (self.root / _TMP_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ArtifactError(f"cannot create artifact store at {self.root}: {exc}") from exc

    def path_of(self, sha256: str) -> Path:
        """Where the blob named ``sha256`` lives (whether or not it exists)."""
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ArtifactError(f"{sha256!r} is not a sha256 hex digest (64 lowercase hex digits)")
        return self.root / sha256[:2] / sha256[2:]

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its sha256; storing the same bytes twice is a no-op."""
        sha = sha256_bytes(data)
        if self._intact(sha):
            self._touch(sha)
            return sha
        what = f"writing {len(data):,} bytes to the artifact store"
        fd, tmp = self._new_tmp(what)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            self._commit_tmp(Path(tmp), sha)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            if is_disk_full(exc):
                raise full_error(what, self.root) from exc
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def put_file(self, source: str | os.PathLike[str]) -> str:
        """Copy the file at ``source`` into the store, hashing while copying; return its sha256."""
        digest = hashlib.sha256()
        fd, tmp = self._new_tmp(f"copying {source} into the artifact store")
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            if self._intact(sha):
                Path(tmp).unlink()
                self._touch(sha)
            else:
                self._commit_tmp(Path(tmp), sha)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            if is_disk_full(exc):
                raise full_error(f"copying {source} into the artifact store", self.root) from exc
            raise ArtifactError(f"cannot store {source} in {self.root}: {exc}") from exc
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha

    def get_bytes(self, sha256: str) -> bytes:
        """Return the blob's bytes after checking they still hash to ``sha256``."""
        path = self.path_of(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(f"artifact {sha256} not found in {self.root}") from exc
        except OSError as exc:
            raise ArtifactError(f"cannot read artifact {sha256} at {path}: {exc}") from exc
        actual = sha256_bytes(data)
        if actual != sha256:
            raise ArtifactCorruptedError(
                f"artifact {sha256} at {path} is corrupted: its content hashes to {actual}. "
                "Restore it from a backup or re-create the object that produced it."
            )
        return data

    def verify(self, sha256: str) -> None:
        """Raise unless the blob exists and its content matches its name (streams large blobs)."""
        path = self.path_of(sha256)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(f"artifact {sha256} not found in {self.root}") from exc
        if digest.hexdigest() != sha256:
            raise ArtifactCorruptedError(
                f"artifact {sha256} at {path} is corrupted: its content hashes to {digest.hexdigest()}"
            )

    def __iter__(self) -> Iterator[str]:
        """Every stored sha256."""
        for fan in sorted(self.root.iterdir()):
            if fan.is_dir() and len(fan.name) == 2:
                for blob in sorted(fan.iterdir()):
                    yield fan.name + blob.name

    def remove_stale_temporaries(self, older_than_seconds: float = _STALE_TMP_SECONDS) -> int:
        """Delete temp files left by writers that were killed; return how many."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for tmp in (self.root / _TMP_DIR).iterdir():
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def _new_tmp(self, what: str) -> tuple[int, str]:
        try:
            return tempfile.mkstemp(dir=self.root / _TMP_DIR, prefix="put-")
        except OSError as exc:
            if is_disk_full(exc):
                raise full_error(what, self.root) from exc
            raise ArtifactError(f"cannot write to the artifact store at {self.root}: {exc}") from exc

    def _intact(self, sha256: str) -> bool:
        """True when the blob exists with the right content; a corrupted one will be overwritten."""
        try:
            self.verify(sha256)
        except ArtifactError:
            return False
        return True

    def _touch(self, sha256: str) -> None:
        """Mark a reused blob as recently written, so a garbage collector's grace period covers it."""
        with contextlib.suppress(OSError):
            os.utime(self.path_of(sha256))

    def _commit_tmp(self, tmp: Path, sha: str) -> None:
        final = self.path_of(sha)
        final.parent.mkdir(exist_ok=True)
        os.replace(tmp, final)
        fsync_dir(final.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: fsync the directory entry (a no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the file itself is already synced
    finally:
        os.close(fd)
