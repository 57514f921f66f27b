"""clean_links_mapper's windowed fast path (default pattern) against a plain `regex` sub of the
whole text, which is what Data-Juicer runs."""
import json
import random
import re
import sys

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.data.corpus import default_corpus
from sandbox.ops.text import mappers
from sandbox.ops.text.mappers import DEFAULT_LINK_PATTERN, CleanLinksMapper

REFERENCE = regex.compile(DEFAULT_LINK_PATTERN, flags=regex.DOTALL)

PIECES = [
    "http://", "https://x.y/z", "HTTP://A.B/C", "ftp://h", "http:/", "http:", "www.", "WwW.",
    "www1.", "www123.", "www1234.", "wwww.", "a.com/", "A.CoM/", "x.abcde/", "a.b.cd/", ".ab/",
    "-.ab/", "mailto:", "note:1234", "10:30am", "a:b", "a-b:c", "_x:y", "x:%20", "x:/", "x:///",
    "x:////y", "ex-ample", "w", "ww", "1", "123", "x", "ab", "abcd", "abcde", "q", "Z", ".", ":",
    "/", "%", "-", "_", "(", ")", "((a))", "(a(b)c)", "<", ">", "`", "!", ";", '"', "'", ",", "?",
    "[", "]", "{", "}", "«", "»", "“", "”", "‘", "’", "é", "ß", "中文", "ſ", "\u212a", "\u0130",
    "\u0131", "ﬁ", "٣", "\u0301", "\u200b", "\u200d", " ", "  ", "\n", "\t", "\r", "\x0b", "\x0c",
    "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000", "\u2028", "\u3000", "\ufffc",
]


def fast(text, repl=""):
    return CleanLinksMapper(repl=repl).process_batch([text])[0]


def reference(text, repl=""):
    return REFERENCE.sub(repl, text)


def _all_code_points():
    return "".join(map(chr, range(sys.maxunicode + 1)))


def _class(pattern, flags=0):
    return set(regex.findall(pattern, _all_code_points(), flags=flags))


def _re_class(compiled_class):
    return set(compiled_class.findall(_all_code_points()))


def test_anchor_classes_cover_what_regex_matches():
    letters = _re_class(re.compile("[" + mappers._LINK_LETTERS + "]"))
    # [a-z] under (?i): the ASCII letters, 'İ', 'ſ' and the Kelvin sign in `regex`
    assert _class(r"(?i)[a-z]") <= letters
    after_colon = _re_class(re.compile("[/%0-9" + mappers._LINK_LETTERS + "]"))
    assert _class(r"(?i)[a-z0-9%]") | {"/"} <= after_colon
    assert _class(r"(?i)w") == {"w", "W"}
    assert _class(r"(?i)[.]") == {"."} and _class(r"(?i):") == {":"} and _class(r"(?i)\/") == {"/"}
    assert "\n" not in _class(r"(?i)\d")  # the '.' of the lookbehinds stands for \d
    # the window bounds: `regex`'s \s exactly, and ' ' / '\n' are in it
    spaces = _class(r"\s")
    assert _re_class(mappers._LINK_SPACE) == spaces and {" ", "\n"} <= spaces
    # no whitespace character is a word character (the pattern's [\w-]+ never spans a space)
    assert not spaces & _class(r"\w")


@pytest.mark.parametrize("text", [
    "", "http://x", "see http://x.io/a(b)c) and www.y.org.", "a.com/ b.org/x\nhttp://c",
    "x\u2028http://a.b/c\x1cd e", "é.foo.com/x", "Category:American_people", "10:30am ok",
    "www.a www1.b www1234.c", "(http://x.y/(a)(b))", "text-align:right;\"|", "ſ:ab K:cd İ:ef",
    "mailto:bob@example.com, note:1234.", "abc:" * 50, "x:y " * 100 + "http://a.b/c d",
    "a.b " * 300 + "www.x", "w.x\n" * 100, "中文http://x.y中文 w.ab/", "x:" + "a" * 5000,
])
def test_fast_path_examples(text):
    for repl in ("", "<URL>", r"[\1|\2]", r"\g<0>\g<0>"):
        assert fast(text, repl) == reference(text, repl)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40))
def test_fast_path_matches_regex_sub_on_pieces(pieces):
    text = "".join(pieces)
    assert fast(text) == reference(text)
    assert fast(text, r"<\1>") == reference(text, r"<\1>")


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aw1.:/ \n(-%é\u212a\x1c") + ["\u2028"]), max_size=60))
def test_fast_path_matches_regex_sub_on_small_alphabet(text):
    assert fast(text, "#") == reference(text, "#")


@pytest.mark.parametrize("merge_gap,max_steps", [
    (mappers._LINK_MERGE_GAP, mappers._LINK_MAX_STEPS), (0, 10**9), (10**9, 10**9), (8, 1), (0, 3),
])
def test_fast_path_matches_regex_sub_randomized(monkeypatch, merge_gap, max_steps):
    # also with every window on its own, all merged, and the dense-text fallback kicking in early
    monkeypatch.setattr(mappers, "_LINK_MERGE_GAP", merge_gap)
    monkeypatch.setattr(mappers, "_LINK_MAX_STEPS", max_steps)
    rng = random.Random(20240601 + merge_gap + max_steps)
    mapper = CleanLinksMapper(repl="<L>")
    texts = ["".join(rng.choices(PIECES, k=rng.randint(0, 80))) for _ in range(8000)]
    assert mapper.process_batch(texts) == [REFERENCE.sub("<L>", t) for t in texts]


def test_fast_path_matches_regex_sub_on_real_documents():
    # the default corpus pool: real wiki markup, news and junk, full of links and near-links
    with open(default_corpus().pool, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    assert sum("http" in t or "www." in t for t in texts) > 50  # the path under test is taken
    assert CleanLinksMapper().process_batch(texts) == [REFERENCE.sub("", t) for t in texts]


def test_other_paths_keep_plain_sub():
    # a callable repl and custom patterns take the plain sub over the whole text
    positions = CleanLinksMapper(repl=lambda m: str(m.start())).process_batch(["ab http://x.y"])
    assert positions == ["ab 3"]
    assert CleanLinksMapper(pattern=r"\d+", repl="#").process_batch(["a1b22"]) == ["a#b#"]
    # a bad template raises at the first match, as with a plain sub, and not without one
    assert CleanLinksMapper(repl=r"\9").process_batch(["no link: here."]) == ["no link: here."]
    with pytest.raises(regex.error):
        CleanLinksMapper(repl=r"\9").process_batch(["a http://x.y"])
