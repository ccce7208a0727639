"""The workspace: the root object that every other part of mlprod receives what it needs from.

A workspace is a directory holding ``mlprod.toml``, a metadata database (SQLite ``meta.db`` unless
the config names another URL), an artifact store and a prediction log. ``mlprod.toml`` is written
last when creating one, so a directory without it is not a workspace, whatever else it holds. Only
``init`` creates a metadata database; the database and the artifact store carry the same workspace
id, checked on every open (``mlprod.meta.workspace_id``).

Examples:
    >>> import tempfile
    >>> with Workspace.init(tempfile.mkdtemp()) as ws:
    ...     ws.config.serve.port
    8000
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from mlprod.artifacts import ArtifactStore
from mlprod.config_check import CONFIG_FILENAME
from mlprod.errors import WorkspaceError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from mlprod.config import Config

HOME_ENV = "MLPROD_HOME"
SQLITE_FILENAME = "meta.db"


class Workspace:
    """An open workspace: its config, metadata engine and artifact store.

    Only ``init`` (``create=True``) creates a metadata database; opening one never does. A database
    file that is missing, one that is empty, or one that belongs to another workspace than the
    artifact store (``mlprod.meta.workspace_id``) is refused with the way to fix it.
    """

    def __init__(self, root: Path, config: Config, *, create: bool = False) -> None:
        # SQLAlchemy (and pydantic, for the config) here, not at the top: ``locate`` and the read-only
        # fast path (``mlprod.meta.fast_read``) must not pay for importing them.
        from mlprod.meta.database import connect, is_at_head, schema_revision, upgrade_to_head
        from mlprod.meta.workspace_id import bind_existing, bind_new, empty_database, missing_database

        self.root = root
        self.config = config
        artifacts = self.resolve_path(config.artifacts.path)
        missing = None if create else _missing_sqlite_file(self.database_url)
        if missing is not None:
            raise missing_database(str(missing), artifacts, root)
        self.engine: Engine = connect(self.database_url)
        shown = self.redacted_database_url
        try:
            if not create and schema_revision(self.engine) is None:
                raise empty_database(shown, artifacts)
            if not is_at_head(self.engine):
                upgrade_to_head(self.engine)
            self.artifacts = ArtifactStore(artifacts)
            bind = bind_new if create else bind_existing
            self.workspace_id = bind(self.engine, artifacts, shown)
        except BaseException:
            self.engine.dispose()
            raise

    @property
    def database_url(self) -> str:
        return self.config.database.url or f"sqlite:///{self.root / SQLITE_FILENAME}"

    @property
    def redacted_database_url(self) -> str:
        """The database URL with its password hidden, for messages."""
        from sqlalchemy.engine import make_url

        return make_url(self.database_url).render_as_string(hide_password=True)

    @property
    def prediction_log_dir(self) -> Path:
        return self.resolve_path(self.config.prediction_log.path)

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        *,
        database_url: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Workspace:
        """Create a workspace at ``path`` and open it; on failure leave nothing behind."""
        from mlprod.config import Config, apply_env_overrides, render_config

        root = Path(path).expanduser().resolve()
        if (root / CONFIG_FILENAME).exists():
            raise WorkspaceError(f"{root} is already an mlprod workspace ({CONFIG_FILENAME} exists)")
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"cannot create a workspace at {root}: it is a file")
        config = Config()
        if database_url:
            config.database.url = database_url
        existed = root.exists()
        before = set(os.listdir(root)) if existed else set()
        first_created = next((p for p in reversed((root, *root.parents)) if not p.exists()), None)
        workspace: Workspace | None = None
        try:
            root.mkdir(parents=True, exist_ok=True)
            workspace = cls(root, apply_env_overrides(config, environ), create=True)
            _write_atomically(root / CONFIG_FILENAME, render_config(config))
        except BaseException as exc:
            if workspace is not None:
                workspace.close()
            _remove_new_entries(root, existed, before)
            if first_created is not None:
                shutil.rmtree(first_created, ignore_errors=True)
            if isinstance(exc, OSError):
                raise WorkspaceError(f"cannot create a workspace at {root}: {exc}") from exc
            raise
        return workspace

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> Workspace:
        """Open the workspace whose root is ``path``."""
        from mlprod.config import load_config

        root = Path(path).expanduser().resolve()
        config_path = root / CONFIG_FILENAME
        if not root.is_dir():
            raise WorkspaceError(f"workspace {root} does not exist; create it with `mlprod init {root}`")
        if not config_path.is_file():
            raise WorkspaceError(
                f"{root} is not an mlprod workspace (no {CONFIG_FILENAME}); "
                f"create one with `mlprod init {root}`"
            )
        return cls(root, load_config(config_path, environ))

    @classmethod
    def find(
        cls,
        start: str | os.PathLike[str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> Workspace:
        """Open the workspace named by ``MLPROD_HOME``, else the nearest one at or above ``start``."""
        found = locate(start, environ=environ)
        if found is None:
            here = Path(start or Path.cwd()).resolve()
            raise WorkspaceError(
                f"no mlprod workspace in {here} or any parent; run `mlprod init` there or set {HOME_ENV}"
            )
        return cls.open(found, environ=environ)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def set_config(self, section: str, key: str, value: object) -> None:
        """Change one ``mlprod.toml`` setting on disk and here (environment overrides still apply)."""
        from mlprod.config import load_config, render_config

        path = self.root / CONFIG_FILENAME
        on_disk = load_config(path, environ={})
        try:
            setattr(getattr(on_disk, section), key, value)
            setattr(getattr(self.config, section), key, value)
        except (AttributeError, ValueError) as exc:
            raise WorkspaceError(f"cannot set [{section}] {key} = {value!r}: {exc}") from exc
        _write_atomically(path, render_config(on_disk))

    def resolve_path(self, configured: str) -> Path:
        """A configured path, relative to the workspace root unless absolute."""
        return resolve_in(self.root, configured)


def resolve_in(root: Path, configured: str) -> Path:
    """A configured path, relative to ``root`` unless absolute."""
    path = Path(configured).expanduser()
    return path if path.is_absolute() else root / path


def locate(
    start: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The workspace root that ``find`` would open, or None when there is none."""
    env = os.environ if environ is None else environ
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser().resolve()
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_FILENAME).is_file():
            return candidate
    return None


def default_demo_home(environ: Mapping[str, str] | None = None) -> Path:
    """Where ``mlprod demo`` keeps its workspace when none is found: the user's cache directory."""
    env = os.environ if environ is None else environ
    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "mlprod" / "demo"


def open_or_init(path: Path, *, environ: Mapping[str, str] | None = None) -> Workspace:
    """Open the workspace at ``path``, creating it first when there is none."""
    if (path / CONFIG_FILENAME).is_file():
        return Workspace.open(path, environ=environ)
    return Workspace.init(path, environ=environ)


def _missing_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL when it does not exist (connecting would create it empty)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # connecting names the bad URL
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or parsed.query:
        return None
    path = Path(database)
    return None if path.exists() else path


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_new_entries(root: Path, existed: bool, before: set[str]) -> None:
    """Undo a failed ``init``: remove what it created and nothing that was there before."""
    if not root.exists():
        return
    if not existed:
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in set(os.listdir(root)) - before:
        target = root / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


__all__ = [
    "HOME_ENV",
    "SQLITE_FILENAME",
    "Workspace",
    "default_demo_home",
    "locate",
    "open_or_init",
    "resolve_in",
]
