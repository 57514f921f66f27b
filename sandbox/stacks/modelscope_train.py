"""Train with a ModelScope trainer from a JSON job file (runs in the `modelscope` environment).

ModelScope has no training command line: ``build_trainer(name, default_args)`` is its API. The
job file holds ``model``, ``trainer_name``, ``train_dataset`` (a local jsonl/json/csv file or a
hub dataset id), optional ``eval_dataset``, ``key_remapping`` (pool field -> the model's input
name), ``work_dir``, ``seed`` (passed as the trainer's ``seed`` argument, which seeds the
model's initialisation and the data order) and ``cfg`` (merged into the model's configuration,
e.g. ``{"train": {"max_epochs": 2}}``). ModelScope's text logger prints the loss lines the trainer
step parses; its JSON log lands in ``work_dir``.

    python modelscope_train.py JOB.json
"""
import json
import os
import sys


def _dataset(path, remap):
    from modelscope.msdatasets import MsDataset

    if path is None:
        return None
    if os.path.exists(path):  # a local pool: read with `datasets`, as MsDataset does for files
        from datasets import load_dataset

        kind = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}.get(
            os.path.splitext(path)[1].lower(), "json")
        ds = load_dataset(kind, data_files=path, split="train")
    else:
        ds = MsDataset.load(path, split="train").ds_instance
    for old, new in (remap or {}).items():
        if old in ds.column_names and old != new:
            ds = ds.rename_column(old, new)
    return ds


def _merge(into, new):
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        job = json.load(f)
    from modelscope.trainers import build_trainer

    remap = job.get("key_remapping") or {}
    extra = job.get("cfg") or {}

    def cfg_modify_fn(cfg):
        _merge(cfg, extra)
        return cfg

    kwargs = dict(model=job["model"], train_dataset=_dataset(job["train_dataset"], remap),
                  eval_dataset=_dataset(job.get("eval_dataset"), remap),
                  work_dir=job["work_dir"], cfg_modify_fn=cfg_modify_fn,
                  # EpochBasedTrainer.__init__ calls set_random_seed(seed) (default 42) before it
                  # builds the model: a seed set here beforehand would be overwritten
                  seed=int(job.get("seed", 42)))
    trainer = build_trainer(name=job["trainer_name"], default_args=kwargs)
    trainer.train()
    print(f"work_dir: {job['work_dir']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
