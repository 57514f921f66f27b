"""Runs inside Data-Juicer's venv (bench/.work/dj-venv): apply each case's Data-Juicer OP to the
sample and write what it produced. Called by bench/parity.py; not imported by the sandbox."""
import json
import sys
import time


def main(data_path, cases_path, out_path):
    import types

    # imagededup's package __init__ imports its CNN method, which needs a torchvision build
    # matching torch; the hashing methods Data-Juicer uses do not. Stub the CNN module.
    stub = types.ModuleType("imagededup.methods.cnn")
    stub.CNN = None
    sys.modules["imagededup.methods.cnn"] = stub
    stub2 = types.ModuleType("imagededup.utils.models")
    stub2.CustomModel = None
    sys.modules["imagededup.utils.models"] = stub2
    import numpy as np
    from datasets import Dataset
    from data_juicer.ops import OPERATORS
    from data_juicer.utils.constant import Fields, HashKeys

    rows = {k: [json.loads(l) for l in open(p, encoding="utf-8")]
            for k, p in json.load(open(data_path)).items()}
    cases = json.load(open(cases_path))
    out = {}
    for case in cases:
        name, args, kind = case["op"], case["args"], case["data"]
        data = rows[kind]
        t0 = time.time()
        try:
            op = OPERATORS.modules[name](**args)
            res = {}
            if case["kind"] == "mapper":
                texts = [r["text"] for r in data]
                got = []
                for s in range(0, len(texts), 1000):
                    got += op.process_batched({"text": texts[s:s + 1000]})["text"]
                res["texts"] = got
            elif case["kind"] == "filter":
                stats, keep = [], []
                for s in range(0, len(data), 1000):
                    chunk = data[s:s + 1000]
                    smp = {k: [r.get(k) for r in chunk] for k in chunk[0]}
                    smp[Fields.stats] = [{} for _ in chunk]
                    if op.is_batched_op():
                        smp = op.compute_stats_batched(smp)
                        keep += [bool(x) for x in op.process_batched(smp)]
                        stats += smp[Fields.stats]
                    else:
                        for i in range(len(chunk)):
                            one = {k: v[i] for k, v in smp.items()}
                            one = op.compute_stats_single(one)
                            keep.append(bool(op.process_single(one)))
                            stats.append(one[Fields.stats])
                res["stats"] = [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in st.items()}
                                for st in stats]
                res["keep"] = keep
            else:  # deduplicator / selector: dataset level, report kept row ids in output order
                ds = Dataset.from_list([dict(r, __row__=i) for i, r in enumerate(data)])
                if case["kind"] == "deduplicator":
                    ds = ds.map(op.compute_hash, num_proc=1, load_from_cache_file=False)
                    ds, _ = op.process(ds)
                else:
                    ds = op.process(ds)
                res["rows"] = list(ds["__row__"])
            res["seconds"] = time.time() - t0
        except Exception as e:  # reported per OP
            import traceback

            res = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        out[case["id"]] = res
        print(case["id"], "done", res.get("seconds", res.get("error")), flush=True, file=sys.stderr)
    json.dump(out, open(out_path, "w"), default=str)


if __name__ == "__main__":
    main(*sys.argv[1:4])
