"""``data_pool=image_text``: the embedded image-text pool (``sandbox.data.image_text``) loaded
into the run like any other pool: ``pool.parquet`` with ``text`` (Data-Juicer's
``<__dj__image> caption <|__dj__eoc|>``), ``images`` (absolute paths into the cache),
``caption``, ``source`` and ``id``. Also outputs ``eval_path``: the held-out pairs that
``evaluator=retrieval`` scores by default."""
from __future__ import annotations

from sandbox.data.image_text import SOURCES, image_text_pool
from sandbox.data.io import read_table
from sandbox.data.media import media_base_dir, resolve_media
from sandbox.steps.base import StepEnv
from sandbox.steps.data.load import _Loader


class ImageTextPool(_Loader):
    """Real image-caption pairs (Debian tuxpaint stamps, npm Noto emoji) with real noise.

    * ``num_pairs``: samples in the pool; ``noise_fraction`` of them noisy (mismatched captions,
      near-duplicate, tiny and extreme-aspect images).
    * ``eval_pairs``: held-out clean pairs, kept out of the pool (chosen by ``pool_seed`` and the
      sources alone: every pool size shares them).
    * ``sources``: ``tuxpaint`` (needs ``apt-get``) and/or ``emoji`` (needs ``npm``).
    * ``max_side``: images are stored at most this many pixels on a side.
    * ``pool_seed``: which pairs are held out, sampled and made noisy.
    """

    outputs = _Loader.outputs + ("eval_path",)

    def __init__(self, num_pairs: int = 2000, noise_fraction: float = 0.3, eval_pairs: int = 300,
                 sources: list[str] | tuple[str, ...] = SOURCES, max_side: int = 96,
                 pool_seed: int = 0, text_key: str = "text"):
        self.num_pairs, self.noise_fraction = int(num_pairs), float(noise_fraction)
        self.eval_pairs, self.sources = int(eval_pairs), list(sources)
        self.max_side, self.pool_seed, self.text_key = int(max_side), int(pool_seed), text_key

    def run(self, env: StepEnv) -> dict:
        paths = image_text_pool(env.cache_dir, seed=self.pool_seed, num_pairs=self.num_pairs,
                                noise_fraction=self.noise_fraction, eval_pairs=self.eval_pairs,
                                sources=self.sources, max_side=self.max_side)
        table = read_table(paths.pool, "jsonl", "text")
        if self.text_key != "text":
            table = table.rename_columns([self.text_key if c == "text" else c
                                          for c in table.column_names])
        out = self._finish(env, resolve_media(table, media_base_dir(paths.pool)))
        out["eval_path"] = str(paths.eval_pairs)
        return out
