"""``python -m sandbox.env list | check NAME [--resolve] | setup NAME | remove NAME``.

NAME is a spec in ``conf/env/NAME.yaml`` (``--conf-dir`` reads another folder). ``check`` exits
1 when the environment is not set up, or lacks a file of its ``weights``, so scripts can test
for it. ``check --resolve`` builds nothing: it asks the package index whether the spec's packages
resolve together for its target (``sandbox.env.resolve``), and exits 1 when they do not."""
from __future__ import annotations

import argparse
import sys

from sandbox.env import CONF_DIR, load_spec, manager, resolve, spec_names
from sandbox.errors import SandboxError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.env",
                                     description="Environments for outside stacks.")
    parser.add_argument("--conf-dir", default=str(CONF_DIR),
                        help="folder of NAME.yaml environment specs (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every spec, its kind and whether it is set up")
    for command, text in (("check", "is NAME set up? (exit 1 if not)"),
                          ("setup", "build NAME's environment (nothing to do if it is built)"),
                          ("remove", "delete NAME's environment")):
        sub = commands.add_parser(command, help=text)
        sub.add_argument("name")
        if command == "check":
            sub.add_argument("--resolve", action="store_true",
                             help="install nothing: resolve NAME's packages against the package "
                                  f"index for {resolve.TARGET} and the spec's Python with "
                                  "`uv pip compile` (exit 1 if they do not resolve)")
    args = parser.parse_args(argv)

    try:
        if args.command == "list":
            names = spec_names(args.conf_dir)
            if not names:
                print(f"no environment specs in {args.conf_dir}")
            for name in names:
                spec = load_spec(name, args.conf_dir)
                state = "not set up" if not manager.is_ready(spec) else \
                    "no weights" if manager.missing_weights(spec) else "ready"
                print(f"{name:<20} {spec.kind:<6} {state:<11} {spec.folder()}")
            return 0
        spec = load_spec(args.name, args.conf_dir)
        if args.command == "check" and args.resolve:
            result = resolve.resolve(spec)
            print(result.message, file=sys.stdout if result.ok else sys.stderr)
            return 0 if result.ok else 1
        if args.command == "check":
            if manager.is_ready(spec):
                missing = manager.missing_weights(spec)
                if missing:
                    print(f"{spec.name}: set up in {spec.folder()} but not ready: its programs "
                          f"read these weights from local paths and download nothing; put them "
                          f"there: {'; '.join(missing)}.")
                    return 1
                print(f"{spec.name}: ready in {spec.folder()}")
                return 0
            print(f"{spec.name}: not set up (expected in {spec.folder()}); build it with "
                  f"`python -m sandbox.env setup {spec.name}`")
            return 1
        if args.command == "setup":
            was_ready = manager.is_ready(spec)
            folder = manager.ensure(spec)
            print(f"{spec.name}: {'already set up' if was_ready else 'set up'} in {folder}")
            return 0
        removed = manager.remove(spec)
        print(f"{spec.name}: {'removed' if removed else 'was not set up'} ({spec.folder()})")
        return 0
    except SandboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # the setup's programs are stopped with their process groups, and the environment's
        # ready marker is written only after its last step: a half-built one is never used
        if args.command != "setup":
            raise
        print(f"interrupted: the environment `{args.name}` is not set up (nothing was marked "
              f"ready, and no setup program is left running); run `python -m sandbox.env "
              f"setup {args.name}` again to build it from the start.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
