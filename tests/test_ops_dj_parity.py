"""Hand-computed expectations for the operators ported from Data-Juicer 1.6.1 (small inputs)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sandbox.assets import AssetMissing
from sandbox.ops import TextViews, get_op_class
from sandbox.ops.image.deduplicators import image_hash
from sandbox.ops.image.filters import size_to_bytes


def op(name, **kw):
    return get_op_class(name)(**kw)


def mapped(name, texts, **kw):
    return op(name, **kw).process_batch(list(texts))


def stats(name, texts, fields=None, **kw):
    o = op(name, **kw)
    s = o.compute_stats_batch(TextViews(list(texts), fields))
    return o, s, o.keep(s)


# ----------------------------------------------------------------------------- mappers
def test_clean_ip():
    assert mapped("clean_ip_mapper", ["ip 192.168.0.1 ok", "v6 fe80:0:0:0:202:b3ff:fe1e:8329!"]) == \
        ["ip  ok", "v6 !"]
    assert mapped("clean_ip_mapper", ["10.0.0.256"]) == ["6"]  # DJ quirk: 25 matches


def test_clean_copyright():
    assert mapped("clean_copyright_mapper", ["/* Copyright 2020 */\ncode", "/* plain */\ncode",
                                             "// a\n# b\n\nbody\n# c"]) == \
        ["\ncode", "/* plain */\ncode", "body\n# c"]


def test_expand_macro():
    text = "\\newcommand{\\foo}{bar}\nuse \\foo here\n"
    assert mapped("expand_macro_mapper", [text]) == ["\\newcommand{bar}{bar}\nuse bar here\n"]


def test_fix_unicode_and_punctuation():
    assert mapped("fix_unicode_mapper", ["cafÃ©"]) == ["café"]
    with pytest.raises(ValueError):
        op("fix_unicode_mapper", normalization="XYZ")
    assert mapped("punctuation_normalization_mapper", ["你好，世界。“a”—b…"]) == \
        ['你好,世界."a" - b...']


def test_latex_mappers():
    assert mapped("remove_bibliography_mapper", ["body\n\\bibliography{x}\nend"]) == ["body\n"]
    assert mapped("remove_comments_mapper", ["a % c\n% line\nb 50\\% x"]) == ["a\nb 50\\% x"]
    assert mapped("remove_header_mapper", ["pre\n\\section{A} text", "no header"]) == \
        ["\\section{A} text", ""]
    assert mapped("remove_header_mapper", ["no header"], drop_no_head=False) == ["no header"]


def test_word_mappers():
    assert mapped("remove_long_words_mapper", ["a  bbbbbb cc\n\n\tdd"], max_len=3) == ["a cc\ndd"]
    assert mapped("remove_long_words_mapper", ["(abc)"], max_len=3) == ["(abc)"]  # stripped fits
    assert mapped("remove_words_with_incorrect_substrings_mapper",
                  ["see http://x.org and www.y now"]) == ["see and now"]
    with pytest.raises(NotImplementedError):
        op("remove_words_with_incorrect_substrings_mapper", tokenization=True)


def test_char_mappers():
    assert mapped("remove_non_chinese_character_mapper", ["中文abc123$#@é"]) == ["中文abc123"]
    assert mapped("remove_non_chinese_character_mapper", ["中文 abc,1"], keep_alphabet=False,
                  keep_number=False, keep_punc=False) == ["中文"]
    assert mapped("remove_specific_chars_mapper", ["a◆b●c"]) == ["abc"]
    assert mapped("remove_specific_chars_mapper", ["a|b"], chars_to_remove="|") == ["ab"]
    table = "title\na b c\nd e f\ng h i\nend"
    assert mapped("remove_table_text_mapper", [table]) == ["title\nend"]
    with pytest.raises(ValueError):
        op("remove_table_text_mapper", min_col=1)


def test_sentence_split_and_chinese_convert():
    assert mapped("sentence_split_mapper", ["Hello Mr. Smith. How are you? Fine."]) == \
        ["Hello Mr. Smith.\nHow are you?\nFine."]
    assert mapped("chinese_convert_mapper", ["汉字"], mode="s2t") == ["漢字"]
    assert mapped("chinese_convert_mapper", ["漢字"], mode="t2s") == ["汉字"]
    with pytest.raises(ValueError):
        op("chinese_convert_mapper", mode="x2y")


# ----------------------------------------------------------------------------- filters
def _words_dir(tmp_path, kind, data):
    (tmp_path / f"my_{kind}.json").write_text(json.dumps(data))
    return str(tmp_path)


def test_stopwords_and_flagged(tmp_path):
    d = _words_dir(tmp_path, "stopwords", {"en": ["the", "a"], "zh": ["的"]})
    o, s, k = stats("stopwords_filter", ["The cat, a dog!", "", "cat"], stopwords_dir=d)
    assert s["stopwords_ratio"].tolist() == [0.5, 0.0, 0.0]
    assert k.tolist() == [True, False, False]
    _, s, _ = stats("stopwords_filter", ["我的书"], stopwords_dir=d, lang="zh", tokenization=True)
    assert s["stopwords_ratio"][0] == pytest.approx(1 / 3)  # jieba: 我 / 的 / 书
    _, s, _ = stats("stopwords_filter", ["x the"], stopwords_dir=d, use_words_aug=True)
    assert s["stopwords_ratio"][0] == pytest.approx(1 / 3)  # [x, the, xthe]
    f = _words_dir(tmp_path, "flagged_words", {"en": ["damn"]})
    _, s, k = stats("flagged_words_filter", ["damn it", "fine"], flagged_words_dir=f)
    assert s["flagged_words_ratio"].tolist() == [0.5, 0.0] and k.tolist() == [False, True]
    with pytest.raises(ValueError, match="no stopwords list for lang='xx'"):
        op("stopwords_filter", stopwords_dir=d, lang="xx")
    with pytest.raises(AssetMissing):
        op("stopwords_filter", stopwords_dir=str(tmp_path / "empty"))


def test_default_word_lists():
    _, s, _ = stats("stopwords_filter", ["the and of"])
    assert s["stopwords_ratio"][0] == 1.0


def test_language_id():
    o, s, k = stats("language_id_score_filter", ["This is plainly an English sentence.",
                                                 "这是一个中文句子。"], lang="en", min_score=0.5)
    assert s["lang"].tolist() == ["en", "zh"] and k.tolist() == [True, False]
    assert 0.5 < s["lang_score"][0] <= 1.0


def test_perplexity_and_token_num_need_assets(tmp_path):
    with pytest.raises(AssetMissing, match="model_path"):
        op("perplexity_filter", model_path=str(tmp_path / "none.arpa"))
    with pytest.raises(AssetMissing, match="hf_tokenizer=PATH"):
        op("token_num_filter", hf_tokenizer=str(tmp_path / "no_tokenizer"))


def test_field_filters():
    meta = [{"tag": "a", "n": "5"}, {"tag": ["a", "c"], "n": 0}, {"tag": "b", "n": "x"}]
    _, s, k = stats("specified_field_filter", ["", "", ""], {"meta": meta}, field_key="meta.tag",
                    target_value=["a", "b"])
    assert k.tolist() == [True, False, True]
    _, s, k = stats("specified_numeric_field_filter", ["", "", ""], {"meta": meta},
                    field_key="meta.n", min_value=-1, max_value=10)
    assert k.tolist() == [True, False, False]  # 0 is "not a number" (DJ quirk), "x" too
    _, s, k = stats("suffix_filter", ["", ""], {"__dj__suffix__": [".txt", ".pdf"]},
                    suffixes="txt")
    assert k.tolist() == [False, False]
    _, s, k = stats("suffix_filter", ["", ""], {"__dj__suffix__": [".txt", ".pdf"]},
                    suffixes=[".txt"])
    assert k.tolist() == [True, False]
    with pytest.raises(KeyError, match="no `meta` column"):
        stats("specified_field_filter", [""], field_key="meta.tag", target_value=["a"])


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, (w, h) in enumerate([(100, 50), (40, 40), (30, 300)]):
        p = tmp_path / f"i{i}.png"
        arr = np.zeros((h, w, 3), dtype=np.uint8)
        arr[: h // (i + 2), :, :] = 255  # a different bright band per image
        arr[:, : w // (3 - i), 1] = 120
        Image.fromarray(arr).save(p)
        paths.append(str(p))
    return paths


def test_image_filters(images):
    rows = {"images": [[images[0]], [images[1], images[2]], []]}
    _, s, k = stats("image_aspect_ratio_filter", ["", "", ""], rows)
    assert s["aspect_ratios"][1] == [1.0, 0.1] and k.tolist() == [True, True, True]
    _, s, k = stats("image_aspect_ratio_filter", ["", "", ""], rows, any_or_all="all")
    assert k.tolist() == [True, False, True]
    _, s, k = stats("image_shape_filter", ["", "", ""], rows, min_width=50)
    assert s["image_width"][1] == [40, 30] and k.tolist() == [True, False, True]
    _, s, k = stats("image_size_filter", ["", "", ""], rows, max_size="1KB")
    assert s["image_sizes"][0][0] > 0
    assert size_to_bytes("1.5MB") == 15 << 20 and size_to_bytes("2KiB") == 2048


# ----------------------------------------------------------------------------- dedup
def test_minhash_and_simhash():
    base = " ".join(f"w{i}" for i in range(300))
    near = base + " extra"  # one new shingle: Jaccard 295/296, Hamming distance 3
    texts = [base, "something else entirely here with words enough to shingle", near, base]
    for name in ("document_minhash_deduplicator", "document_simhash_deduplicator"):
        o = op(name)
        h = o.hash_batch(TextViews(texts))
        assert o.keep_mask(h, np.ones(4, bool)).tolist() == [True, True, False, False]
        alive = np.array([False, True, True, True])
        assert o.keep_mask(h, alive).tolist() == [False, True, True, False]


def test_image_dedup(images, tmp_path):
    copy = tmp_path / "copy.png"
    shutil.copy(images[0], copy)
    o = op("image_deduplicator")
    v = TextViews(["a", "b", "c", "d"], {"images": [[images[0]], [str(copy)], [], [images[1]]]})
    h = o.hash_batch(v)
    assert len(h[0]) == 16 and h[2] == ""
    assert o.keep_mask(h, np.ones(4, bool)).tolist() == [True, False, True, True]
    arr = np.zeros((8, 8, 3), dtype=np.uint8)
    arr[:, 4:] = 255
    assert image_hash(arr, "ahash") == "0f0f0f0f0f0f0f0f"


# ----------------------------------------------------------------------------- selectors
def test_selectors():
    meta = [{"s": 3}, {"s": 9}, {"s": 1}, {"s": 9}, {"s": 5}]
    o = op("topk_specified_field_selector", field_key="meta.s", topk=2)
    assert o.select({"meta": meta}, 5).tolist() == [1, 3]
    o = op("topk_specified_field_selector", field_key="meta.s", top_ratio=0.4, reverse=False)
    assert o.select({"meta": meta}, 5).tolist() == [2, 0]
    o = op("frequency_specified_field_selector", field_key="meta.s", topk=1)
    assert o.select({"meta": meta}, 5).tolist() == [1, 3]
    o = op("random_selector", select_num=3)
    expected = np.random.default_rng(42).permutation(5)[:3]
    assert o.select({}, 5).tolist() == expected.tolist()
    assert op("random_selector").select({}, 5).tolist() == [0, 1, 2, 3, 4]


def test_unknown_op_suggestion():
    with pytest.raises(KeyError, match="Did you mean 'stopwords_filter'"):
        get_op_class("stopword_filter")
