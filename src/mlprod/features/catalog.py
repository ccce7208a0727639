"""The feature definitions of a workspace: a Python module named in ``mlprod.toml``.

``[features] module`` is an importable module (``mlprod.demo.features``) or a ``.py`` file relative
to the workspace. Every Entity, FeatureView, AggregationView and FeatureSet at its top level is
collected by name; the online store the config names is opened here too.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from mlprod.errors import ConfigError, NotFoundError
from mlprod.features.definitions import AggregationView, Entity, FeatureSet, FeatureView, View
from mlprod.features.online_store import OnlineStore, RedisOnlineStore, SqliteOnlineStore
from mlprod.workspace import Workspace


@dataclass
class Catalog:
    """Definitions by name, as found in the module."""

    module: str
    entities: dict[str, Entity] = field(default_factory=dict)
    views: dict[str, View] = field(default_factory=dict)
    feature_sets: dict[str, FeatureSet] = field(default_factory=dict)

    def view(self, name: str) -> View:
        view: View = _named(self.views, name, "feature view", self.module)
        return view

    def feature_set(self, name: str) -> FeatureSet:
        feature_set: FeatureSet = _named(self.feature_sets, name, "feature set", self.module)
        return feature_set

    def lookup(self, name: str) -> View | FeatureSet:
        """A feature set or a view by name (feature sets first)."""
        if name in self.feature_sets:
            return self.feature_sets[name]
        if name in self.views:
            return self.views[name]
        known = sorted([*self.feature_sets, *self.views])
        raise NotFoundError(
            f"no feature set or view {name!r} in {self.module}; known: {', '.join(known) or 'none'}"
        )


def load_catalog(workspace: Workspace) -> Catalog:
    """Import the workspace's definitions module and collect its definitions."""
    configured = workspace.config.features.module
    if not configured:
        raise ConfigError(
            "no feature definitions configured: set [features] module in mlprod.toml to a module name "
            'or a .py file (e.g. module = "features.py")'
        )
    return catalog_of(_import(configured, workspace), configured)


def catalog_of(module: ModuleType, name: str) -> Catalog:
    catalog = Catalog(name)
    for value in vars(module).values():
        if isinstance(value, Entity):
            _add(catalog.entities, value.name, value, "entity", name)
        elif isinstance(value, FeatureView | AggregationView):
            _add(catalog.views, value.name, value, "feature view", name)
            _add(catalog.entities, value.entity.name, value.entity, "entity", name)
        elif isinstance(value, FeatureSet):
            _add(catalog.feature_sets, value.name, value, "feature set", name)
            for view, _ in value.selection().values():
                _add(catalog.views, view.name, view, "feature view", name)
    return catalog


def open_online_store(workspace: Workspace) -> OnlineStore:
    """The online store ``[features] online_store`` names (SQLite in the workspace by default)."""
    section = workspace.config.features
    if section.online_store == "redis":
        return RedisOnlineStore(section.redis_url, prefix=f"mlprod:{workspace.config.workspace.name}")
    return SqliteOnlineStore(workspace.resolve_path(section.sqlite_path))


def _import(configured: str, workspace: Workspace) -> ModuleType:
    if configured.endswith(".py"):
        path = workspace.resolve_path(configured)
        if not path.is_file():
            raise ConfigError(f"[features] module {configured!r}: no file {path}")
        name = f"mlprod_features_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[name]
            raise ConfigError(
                f"feature definitions {path} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        return module
    try:
        return importlib.import_module(configured)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"[features] module {configured!r} cannot be imported: {exc}") from exc


def _add(found: dict[str, Any], name: str, value: Any, kind: str, module: str) -> None:
    if name in found and found[name] is not value:
        raise ConfigError(f"{module} defines two different {kind}s named {name!r}")
    found[name] = value


def _named(found: dict[str, Any], name: str, kind: str, module: str) -> Any:
    if name not in found:
        raise NotFoundError(f"no {kind} {name!r} in {module}; known: {', '.join(sorted(found)) or 'none'}")
    return found[name]
