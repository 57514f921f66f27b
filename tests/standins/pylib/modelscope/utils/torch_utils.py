SEEDS = []


def set_random_seed(seed):
    SEEDS.append(seed)
