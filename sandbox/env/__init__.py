"""Environments of their own for outside stacks (EasyAnimate, VBench, ...) whose pinned
dependencies cannot live beside the sandbox's: a spec (``spec.py``), creation once and running
inside (``manager.py``), and ``python -m sandbox.env list | check | setup | remove NAME`` over the
specs in ``conf/env/``."""
from __future__ import annotations

from pathlib import Path

from sandbox.env.spec import EnvSpec, GitSource
from sandbox.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent.parent / "conf" / "env"

__all__ = ["CONF_DIR", "EnvSpec", "GitSource", "load_spec", "spec_names"]


def spec_names(conf_dir: str | Path = CONF_DIR) -> list[str]:
    return sorted(p.stem for p in Path(conf_dir).glob("*.yaml"))


def load_spec(name: str, conf_dir: str | Path = CONF_DIR) -> EnvSpec:
    """The spec in ``conf_dir/NAME.yaml``; a ConfigError naming the known ones when absent."""
    import yaml

    path = Path(conf_dir) / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(spec_names(conf_dir)) or "none"
        raise ConfigError(f"no environment spec `{name}`: {path} does not exist (known: {known}). "
                          f"Check the name, or write the spec there (see conf/env/*.yaml).")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({e}); fix the file.") from None
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": name}  # the file's name is the default
    return EnvSpec.from_mapping(data, source=str(path), base_dir=path.parent)
