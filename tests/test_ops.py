"""Operator library: hand-computed stats, mapper outputs, hashes, view sharing, listing CLI.

Expected values follow Data-Juicer 1.6.1's definitions; each is worked out in a comment. The
property tests at the end check the fast paths against plain reference implementations written
the way Data-Juicer writes them.
"""
from __future__ import annotations

import hashlib
import json
import string
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import RecipeError
from sandbox.ops import all_ops, get_op_class
from sandbox.ops.base import MAXSIZE, Filter, TextViews
from sandbox.ops.common import chars
from sandbox.ops.common.chars import refine_words
from sandbox.ops.common.text_views import char_stats_of
from sandbox.ops.text.filters import char_rep_ratio, word_rep_ratio
from sandbox.recipe import load_recipe

ALL_NAMES = {
    "clean_html_mapper", "clean_links_mapper", "clean_email_mapper",
    "whitespace_normalization_mapper", "text_length_filter", "words_num_filter",
    "alphanumeric_filter", "special_characters_filter", "character_repetition_filter",
    "word_repetition_filter", "average_line_length_filter", "maximum_line_length_filter",
    "document_deduplicator",
}


def stats(name: str, texts: list[str], **kw) -> dict[str, np.ndarray]:
    return get_op_class(name)(**kw).compute_stats_batch(TextViews(list(texts)))


def stat(name: str, texts: list[str], **kw) -> list:
    (col,) = stats(name, texts, **kw).values()
    return col.tolist()


def keep(name: str, texts: list[str], **kw) -> list[bool]:
    op = get_op_class(name)(**kw)
    return op.keep(op.compute_stats_batch(TextViews(list(texts)))).tolist()


def run_mapper(name: str, texts: list, **kw) -> list:
    return get_op_class(name)(**kw).process_batch(list(texts))


def md5(s: str) -> str:
    return hashlib.md5(s.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Registry and contract
# --------------------------------------------------------------------------------------------
def test_registry_holds_every_op_with_its_kind():
    ops = all_ops()
    assert ALL_NAMES <= set(ops)
    for name in ALL_NAMES:
        cls = ops[name]
        assert cls.name == name
        assert cls.kind in ("mapper", "filter", "deduplicator")
        assert cls.description and "\n" not in cls.description


def test_every_op_answers_what_it_needs_through_the_base_class():
    """``assets`` and ``needed_assets(args)`` are on every OP (none by default), so callers ask
    every OP alike."""
    from sandbox.ops.base import OpSpec
    from sandbox.recipe import full_args

    for name, cls in all_ops().items():
        assert isinstance(cls.assets, dict), name
        if not cls.assets:
            assert cls.needed_assets(full_args(OpSpec(name, name, {}))) == [], name
    assert get_op_class("text_length_filter").needed_assets({}) == []


def test_an_op_that_can_need_an_asset_says_so_in_a_kind_the_listing_knows():
    """Every OP whose ``needed_assets`` asks for a file with some arguments (``tokenization``
    on), or that loads a model it is given, states it in ``assets``, under a kind that
    ``sandbox.assets.asset_status`` can describe (shipped in a package, given by the user, or
    fetched), so `python -m sandbox.ops` never lists an OP as needing nothing when it does."""
    from sandbox.assets import FETCHED, SHIPPED_IN, USER_PROVIDED
    from sandbox.ops.base import OpSpec
    from sandbox.recipe import full_args

    known = set(SHIPPED_IN) | set(USER_PROVIDED) | set(FETCHED)
    for name, cls in all_ops().items():
        assert set(cls.assets) <= known, (name, set(cls.assets) - known)
        args = full_args(OpSpec(name, name, {}))
        if isinstance(args.get("tokenization"), bool):
            args["tokenization"] = True
        if cls.needed_assets(args) or any(p.endswith("_model") or p.startswith("hf_")
                                          for p in args):
            assert cls.assets, f"{name} needs an asset but its `assets` says nothing"


def test_deduplicators_declare_their_shuffle_key():
    declared = {"document_deduplicator": "exact", "document_minhash_deduplicator": "minhash",
                "image_deduplicator": "media", "video_deduplicator": "media",
                "document_simhash_deduplicator": None}
    ops = all_ops()
    assert {n for n, c in ops.items() if c.kind == "deduplicator"} == set(declared)
    for name, key in declared.items():
        assert ops[name].shuffle_key == key, name
    assert all(c.shuffle_key is None for c in ops.values() if c.kind != "deduplicator")


def test_the_engines_read_the_shuffle_key_not_the_class():
    """A deduplicator the engines have never heard of groups as it declares: ``rule`` (the Ray
    shuffle) and ``exact`` (the vectorised selection) read ``shuffle_key`` only."""
    from sandbox.engine.selection import exact
    from sandbox.engine.shuffle import rule, shuffles
    from sandbox.ops import Deduplicator

    def dedup(key):
        def keep_mask(self, hashes, alive):  # a rule of its own: only the declaration tells
            return alive.copy()
        return type("Declared", (Deduplicator,), {"name": "test_declared_deduplicator",
                                                  "shuffle_key": key, "keep_mask": keep_mask})()

    for key in ("exact", "media", "minhash", None):
        op = dedup(key)
        assert rule(op) == key and shuffles(op) == (key is not None)
        assert exact(op) == (key == "exact")
    plain = type("Plain", (Deduplicator,), {"name": "test_plain_deduplicator"})()
    assert rule(plain) == "exact" and exact(plain)  # the base keep_mask is the exact rule
    assert rule(get_op_class("text_length_filter")()) is None


def test_a_deduplicator_with_its_own_keep_mask_must_declare_its_shuffle_key():
    from sandbox.ops import Deduplicator

    def keep_mask(self, hashes, alive):
        return alive.copy()

    with pytest.raises(TypeError, match="declare its shuffle_key"):
        type("Undeclared", (Deduplicator,), {"keep_mask": keep_mask})
    with pytest.raises(TypeError, match="shuffle_key='bands'"):
        type("Unknown", (Deduplicator,), {"shuffle_key": "bands"})


def test_unknown_op_suggests_closest():
    with pytest.raises(KeyError) as e:
        get_op_class("text_lenght_filter")
    msg = str(e.value)
    assert "'text_length_filter'" in msg
    assert msg.index("text_length_filter") < msg.index("Run `python -m sandbox.ops`")


@pytest.mark.parametrize("name", sorted(ALL_NAMES))
def test_every_arg_is_an_attribute_and_annotated(name):
    cls = get_op_class(name)
    op = cls()
    for pname, p in cls.params().items():
        assert p.annotation is not p.empty, (name, pname)
        assert p.default is not p.empty, (name, pname)
        assert getattr(op, pname) == p.default, (name, pname)
    assert op.config() == {n: p.default for n, p in cls.params().items()}
    if issubclass(cls, Filter):
        assert cls.stat_keys
        for arg, th in cls.thresholds.items():
            assert arg in cls.params()
            assert th.stat in cls.stat_keys
            assert th.bound in ("min", "max")
        assert set(op.stat_config()).isdisjoint(cls.thresholds)


def test_data_juicer_defaults():
    # the defaults Data-Juicer 1.6.1 ships, which a recipe without arguments gets
    generic = {"min_closed_interval", "max_closed_interval", "reversed_range"}  # every filter's
    d = lambda name: {n: p.default for n, p in get_op_class(name).params().items()  # noqa: E731
                      if n not in generic}
    assert d("text_length_filter") == {"min_len": 10, "max_len": MAXSIZE}
    assert d("words_num_filter") == {"lang": "en", "tokenization": False, "min_num": 10, "max_num": MAXSIZE}
    assert d("alphanumeric_filter") == {"tokenization": False, "min_ratio": 0.25, "max_ratio": MAXSIZE}
    assert d("special_characters_filter") == {"min_ratio": 0.0, "max_ratio": 0.25}
    assert d("character_repetition_filter") == {"rep_len": 10, "min_ratio": 0.0, "max_ratio": 0.5}
    assert d("word_repetition_filter") == {
        "lang": "en", "tokenization": False, "rep_len": 10, "min_ratio": 0.0, "max_ratio": 0.5}
    assert d("average_line_length_filter") == {"min_len": 10, "max_len": MAXSIZE}
    assert d("maximum_line_length_filter") == {"min_len": 10, "max_len": MAXSIZE}
    assert d("clean_links_mapper") == {"pattern": None, "repl": ""}
    assert d("clean_email_mapper") == {"pattern": None, "repl": ""}
    assert d("document_deduplicator") == {"lowercase": False, "ignore_non_character": False}


def test_threshold_ranges():
    th = get_op_class("special_characters_filter").thresholds
    assert (th["max_ratio"].low, th["max_ratio"].high) == (0.0, 1.0)
    th = get_op_class("text_length_filter").thresholds
    assert (th["min_len"].low, th["min_len"].high) == (0.0, float(MAXSIZE))


def test_unknown_parameter_is_rejected():
    with pytest.raises(TypeError, match="min_length"):
        get_op_class("text_length_filter")(min_length=3)


def test_tokenization_needs_a_model_and_says_so(tmp_path, monkeypatch):
    from sandbox.assets import AssetMissing

    for var in ("DATA_JUICER_MODELS_CACHE", "DATA_JUICER_CACHE_HOME",
                "DATA_JUICER_EXTERNAL_MODELS_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CACHE_HOME", str(tmp_path))  # no Data-Juicer cache
    monkeypatch.setenv("SANDBOX_OFFLINE", "1")
    for name, asset in (("words_num_filter", "en.sp.model"),
                        ("word_repetition_filter", "en.sp.model"),
                        ("alphanumeric_filter", "pythia-6.9b-deduped")):
        with pytest.raises(AssetMissing, match=f"{name}.*{asset}.*sandbox.assets fetch"):
            get_op_class(name)(tokenization=True)


@pytest.mark.parametrize("name", ["character_repetition_filter", "word_repetition_filter"])
def test_rep_len_must_be_positive(name):
    with pytest.raises(ValueError, match="rep_len"):
        get_op_class(name)(rep_len=0)


# --------------------------------------------------------------------------------------------
# Filters: stats
# --------------------------------------------------------------------------------------------
def test_text_length():
    col = stats("text_length_filter", ["", "abc", "hello world", "héllo\n", "😀"])["text_len"]
    assert col.dtype == np.int64
    # code points, not bytes: "héllo\n" is 6, the emoji is 1
    assert col.tolist() == [0, 3, 11, 6, 1]


def test_filter_bounds_are_inclusive():
    texts = ["ab", "abc", "abcd", "abcdef", "abcdefg"]  # lengths 2, 3, 4, 6, 7
    assert keep("text_length_filter", texts, min_len=3, max_len=6) == [False, True, True, True, False]
    # default max is sys.maxsize: only the minimum bites
    assert keep("text_length_filter", texts, min_len=4) == [False, False, True, True, True]


def test_words_num():
    texts = [
        # split on ' ', '\t', '\n' -> Hello, | world! | -- | 2024 | foo | bar | baz; stripping
        # special characters leaves Hello, world, '', '', foo, bar, baz -> 5 words
        "Hello, world! -- 2024 foo\tbar\nbaz",
        # '\r' and '\xa0' are not separators: two words "a\rb" and "c\xa0d"
        "a\rb c\xa0d",
        # “Quoted” -> Quoted; ©2024 is all special (© and digits); the emoji is special -> 1
        "“Quoted” ©2024 😀",
        # inner special characters stay: "don't" and "e-mail" are words -> 2
        "  don't   e-mail  ",
        "",
    ]
    col = stats("words_num_filter", texts)["num_words"]
    assert col.dtype == np.int64
    assert col.tolist() == [5, 2, 1, 2, 0]
    assert keep("words_num_filter", texts, min_num=2, max_num=2) == [False, True, False, True, False]


def test_words_num_lang_is_ignored_without_tokenization():
    # Data-Juicer only uses `lang` to pick a sentencepiece model; whitespace split otherwise:
    # "我爱 北京" is two words
    assert stat("words_num_filter", ["我爱 北京"], lang="zh") == [2]
    assert stat("words_num_filter", ["我爱 北京"], lang="en") == [2]


def test_alphanumeric_ratio():
    texts = [
        "ab12!?",  # 4 alnum of 6
        "",  # empty -> 0.0
        "é中 1",  # é, 中 and 1 are alnum, the space is not: 3 of 4
        "__--",  # '_' is not alnum: 0 of 4
    ]
    col = stats("alphanumeric_filter", texts)["alnum_ratio"]
    assert col.dtype == np.float64
    assert col.tolist() == [4 / 6, 0.0, 0.75, 0.0]
    assert keep("alphanumeric_filter", texts, min_ratio=0.75, max_ratio=1.0) == [False, False, True, False]


def test_special_characters_ratio():
    texts = [
        "a1!\n",  # '1', '!', '\n' are special: 3 of 4
        "abc",  # 0 of 3
        "“hi”😀",  # curly quotes and the emoji are special: 3 of 5
        "",  # 0.0
        "é\u00a0x",  # neither é nor the no-break space is in Data-Juicer's set: 0 of 3
    ]
    col = stats("special_characters_filter", texts)["special_char_ratio"]
    assert col.dtype == np.float64
    assert col.tolist() == [0.75, 0.0, 0.6, 0.0, 0.0]
    assert keep("special_characters_filter", texts, min_ratio=0.0, max_ratio=0.6) == [
        False, True, True, True, True]


def test_special_characters_set():
    sc = chars.SPECIAL_CHARACTERS
    assert len(sc) == 1618  # Data-Juicer's set restricted to single characters (emoji 2.2.0)
    for c in string.punctuation + string.digits + string.whitespace + "“”—…©®😀❤":
        assert c in sc, repr(c)
    for c in "aZé中\u00a0_x":
        assert (c in sc) == (c == "_"), repr(c)


def test_character_repetition_ratio():
    texts = [
        # "ab" * 8 (16 chars), n = 10: 7 n-grams; "ababababab" starts at 0, 2, 4, 6 (4 times),
        # "bababababa" at 1, 3, 5 (3 times). D = 2, D1 = 0, k = min(int(sqrt(2)), 2) = 1 -> 4/7
        "ab" * 8,
        # "abcdefghij" * 3 (30 chars): 21 n-grams, the 10 rotations; the one at 0 occurs 3 times
        # (0, 10, 20), the other 9 twice. D = 10, k = min(int(sqrt(10)), 10) = 3 -> (3+2+2)/21
        "abcdefghij" * 3,
        # 12 chars: 3 n-grams, all distinct: k = min(1, 3 - 3) = 0 -> 0.0
        "abcabcabcabc",
        "short",  # fewer than 10 characters: no n-gram -> 0.0
        "",
    ]
    col = stats("character_repetition_filter", texts)["char_rep_ratio"]
    assert col.dtype == np.float64
    assert col.tolist() == [4 / 7, 7 / 21, 0.0, 0.0, 0.0]
    # rep_len = 3 on "aaaa bbbb": 7 n-grams: aaa x2, 'aa ', 'a b', ' bb', bbb x2; D = 5, D1 = 3,
    # k = min(int(sqrt(5)), 5 - 3) = 2 -> (2 + 2) / 7
    assert stat("character_repetition_filter", ["aaaa bbbb"], rep_len=3) == [4 / 7]
    assert keep("character_repetition_filter", texts, max_ratio=4 / 7) == [True, True, True, True, True]
    assert keep("character_repetition_filter", texts, min_ratio=1 / 3, max_ratio=0.5) == [
        False, True, False, False, False]


@pytest.mark.parametrize("a", ["a", "é", "ā", "😀"])  # one codec width each: ASCII, latin-1, UCS-2, UCS-4
def test_character_repetition_long_texts(a):
    # long enough for the vectorised path: (a + "b") * 200 is 400 chars, 391 10-grams; the
    # n-gram starting at even positions 0..390 occurs 196 times, the odd one 195: D = 2, k = 1
    text = (a + "b") * 200
    assert stat("character_repetition_filter", [text]) == [196 / 391]
    # rep_len 2 (exact-key path): 399 bigrams, a+b at 200 even positions, b+a at 199 odd ones
    assert stat("character_repetition_filter", [text], rep_len=2) == [200 / 399]
    # no repeated n-gram at all -> 0.0 (and the mixed batch keeps each text's own answer)
    distinct = "".join(chr(0x4E00 + i) for i in range(300))
    assert stat("character_repetition_filter", [distinct, text, "ab" * 8]) == [0.0, 196 / 391, 4 / 7]


def thue_morse(k: int, a: str = "a", b: str = "b") -> tuple[str, str]:
    """The Thue-Morse words of length 2**k over (a, b) and its complement: for k >= 11 their
    polynomial hashes modulo 2**64 are equal for every odd base (the classic anti-hash input)."""
    x, y = a, b
    for _ in range(k):
        x, y = x + y, y + x
    return x, y


def poly_hash(values) -> int:
    from sandbox.ops.common import kernels

    h = 0
    for v in values:
        h = (h * int(kernels._BASE) + v) % 2**64
    return h


def test_repetition_kernels_are_exact_on_hash_collisions():
    # two different 2048-character n-grams with the same 64-bit hash: a hash-only count would
    # call them one repeated n-gram; the kernels compare the code points and keep them apart
    x, y = thue_morse(11)
    assert x != y and poly_hash(map(ord, x)) == poly_hash(map(ord, y))
    text = x + y
    assert stat("character_repetition_filter", [text], rep_len=2048) == [
        char_rep_ratio(text, 2048)]
    # the same at word level: n-grams of 2048 words, and single words of 2048 characters
    wx, wy = thue_morse(11, "a ", "b ")
    ids = {"a": 0, "b": 1}  # word ids as the kernel numbers them (first occurrence)
    assert poly_hash(ids[w] for w in wx.split()) == poly_hash(ids[w] for w in wy.split())
    text = wx + wy
    assert stat("word_repetition_filter", [text], rep_len=2048) == [
        word_rep_ratio(text.split(), 2048)]
    text = " ".join([x, y, x, "z", "q"])
    assert stat("word_repetition_filter", [text], rep_len=1) == [
        word_rep_ratio(text.split(), 1)] == [2 / 5]


def test_word_repetition_long_word_lists():
    # 200 words "a b a b ...": 191 10-grams, two distinct ones, both repeated -> 1.0
    assert stat("word_repetition_filter", [" ".join(["a", "b"] * 100)]) == [1.0]
    # 100 distinct words then the first 10 again: 101 10-grams, only w0..w9 occurs twice -> 2/101
    words = [f"w{i}x" for i in range(100)] + [f"w{i}x" for i in range(10)]
    assert stat("word_repetition_filter", [" ".join(words), "x x x"]) == [2 / 101, 0.0]
    # unigrams (exact keys): 80 words, "x" 40 times and 40 distinct others -> 40/80
    words = ["x", *[f"u{i}x" for i in range(40)], *["x"] * 39]
    assert stat("word_repetition_filter", [" ".join(words)], rep_len=1) == [0.5]


def test_word_repetition_ratio():
    texts = [
        # lower-cased and stripped: the cat the cat the cat sat; bigrams: (the cat) x3,
        # (cat the) x2, (cat sat) x1 -> 6 bigrams, 5 of them repeated -> 5/6
        "The cat. the cat! THE CAT sat",
        "one two three",  # 2 bigrams, all distinct -> 0.0
        "word",  # no bigram -> 0.0
        "",
    ]
    col = stats("word_repetition_filter", texts, rep_len=2)["word_rep_ratio"]
    assert col.dtype == np.float64
    assert col.tolist() == [5 / 6, 0.0, 0.0, 0.0]
    # unigrams of "a b a --": '--' is dropped; a x2, b x1 -> 2/3
    assert stat("word_repetition_filter", ["a b a --"], rep_len=1) == [2 / 3]
    # the default rep_len is 10: these texts have fewer than 10 words
    assert stat("word_repetition_filter", texts) == [0.0, 0.0, 0.0, 0.0]
    assert keep("word_repetition_filter", texts, rep_len=2, max_ratio=5 / 6) == [True] * 4
    assert keep("word_repetition_filter", texts, rep_len=2, min_ratio=0.0, max_ratio=0.8) == [
        False, True, True, True]


def test_word_repetition_lower_cases_as_python_does():
    # the kernels lower-case through a table of every code point; capital sigma (final or not
    # by context) and dotted capital I (two characters) are lower-cased by Python itself, so a
    # batch mixing them with plain texts gets every text's own exact ratio
    from sandbox.ops.common import kernels

    texts = ["ΟΔΟΣ οδος ΟΔΟΣ οδοσ", "İi İi İI", "The THE the", "ΣΣ σσ σς", "plain text here"]
    expected = [word_rep_ratio(refine_words(t.split(), True), 1) for t in texts]
    assert stat("word_repetition_filter", texts, rep_len=1) == expected
    assert expected[0] == 0.75  # ΟΔΟΣ -> οδος (final sigma) x3, οδοσ once
    # the kernel leaves exactly the texts with such characters to Python ...
    special = chars.char_table("special")
    _, odd = kernels.word_rep_ratios(*kernels.codepoints(texts), kernels.lower_table(), special, 1)
    assert odd.tolist() == [0, 1, 3]
    # ... and its table lower-cases every other code point as str.lower does
    table = kernels.lower_table()
    every = [c for c in range(0x110000) if c not in (0x130, 0x3A3) and not 0xD800 <= c < 0xE000]
    assert [chr(table[c]) for c in every] == [chr(c).lower() for c in every]


def test_line_length_stats():
    texts = [
        "a\nbb\nccc",  # 3 lines of 1, 2, 3 chars; 8 chars in all -> avg 8/3, max 3
        "ab\ncde\n",  # trailing newline starts no line: 7 chars / 2 lines = 3.5, max 3
        "abc",  # 3.0, 3
        "a\r\nb",  # '\r\n' is one break: 4 chars / 2 lines = 2.0, max 1
        "x\n\ny",  # an empty middle line counts: 4 / 3, max 1
        "abc\u2028defgh",  # U+2028 breaks lines too: 9 / 2 = 4.5, max 5
        "",  # no line: 0.0, 0
    ]
    avg = stats("average_line_length_filter", texts)["avg_line_length"]
    mx = stats("maximum_line_length_filter", texts)["max_line_length"]
    assert avg.dtype == np.float64 and mx.dtype == np.int64
    assert avg.tolist() == [8 / 3, 3.5, 3.0, 2.0, 4 / 3, 4.5, 0.0]
    assert mx.tolist() == [3, 3, 3, 1, 1, 5, 0]
    assert keep("maximum_line_length_filter", texts, min_len=3, max_len=3) == [
        True, True, True, False, False, False, False]
    assert keep("average_line_length_filter", texts, min_len=3, max_len=4) == [
        False, True, True, False, False, False, False]


def test_all_filters_on_an_empty_batch_member():
    for name in ALL_NAMES:
        cls = get_op_class(name)
        if issubclass(cls, Filter):
            for key, col in cls().compute_stats_batch(TextViews([""])).items():
                assert key in cls.stat_keys
                assert col.tolist() == [0]


# --------------------------------------------------------------------------------------------
# Shared views (OP fusion)
# --------------------------------------------------------------------------------------------
class CountingViews(TextViews):
    def __init__(self, texts):
        super().__init__(texts)
        self.computed: Counter = Counter()

    def get(self, key, fn):
        if key not in self._cache:
            self.computed[key] += 1
        return super().get(key, fn)

    def shared(self, key, fn):
        if key not in self._cache:
            self.computed[key] += 1
        return super().shared(key, fn)


def test_views_are_computed_once_per_batch():
    views = CountingViews(["a b\nc d", "e f g\nh"])
    names = ["average_line_length_filter", "maximum_line_length_filter", "words_num_filter",
             "word_repetition_filter", "text_length_filter", "alphanumeric_filter",
             "special_characters_filter", "character_repetition_filter",
             "stopwords_filter", "flagged_words_filter"]
    for name in names:
        get_op_class(name)().compute_stats_batch(views)
    # the compiled kernels share the code points of the texts (word repetition lower-cases
    # them as it reads them)
    assert [k for k in views.computed if k[0] == "codepoints"] == [("codepoints",)]
    words_keys = [k for k in views.computed if k[0] == "words"]
    refined_keys = [k for k in views.computed if k[0] == "refined_words"]
    assert ("char_stats",) in views.computed and len(words_keys) == 1
    assert len(refined_keys) == 1  # lower-cased, shared by the two word-list filters
    assert all(v == 1 for v in views.computed.values())
    from sandbox.ops.common.kernels import LINES, LONGEST_LINE, WORDS

    stats = char_stats_of(views)
    assert stats[:, LINES].tolist() == [2, 2] and stats[:, LONGEST_LINE].tolist() == [3, 5]
    assert stats[:, WORDS].tolist() == [4, 4]


# --------------------------------------------------------------------------------------------
# Mappers
# --------------------------------------------------------------------------------------------
def test_clean_html():
    out = run_mapper("clean_html_mapper", [
        "<ul><li>one</li><li>two</li></ul>",
        "<p>Tom &amp; Jerry</p>",
        # '<ol>' and '<li>' both become "\n*"; the parser drops the document's leading newline
        "<ol><li>x</li></ol>",
        "  plain\r\ntext",  # no markup, still parsed: leading spaces go, '\r\n' becomes '\n'
        '<li class="a">x</li>',  # only the bare <li> is replaced
        "<title>T</title><script>var a;</script><body>B</body>",  # script/title text is kept
        "",
    ])
    assert out == ["\n*one\n*two", "Tom & Jerry", "*\n*x", "plain\ntext", "x", "Tvar a;B", ""]
    assert run_mapper("clean_html_mapper", [None]) == [None]


def test_clean_html_skips_the_parser_only_where_it_changes_nothing():
    # texts without markup skip the parser; the condition is checked against the parser itself
    # on every document of the default corpus and on random strings rich in the characters it
    # treats specially (leading whitespace, CR, NUL, BOM, lone surrogates, C1 controls)
    import random

    from selectolax.lexbor import LexborHTMLParser

    from sandbox.data.corpus import default_corpus
    from sandbox.ops.text.mappers import _parser_keeps

    with open(default_corpus().pool, encoding="utf-8") as fh:
        corpus = [json.loads(line)["text"] for line in fh]
    rng = random.Random(0)
    special = [0, 9, 10, 11, 12, 13, 32, 38, 60, 62, 0x80, 0x85, 0xA0, 0x2028, 0xFEFF, 0xFFFD,
               0xFFFF, 0xD800, 0xDC00, 0x10FFFF]
    pools = [range(0x80), range(0x80, 0x800), range(0x800, 0xD800), range(0x10000, 0x110000),
             special]
    random_texts = ["".join(chr(rng.choice(rng.choice(pools))) for _ in range(rng.randint(0, 20)))
                    for _ in range(20000)]
    skipped = 0
    for text in [*corpus, *random_texts]:
        if _parser_keeps(text):
            skipped += 1
            assert LexborHTMLParser(text).text() == text, repr(text)
    assert skipped > 0.5 * len(random_texts)
    assert not _parser_keeps("\ud800x") and not _parser_keeps(" x") and not _parser_keeps("a&b")


def test_clean_links():
    texts = [
        "see https://example.com/a?b=1 now",
        "visit www.example.org.",  # the trailing full stop is not part of the link
        "example.com/page, x",  # host.tld/ needs no scheme
        "plain text. no link",
        "HTTPS://X.Y/Z",  # case-insensitive
        "time 10:30am",  # a scheme starts with a letter
        "note:1234 ok",  # Data-Juicer quirk: any word: with 3+ characters looks like a scheme
    ]
    assert run_mapper("clean_links_mapper", texts) == [
        "see  now", "visit .", ", x", "plain text. no link", "", "time 10:30am", " ok"]
    assert run_mapper("clean_links_mapper", ["go to http://x.io/y!"], repl="<URL>") == ["go to <URL>!"]
    # a custom pattern, also in Data-Juicer's r'...' spelling
    assert run_mapper("clean_links_mapper", ["a1b22"], pattern=r"\d+", repl="#") == ["a#b#"]
    assert run_mapper("clean_links_mapper", ["a1b22"], pattern=r"r'\d+'", repl="#") == ["a#b#"]


def test_clean_email():
    texts = [
        "contact bob.smith+x@mail.co.uk!",
        "a@Example.com",  # the domain is matched lower-case only: untouched
        "a@mail.example.Com",  # ... so the upper-case TLD is left behind
        "no address @ all",
    ]
    assert run_mapper("clean_email_mapper", texts) == [
        "contact !", "a@Example.com", ".Com", "no address @ all"]
    assert run_mapper("clean_email_mapper", ["mail me: x@y.io"], repl="[EMAIL]") == ["mail me: [EMAIL]"]
    assert run_mapper("clean_email_mapper", ["id 42 and 7"], pattern=r"\d+", repl="N") == ["id N and N"]


def test_whitespace_normalization():
    texts = [
        # str.strip() drops the ideographic space, the space and " \n" at the end; the no-break
        # space, the tab and the zero-width space inside become ' '
        "\u3000 a\u00a0b\tc\u200bd \n",
        "\u200bx",  # U+200B is not str.isspace(): not stripped, but replaced
        "a\nb",  # newlines inside are kept
        "a  b",  # runs of spaces are not collapsed
        "\x84a\u2060b",  # '\x84' and U+2060 are in Data-Juicer's set
        "",
    ]
    assert run_mapper("whitespace_normalization_mapper", texts) == [
        "a b c d", " x", "a\nb", "a  b", " a b", ""]


# --------------------------------------------------------------------------------------------
# Deduplicator
# --------------------------------------------------------------------------------------------
def hashes(texts, **kw):
    return get_op_class("document_deduplicator")(**kw).hash_batch(TextViews(list(texts)))


def test_document_deduplicator_default():
    h = hashes(["abc", " abc\n", "Abc", "a bc"])
    assert h[0] == "900150983cd24fb0d6963f7d28e17f72" == md5("abc")
    assert h[1] == h[0]  # the text is stripped before hashing
    assert h[2] != h[0]  # case matters by default
    assert h[3] != h[0]  # inner whitespace matters by default


def test_document_deduplicator_options():
    texts = ["Hello, World! 123", "HelloWorld", "hello world", "Café, 2024!", "Café，", "\x1cabc"]
    h = hashes(texts, ignore_non_character=True)
    assert h[0] == h[1] == md5("HelloWorld")  # whitespace, digits, ASCII punctuation removed
    assert h[2] == md5("helloworld") != h[1]  # case still matters
    assert h[3] == md5("Café")
    assert h[4] == md5("Café，")  # the full-width comma is not ASCII punctuation
    # '\x1c' is not regex's \s, but str.strip() removes it afterwards
    assert h[5] == md5("abc") == hashes(["\x1cabc"], ignore_non_character=True, lowercase=True)[0]
    h = hashes(texts, lowercase=True)
    assert h[2] == md5("hello world") and h[1] == md5("helloworld")
    h = hashes(texts, lowercase=True, ignore_non_character=True)
    assert h[0] == h[1] == h[2] == md5("helloworld")
    assert h[3] == md5("café")


# --------------------------------------------------------------------------------------------
# Listing command
# --------------------------------------------------------------------------------------------
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "sandbox.ops", *args], capture_output=True, text=True,
                          timeout=60)


def test_listing_command_lists_every_op():
    r = _cli()
    assert r.returncode == 0, r.stderr
    for name in ALL_NAMES:
        assert name in r.stdout
    assert "keep text_len >= min_len; range [0, sys.maxsize]" in r.stdout
    assert "keep char_rep_ratio <= max_ratio; range [0, 1]" in r.stdout
    assert "rep_len: int = 10" in r.stdout


def test_listing_command_describes_one_op():
    r = _cli("words_num_filter")
    assert r.returncode == 0, r.stderr
    assert "words_num_filter  [filter]" in r.stdout
    assert "stats: num_words" in r.stdout
    assert "min_num: int = 10" in r.stdout


def test_listing_command_unknown_op_exits_2():
    r = _cli("text_lenght_filter")
    assert r.returncode == 2
    assert "text_length_filter" in r.stderr


# --------------------------------------------------------------------------------------------
# Fast paths == plain reference implementations (the way Data-Juicer writes them)
# --------------------------------------------------------------------------------------------
ALPHABET = st.sampled_from(
    list("abcXYZ019 \t\n\r.,!-'_") + ["\x0b", "\x1c", "\x85", "\xa0", "\u2028", "\u3000", "\u200b",
    "é", "ß", "İ", "Σ", "ª", "©", "“", "”", "—", "中", "文", "，", "😀", "❤", "\ud800", "١"]
)
TEXTS = st.lists(ALPHABET, max_size=60).map("".join)


def ref_strip(word, chars):
    i, j = 0, len(word)
    while i < j and word[i] in chars:
        i += 1
    while j > i and word[j - 1] in chars:
        j -= 1
    return word[i:j]


def ref_refined(text, lower):
    words = [w for w in text.replace("\n", " ").replace("\t", " ").split(" ") if w]
    if lower:
        words = [w.lower() for w in words]
    words = [ref_strip(w, chars.SPECIAL_CHARACTERS) for w in words]
    return [w for w in words if w]


def ref_word_rep(words, n):
    freq = Counter(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
    if not freq:
        return 0.0
    return sum(v for v in freq.values() if v > 1) / sum(freq.values())


def ref_char_rep(text, n):
    freq = {}
    for i in range(len(text) - n + 1):
        freq[text[i:i + n]] = freq.get(text[i:i + n], 0) + 1
    if not freq:
        return 0.0
    vals = sorted(freq.values(), reverse=True)
    k = min(int(np.sqrt(len(vals))), len(vals) - vals.count(1))
    return sum(vals[:k]) / sum(vals)


@settings(max_examples=300, deadline=None)
@given(TEXTS)
def test_character_counts_match_reference(text):
    size = len(text) or 1  # Data-Juicer: 0.0 for empty text
    assert stat("alphanumeric_filter", [text]) == [sum(c.isalnum() for c in text) / size]
    assert stat("special_characters_filter", [text]) == [
        len([c for c in text if c in chars.SPECIAL_CHARACTERS]) / size]
    assert stat("words_num_filter", [text]) == [len(ref_refined(text, False))]
    lines = text.splitlines()
    assert stat("average_line_length_filter", [text]) == [len(text) / len(lines) if lines else 0.0]
    assert stat("maximum_line_length_filter", [text]) == [max(map(len, lines), default=0)]
    words = [w for w in text.replace("\n", " ").replace("\t", " ").split(" ") if w]
    assert chars.split_on_whitespace(text) == words
    for lower in (False, True):
        assert chars.refine_words(words, lower) == ref_refined(text, lower)
    for w in words:
        assert chars.strip_special(w) == ref_strip(w, chars.SPECIAL_CHARACTERS)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(TEXTS, st.integers(1, 40)), min_size=1, max_size=4), st.integers(1, 12))
def test_repetition_ratios_match_reference(parts, n):
    # repeating a random piece makes both long texts (vectorised path) and real repetitions
    texts = [piece * reps for piece, reps in parts]
    got = stat("character_repetition_filter", texts, rep_len=n)
    assert got == [ref_char_rep(t, n) for t in texts]
    got = stat("word_repetition_filter", texts, rep_len=n)
    assert got == [ref_word_rep(ref_refined(t, True), n) for t in texts]


def test_alnum_table_matches_str_isalnum():
    table = chars.char_table("alnum")
    cps = np.arange(0, sys.maxunicode + 1, 97)  # every 97th code point, surrogates included
    assert table[cps].tolist() == [chr(c).isalnum() for c in cps.tolist()]


def test_filter_interval_flags_follow_data_juicer():
    cls = get_op_class("text_length_filter")
    stats = {"text_len": np.array([5, 10, 15, 20, 25])}
    assert cls(min_len=10, max_len=20).keep(stats).tolist() == [False, True, True, True, False]
    assert cls(min_len=10, max_len=20, min_closed_interval=False,
               max_closed_interval=False).keep(stats).tolist() == [False, False, True, False, False]
    assert cls(min_len=10, max_len=20, reversed_range=True).keep(stats).tolist() == \
        [True, False, False, False, True]
    p = cls.params()
    assert p["reversed_range"].default is False and p["min_closed_interval"].default is True
    # mask-only flags do not change the stats cache key
    assert cls(reversed_range=True).stat_config() == cls().stat_config()


def test_interval_flags_rejected_where_the_keep_rule_is_not_a_range():
    with pytest.raises(RecipeError, match="language_id_score_filter.*does not support"):
        load_recipe({"ops": {"language_id_score_filter": {"reversed_range": True}}}).build()
