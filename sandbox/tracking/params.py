"""What a tracker logs about a run's config: flattened params with secrets redacted (also in
Hydra's own ``.hydra/`` record), and the tags that make runs comparable with a baseline."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sandbox.utils import atomic_write_text, stable_hash

SECRET = re.compile(r"key|token|secret|password|passwd|credential", re.I)
REDACTED = "***"


def redact(obj: Any, _key: str = "") -> Any:
    """Replace the values of keys that look like secrets (api keys, tokens, passwords)."""
    if isinstance(obj, dict):
        return {k: (REDACTED if SECRET.search(str(k)) and not isinstance(v, (dict, list))
                    and v is not None and not _is_threshold_key(str(k)) else redact(v, str(k)))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, _key) for v in obj]
    return obj


def redact_hydra_record(run_dir: Path) -> None:
    """Hydra saves the raw config and command-line overrides in ``.hydra/``: redact secrets there
    too, so that no file in the run dir holds them in clear."""
    hydra_dir = run_dir / ".hydra"
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        f = hydra_dir / name
        if f.exists():
            data = yaml.load(f.read_text(encoding="utf-8"), Loader=_LOADER)
            if name == "overrides.yaml":
                clean = [redact_override(o) for o in data or []]
            else:
                clean = _redact_overrides_in(redact(data))
            if clean != data:  # rewritten only when it held a secret (libyaml: ~0.1 s less)
                atomic_write_text(f, yaml.dump(clean, Dumper=_DUMPER, sort_keys=False))


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML has it
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _redact_overrides_in(obj: Any) -> Any:
    """Redact ``key=value`` strings (Hydra's record of the command line) anywhere in ``obj``."""
    if isinstance(obj, dict):
        return {k: _redact_overrides_in(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redact_overrides_in(v) for v in obj]
    return redact_override(obj) if isinstance(obj, str) and "=" in obj else obj


def redact_override(item: str) -> str:
    """A `key=value` command-line override with the value hidden when the key looks secret."""
    key, sep, value = str(item).partition("=")
    last = key.lstrip("+~").rsplit(".", 1)[-1]
    if sep and SECRET.search(last) and not _is_threshold_key(last):
        return f"{key}={REDACTED}"
    return item


def _is_threshold_key(k: str) -> bool:
    # `text_key`, `token_budget`, `num_tokens` are configuration, not secrets.
    return k in {"text_key", "text_keys", "token_budget", "max_tokens", "tokenization"} \
        or k.endswith("_tokens") or k.startswith("min_") or k.startswith("max_")


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """``{"a.b.c": "value"}`` for MLflow params (values capped at 500 chars)."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            if prefix == "" and k in ("pipeline", "pipelines", "hydra"):
                continue
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        s = str(obj)
        out[prefix[:-1]] = s if len(s) <= 500 else s[:497] + "..."
    return out


def run_tags(resolved: dict, step_keys: list[str]) -> dict[str, str]:
    """Tags that let runs be compared: the same data pool + trainer + evaluator are comparable,
    and a run with no recipe and no refinement is that group's baseline."""
    ops = (resolved.get("recipe") or {}).get("ops") or {}
    path = (resolved.get("recipe") or {}).get("path")
    refine = str((resolved.get("refine") or {}).get("_target_", ""))
    baseline = not ops and not path and (not refine or refine.endswith("NoRefine"))
    comparable = stable_hash([resolved.get(k) for k in ("data_pool", "trainer", "evaluator",
                                                          "seed")])
    return {"sandbox.baseline": str(baseline).lower(), "sandbox.comparable": comparable,
            "sandbox.pipeline": ",".join(step_keys)}
