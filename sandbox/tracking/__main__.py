"""``python -m sandbox.tracking sync RUN_DIR [--uri URI]``: send to the MLflow store what a run
kept in ``RUN_DIR/tracking-buffer.jsonl`` while the store did not answer (``sandbox.cli.tracking``)."""
import sys

from sandbox.cli.tracking import main

if __name__ == "__main__":
    sys.exit(main())
