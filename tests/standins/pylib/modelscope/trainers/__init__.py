"""build_trainer: logs as modelscope's TextLoggerHook does, and its JSON log in work_dir.

Like EpochBasedTrainer.__init__ (modelscope/trainers/trainer.py: ``seed: int = 42``, then
``set_random_seed(self._seed)`` before the model is built), the constructor re-seeds with its own
``seed`` argument: a seed set before ``build_trainer`` is lost. The model's initial weights and
the order of the first batch are drawn after that, and written to ``standin_init.json``."""
import json
import os
import random
import time

from modelscope.utils.torch_utils import set_random_seed


class _Trainer:
    def __init__(self, name, model, train_dataset, eval_dataset, work_dir, cfg_modify_fn,
                 seed=42):
        self._seed = seed
        set_random_seed(self._seed)
        self.name, self.model, self.train_dataset, self.work_dir = name, model, train_dataset, work_dir
        base = {"train": {"max_epochs": 1, "optimizer": {"type": "AdamW", "lr": 5e-05},
                          "dataloader": {"batch_size_per_gpu": 2, "workers_per_gpu": 1}}}
        self.cfg = cfg_modify_fn(base)
        self.initial_weights = [round(random.gauss(0.0, 0.02), 6) for _ in range(4)]  # build_model

    def train(self):
        assert "src_txt" in self.train_dataset.column_names, self.train_dataset.column_names
        os.makedirs(self.work_dir, exist_ok=True)
        epochs = int(self.cfg["train"]["max_epochs"])
        batch = int(self.cfg["train"]["dataloader"]["batch_size_per_gpu"])
        iters = max(1, len(self.train_dataset) // batch)
        order = random.sample(range(len(self.train_dataset)), len(self.train_dataset))  # shuffle
        with open(os.path.join(self.work_dir, "standin_init.json"), "w") as f:
            json.dump({"seed": self._seed, "initial_weights": self.initial_weights,
                       "first_batch": order[:batch]}, f)
        stamp = time.strftime("%Y%m%d_%H%M%S")
        with open(os.path.join(self.work_dir, f"{stamp}.log.json"), "w") as log:
            for epoch in range(1, epochs + 1):
                for i in range(1, iters + 1):
                    loss = round(6.0 / (epoch * i), 4)
                    lr = 5e-05 * (1 - (i - 1) / iters)
                    now = time.strftime("%Y-%m-%d %H:%M:%S,000")
                    print(f"{now} - modelscope - INFO - epoch [{epoch}][{i}/{iters}]\tlr: {lr:.3e}, "
                          f"eta: 0:00:01, time: 0.100, data_load_time: 0.010, memory: 512, "
                          f"loss: {loss:.4f}", flush=True)
                    log.write(json.dumps({"mode": "train", "epoch": epoch, "iter": i, "lr": lr,
                                          "loss": loss}) + "\n")
        open(os.path.join(self.work_dir, "configuration.json"), "w").write(json.dumps(self.cfg))


def build_trainer(name, default_args):
    return _Trainer(name, **default_args)
