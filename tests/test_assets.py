"""Asset resolution as Data-Juicer does it: explicit path, Data-Juicer's caches, the sandbox's own
cache, then a download (resumable, checksummed), here from an HTTP server on loopback."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sandbox import env_vars
from sandbox.assets import (AssetMissing, AssetRef, check, hf_ref, kenlm_ref, read_manifest,
                            resolve, sources, sp_ref)
from sandbox.assets.download import DownloadError, download

PAYLOAD = os.urandom(300_000)  # bigger than one read chunk of the server


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No Data-Juicer variables, Data-Juicer's default folders under tmp, an empty own cache."""
    for var in (sources.DJ_MODELS_CACHE, sources.DJ_ASSETS_CACHE, sources.DJ_CACHE_HOME,
                sources.DJ_EXTERNAL_MODELS_HOME, env_vars.OFFLINE):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(sources.CACHE_HOME, str(tmp_path / "home"))
    monkeypatch.setenv(env_vars.CACHE, str(tmp_path / "own"))
    return tmp_path


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    headers_for: dict[str, dict] = {}
    seen: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        self.seen.append((self.path, self.headers.get("Range")))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        for k, v in self.headers_for.get(self.path, {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """An HTTP server on 127.0.0.1 standing in for Data-Juicer's bucket."""
    _Handler.files, _Handler.headers_for, _Handler.seen = {}, {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setattr(sources, "DJ_MODEL_LINKS", base + "/models/")
    monkeypatch.setattr(sources, "DJ_BACKUP_MODEL_LINKS", {"*.arpa.bin": base + "/backup/"})
    monkeypatch.setattr(sources, "DJ_WORDS_LINKS", {"stopwords": base + "/stopwords.json"})
    monkeypatch.setattr(sources, "HF_HUB", base + "/hf/")
    yield _Handler, base
    httpd.shutdown()
    httpd.server_close()


def test_resolution_order(isolated, server, monkeypatch):
    handler, _ = server
    handler.files["/models/en.sp.model"] = b"downloaded"
    ref = sp_ref("en")
    # 4. nothing local: downloaded into the sandbox's cache, recorded in the manifest
    got = resolve(ref, progress=False)
    own = isolated / "own" / "models" / "en.sp.model"
    assert (got.path, got.origin) == (own, "download") and own.read_bytes() == b"downloaded"
    assert read_manifest()[str(own)]["sha256"] == hashlib.sha256(b"downloaded").hexdigest()
    # 3. the sandbox's cache, no second download
    n = len(handler.seen)
    assert resolve(ref).origin == "sandbox cache" and len(handler.seen) == n
    # 2b. Data-Juicer's default cache (~/.cache/data_juicer/models) wins over ours
    default = isolated / "home" / "data_juicer" / "models"
    default.mkdir(parents=True)
    (default / "en.sp.model").write_bytes(b"dj default")
    assert resolve(ref).path == default / "en.sp.model"
    # 2a. $DATA_JUICER_MODELS_CACHE, then $DATA_JUICER_EXTERNAL_MODELS_HOME before it
    env_cache = isolated / "dj_cache"
    env_cache.mkdir()
    (env_cache / "en.sp.model").write_bytes(b"dj env")
    monkeypatch.setenv(sources.DJ_MODELS_CACHE, str(env_cache))
    assert resolve(ref).origin == "$DATA_JUICER_MODELS_CACHE"
    ext = isolated / "external"
    ext.mkdir()
    (ext / "en.sp.model").write_bytes(b"external")
    monkeypatch.setenv(sources.DJ_EXTERNAL_MODELS_HOME, f"{isolated / 'nowhere'}{os.pathsep}{ext}")
    assert resolve(ref).path == ext / "en.sp.model"
    # 1. an explicit path wins over everything; a missing one has no fallback
    mine = isolated / "mine.model"
    mine.write_bytes(b"mine")
    assert resolve(sp_ref("en", str(mine), "sp_model_path")).origin == "explicit path (sp_model_path)"
    with pytest.raises(AssetMissing, match=r"sp_model_path=.*nope.model does not exist"):
        resolve(sp_ref("en", str(isolated / "nope.model"), "sp_model_path"))


def test_backup_url_and_offline(isolated, server, monkeypatch):
    handler, _ = server
    handler.files["/backup/en.arpa.bin"] = PAYLOAD  # Data-Juicer's bucket has no such file
    assert resolve(kenlm_ref("en"), progress=False).origin == "download"
    assert [p for p, _ in handler.seen] == ["/models/en.arpa.bin", "/backup/en.arpa.bin"]
    monkeypatch.setenv(env_vars.OFFLINE, "1")
    with pytest.raises(AssetMissing, match="SANDBOX_OFFLINE=1"):
        resolve(kenlm_ref("fr"))
    assert len(handler.seen) == 2


def test_checksum_mismatch_deletes_the_download(isolated, server):
    handler, base = server
    handler.files["/models/en.arpa.bin"] = PAYLOAD
    handler.headers_for["/models/en.arpa.bin"] = {"X-Linked-ETag": '"' + "0" * 64 + '"'}
    dest = isolated / "x" / "en.arpa.bin"
    with pytest.raises(DownloadError, match="checksum mismatch.*X-Linked-ETag"):
        download(base + "/models/en.arpa.bin", dest, progress=False)
    assert not dest.exists() and not dest.with_name("en.arpa.bin.part").exists()
    handler.headers_for.clear()
    with pytest.raises(DownloadError, match="expected " + "ab" * 32):
        download(base + "/models/en.arpa.bin", dest, sha256="ab" * 32, progress=False)
    good = hashlib.sha256(PAYLOAD).hexdigest()
    assert download(base + "/models/en.arpa.bin", dest, sha256=good, progress=False) == good
    # through resolve: a mismatch is a missing asset, with the reason
    handler.headers_for["/models/en.arpa.bin"] = {"X-Linked-ETag": "f" * 64}
    with pytest.raises(AssetMissing, match="checksum mismatch"):
        resolve(AssetRef("model", "en.arpa.bin"), progress=False)


def test_download_resumes_from_the_part_file(isolated, server):
    handler, base = server
    handler.files["/models/big.bin"] = PAYLOAD
    dest = isolated / "d" / "big.bin"
    dest.parent.mkdir()
    dest.with_name("big.bin.part").write_bytes(PAYLOAD[:123_456])
    download(base + "/models/big.bin", dest, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert handler.seen[-1] == ("/models/big.bin", "bytes=123456-")


def test_all_missing_assets_at_once(isolated, monkeypatch):
    monkeypatch.setenv(env_vars.OFFLINE, "1")
    needs = [("perplexity_filter", sp_ref("en", None, "sp_model_path")),
             ("perplexity_filter", kenlm_ref("en", None, "model_path")),
             ("words_num_filter", sp_ref("en")), ("word_repetition_filter", sp_ref("de")),
             ("alphanumeric_filter", hf_ref("EleutherAI/pythia-6.9b-deduped"))]
    with pytest.raises(AssetMissing) as e:
        check(needs, "recipe file r.yaml", "--recipe r.yaml")
    msg = str(e.value)
    assert msg.startswith("recipe file r.yaml needs 4 assets")
    assert "en.sp.model" in msg and msg.count("en.sp.model") == 1
    assert "(needed by perplexity_filter, words_num_filter)" in msg
    assert "de.sp.model" in msg and "en.arpa.bin" in msg and "pythia-6.9b-deduped" in msg
    assert "python -m sandbox.assets fetch --recipe r.yaml" in msg
    assert str(isolated / "own" / "models") in msg


def test_words_from_a_dj_cache_before_the_built_in_list(isolated, server, monkeypatch):
    from sandbox.assets import load_words_asset

    assert load_words_asset(None, "stopwords", "en")["en"]  # built from stopwordsiso
    dj = isolated / "dj_assets"
    dj.mkdir()
    (dj / "stopwords.json").write_text(json.dumps({"en": ["only", "these"]}))
    monkeypatch.setenv(sources.DJ_ASSETS_CACHE, str(dj))
    assert load_words_asset(None, "stopwords", "en") == {"en": ["only", "these"]}
    # a language the DJ list lacks falls through to the built-in lists
    assert "le" in load_words_asset(None, "stopwords", "fr")["fr"]
    # ... and one nobody has locally is downloaded (Data-Juicer's list) into the own cache
    handler, _ = server
    handler.files["/stopwords.json"] = json.dumps({"xx": ["qq"]}).encode()
    assert load_words_asset(None, "stopwords", "xx") == {"xx": ["qq"]}
    assert (isolated / "own" / "assets" / "dj" / "stopwords.json").exists()


def test_zh_flagged_words_offline_list():
    from sandbox.assets import ZH_FLAGGED_WHEEL, load_words_asset
    from sandbox.ops import TextViews, get_op_class

    words = load_words_asset(None, "flagged_words", "zh")["zh"]
    assert len(words) > 200 and ZH_FLAGGED_WHEEL.license == "MIT"
    op = get_op_class("flagged_words_filter")(lang="zh", tokenization=True, use_words_aug=True)
    flagged = words[0]
    stats = op.compute_stats_batch(TextViews([f"这是{flagged}的", "今天天气很好"]))
    assert stats["flagged_words_ratio"][0] > 0 and stats["flagged_words_ratio"][1] == 0


def test_alphanumeric_tokenization_with_a_tokenizer_in_dj_external_home(isolated, monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from sandbox.ops import TextViews, get_op_class

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel()
    tok.train_from_iterator(["the cat sat on the mat", "dogs 123 run!"] * 20,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"]))
    d = isolated / "ext" / "EleutherAI" / "pythia-6.9b-deduped"
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(d)
    monkeypatch.setenv(sources.DJ_EXTERNAL_MODELS_HOME, str(isolated / "ext"))
    op = get_op_class("alphanumeric_filter")(tokenization=True, min_ratio=1.5, max_ratio=3)
    texts = ["the cat sat", "123 456", ""]
    got = op.compute_stats_batch(TextViews(texts))["alpha_token_ratio"]
    fast = PreTrainedTokenizerFast.from_pretrained(d)
    want = [sum(c.isalpha() for c in t) / len(fast.tokenize(t)) if fast.tokenize(t) else 0.0
            for t in texts]
    assert got.tolist() == want and op.stat_keys == ("alpha_token_ratio",)
    assert op.keep({"alpha_token_ratio": got}).tolist() == [1.5 <= want[0] <= 3, False, False]


def test_cli_fetch_and_list(isolated, server):
    handler, base = server
    handler.files["/models/en.sp.model"] = b"sp bytes"
    handler.files["/models/en.arpa.bin"] = PAYLOAD
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    code = (f"import sys; from sandbox.assets import sources; "
            f"sources.DJ_MODEL_LINKS = {base + '/models/'!r}; "
            f"from sandbox.assets.__main__ import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "fetch", "--op", "perplexity_filter",
                        "--lang", "en", "--quiet"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "en.arpa.bin" in r.stdout and "download" in r.stdout
    r = subprocess.run([sys.executable, "-m", "sandbox.assets", "list"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("en.arpa.bin"))
    assert "sandbox cache, fetched" in line and hashlib.sha256(PAYLOAD).hexdigest()[:16] in line
    assert "293.0 KB" in line
    r = subprocess.run([sys.executable, "-m", "sandbox.assets", "fetch", "--op", "nope_filter"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "unknown operator" in r.stderr and "Traceback" not in r.stderr
