"""Pools out of the pool workflow: the best pool as a Data-Juicer recipe (``RecipeExport``) and
pools as jsonl or COCO caption files (``ToJsonl``, ``FromJsonl``, ``ToCocoCaption``)."""
from __future__ import annotations

import json
import math
import typing
from typing import Any

from sandbox.data.io import read_table
from sandbox.ops import OpSpec, get_op_class
from sandbox.recipe import Recipe, validate
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.pools.common import ROW, as_pools, read_pool, write_pool
from sandbox.utils import safe_name


class RecipeExport(Step):
    """The best pool as a Data-Juicer recipe: the recipe's mappers (and deduplicators), then,
    for every stat bound of the pool, its filter with ``min_*``/``max_*`` set to the pool's
    bounds (an open end for the lowest/highest bin). Writes ``recipe.yaml`` (``process: [...]``,
    runnable with ``recipe=dj recipe.path=...``)."""

    outputs = ("recipe", "recipe_path")

    def __init__(self, text_key: str = "text", keep_unbounded: bool = False):
        self.text_key, self.keep_unbounded = text_key, bool(keep_unbounded)

    def run(self, env: StepEnv, pool: dict, recipe: Recipe) -> dict[str, Any]:
        bounds = pool.get("bounds") or {}
        bins = {}
        for part in pool.get("parts") or [pool["name"]]:
            col, _, b = part.rpartition(".")
            bins[col] = b
        ops = []
        for spec in recipe.ops:
            cls = get_op_class(spec.name)
            ths = getattr(cls, "thresholds", {}) or {}
            if not ths:
                ops.append(spec)
                continue
            mine = {c: v for c, v in bounds.items() if c.rpartition(".")[0] == spec.key}
            if not mine:
                if self.keep_unbounded:
                    ops.append(spec)
                continue
            args = dict(spec.args)
            hints = typing.get_type_hints(get_op_class(spec.name).__init__)
            for col, (lo, hi) in mine.items():
                stat = col.rpartition(".")[2]
                b = bins.get(col, "")
                for arg, th in ths.items():
                    if th.stat != stat:
                        continue
                    integer = hints.get(arg) is int  # integer stats: exact integer bounds
                    if th.bound == "min":
                        if b in ("low", "q0") or lo is None:
                            args.pop(arg, None)
                        else:
                            args[arg] = math.ceil(lo) if integer else lo
                    elif th.bound == "max":
                        if b == "high" or hi is None:
                            args.pop(arg, None)
                        else:
                            args[arg] = math.floor(hi) if integer else hi
            ops.append(OpSpec(key=spec.key, name=spec.name, args=args))
        out = Recipe(ops=ops, text_key=self.text_key)
        path = env.workdir / "recipe.yaml"
        header = f"# Data-Juicer recipe of pool {pool['name']} (bottom-up workflow)\n"
        path.write_text(header + out.to_dj_yaml(), encoding="utf-8")
        validate(out)  # what we export must load back with recipe=dj
        return {"recipe": out, "recipe_path": str(path)}


# ============================================================================ conversion
class ToJsonl(Step):
    """Each pool as a jsonl file (Data-Juicer's and most trainers' input format);
    ``drop_row`` leaves the ``__row__`` bookkeeping column out."""

    outputs = ("pools",)

    def __init__(self, drop_row: bool = True):
        self.drop_row = bool(drop_row)

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        out = []
        folder = env.workdir / "jsonl"
        folder.mkdir(parents=True, exist_ok=True)
        for p in as_pools(pools, "to_jsonl"):
            rows = read_pool(p["dataset"]).to_pylist()
            path = folder / f"{safe_name(p['name'])}.jsonl"
            with open(path, "w", encoding="utf-8") as f:
                for r in rows:
                    if self.drop_row:
                        r.pop(ROW, None)
                    f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
            out.append(dict(p, dataset=str(path)))
        return {"pools": out}


class FromJsonl(Step):
    """jsonl pools back to Parquet (what the sandbox's steps read)."""

    outputs = ("pools",)

    def __init__(self, text_key: str = "text"):
        self.text_key = text_key

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        out = []
        for p in as_pools(pools, "from_jsonl"):
            t = read_table(p["dataset"], text_key=self.text_key)
            out.append(dict(p, dataset=write_pool(t, env.workdir / "pools", p["name"]),
                            size=t.num_rows))
        return {"pools": out}


class ToCocoCaption(Step):
    """Image-text pools in COCO-caption style (``{"images": [...], "annotations": [...]}``, one
    JSON file per pool): every image path of a sample (``image_key``, a list as in Data-Juicer)
    becomes an image entry and the sample's text its caption (``special_tokens`` removed)."""

    outputs = ("files",)

    def __init__(self, text_key: str = "text", image_key: str = "images",
                 special_tokens: list[str] | None = None):
        self.text_key, self.image_key = text_key, image_key
        self.special_tokens = list(special_tokens or ["<__dj__image>", "<|__dj__eoc|>"])

    def run(self, env: StepEnv, pools: list) -> dict[str, Any]:
        files = []
        for p in as_pools(pools, "to_coco_caption"):
            images, anns = [], []
            for r in read_pool(p["dataset"]).to_pylist():
                text = str(r.get(self.text_key) or "")
                for tok in self.special_tokens:
                    text = text.replace(tok, "")
                paths = r.get(self.image_key) or []
                for path in [paths] if isinstance(paths, str) else paths:
                    images.append({"id": len(images), "file_name": path})
                    anns.append({"id": len(anns), "image_id": images[-1]["id"],
                                 "caption": " ".join(text.split())})
            f = env.workdir / f"{safe_name(p['name'])}.coco.json"
            f.write_text(json.dumps({"images": images, "annotations": anns}), encoding="utf-8")
            files.append(str(f))
        return {"files": files}
