"""``python -m sandbox.convert_dj_sandbox SANDBOX.yaml [-o conf/experiment/NAME.yaml]``."""
import sys

from sandbox.convert_dj_sandbox import main

if __name__ == "__main__":
    sys.exit(main())
