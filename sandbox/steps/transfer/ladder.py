"""The ladder: recipes of known, varied quality on one pool, each processed to a pool file.

The default ladder uses what the sandbox has: no recipe (the baseline), the configured recipe
as written and its k-sigma refinements at several k, the single-OP thirds of bottom-up pool
construction, a random control of the refined recipe's size, and recipes that should hurt:
only what a recipe drops. ``recipes``: the user's own ladder instead (Data-Juicer recipe files),
with the baseline beside them."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from sandbox.errors import ConfigError, DataError
from sandbox.recipe import Recipe, load_dj_file
from sandbox.steps.base import Step, StepEnv
from sandbox.steps.pools.common import read_pool, write_csv, write_pool
from sandbox.tracking import NoTracker


class RecipeLadder(Step):
    """Build the ladder's pools. Parameters:

    * ``recipes``: Data-Juicer recipe files (your own ladder); None: the default ladder below.
    * ``ksigma``: the k of the configured recipe's k-sigma refinements.
    * ``thirds``: stat columns (``<op key>.<stat>``) whose low/middle/high thirds join the ladder.
    * ``control_of``: the ladder member whose size the random control takes (``ksigma3``: the
      default experiment's refined recipe).
    * ``dropped``: members whose dropped samples form a recipe that should hurt
      (``dropped:<member>``).
    * ``seed``: the random control's and the thirds' sampling.
    Outputs ``pools`` (``{name, dataset, size, kind}``, the pool format of ``sandbox.steps.pools``)
    and ``table`` (ladder.csv: each member, its kind and size)."""

    outputs = ("pools", "table", "metrics")
    reads = ("recipes",)

    def __init__(self, recipes: list[str] | None = None,
                 ksigma: list[float] | None = (1.0, 1.5, 2.0, 3.0),
                 thirds: list[str] | None = None, control_of: str = "ksigma3",
                 dropped: list[str] | None = ("recipe", "ksigma1"), text_key: str = "text",
                 batch_size: int = 512, seed: int = 42):
        self.recipes = [str(p) for p in recipes] if recipes else None
        for p in self.recipes or []:
            if not Path(p).is_file():
                raise ConfigError(f"transfer.recipes: {p} is not a file. Give Data-Juicer recipe "
                                  f"files (YAML with a `process:` list).")
        self.ksigma = [float(k) for k in (ksigma or [])]
        self.thirds = list(thirds or [])
        self.control_of = control_of
        self.dropped = list(dropped or [])
        self.text_key, self.batch_size, self.seed = text_key, int(batch_size), int(seed)

    def run(self, env: StepEnv, dataset: str, recipe: Recipe, summary: dict | None = None,
            stats: str | None = None) -> dict[str, Any]:
        n = read_pool(dataset).num_rows
        members: list[dict] = [{"name": "baseline", "kind": "baseline", "dataset": dataset,
                                "size": n}]
        processed: dict[str, dict] = {}
        if self.recipes:
            for path in self.recipes:
                rec = load_dj_file(path, self.text_key)
                name = Path(path).stem
                processed[name] = self._apply(env, dataset, rec, name)
                members.append(dict(processed[name], kind="recipe file", source=path))
        else:
            processed["recipe"] = self._apply(env, dataset, recipe, "recipe")
            members.append(dict(processed["recipe"], kind="recipe"))
            for k in self.ksigma:
                name = f"ksigma{k:g}"
                rec = self._ksigma(env, recipe, summary, k, name)
                processed[name] = self._apply(env, dataset, rec, name)
                members.append(dict(processed[name], kind="k-sigma", k=k))
            members += self._thirds(env, dataset, stats)
            control = processed.get(self.control_of)
            if control is None:
                raise ConfigError(f"transfer.control_of={self.control_of!r}: not a ladder member "
                                  f"({', '.join(processed)}).")
            idx = np.sort(np.random.default_rng(self.seed).choice(n, size=control["size"],
                                                                   replace=False))
            members.append({"name": "random", "kind": "random control",
                            "dataset": write_pool(read_pool(dataset).take(idx),
                                                  env.workdir / "pools", "random"),
                            "size": int(control["size"])})
        for name in self.dropped if not self.recipes else []:
            if name not in processed:
                raise ConfigError(f"transfer.dropped: {name!r} is not a ladder member "
                                  f"({', '.join(processed)}).")
            dropped = processed[name]["dropped"]
            size = read_pool(dropped).num_rows
            if size == 0:
                continue  # the recipe drops nothing: no such member
            members.append({"name": f"dropped:{name}", "kind": "should hurt",
                            "dataset": dropped, "size": size})
        pools = [{k: v for k, v in m.items() if k != "dropped"} for m in members]
        table = write_csv(env.workdir / "ladder.csv", [
            {"name": p["name"], "kind": p["kind"], "size": p["size"],
             "retention": round(p["size"] / n, 4)} for p in pools])
        env.tracker.log_artifact(table)
        return {"pools": pools, "table": table, "metrics": {"ladder/recipes": float(len(pools))}}

    # ------------------------------------------------------------------ members
    def _sub_env(self, env: StepEnv, name: str) -> StepEnv:
        sub = dataclasses.replace(env, name=f"{env.name}:{name}", tracker=NoTracker(),
                                  workdir=env.workdir / "recipes" / name.replace(":", "_"),
                                  show_progress=False)
        sub.workdir.mkdir(parents=True, exist_ok=True)
        return sub

    def _apply(self, env: StepEnv, dataset: str, recipe: Recipe, name: str) -> dict:
        from sandbox.steps.data.process import Process

        try:
            out = Process(text_key=self.text_key, batch_size=self.batch_size).run(
                self._sub_env(env, name), dataset, recipe)
        except DataError as e:
            raise DataError(f"transfer: ladder member {name!r} keeps nothing: {e}") from None
        return {"name": name, "dataset": out["dataset"], "size": int(out["num_out"]),
                "dropped": out["dropped"]}

    def _ksigma(self, env: StepEnv, recipe: Recipe, summary: dict | None, k: float,
                name: str) -> Recipe:
        from sandbox.steps.data.refine import KSigmaRefiner

        if summary is None:
            raise ConfigError("transfer: the k-sigma members need the probe's summary: wire "
                              "`summary: ${ctx:probe.summary}` into the ladder step's inputs.")
        return KSigmaRefiner(k=k, text_key=self.text_key).run(self._sub_env(env, name), recipe,
                                                              summary)["recipe"]

    def _thirds(self, env: StepEnv, dataset: str, stats: str | None) -> list[dict]:
        if not self.thirds:
            return []
        if stats is None:
            raise ConfigError("transfer.thirds needs the probe's stats: wire `stats: "
                              "${ctx:probe.stats}` into the ladder step's inputs.")
        from sandbox.steps.pools.construction import PoolConstruction

        out = PoolConstruction(stats=self.thirds, random_pool=False, equal_size=False,
                               seed=self.seed).run(self._sub_env(env, "thirds"), dataset, stats)
        return [{"name": p["name"], "kind": "single-OP third", "dataset": p["dataset"],
                 "size": p["size"]} for p in out["pools"]]
