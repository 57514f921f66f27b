"""The data engine: runs a recipe's OPs over a pool, selects, writes (``sandbox.engine.base``
describes the seam; ``sandbox.engine.local`` is the engine of this machine,
``sandbox.engine.ray`` the same work on a Ray cluster, with dedup shuffled across it by
``sandbox.engine.shuffle``).

A run builds its engine from the ``engine`` config group (``conf/engine/``) with
``build_engine``; a step asks for it with ``engine_for(env)``.
"""
from __future__ import annotations

from typing import Any

from sandbox.components import build_component
from sandbox.engine.base import Engine, ProcessOutputs
from sandbox.engine.common import (ENGINE_VERSION, ROW_ID_COLUMN, TEXT_COLUMN, cache_key,
                                   cache_path, default_num_proc, hash_codes, hash_column,
                                   input_fields, object_array, pool_spans, resolve_num_proc,
                                   stat_column, to_numpy)
from sandbox.engine.local import LocalEngine, preload, preload_in_background
from sandbox.engine.result import ComputedFile
from sandbox.engine.selection import Selection, first_alive, select
from sandbox.errors import ConfigError


def build_engine(node: Any = None) -> Engine:
    """The engine a config node describes (``_target_`` plus its parameters, as in
    ``conf/engine/``), or a ``LocalEngine`` with its defaults when ``node`` is None."""
    if node is None:
        return LocalEngine()
    engine = build_component(node, "engine", str(node.get("_target_", "")).rsplit(".", 1)[-1])
    if not isinstance(engine, Engine):
        raise ConfigError(f"engine: {type(engine).__name__} is not a data engine. Point "
                          f"engine._target_ at a sandbox.engine.Engine class (e.g. "
                          f"sandbox.engine.local.LocalEngine).")
    return engine


def engine_for(env) -> Engine:
    """The engine a step runs on: the run's (``env.engine``), or, for a step environment built
    without one, a local engine with the step's worker count."""
    return env.engine if env.engine is not None else LocalEngine(num_proc=env.num_proc)


__all__ = [
    "ComputedFile", "ENGINE_VERSION", "Engine", "LocalEngine", "ProcessOutputs",
    "ROW_ID_COLUMN", "Selection", "TEXT_COLUMN", "build_engine", "cache_key", "cache_path",
    "default_num_proc", "engine_for", "first_alive", "hash_codes", "hash_column",
    "input_fields", "object_array", "pool_spans", "preload", "preload_in_background",
    "resolve_num_proc", "select", "stat_column", "to_numpy",
]
