"""Data-Juicer's side of bench/parity_assets.py, run in its venv: bench/parity_dj_worker.py with
one patch. The venv's torchvision build does not match its torch (``torchvision::nms does not
exist`` on import), and transformers imports torchvision for ``AutoProcessor`` whenever it is
installed; the OPs measured here use tokenizers only, so transformers is told it is absent."""
import sys

import transformers.utils as hf_utils
import transformers.utils.import_utils as hf_import_utils

hf_import_utils.is_torchvision_available = lambda: False
hf_utils.is_torchvision_available = lambda: False

sys.path.insert(0, __file__.rsplit("/", 1)[0])
import parity_dj_worker  # noqa: E402

if __name__ == "__main__":
    parity_dj_worker.main(*sys.argv[1:4])
