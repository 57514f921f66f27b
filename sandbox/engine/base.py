"""The engine seam: what the probe and process steps ask of a data engine.

An engine does three things, kept apart on purpose:

1. ``compute``: mappers edit the text, filters compute stats, deduplicators compute hashes, for
   *every* sample (nothing is dropped), into a result file aligned with the pool by row id
   (``sandbox.engine.common``). This never looks at thresholds, so its result is cached by the
   pool's fingerprint and the OPs' stat-relevant parameters: probe and process share it, and a
   threshold change or a sweep trial re-uses it.
2. ``select``: thresholds, deduplication and selectors turn the results into one keep mask
   (``sandbox.engine.selection``; vectorised, the same for every engine).
3. ``write``: the kept samples, the dropped ones with the OP that dropped each, and an optional
   export, each engine in its own way (streaming locally, per shard on a cluster).

``LocalEngine`` (``sandbox.engine.local``) runs on worker processes of this machine.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Protocol

import pyarrow.parquet as pq

from sandbox.data.fingerprint import fingerprint
from sandbox.engine.result import ComputedFile
from sandbox.errors import DataError
from sandbox.engine.selection import Selection, select
from sandbox.ops import Mapper, Op, OpSpec
from sandbox.recipe import Recipe


class StepEnvLike(Protocol):
    """What ``Engine.compute_recipe`` uses of the calling step's environment
    (``sandbox.steps.base.StepEnv``, a floor above the engines)."""

    workdir: Path
    cache_dir: Path

    def progress(self, total: int | None, description: str
                 ) -> ContextManager[Callable[..., None]]: ...


@dataclass(frozen=True)
class ProcessOutputs:
    """Where the process step's results go."""

    dropped: Path  # every dropped sample, with the key of the OP that dropped it (`dropped_by`)
    kept: Path | None = None  # the kept samples; None when nothing is kept
    export: Path | None = None  # a copy of the kept samples, FILE.jsonl or FILE.parquet
    keep_stats: bool = False  # add the stat and hash columns as `__stats__.<column>`


class Engine(abc.ABC):
    """A data engine: runs a recipe's OPs over a pool file and writes what the recipe keeps."""

    @abc.abstractmethod
    def compute(self, dataset: str | Path, specs: list[OpSpec], text_key: str = "text", *,
                batch_size: int | None = None, cache_dir: Path | None = None,
                fingerprint: str | None = None, progress: Callable[[int], Any] | None = None,
                scratch_dir: Path | None = None) -> ComputedFile:
        """Every OP on every sample of the Parquet file ``dataset``. Cached under ``cache_dir``
        (keyed by ``fingerprint``, the pool's content fingerprint, computed when not given);
        without ``cache_dir`` the result file goes to ``scratch_dir``. ``progress(k)`` is
        called as rows are done; ``batch_size`` overrides the engine's rows per OP call."""

    def select(self, specs: list[OpSpec], ops: list[Op], computed: ComputedFile, num_rows: int,
               fields: str | Path | None = None) -> Selection:
        """Thresholds, deduplication and selectors -> masks (``sandbox.engine.selection``).
        ``fields`` is the pool file, for selectors that read sample columns."""
        return select(specs, ops, computed, num_rows, fields=fields)

    @abc.abstractmethod
    def write(self, dataset: str | Path, computed: ComputedFile, selection: Selection,
              text_key: str, outputs: ProcessOutputs) -> None:
        """Write the pool's samples split by ``selection`` to ``outputs``, in the pool's order
        and schema, with the mapped text in place of the original when a mapper ran."""

    def compute_recipe(self, env: StepEnvLike, dataset: str, rec: Recipe, batch_size: int | None,
                       description: str) -> tuple[list[Op], ComputedFile, int]:
        """What probe and process share: build the recipe's OPs, then run them over the pool
        file with a progress bar (cached under the run's cache dir). Returns
        ``(ops, computed, num_rows)``."""
        ops = rec.build()
        pool = pq.ParquetFile(dataset)
        check_input_fields(rec, ops, pool.schema_arrow.names, dataset)
        n = pool.metadata.num_rows
        with env.progress(n, description) as advance:
            computed = self.compute(dataset, rec.ops, rec.text_key, batch_size=batch_size,
                                    cache_dir=env.cache_dir,
                                    fingerprint=fingerprint(dataset, env.cache_dir),
                                    progress=advance, scratch_dir=env.workdir)
        return ops, computed, n


def check_input_fields(rec: Recipe, ops: list[Op], columns: list[str], dataset: str) -> None:
    """Every sample field an OP reads (``Op.input_fields``) is in the pool, or one paragraph
    before any work (not a KeyError from a worker)."""
    made: set[str] = set()  # fields earlier media mappers add (video_extract_frames_mapper)
    for spec, op in zip(rec.ops, ops):
        missing = [f for f in op.input_fields() if f not in columns and f not in made]
        if isinstance(op, Mapper):
            made.update(op.output_fields())
        if not missing:
            continue
        names = ", ".join(f"`{f}`" for f in missing)
        hint = (" Data-Juicer adds its `__dj__...` fields when it loads files (e.g. "
                "`__dj__suffix__` with `add_suffix: true`); add the field to your samples."
                if any(f.startswith("__dj__") for f in missing) else "")
        raise DataError(
            f"{rec.source}, OP `{spec.key}` reads the sample field(s) {names}, which the data pool "
            f"{dataset} does not have (its fields: {', '.join(columns)}).{hint} Add the field to "
            f"the data, or remove or switch off the OP "
            f"(`++recipe.ops.{spec.key}._enabled=false`).")
