"""Media paths of samples: the ``images`` / ``videos`` / ``audios`` columns, as in Data-Juicer.

A sample's media are a list of paths (a single path string is accepted too). In a pool file they
are usually relative to the file's own directory, so they are made absolute when the pool is
loaded (``resolve_media``): every later step then finds them whatever its working directory.
Exports do the inverse (``relativize_media``), so a jsonl written next to its media reads back
the same. Absolute paths and URLs are left as they are, nulls and empty lists too; whether the
files exist is not checked here.

Both work on whole Arrow columns (no Python loop over rows), and a table without media columns
is returned as it is, at no cost."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc

MEDIA_KEYS = ("images", "videos", "audios")

_URL_RE = r"^[A-Za-z][A-Za-z0-9+.-]*://"  # http://, s3://, file://, ...


def media_columns(column_names: Iterable[str]) -> list[str]:
    """The media columns (``MEDIA_KEYS``) among ``column_names``."""
    names = set(column_names)
    return [key for key in MEDIA_KEYS if key in names]


def media_base_dir(pool_path: str | Path) -> Path:
    """The directory a pool's relative media paths are relative to: the pool file's directory,
    or the pool itself when it is a directory (a saved Hugging Face dataset)."""
    path = Path(os.path.abspath(pool_path))
    return path if path.is_dir() else path.parent


def resolve_media(table: pa.Table, base_dir: str | Path) -> pa.Table:
    """``table`` with its relative media paths joined to ``base_dir`` (made absolute)."""
    prefix = _dir_prefix(base_dir)

    def absolute(paths: pa.Array) -> pa.Array:
        is_kept = pc.or_(pc.or_(pc.starts_with(paths, "/"), pc.equal(paths, "")),
                         pc.match_substring_regex(paths, _URL_RE))
        joined = pc.binary_join_element_wise(pa.scalar(prefix, paths.type), paths,
                                             pa.scalar("", paths.type))
        return pc.if_else(is_kept, paths, joined)

    return _map_paths(table, absolute)


def relativize_media(table: pa.Table, base_dir: str | Path) -> pa.Table:
    """``table`` with its media paths under ``base_dir`` made relative to it (the inverse of
    ``resolve_media``); paths elsewhere stay absolute."""
    prefix = _dir_prefix(base_dir)

    def relative(paths: pa.Array) -> pa.Array:
        under = pc.starts_with(paths, prefix)
        return pc.if_else(under, pc.utf8_slice_codeunits(paths, len(prefix)), paths)

    return _map_paths(table, relative)


def _dir_prefix(base_dir: str | Path) -> str:
    """``base_dir`` made absolute, with one trailing separator."""
    return os.path.join(os.path.abspath(base_dir), "")


def _map_paths(table: pa.Table, fn: Callable[[pa.Array], pa.Array]) -> pa.Table:
    """Apply ``fn`` to every path of every media column holding strings or lists of strings;
    columns of other types (e.g. image structs of Hugging Face datasets) are left alone."""
    for key in media_columns(table.column_names):
        column = table.column(key)
        if not _holds_paths(column.type):
            continue
        chunks = [_map_chunk(chunk, fn) for chunk in column.chunks]
        index = table.schema.get_field_index(key)
        table = table.set_column(index, table.schema.field(index),
                                 pa.chunked_array(chunks, type=column.type))
    return table


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _holds_paths(type_: pa.DataType) -> bool:
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _is_text(type_.value_type)
    return _is_text(type_)


def _map_chunk(chunk: pa.Array, fn: Callable[[pa.Array], pa.Array]) -> pa.Array:
    if _is_text(chunk.type):
        return fn(chunk)
    # a list column: map its values and reuse the list structure (validity, offsets) as it is
    validity, offsets = chunk.buffers()[:2]
    return pa.Array.from_buffers(chunk.type, len(chunk), [validity, offsets],
                                 null_count=chunk.null_count, offset=chunk.offset,
                                 children=[fn(chunk.values)])


def media_list(value) -> list[str]:
    """One sample's media paths as a list: a list as it is, a single path string as a list of
    one, and a null or empty string as no media (Data-Juicer's samples hold lists; CSV pools
    hold one path per cell)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return [p for p in value if p]


def is_local(path: str) -> bool:
    """True for a file path (absolute or relative), False for a URL (``http://``, ``s3://``)."""
    return not re.match(_URL_RE, path)


def missing_media(table: pa.Table) -> dict[int, list[str]]:
    """``{row: [paths]}``: the rows of ``table`` whose local media files (in every media column
    holding paths, already absolute) do not exist, with those paths (normalised). URLs are not
    checked. Each distinct path is looked up once; a table without media columns costs
    nothing."""
    out: dict[int, list[str]] = {}
    for key in media_columns(table.column_names):
        column = table.column(key)
        if not _holds_paths(column.type) or column.null_count == len(column):
            continue
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if _is_text(column.type):
            rows, values = list(range(len(column))), column.to_pylist()
        else:
            rows = pc.list_parent_indices(column).to_pylist()
            values = pc.list_flatten(column).to_pylist()
        exists: dict[str, bool] = {}
        for row, p in zip(rows, values):
            if not p or not is_local(p):
                continue
            if p not in exists:
                exists[p] = os.path.isfile(p)
            if not exists[p]:
                paths = out.setdefault(row, [])
                shown = os.path.normpath(p)
                if shown not in paths:
                    paths.append(shown)
    return dict(sorted(out.items()))
