"""The image-text pool, the CLIP trainer, the retrieval evaluator, the CLIP-scored OPs and
``experiment=clip``.

The pool's registry sources are 160 MB (Debian) and 74 MB (npm); most tests build from a stand-in
for the npm package instead: a tarball in the real ``emoji-datasource-google`` layout
(``package/emoji.json`` + ``package/img/google/64/*.png``) holding drawn shapes whose names say
what they are ("red circle"), put where ``fetch_package`` caches it. One slow test reads the real
package (npm)."""
from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from sandbox.cache import cache_root
from sandbox.data import image_text as it
from sandbox.steps.base import StepEnv
from tests.conftest import compose

COLORS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220),
          "yellow": (240, 220, 20), "purple": (140, 40, 170), "orange": (250, 140, 20),
          "black": (10, 10, 10), "cyan": (20, 200, 210)}
SHAPES = ("circle", "square", "triangle", "bar", "ring")


def _shape_png(color, shape: str) -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    if shape == "circle":
        d.ellipse((8, 8, 56, 56), fill=color)
    elif shape == "square":
        d.rectangle((10, 10, 54, 54), fill=color)
    elif shape == "triangle":
        d.polygon([(32, 6), (58, 58), (6, 58)], fill=color)
    elif shape == "bar":
        d.rectangle((4, 26, 60, 38), fill=color)
    else:
        d.ellipse((8, 8, 56, 56), outline=color, width=8)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def write_emoji_package(path: Path) -> None:
    """A tarball in emoji-datasource-google's layout: 40 drawn shapes named by colour and shape."""
    entries, files = [], {}
    for i, (cname, rgb) in enumerate(COLORS.items()):
        for j, shape in enumerate(SHAPES):
            code = f"{0x1F300 + i * 16 + j:X}"
            image = f"{code.lower()}.png"
            entries.append({"name": f"{cname.upper()} {shape.upper()}", "unified": code,
                            "image": image, "sort_order": len(entries), "category": shape,
                            "has_img_google": True})
            files[f"package/img/google/64/{image}"] = _shape_png(rgb, shape)
    files["package/emoji.json"] = json.dumps(entries).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def write_deb(path: Path, files: dict[str, bytes]) -> None:
    """A Debian package (an ``ar`` archive of debian-binary, control.tar.xz, data.tar.xz) whose
    data.tar.xz holds ``files`` (paths like ``./usr/share/...``)."""
    def tar_xz(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, data in (("debian-binary", b"2.0\n"), ("control.tar.xz", tar_xz({})),
                       ("data.tar.xz", tar_xz(files))):
        head = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out.write(head.encode() + data + (b"\n" if len(data) % 2 else b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out.getvalue())


@pytest.fixture
def shapes_cache(tmp_path) -> Path:
    """A cache root whose packages/ holds the stand-in emoji package."""
    cache = tmp_path / "cache"
    write_emoji_package(cache / "packages" / it.EMOJI.filename)
    return cache


def _env(tmp_path: Path, name: str, cache: Path, seed: int = 0) -> StepEnv:
    work = tmp_path / name
    work.mkdir(parents=True, exist_ok=True)
    return StepEnv(name=name, workdir=work, run_dir=tmp_path, cache_dir=cache, seed=seed,
                   show_progress=False)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------------------- the pool
def test_pool_noise_kinds_held_out_disjoint_and_deterministic(shapes_cache):
    kw = dict(seed=3, num_pairs=40, noise_fraction=0.5, eval_pairs=8, sources=["emoji"])
    paths = it.image_text_pool(shapes_cache, **kw)
    pool, held = _read(paths.pool), _read(paths.eval_pairs)
    assert len(pool) == 40 and len(held) == 8
    kinds = {r["source"] for r in pool}
    assert kinds == {"clean", *it.NOISE_KINDS}
    # Data-Juicer's format, image paths relative to the pool file, every file there
    for r in pool + held:
        assert r["text"] == f"<__dj__image> {r['caption']} <|__dj__eoc|>"
    for r in pool:
        assert (paths.root / r["images"][0]).is_file()
    # held-out: other origins, other captions, other images than anything in the pool
    held_origins = {r["id"] for r in held}
    assert not held_origins & {r["id"].split("#")[0] for r in pool}
    assert len({r["caption"] for r in held}) == 8
    clean_captions = {r["caption"] for r in pool if r["source"] != "mismatched_caption"}
    assert not clean_captions & {r["caption"] for r in held}
    # what each noise kind did to the image
    from PIL import Image

    def size(r):
        with Image.open(paths.root / r["images"][0]) as im:
            return im.size

    for r in pool:
        w, h = size(r)
        if r["source"] == "tiny_image":
            assert max(w, h) <= 10
        elif r["source"] == "extreme_aspect":
            assert max(w / h, h / w) >= 5
        elif r["source"] == "mismatched_caption":
            origin_caption = next(p["caption"] for p in pool if p["source"] == "clean"
                                  and p["images"] == r["images"])
            assert origin_caption != r["caption"]
    # same seed: same bytes (rebuilt from scratch); another seed: another pool
    first = paths.pool.read_bytes()
    shutil.rmtree(paths.root)
    assert it.image_text_pool(shapes_cache, **kw).pool.read_bytes() == first
    other = it.image_text_pool(shapes_cache, **{**kw, "seed": 4})
    assert other.pool.read_bytes() != first
    # the held-out set does not depend on the pool's size or noise
    bigger = it.image_text_pool(shapes_cache, **{**kw, "num_pairs": 44, "noise_fraction": 0.3})
    assert bigger.eval_pairs == paths.eval_pairs


def test_debian_sources_read_from_the_package(tmp_path):
    """tuxpaint stamps (PNG + a .txt whose first line is the English caption) and Fashion-MNIST's
    idx files, read from .deb files in the real layout."""
    import gzip

    from PIL import Image

    stamps = "./usr/share/tuxpaint/stamps/"
    files = {}
    for k, (name, caption) in enumerate([("animals/frog", "A frog."), ("animals/frog-1", "A frog."),
                                          ("food/apple_green", "A green apple.")]):
        files[f"{stamps}{name}.png"] = _shape_png((40 * k, 200, 40), "circle")
        files[f"{stamps}{name}.txt"] = f"{caption}\nfr.utf8=Une grenouille.\n".encode()
    files[f"{stamps}animals/no_caption.png"] = _shape_png((0, 0, 0), "square")
    cache = tmp_path / "cache"
    write_deb(cache / "packages" / it.TUXPAINT.filename, files)
    folder, recs = it.source_pairs("tuxpaint", cache, max_side=32)
    assert [(r["caption"], r["origin"]) for r in recs] == [
        ("A frog.", "tuxpaint:animals/frog"), ("A frog.", "tuxpaint:animals/frog"),
        ("A green apple.", "tuxpaint:food/apple_green")]
    with Image.open(folder / recs[0]["file"]) as im:  # alpha composited on white, shrunk
        assert im.mode == "RGB" and im.size == (32, 32) and im.getpixel((0, 0)) == (255, 255, 255)

    # Fashion-MNIST: 10 test images, one per class, labels as idx1, pixels as idx3
    pixels = np.zeros((20, 28, 28), dtype=np.uint8)
    pixels[:, 10:18, 10:18] = 200
    labels = np.arange(20, dtype=np.uint8) % 10
    idx3 = b"\0\0\x08\x03" + b"".join(int(d).to_bytes(4, "big") for d in pixels.shape)
    idx1 = b"\0\0\x08\x01" + (20).to_bytes(4, "big")
    base = "./usr/share/datasets/fashion-mnist/"
    write_deb(cache / "packages" / it.FASHION_MNIST.filename, {
        base + "t10k-images-idx3-ubyte.gz": gzip.compress(idx3 + pixels.tobytes()),
        base + "t10k-labels-idx1-ubyte.gz": gzip.compress(idx1 + labels.tobytes())})
    zs = _read(it.fashion_mnist_zero_shot(cache, num_images=10))
    assert sorted(r["label"] for r in zs) == list(range(10))
    assert {r["label_name"] for r in zs} == set(it.FASHION_CLASSES)
    path = it.fashion_mnist_zero_shot(cache, num_images=10).parent / zs[0]["images"][0]
    with Image.open(path) as im:  # dark clothes on white, as the pool's pictures
        assert im.getpixel((0, 0)) == (255, 255, 255) and im.getpixel((14, 14)) == (55, 55, 55)


def test_missing_registry_tool_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither apt-get nor npm
    with pytest.raises(it.PackageFetchError) as e:
        it.fetch_package(it.TUXPAINT, tmp_path / "cache")
    msg = str(e.value)
    assert "apt-get download tuxpaint-stamps-default=2022.06.04-1" in msg
    assert "data_pool.sources=[emoji]" in msg and it.TUXPAINT.filename in msg


def test_chunks_follow_data_juicer():
    text = ("<__dj__image> a cat <|__dj__eoc|> no image here <|__dj__eoc|>"
            "<__dj__image><__dj__image> two")
    assert it.chunks(text, ["a.png", "b.png", "c.png"]) == [("a cat", ["a.png"]),
                                                             ("two", ["b.png", "c.png"])]


# ------------------------------------------------------------------------------- retrieval
def test_recall_hits_hand_checked():
    from sandbox.steps.evaluate.retrieval import recall_hits

    perfect = recall_hits(np.eye(12), ks=(1, 5, 10))
    assert all(h.mean() == 1.0 for h in perfect.values())
    # 3 images x 3 captions: image 0 ranks its caption 2nd, image 1 1st, image 2 3rd
    sim = np.array([[0.5, 0.9, 0.1],
                    [0.2, 0.8, 0.3],
                    [0.6, 0.7, 0.0]])
    h = recall_hits(sim, ks=(1, 2))
    assert h["i2t_recall_at_1"].tolist() == [0, 1, 0]
    assert h["i2t_recall_at_2"].tolist() == [1, 1, 0]
    # captions: caption 0's best image is 2 (0.6 > 0.5) -> rank 2; caption 1: 0.9 > 0.8 -> 2;
    # caption 2: 0.3 > 0.1 > 0.0 -> 3
    assert h["t2i_recall_at_1"].tolist() == [0, 0, 0]
    assert h["t2i_recall_at_2"].tolist() == [1, 1, 0]
    # a tie counts against the model
    assert recall_hits(np.ones((4, 4)), ks=(1,))["i2t_recall_at_1"].tolist() == [0, 0, 0, 0]


def test_verdict_directions_of_the_retrieval_metrics():
    from sandbox.verdict import direction

    for name in ("i2t_recall_at_1", "t2i_recall_at_10", "recall_mean", "zero_shot_accuracy",
                 "clip/i2t_recall_at_5"):
        assert direction(name) == 1, name
    for name in ("recall_chance_at_1", "zero_shot_chance", "retrieval_pairs"):
        assert direction(name) == 0, name


# ------------------------------------------------------------------------------- the trainer
TINY = dict(batch_size=32, image_size=16, patch_size=8, hidden_size=32, num_layers=1,
            num_heads=2, projection_dim=16, vocab_size=200, max_len=8, lr=5e-3, num_threads=1,
            log_every=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CLIP trained on the shapes (clean pool, 96 steps): the pool, its held-out pairs and
    the model folder."""
    tmp = tmp_path_factory.mktemp("clip")
    cache = tmp / "cache"
    write_emoji_package(cache / "packages" / it.EMOJI.filename)
    from sandbox.steps.data.image_text_pool import ImageTextPool
    from sandbox.steps.model.train_clip import CLIPTrainer

    pool = ImageTextPool(num_pairs=32, noise_fraction=0.0, eval_pairs=8, sources=["emoji"],
                         pool_seed=0).run(_env(tmp, "load", cache))
    out = CLIPTrainer(sample_budget=96 * 32, **TINY).run(_env(tmp, "train", cache, seed=5),
                                                         dataset=pool["dataset"])
    return {"tmp": tmp, "cache": cache, "pool": pool, "train": out}


def test_trainer_checkpoint_reloads_with_the_same_outputs(trained):
    import torch
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    out = trained["train"]
    assert out["samples_seen"] == 96 * 32
    m = out["metrics"]
    assert m["pool_pairs"] == 32 and m["epochs"] == pytest.approx(96)
    assert m["num_threads"] == 1.0
    curve = (Path(out["loss_curve"]).read_text().splitlines())
    assert curve[0] == "step,samples_seen,train_loss,lr" and len(curve) == 1 + 96 // 10 + 1
    first, last = float(curve[1].split(",")[2]), float(curve[-1].split(",")[2])
    assert last < first - 0.5  # it learns: ln(32) = 3.47 at chance
    d = out["model_dir"]
    model, tok = CLIPModel.from_pretrained(d), AutoTokenizer.from_pretrained(d)
    proc = AutoImageProcessor.from_pretrained(d)
    from PIL import Image

    im = Image.new("RGB", (40, 30), (220, 30, 30))
    enc = tok(["red circle", "blue bar"], padding=True, return_tensors="pt")
    assert enc["input_ids"][0, 0] == tok.bos_token_id
    px = proc(images=[im], return_tensors="pt")["pixel_values"]
    assert tuple(px.shape) == (1, 3, 16, 16)
    with torch.no_grad():
        a = model(**enc, pixel_values=px).logits_per_image
        again = CLIPModel.from_pretrained(d)(**enc, pixel_values=px).logits_per_image
    assert torch.equal(a, again)


def test_trainer_takes_the_text_trainers_compute_names():
    """Pipelines written for the text trainer (experiment=bottom_up's scale stage) set
    token_budget and n_layer: they become pairs of max_len tokens and the depth."""
    from sandbox.steps.model.train_clip import CLIPTrainer

    t = CLIPTrainer(token_budget=120_000, n_layer=3, max_len=32)
    assert (t.sample_budget, t.num_layers) == (3750, 3)
    assert CLIPTrainer().sample_budget == 16_000


def test_trainer_is_seeded(trained, tmp_path):
    from sandbox.steps.model.train_clip import CLIPTrainer

    runs = [CLIPTrainer(sample_budget=64, **TINY).run(_env(tmp_path, f"t{i}", trained["cache"],
                                                           seed=s),
                                                      dataset=trained["pool"]["dataset"])
            for i, s in enumerate((7, 7, 8))]
    losses = [r["final_loss"] for r in runs]
    assert losses[0] == losses[1] and losses[0] != losses[2]


def test_retrieval_evaluator_on_the_trained_model(trained, tmp_path):
    from sandbox.steps.evaluate.retrieval import RetrievalEvaluator

    ev = RetrievalEvaluator(zero_shot="false", num_threads=1, bootstrap=200, pool_seed=0,
                            eval_pairs=8, sources=["emoji"])
    env = _env(tmp_path, "evaluate", trained["cache"])
    m = ev.run(env, model_dir=trained["train"]["model_dir"])["metrics"]
    assert m["retrieval_pairs"] == 8 and m["recall_chance_at_1"] == 1 / 8
    assert m["i2t_recall_at_10"] == 1.0 and m["t2i_recall_at_10"] == 1.0  # 8 pairs: all in top 10
    for k in (1, 5):
        name = f"i2t_recall_at_{k}"
        assert m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"]
    assert m["i2t_recall_at_1"] <= m["i2t_recall_at_5"]
    # zero-shot from a labelled file of your own (colour names of drawn squares)
    folder = tmp_path / "zs"
    (folder / "images").mkdir(parents=True)
    recs = []
    for c, rgb in COLORS.items():
        from PIL import Image

        Image.open(io.BytesIO(_shape_png(rgb, "square"))).save(folder / "images" / f"{c}.png")
        recs.append({"images": [f"images/{c}.png"], "label_name": f"{c} square"})
    (folder / "zs.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    ev = RetrievalEvaluator(zero_shot="true", zero_shot_path=str(folder / "zs.jsonl"),
                            num_threads=1, bootstrap=0, eval_pairs=8, sources=["emoji"])
    m = ev.run(env, model_dir=trained["train"]["model_dir"])["metrics"]
    assert m["zero_shot_chance"] == 1 / 8
    assert m["zero_shot_accuracy"] >= 0.5  # seen in training: the colour words are learnt
    report = json.loads((env.workdir / "eval_report.json").read_text())
    assert report["zero_shot"]["images"] == 8


# ------------------------------------------------------------------------------- the OPs
def _pairs(trained):
    import pyarrow.parquet as pq

    t = pq.read_table(trained["pool"]["dataset"]).to_pylist()
    return [r["caption"] for r in t], [r["images"] for r in t]


def test_clip_ops_score_matched_above_mismatched(trained):
    from sandbox.ops import TextViews, get_op_class

    captions, images = _pairs(trained)
    mism = captions[1:] + captions[:1]  # every image with another shape's caption
    texts = [it.dj_text(c) for c in captions] + [it.dj_text(c) for c in mism]
    views = TextViews(texts, {"images": images + images})
    n = len(captions)
    model = trained["train"]["model_dir"]
    sim = get_op_class("image_text_similarity_filter")(hf_clip=model, min_score=0.0)
    st = sim.compute_stats_batch(views)
    s = np.array([v[0] for v in st["image_text_similarity"]])
    assert np.all(np.abs(s) <= 1.0 + 1e-9)
    assert (s[:n] > s[n:]).mean() >= 0.9  # the right caption scores higher for (almost) every image
    # the stat is the cosine of the two embeddings
    from sandbox.clip_model import embed_images, embed_texts, load_clip, open_images

    m, tok, proc = load_clip(model)
    e_img = embed_images(m, proc, open_images([images[0][0]]))
    e_txt = embed_texts(m, tok, [captions[0]])
    assert s[0] == pytest.approx(float(e_img[0] @ e_txt[0]), abs=1e-6)
    threshold = float(np.median(s))
    keep = get_op_class("image_text_similarity_filter")(hf_clip=model, min_score=threshold).keep(st)
    assert keep.tolist() == (s >= threshold).tolist()

    match = get_op_class("image_text_matching_filter")(hf_blip=model)
    ms = np.array([v[0] for v in match.compute_stats_batch(views)["image_text_matching_score"]])
    assert np.all((ms > 0) & (ms < 1))
    assert ms[:n].mean() > ms[n:].mean()


def test_clip_ops_chunks_missing_files_and_no_model(trained, tmp_path):
    from sandbox.errors import RecipeError
    from sandbox.ops import TextViews, get_op_class
    from sandbox.recipe import check_recipe, load_recipe

    captions, images = _pairs(trained)
    model = trained["train"]["model_dir"]
    op = get_op_class("image_text_similarity_filter")(hf_clip=model, reduce_mode="max")
    two = f"<__dj__image> {captions[0]} <|__dj__eoc|> <__dj__image><__dj__image> {captions[1]}"
    views = TextViews([two, "no image", it.dj_text(captions[0])],
                      {"images": [[images[0][0], images[1][0], images[0][0]], [],
                                  [str(tmp_path / "gone.png")]]})
    st = op.compute_stats_batch(views)
    vals = st["image_text_similarity"]
    assert len(vals[0]) == 2 and len(vals[1]) == 0 and np.isnan(vals[2][0])
    assert st["media_error"][2].endswith("gone.png: file not found")
    assert op.keep(st).tolist() == [True, True, False]
    # max over the chunk's two images = the larger of each alone
    one = op.compute_stats_batch(TextViews(
        [it.dj_text(captions[1])] * 2, {"images": [[images[1][0]], [images[0][0]]]}))
    assert vals[0][1] == pytest.approx(max(v[0] for v in one["image_text_similarity"]))
    # no model: an error when the recipe is checked, before any data is read
    with pytest.raises(RecipeError, match="not a folder.*trainer=clip"):
        check_recipe(load_recipe(
            {"ops": {"image_text_similarity_filter": {"hf_clip": str(tmp_path / "none")}}}))


def test_video_frames_text_similarity(trained, tmp_path):
    av = pytest.importorskip("av")
    from PIL import Image

    from sandbox.ops import TextViews, get_op_class

    captions, images = _pairs(trained)
    frame = Image.open(images[0][0]).convert("RGB").resize((64, 64))
    path = tmp_path / "v.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width = s.height = 64
        s.pix_fmt = "yuv420p"
        for _ in range(8):
            for p in s.encode(av.VideoFrame.from_image(frame)):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    model = trained["train"]["model_dir"]
    op = get_op_class("video_frames_text_similarity_filter")(
        hf_clip=model, frame_sampling_method="uniform", frame_num=3, min_score=-1.0)
    texts = [f"<__dj__video> {captions[0]} <|__dj__eoc|>", f"<__dj__video> {captions[1]}"]
    st = op.compute_stats_batch(TextViews(texts, {"videos": [[str(path)], [str(path)]]}))
    v = [x[0] for x in st["video_frames_text_similarity"]]
    img = get_op_class("image_text_similarity_filter")(hf_clip=model).compute_stats_batch(
        TextViews([it.dj_text(captions[0])], {"images": [[images[0][0]]]}))
    # the frames are the image (through a video codec): close to the image's own similarity
    assert v[0] == pytest.approx(img["image_text_similarity"][0][0], abs=0.1)
    assert v[0] > v[1]
    keys = get_op_class("video_frames_text_similarity_filter")(hf_clip=model)
    kv = keys.compute_stats_batch(TextViews(texts[:1], {"videos": [[str(path)]]}))
    assert len(kv["video_frames_text_similarity"][0]) == 1


# ------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_experiment_clip_runs_end_to_end(shapes_cache, tmp_path, monkeypatch):
    import sandbox

    small = ["data_pool.sources=[emoji]", "data_pool.num_pairs=36", "data_pool.eval_pairs=8",
             "data_pool.noise_fraction=0.3", "trainer.sample_budget=256", "trainer.batch_size=32",
             "trainer.hidden_size=32", "trainer.num_layers=1", "trainer.num_threads=1",
             "evaluator.zero_shot=false", "evaluator.num_threads=1", "evaluator.bootstrap=100",
             "tracking=none", "progress=false", f"cache_dir={shapes_cache}", "num_proc=1"]
    monkeypatch.chdir(tmp_path)
    metrics = sandbox.run(compose(["experiment=clip", *small]))
    assert {"i2t_recall_at_1", "t2i_recall_at_10", "recall_mean",
            "train_loss_final"} <= set(metrics)
    assert metrics["retrieval_pairs"] == 8
    base = sandbox.run(compose(["experiment=clip", "recipe=none", "refine=none", *small]))
    # the recipe drops the tiny and extreme-aspect images and repeated images; the baseline
    # trains on every pair
    assert base["pool_pairs"] == 36 and metrics["pool_pairs"] < 36


@pytest.mark.slow
def test_real_emoji_package(tmp_path):
    """The real npm package: read, converted, and dealt into a pool."""
    user = Path.home() / ".cache" / "sandbox" / "packages" / it.EMOJI.filename
    cache = tmp_path / "cache"
    (cache / "packages").mkdir(parents=True)
    if user.is_file():
        os.link(user, cache / "packages" / it.EMOJI.filename) if os.stat(user).st_dev == \
            os.stat(cache).st_dev else shutil.copyfile(user, cache / "packages" / it.EMOJI.filename)
    elif shutil.which("npm") is None:
        pytest.skip("npm is not installed and the package is not cached")
    paths = it.image_text_pool(cache, num_pairs=300, eval_pairs=50, sources=["emoji"])
    pool = _read(paths.pool)
    assert len(pool) == 300
    _, pairs = it.source_pairs("emoji", cache)
    assert len(pairs) > 1800 and {"grinning face", "red apple"} <= {p["caption"] for p in pairs}
    assert all(r["caption"] == r["caption"].lower() for r in pool)
    assert cache_root() != cache  # the session's cache root is untouched
