"""set_random_seed of modelscope.utils.torch_utils: seeds the RNGs (here Python's `random`)."""
import random


def set_random_seed(seed):
    if seed is not None and seed >= 0:
        random.seed(seed)
    else:
        raise ValueError(f'Random seed should be positive, current seed is {seed}')
