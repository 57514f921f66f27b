"""The ``infer`` step: run a model over every row of a pool and keep its answers beside the rows.

Input: ``dataset``, any pool file (Parquet from an earlier step, or jsonl/json/csv), or a list of
them. For each row, a message builder (``build_messages_func`` with ``func_kwargs``, Data-Juicer's
names; ``sandbox.infer.messages``) makes the chat, the backend answers it, ``parse_output_func``
turns the answer into the value stored under ``infer_res_key`` (default ``response``).

Output: ``<stem>_inference.jsonl`` per input (Data-Juicer's name): every input row, in order,
plus the response field. It is written as the run goes: each batch is appended and fsync'ed, so
an interrupted run (Ctrl-C, a crash, a server that went away) leaves every finished row on disk,
and running the same step again (``resume=true`` with the same ``hydra.run.dir``, or any re-run
in the same folder) continues from the first row without a response, reusing answers already
there. A row whose request failed gets ``null`` as its response and a record ``{row, status,
reason, attempts}`` in ``<stem>_failures.jsonl`` (output ``failures``); when more than
``max_failure_rate`` of the rows fail, the step stops at once with an error naming both files.

Outputs: ``dataset`` (the output file; a list for a list of inputs), ``failures``, ``metrics``:
``rows``, ``failures``, ``failure_rate``, ``resumed_rows`` (taken from an earlier partial run),
``generated_tokens`` and ``tokens_per_s`` (generated tokens over the time spent generating, when
the backend reports token counts), ``rows_per_s``.

Backends (one class each, ``conf/infer/*.yaml``): ``HFInfer`` (transformers), ``VLLMInfer``
(vLLM's offline engine), ``APIInfer`` (an OpenAI-compatible server); see
``sandbox.infer.backends``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from sandbox.console import console
from sandbox.data.fingerprint import fingerprint
from sandbox.data.rows import count_rows, iter_rows
from sandbox.errors import ConfigError, DataError
from sandbox.infer.backends import APIBackend, HFBackend, Reply, VLLMBackend
from sandbox.infer.messages import BUILDERS, PARSERS, as_chats, resolve_function
from sandbox.steps.base import Step, StepEnv
from sandbox.threads import parse_threads, torch_threads
from sandbox.utils import atomic_write_json, stable_hash

STATE_VERSION = 1


def _json_line(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False, default=str) + "\n"


# ============================================================================ the step
class InferStep(Step):
    """Shared by every backend; see the module docstring. Parameters:

    * ``build_messages_func``: ``build_messages`` | ``build_messages_for_math_qa`` | a dotted
      path | ``{_target_: ..., _partial_: true}``; ``func_kwargs``: passed to it and to
      ``parse_output_func`` (``system_key``, ``query_key``, ``response_key``).
    * ``infer_res_key``: the response field.
    * ``batch_size``: rows per batch (one ``generate`` call for ``hf``/``vllm``, requests
      sent ``concurrency`` at a time for ``api``); each batch is written before the next.
    * ``max_failure_rate``: the share of rows that may fail (null response, failure record)
      before the step fails; 0: any failure fails the step.
    * ``export_path``: a folder for the output instead of the step's folder.
    * ``resume``: continue an interrupted run found in the output folder (same config and
      input only; otherwise it is started over).
    * ``seed``: sampling seed (``temperature > 0``).
    """

    outputs = ("dataset", "failures", "metrics")
    reads = ("model",)

    def __init__(self, build_messages_func: Any = "build_messages",
                 parse_output_func: Any = "parse_output", func_kwargs: dict | None = None,
                 infer_res_key: str = "response", batch_size: int = 8,
                 max_failure_rate: float = 0.0, export_path: str | None = None,
                 resume: bool = True, seed: int | None = 42, **backend_kwargs):
        self.build = resolve_function(build_messages_func, BUILDERS, "infer.build_messages_func")
        self.parse = resolve_function(parse_output_func, PARSERS, "infer.parse_output_func")
        self._names = [_fn_name(build_messages_func), _fn_name(parse_output_func)]
        self.func_kwargs = dict(func_kwargs or {})
        self.infer_res_key = infer_res_key
        if int(batch_size) < 1:
            raise ConfigError("infer.batch_size must be >= 1.")
        self.batch_size = int(batch_size)
        if not 0.0 <= float(max_failure_rate) <= 1.0:
            raise ConfigError("infer.max_failure_rate must be between 0 and 1.")
        self.max_failure_rate = float(max_failure_rate)
        self.export_path, self.resume, self.seed = export_path, bool(resume), seed
        self.backend = self.make_backend(seed=seed, **backend_kwargs)

    # a backend per subclass
    def make_backend(self, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError

    def threads(self):
        """Context for the whole run (torch threads for local models)."""
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ run
    def run(self, env: StepEnv, dataset: str | list[str]) -> dict[str, Any]:
        paths = [dataset] if isinstance(dataset, str) else list(dataset or [])
        if not paths:
            raise ConfigError("infer: `dataset` is empty; wire it to a pool, e.g. "
                              "inputs: {dataset: \"${ctx:load.dataset}\"}.")
        if getattr(self.backend, "cache_dir", "unset") is None:
            self.backend.cache_dir = env.cache_dir
        with self.threads():
            self.backend.load()  # fail before any row: weights, packages, the server's address
            out_dir = Path(self.export_path) if self.export_path else env.workdir
            out_dir.mkdir(parents=True, exist_ok=True)
            totals = {"rows": 0, "failures": 0, "resumed_rows": 0, "generated_tokens": 0,
                      "counted_rows": 0, "gen_s": 0.0}
            t0 = time.perf_counter()
            outs, fails = [], []
            stems = [Path(p).stem for p in paths]
            for p in paths:
                stem = Path(p).stem if stems.count(Path(p).stem) == 1 else \
                    f"{Path(p).stem}_{stable_hash(str(p), 6)}"
                out, failures = self._one(env, Path(p), out_dir, stem, totals)
                outs.append(str(out))
                fails.append(str(failures))
            seconds = time.perf_counter() - t0
        metrics = {"rows": totals["rows"], "failures": totals["failures"],
                   "failure_rate": totals["failures"] / max(1, totals["rows"]),
                   "resumed_rows": totals["resumed_rows"],
                   "rows_per_s": (totals["rows"] - totals["resumed_rows"]) / seconds
                   if seconds > 0 else 0.0}
        if totals["counted_rows"]:
            metrics["generated_tokens"] = totals["generated_tokens"]
            metrics["tokens_per_s"] = totals["generated_tokens"] / totals["gen_s"] \
                if totals["gen_s"] > 0 else 0.0
        single = isinstance(dataset, str)
        return {"dataset": outs[0] if single else outs, "failures": fails[0] if single else fails,
                "metrics": metrics}

    def state_key(self, env: StepEnv, path: Path) -> str:
        return stable_hash([STATE_VERSION, self.backend.describe(), self._names, self.func_kwargs,
                            self.infer_res_key, self.seed, fingerprint(path, env.cache_dir)])

    def _one(self, env: StepEnv, path: Path, out_dir: Path, stem: str,
             totals: dict) -> tuple[Path, Path]:
        out = out_dir / f"{stem}_inference.jsonl"
        failures_path = out_dir / f"{stem}_failures.jsonl"
        state_path = out_dir / f".{stem}_inference.state.json"
        n = count_rows(path)
        key = self.state_key(env, path)
        start, earlier = 0, {}
        if self.resume and out.exists() and _read_state(state_path) == key:
            start, earlier = _scan_partial(out, self.infer_res_key, n)
            if start:
                console.print(f"infer: resuming {out.name} at row {start} of {n} "
                              f"({len(earlier)} answer(s) reused)")
        else:
            out.unlink(missing_ok=True)
            atomic_write_json(state_path, {"key": key})
        failures_path.unlink(missing_ok=True)
        failures_path.touch()
        allowed = math.floor(self.max_failure_rate * n + 1e-9)
        failed = 0
        totals["rows"] += n
        totals["resumed_rows"] += start + sum(1 for r in earlier if r >= start)
        batch: list[tuple[int, dict]] = []
        with open(out, "a", encoding="utf-8") as fout, \
                open(failures_path, "a", encoding="utf-8") as ffail, \
                env.progress(n - start, "rows") as advance:
            for i, row in enumerate(iter_rows(path)):
                if i < start:
                    continue
                batch.append((i, row))
                if len(batch) == self.batch_size:
                    failed += self._batch(batch, earlier, fout, ffail, totals, env)
                    advance(len(batch))
                    batch = []
                    self._check(failed, allowed, n, out, failures_path)
            if batch:
                failed += self._batch(batch, earlier, fout, ffail, totals, env)
                advance(len(batch))
                self._check(failed, allowed, n, out, failures_path)
        totals["failures"] += failed
        if failed:
            console.print(f"[yellow]infer: {failed} of {n} row(s) failed (null {self.infer_res_key}"
                          f"); the reasons are in {failures_path}[/]")
        return out, failures_path

    def _batch(self, batch: list[tuple[int, dict]], earlier: dict, fout, ffail, totals: dict,
               env: StepEnv) -> int:
        """Answer one batch, append it (and its failures), fsync; returns its failed rows."""
        chats, owners, several = [], [], {}
        for i, row in batch:
            if i in earlier:
                continue
            try:
                built = self.build(row, **self.func_kwargs)
            except DataError as e:
                raise DataError(f"infer, row {i}: {e}") from None
            cs, several[i] = as_chats(built, f"infer, row {i}")
            chats.extend(cs)
            owners.extend([i] * len(cs))
        replies: list[Reply] = []
        if chats:
            seed = None if self.seed is None else int(self.seed) + batch[0][0]
            t = time.perf_counter()
            replies = self.backend.generate(chats, seed=seed)
            totals["gen_s"] += time.perf_counter() - t
        by_row: dict[int, list[Reply]] = {}
        for i, r in zip(owners, replies):
            by_row.setdefault(i, []).append(r)
        failed, lines, records = 0, [], []
        for i, row in batch:
            row = dict(row)
            if i in earlier:
                row[self.infer_res_key] = earlier[i]
            else:
                rs = by_row[i]
                bad = next((r for r in rs if not r.ok), None)
                if bad is not None:
                    row[self.infer_res_key] = None
                    records.append({"row": i, **bad.error})
                    failed += 1
                else:
                    values = [self.parse(r.text, row, **self.func_kwargs) for r in rs]
                    row[self.infer_res_key] = values if several[i] else values[0]
                known = [r.tokens for r in rs if r.ok and r.tokens is not None]
                if known:
                    totals["generated_tokens"] += sum(known)
                    totals["counted_rows"] += 1
            lines.append(_json_line(row))
        fout.write("".join(lines))
        fout.flush()
        os.fsync(fout.fileno())
        if records:
            ffail.write("".join(_json_line(r) for r in records))
            ffail.flush()
            os.fsync(ffail.fileno())
        return failed

    def _check(self, failed: int, allowed: int, n: int, out: Path, failures_path: Path) -> None:
        if failed <= allowed:
            return
        last = None
        with open(failures_path, encoding="utf-8") as fh:
            for line in fh:
                last = json.loads(line)
        raise DataError(
            f"infer: {failed} of {n} row(s) failed, more than max_failure_rate="
            f"{self.max_failure_rate:g} allows ({allowed}); stopped. Last failure: row "
            f"{last['row']}, status {last['status']}: {last['reason']}. The rows answered so far "
            f"are in {out} and every failure in {failures_path}. Fix the cause (is the server up? "
            f"the model name? the key?), then run again with resume=true and the same "
            f"hydra.run.dir: it continues from the first row without a response. Or raise "
            f"infer.max_failure_rate to accept failed rows (null {self.infer_res_key})."
        )


def _fn_name(spec: Any) -> str:
    if isinstance(spec, str):
        return spec
    fn = getattr(spec, "func", spec)
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}" + \
        (json.dumps(getattr(spec, "keywords", {}), sort_keys=True, default=str)
         if hasattr(spec, "keywords") else "")


def _read_state(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def _scan_partial(out: Path, res_key: str, n: int) -> tuple[int, dict[int, Any]]:
    """``(first row without a response, {row: response} of every answered row)`` of a partial
    output; the file is cut back to the rows before that first row (a half-written last line,
    failed rows and everything after them go; their answers are reused from the dict)."""
    answered: dict[int, Any] = {}
    first_missing, keep_bytes, offset, lines = None, 0, 0, 0
    with open(out, "rb") as fh:
        for i, raw in enumerate(fh):
            if i >= n or not raw.endswith(b"\n"):
                break
            try:
                rec = json.loads(raw)
            except ValueError:
                break
            offset += len(raw)
            lines = i + 1
            value = rec.get(res_key) if isinstance(rec, dict) else None
            if value is None:
                if first_missing is None:
                    first_missing = i
                continue
            answered[i] = value
            if first_missing is None:
                keep_bytes = offset
    start = lines if first_missing is None else first_missing
    with open(out, "r+b") as fh:
        fh.truncate(keep_bytes)
        fh.flush()
        os.fsync(fh.fileno())
    return start, answered


# ============================================================================ backends
class HFInfer(InferStep):
    """``infer=hf``: transformers generation (``sandbox.infer.backends.HFBackend``).

    Extra parameters: ``model`` (None: the embedded default model), ``max_new_tokens``,
    ``temperature`` (0: greedy), ``top_p``, ``dtype``, ``device`` (``auto``: cuda when
    available), ``num_threads`` (``auto``: the CPUs
    other processes leave free), ``sampling_params`` (more ``generate`` arguments),
    ``model_params`` (more ``from_pretrained`` arguments)."""

    def __init__(self, num_threads: int | str = "auto", **kwargs):
        self.num_threads = parse_threads(num_threads, "infer.num_threads")
        super().__init__(**kwargs)

    def make_backend(self, seed=None, **kwargs):
        try:
            return HFBackend(**kwargs)
        except TypeError as e:
            raise ConfigError(f"infer=hf: {e}. See conf/infer/hf.yaml for its keys.") from None

    def threads(self):
        return torch_threads(self.num_threads, "infer.num_threads")


class VLLMInfer(InferStep):
    """``infer=vllm``: vLLM's offline engine (``sandbox.infer.backends.VLLMBackend``); fails at
    once, before reading any row, with the install command and the hardware it needs when
    vLLM is not installed."""

    def make_backend(self, seed=None, **kwargs):
        VLLMBackend.check_installed()
        try:
            return VLLMBackend(seed=42 if seed is None else seed, **kwargs)
        except TypeError as e:
            raise ConfigError(f"infer=vllm: {e}. See conf/infer/vllm.yaml for its keys.") from None


class APIInfer(InferStep):
    """``infer=api``: an OpenAI-compatible server (``sandbox.infer.backends.APIBackend``)."""

    def make_backend(self, seed=None, **kwargs):
        try:
            return APIBackend(seed=seed, **kwargs)
        except TypeError as e:
            raise ConfigError(f"infer=api: {e}. See conf/infer/api.yaml for its keys.") from None
