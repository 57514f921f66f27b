"""``python -m sandbox.assets``: prefetch the assets a recipe or an OP needs, and list them
(``sandbox.cli.assets``)."""
import sys

from sandbox.cli.assets import main

if __name__ == "__main__":
    sys.exit(main())
