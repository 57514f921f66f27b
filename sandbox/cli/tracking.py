"""``python -m sandbox.tracking sync RUN_DIR``: replay a run's tracking buffer.

The store is ``--uri``, else the ``tracking.uri`` the run recorded in ``RUN_DIR/config.yaml``.
Exit 0 when everything was sent (or there was nothing to send), 1 when records are left (the
store stopped answering again: run it once more), 2 on bad input."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from sandbox.errors import ConfigError, SandboxError
from sandbox.tracking.buffer import buffer_path, read, replay
from sandbox.tracking.mlflow_tracker import absolute_sqlite


def store_uri(run_dir: Path, uri: str | None) -> str:
    if uri:
        return absolute_sqlite(uri)
    config = run_dir / "config.yaml"
    try:
        recorded = (yaml.safe_load(config.read_text()) or {}).get("tracking") or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read the run's tracking store from {config} ({e}); give it "
                          f"with --uri URI.") from None
    if not recorded.get("uri"):
        raise ConfigError(f"{config} names no tracking.uri (the run was not tracked by MLflow); "
                          f"give the store with --uri URI.")
    return absolute_sqlite(str(recorded["uri"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.tracking",
                                     description="What a run could not send to its tracking "
                                                 "store.")
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="send RUN_DIR's buffered records to the store")
    sync.add_argument("run_dir")
    sync.add_argument("--uri", help="the MLflow store (default: the run's tracking.uri)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    try:
        if not run_dir.is_dir():
            raise ConfigError(f"{run_dir} is not a run dir (no such folder).")
        if not read(buffer_path(run_dir)):
            print(f"nothing to send: {buffer_path(run_dir)} holds no records")
            return 0
        from mlflow.tracking import MlflowClient

        uri = store_uri(run_dir, args.uri)
        sent, left = replay(run_dir, MlflowClient(tracking_uri=uri))
    except SandboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if left:
        print(f"sent {sent} records to {uri}; {left} are left in {buffer_path(run_dir)} (the "
              f"store stopped answering): run this again once it answers.")
        return 1
    print(f"sent {sent} records to {uri}; nothing is left to send")
    return 0
