"""Documents whose filter stats sit exactly on a recipe's thresholds, for the parity bench.

For every stat filter of a recipe and each of its finite bounds, ``boundary_documents`` builds
documents whose stat *equals* the bound (ratios such as 3/10 reached through different word,
character and line layouts; lengths equal to the bounds), plus one step inside and one step
outside it. Each document's stat is checked here with exact fractions (``EXACT``), independently
of the compiled kernels, and each is built so that, where it can, it passes the recipe's other
filters, so that it reaches the filter whose bound it sits on when the whole recipe runs.

A ratio threshold ``v`` (a float) is "on" when the exact stat ``a / b`` rounds to ``v`` itself:
``Fraction(v).limit_denominator`` gives the small ``p / q`` with ``float(p / q) == v``, and the
documents reach it as ``(p * k) / (q * k)`` for several ``k``.
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

from sandbox.ops.common.chars import SPECIAL_CHARACTERS, refine_words, split_on_whitespace

LETTERS = "abcdefghijklmnopqrstuvwxyz"
OTHER = "¬∙"  # neither alphanumeric nor in Data-Juicer's SPECIAL_CHARACTERS


@dataclass
class BoundaryDoc:
    text: str
    op: str  # the filter whose bound the document sits on (or next to)
    arg: str  # min_len, max_ratio, ...
    value: float  # the threshold
    stat: Fraction  # the document's exact stat
    side: str  # "on", "inside" (one step in) or "outside" (one step out)
    how: str  # which construction built it
    reaches: bool = True  # passes every other filter of the recipe (per our OPs)
    blocked_by: list = None  # the other filters it fails (per our OPs)

    @property
    def label(self) -> str:
        return f"{self.op}.{self.arg}={self.value:g} {self.side} ({self.stat}, {self.how})"


# ------------------------------------------------------------------------------ exact stats
def _exact_char_rep(text: str, n: int) -> Fraction:
    total = len(text) - n + 1
    if total <= 0:
        return Fraction(0)
    freq = sorted(Counter(text[i:i + n] for i in range(total)).values(), reverse=True)
    k = min(int(len(freq) ** 0.5), len(freq) - freq.count(1))
    return Fraction(sum(freq[:k]), total) if k > 0 else Fraction(0)


def _exact_word_rep(text: str, n: int) -> Fraction:
    words = refine_words(split_on_whitespace(text), lower_case=True)
    total = len(words) - n + 1
    if total <= 0:
        return Fraction(0)
    freq = Counter(" ".join(words[i:i + n]) for i in range(total)).values()
    return Fraction(sum(f for f in freq if f > 1), total)


def _ratio(count: int, text: str) -> Fraction:
    return Fraction(count, len(text)) if text else Fraction(0)


EXACT: dict[str, Callable[[str, dict], Fraction]] = {
    # stat key -> exact value of a text (args: the OP's arguments, for rep_len)
    "text_len": lambda t, a: Fraction(len(t)),
    "num_words": lambda t, a: Fraction(len(refine_words(split_on_whitespace(t), False))),
    "alnum_ratio": lambda t, a: _ratio(sum(c.isalnum() for c in t), t),
    "special_char_ratio": lambda t, a: _ratio(sum(c in SPECIAL_CHARACTERS for c in t), t),
    "char_rep_ratio": lambda t, a: _exact_char_rep(t, a.get("rep_len", 10)),
    "word_rep_ratio": lambda t, a: _exact_word_rep(t, a.get("rep_len", 10)),
    "avg_line_length": lambda t, a: (Fraction(len(t), len(t.splitlines())) if t.splitlines()
                                     else Fraction(0)),
    "max_line_length": lambda t, a: Fraction(max(map(len, t.splitlines()), default=0)),
}


# ------------------------------------------------------------------------------ building blocks
class Words:
    """Fresh random lower-case words (never the same word twice in one document)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def word(self, length: int, alphabet: str = LETTERS) -> str:
        while True:
            w = "".join(self.rng.choice(alphabet) for _ in range(length))
            if w not in self.used or length < 3:
                self.used.add(w)
                return w

    def some(self, n: int, lo: int = 4, hi: int = 8) -> list[str]:
        return [self.word(self.rng.randint(lo, hi)) for _ in range(n)]


def lines_of(words: list[str], width: int = 60, sep: str = "\n") -> str:
    """Words joined by spaces, a line break (``sep``) instead once a line reaches ``width``."""
    out, line = [], 0
    for w in words:
        if out:
            if line + 1 + len(w) > width:
                out.append(sep)
                line = 0
            else:
                out.append(" ")
                line += 1
        out.append(w)
        line += len(w)
    return "".join(out)


def exact_length(ws: Words, length: int, width: int = 60, alphabet: str = LETTERS,
                 hi: int = 8) -> str:
    """Random words (of 4 to ``hi`` characters, fewer at the end) in lines of about ``width``
    characters, exactly ``length`` characters in all."""
    out: list[str] = []
    size, line = 0, 0
    while size < length:
        left = length - size - (1 if out else 0)
        if left <= 0:  # only room for a separator: lengthen the last word instead
            out[-1] += ws.word(1, alphabet)
            size += 1
            continue
        n = left if left <= hi + 4 else ws.rng.randint(min(4, hi), min(hi, left - 4))
        if out:
            brk = line + 1 + n > width
            out.append("\n" if brk else " ")
            line = 0 if brk else line + 1
            size += 1
        out.append(ws.word(n, alphabet))
        size += n
        line += n
    return "".join(out)


def composed(ws: Words, letters: int, digits: int, specials: int, others: int) -> str | None:
    """A text of words with exactly these counts of letters, digits (alphanumeric *and* special
    for Data-Juicer), other special characters (the separators among them) and characters that
    are neither (``OTHER``); None when they cannot make words of two letters or more."""
    n_words = max(10, min(specials + 1, letters // 3))
    if letters < 2 * n_words or specials < n_words - 1:
        return None
    rng = ws.rng
    words = [[c for c in ws.word(2)] for _ in range(n_words)]
    for i in range(letters - 2 * n_words):
        words[i % n_words].insert(1, rng.choice(LETTERS))
    for i in range(digits):
        words[(i * 7) % n_words].insert(1, str(i % 10))
    for i in range(others):
        words[(i * 3) % n_words].insert(1, OTHER[i % 2])
    extra = specials - (n_words - 1)  # trailing punctuation beyond the separators
    for i in range(extra):
        words[(i * 5) % n_words].append(".,;:!?"[i % 6])
    flat = ["".join(w) for w in words]
    return lines_of(flat, width=60)


def _targets(value: float, integral: bool, bound: str) -> list[tuple[str, Fraction, int]]:
    """``(side, exact target, multiplier k)`` for a threshold: on it, one step inside, one out."""
    if integral:
        x = Fraction(int(value))
        step = 1 if bound == "min" else -1
        return [("on", x, 1), ("inside", x + step, 1), ("outside", x - step, 1)]
    frac = Fraction(value).limit_denominator(1000)
    if float(frac) != value:
        return []
    out = []
    for k in (1, 2, 3, 6, 10):
        out.append(("on", frac, k))
    m = 10 if value < 1 else 2  # ratios: the neighbours in hundredths; lengths: in halves
    p, q = frac.numerator * m, frac.denominator * m
    step = 1 if bound == "min" else -1
    out += [("inside", Fraction(p + step, q), 1), ("outside", Fraction(p - step, q), 1)]
    return out


# ------------------------------------------------------------------------------ constructions
# Each takes (words, target, k, args) and returns candidate texts as (how, text); the caller
# keeps those whose exact stat is the target.
def _text_len(ws, x, k, a):
    n = int(x)
    hi = 4 if n < 200 else 8  # short documents: short words, enough of them for word bounds
    yield "words", exact_length(ws, n, hi=hi)
    yield "trailing newline", exact_length(ws, n - 1, hi=hi) + "\n" if n > 1 else None
    yield "non-ASCII letters", exact_length(ws, n, alphabet="éßøäñ中文字", hi=hi)


def _num_words(ws, x, k, a):
    n = int(x)
    short = n * 9 > 40000  # long documents: short words, so that they fit length bounds
    lo, hi = (3, 4) if short else (4, 8)
    yield "spaces", lines_of(ws.some(n, lo, hi))
    words = ws.some(n, lo, hi)
    deco = [f"({w})," if i % 8 == 0 else w.capitalize() for i, w in enumerate(words)]
    for i in range(5, len(deco), 20):  # tokens of special characters only: not words
        deco[i] = deco[i] + " --"
    text = ""
    for i, w in enumerate(deco):
        text += ("" if i == 0 else "\t" if i % 7 == 0 else "\n" if i % 9 == 0 else " ") + w
    yield "tabs, punctuation, '--' tokens", text


def _alnum(ws, x, k, a):
    for kk in (k * 40, k * 60):
        total = x.denominator * kk
        alnum = x.numerator * kk
        rest = total - alnum
        specials = min(rest, max(9, total * 18 // 100))
        yield f"letters /{total}", composed(ws, alnum, 0, specials, rest - specials)
        digits = alnum // 10
        yield f"letters+digits /{total}", composed(ws, alnum - digits, digits,
                                                    max(9, specials - digits),
                                                    rest - max(9, specials - digits))


def _special(ws, x, k, a):
    for kk in (k * 40, k * 60):
        total = x.denominator * kk
        special = x.numerator * kk
        others = total // 20
        yield f"punctuation /{total}", composed(ws, total - special - others, 0, special, others)
        digits = special // 4
        yield f"with digits /{total}", composed(ws, total - special - others, digits,
                                                special - digits, others)


def _build_char_rep(ws, x, k, a):
    n = a.get("rep_len", 10)
    for kk in (k * 100, k * 200):
        total, rep = x.denominator * kk, x.numerator * kk
        if rep < 2:
            continue
        length = total + n - 1
        run = "x" * (rep + n - 1)  # the only repeated n-gram: 'x' * n, rep times
        prose = exact_length(ws, length - len(run) - 1, alphabet="abcdefghijklmnopqrstuvw")
        yield "one run", prose + "\n" + run
        if rep >= 4 and rep % 2 == 0:  # two runs: k = min(sqrt(D), 2) = 2 repeated n-grams
            r1 = "y" * (rep // 2 + n - 1)
            r2 = "z" * (rep // 2 + n - 1)
            body = exact_length(ws, max(1, length - len(r1) - len(r2) - 2),
                                alphabet="abcdefghijklmnopqrstuvw")
            yield "two runs", r1 + "\n" + body + "\n" + r2


def _build_word_rep(ws, x, k, a):
    n = a.get("rep_len", 10)
    p, q = x.numerator, x.denominator
    # a block of distinct words twice, then a tail: repeated 2(L - n + 1) of 2L + T - n + 1
    for kk in range(k, k + 40):
        rep, total = p * kk, q * kk
        if rep % 2 or rep < 2:
            continue
        block_len = rep // 2 + n - 1
        tail = total - rep - n + 1
        if tail < 0:
            continue
        block = ws.some(block_len)
        second = [w.upper() + "." if i % 3 == 0 else w.capitalize() for i, w in enumerate(block)]
        yield f"block twice {rep}/{total}", lines_of(block + second + ws.some(tail))
        with_drops = [w + (" 2024" if i % 5 == 0 else "") for i, w in enumerate(block)]
        yield (f"block twice, digit tokens {rep}/{total}",
               lines_of(ws.some(tail) + with_drops + ["--"] + second))
        break
    # a 3-word phrase, one per line, r times after U distinct words (the word_rep_boundary
    # document's layout): repeated 3r - n + 1 of U + 3r - n + 1
    for kk in range(k, k + 40):
        rep, total = p * kk, q * kk
        if (rep + n - 1) % 3 or rep < 6:
            continue
        r = (rep + n - 1) // 3
        phrase = ws.some(3, 3, 5)
        forms = [" ".join(phrase).capitalize(), " ".join(phrase) + ".",
                 "- " + " ".join(w.upper() for w in phrase) + "!"]
        head = lines_of(ws.some(total - rep), width=70)
        yield f"phrase per line {rep}/{total}", head + "\n" + "\n".join(
            forms[i % 3] for i in range(r))
        break


def _avg_line(ws, x, k, a):
    p, q = x.numerator, x.denominator
    fits = ([j for j in (8 * k, 16 * k) if p * j <= 45000]  # within length bounds
            or [j for j in (k, 2 * k) if p * j <= 45000] or [1])
    for kk in fits:
        n_lines, length = q * kk, p * kk
        for how, brk, trailing in (("\\n", "\n", False), ("\\r\\n", "\r\n", False),
                                   ("trailing \\n", "\n", True), ("\\u2028", " \u2028", False)):
            breaks = n_lines - (0 if trailing else 1)
            content = length - breaks * len(brk)
            if content < n_lines:
                continue
            # a first line long enough for the longest-line bounds, the others share the rest
            first = min(content - (n_lines - 1), max(int(float(x) * 3 / 2), 48), 19999)
            rest = content - first
            sizes = [first] + [rest // (n_lines - 1) + (i < rest % (n_lines - 1))
                               for i in range(n_lines - 1)] if n_lines > 1 else [content]
            if min(sizes) < 1:
                continue
            lines = [exact_length(ws, s, width=10 ** 9) for s in sizes]
            yield f"{how} {n_lines} lines", brk.join(lines) + (brk if trailing else "")


def _max_line(ws, x, k, a):
    m = int(x)
    if m < 1:
        return
    longest = exact_length(ws, m, width=10 ** 9)
    short = [exact_length(ws, max(1, min(m - 1, 30)), width=10 ** 9) for _ in range(12)]
    yield "\\n, longest first", "\n".join([longest] + short)
    yield "\\r\\n, longest last", "\r\n".join(short + [longest])
    yield "form feed, longest in the middle", "\x0c".join(short[:6] + [longest] + short[6:])


CONSTRUCTIONS = {
    "text_len": (_text_len, True),
    "num_words": (_num_words, True),
    "alnum_ratio": (_alnum, False),
    "special_char_ratio": (_special, False),
    "char_rep_ratio": (_build_char_rep, False),
    "word_rep_ratio": (_build_word_rep, False),
    "avg_line_length": (_avg_line, False),
    "max_line_length": (_max_line, True),
}


def _bounds(op) -> list[tuple[str, str, str, float]]:
    """``(arg, stat, "min"|"max", value)`` for each finite, non-trivial bound of ``op``."""
    from sandbox.ops.base import MAXSIZE

    out = []
    for arg, th in op.thresholds.items():
        value = getattr(op, arg, None)
        if value is None or value >= MAXSIZE:
            continue
        if th.bound == "min" and value <= 0:  # every document with no such thing sits on it
            continue
        out.append((arg, th.stat, th.bound, float(value)))
    return out


def boundary_documents(process: list[dict], seed: int = 0) -> tuple[list[BoundaryDoc], list[str]]:
    """Boundary documents for every bound of every stat filter of ``process`` (Data-Juicer's
    ``[{op_name: {args}}]``), and notes on the bounds no construction reached."""
    import numpy as np

    from sandbox.ops import Filter, TextViews, get_op_class

    rng = random.Random(seed)
    ops = []
    for entry in process:
        (name, args), = entry.items()
        ops.append((name, args or {}, get_op_class(name)(**(args or {}))))
    docs: list[BoundaryDoc] = []
    notes: list[str] = []
    for name, args, op in ops:
        if not isinstance(op, Filter):
            continue
        for arg, stat, bound, value in _bounds(op):
            if stat not in CONSTRUCTIONS:
                notes.append(f"{name}.{arg}: no boundary construction for stat {stat!r}")
                continue
            build, integral = CONSTRUCTIONS[stat]
            found = {"on": 0, "inside": 0, "outside": 0}
            targets = _targets(value, integral, bound)
            if not targets:
                notes.append(f"{name}.{arg}={value}: no small fraction rounds to it")
            for side, target, k in targets:
                for how, text in build(Words(rng), target, k, args):
                    if text is None or EXACT[stat](text, args) != target:
                        continue
                    docs.append(BoundaryDoc(text, name, arg, value, target, side, how))
                    found[side] += 1
            missing = [s for s, c in found.items() if not c]
            if missing:
                notes.append(f"{name}.{arg}={value}: nothing built for {', '.join(missing)}")
    # which documents pass every other filter, so that the recipe brings them to their bound
    views = TextViews([d.text for d in docs])
    verdicts = {}
    for name, args, op in ops:
        if isinstance(op, Filter):
            verdicts[name] = np.asarray(op.keep(op.compute_stats_batch(views)), dtype=bool)
    for i, d in enumerate(docs):
        d.blocked_by = [n for n, v in verdicts.items() if n != d.op and not v[i]]
        d.reaches = not d.blocked_by
    return docs, notes
