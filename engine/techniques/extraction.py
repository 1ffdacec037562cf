"""Final-answer extraction: from a model's free text to one comparable answer.

The rule, in order (the UI shows it; the numbers are those of ``RULE_STEPS``):

1. **Answer phrase.** The *last* "The answer is", "Answer:", "The result is", "La réponse est",
   "Réponse :", "Le résultat est" (case and accents ignored, both languages whatever the task's
   language). In the sentence that follows it, the number after its last "=" if there is one,
   else its first number ("The answer is 5 + 3 = 8." → 8, "La réponse est donc 62 bananes." → 62).
2. **Last calculation.** Otherwise the number right after the last "=" of the text.
3. **Last number.** Otherwise the last number of the text ("… so she has 62 bananas." → 62).

Numbers (``parse_number``): a minus sign counts when it does not follow a word ("= -5" is −5,
"10-5" is 5). Thousands separators and decimal marks:

* narrow / non-breaking spaces between groups of three digits are thousands separators; in French
  a plain space is too ("1 234" = 1234 in French, "1" then "234" in English);
* with both "," and "." in a number, the last one is the decimal mark ("1,234.5" = "1.234,5" = 1234.5);
* the same mark repeated between groups of three is a thousands separator ("1,234,567");
* one mark followed by a number of digits other than three is a decimal mark in both languages
  ("3.5" = "3,5" = 3.5), and so is one after a lone 0 ("0,250" = 0.25);
* one mark followed by exactly three digits follows the language: in English "," groups and "."
  is decimal ("1,234" = 1234, "1.234" = 1.234); in French "." groups and "," is decimal
  ("1.234" = 1234, "1,234" = 1.234).

Labels (classification): the first label named after the last answer phrase, else the label
named last. Free text (extraction tasks): the sentence after the last answer phrase, else the
last non-empty line, without quotes, bold marks or final full stop.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Mapping, Sequence

SPACE_SEPARATORS = "\u00a0\u202f\u2009"  # no-break space, narrow no-break space, thin space
GROUP_MARK = {"en": ",", "fr": "."}
ANSWER_PHRASES_SHOWN = ("The answer is", "Answer:", "The result is", "La réponse est", "Réponse :", "Le résultat est")
RULE_STEPS = ("phrase", "equals", "last_number")

_PHRASE_RE = re.compile(
    r"(?:\b(?:the\s+)?(?:final\s+)?(?:answer|result)\s*(?:is\b|:|=))"
    r"|(?:\b(?:la\s+|le\s+)?(?:r[ée]ponse|r[ée]sultat)(?:\s+finale?)?\s*(?:est\b|:|=))",
    re.IGNORECASE,
)
_SENTENCE_END_RE = re.compile(r"\n|[.!?;](?=\s|$)")
_LIST_MARKER_RE = re.compile(r"^\s*(?:[-*•>]+|\d+[.)])\s+")
_STRIP_CHARS = " \t\"'`*_«»“”‘’()[]:"


@dataclass(frozen=True)
class Answer:
    """What was extracted from one output.

    ``key`` is the canonical form votes and grading compare ("62", "3.5", a label, normalised
    text); ``None`` when nothing could be extracted. ``rule`` says which step of the rule found it
    and ``found`` is the piece of the output it came from.
    """

    key: str | None
    value: float | str | None = None
    rule: str = "none"
    found: str = ""

    @property
    def ok(self) -> bool:
        return self.key is not None

    def display(self, lang: str = "en") -> str:
        """The answer as a reader of ``lang`` writes it (3,5 in French)."""
        if self.key is None:
            return "—"
        if isinstance(self.value, float):
            text = format_number(self.value)
            return text.replace(".", ",") if lang == "fr" else text
        return str(self.value)

    def as_dict(self) -> dict:
        return {"key": self.key, "value": self.value, "rule": self.rule, "found": self.found}


NONE = Answer(None)


# --------------------------------------------------------------------------- numbers
def _number_re(lang: str) -> re.Pattern:
    spaces = SPACE_SEPARATORS + (" " if lang == "fr" else "")
    sep = f"[.,{spaces}]"
    return re.compile(
        r"(?P<sign>(?<![\w)\]])[-\u2212])?(?<![\d])"
        rf"(?P<num>(?P<int>\d{{1,3}}(?P<sep>{sep})\d{{3}}(?:(?P=sep)\d{{3}})*)"
        r"(?P<dec>(?!(?P=sep))[.,]\d+)?(?!\d)"
        r"|\d+(?:[.,]\d+)?)"
    )


_NUMBER_RES = {lang: _number_re(lang) for lang in ("en", "fr")}


def number_re(lang: str) -> re.Pattern:
    return _NUMBER_RES["fr" if lang == "fr" else "en"]


def _value(m: re.Match, lang: str) -> float:
    sign = -1.0 if m.group("sign") else 1.0
    sep = m.group("sep")
    if sep is None:  # digits with at most one mark, not followed by three digits: a decimal
        return sign * float(m.group("num").replace(",", "."))
    groups = m.group("int").split(sep)
    dec = m.group("dec")
    if dec:
        return sign * float("".join(groups) + "." + dec[1:])
    if len(groups) > 2 or sep in SPACE_SEPARATORS + " ":
        return sign * float("".join(groups))
    if groups[0] == "0" or sep != GROUP_MARK.get(lang, ","):
        return sign * float(f"{groups[0]}.{groups[1]}")
    return sign * float("".join(groups))


def parse_number(text: str, lang: str = "en") -> float | None:
    """The first number in ``text`` under the separator rule of ``lang``; None if there is none."""
    m = number_re(lang).search(text)
    return _value(m, lang) if m else None


def numbers(text: str, lang: str = "en") -> list[tuple[float, re.Match]]:
    return [(_value(m, lang), m) for m in number_re(lang).finditer(text)]


def format_number(value: float) -> str:
    """Canonical text of a number: 62, 3.5, -5, 1234 (no exponent, no trailing zeros)."""
    value = round(float(value), 9)
    if value == int(value):
        return str(int(value))
    return f"{value:.9f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------- helpers
def normalize(text: str) -> str:
    """Case- and accent-insensitive form with single spaces (for labels and free text)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def last_phrase_end(text: str) -> int | None:
    """Index just after the last answer phrase, or None."""
    last = None
    for m in _PHRASE_RE.finditer(text):
        last = m
    return last.end() if last else None


def sentence_after(text: str, start: int) -> str:
    m = _SENTENCE_END_RE.search(text, start)
    return text[start:m.start() if m else len(text)]


def _number_after_equals(segment: str, lang: str) -> tuple[float, str] | None:
    """The number right after the last "=" of ``segment`` that has one."""
    pattern = number_re(lang)
    for eq in reversed([m.end() for m in re.finditer("=", segment)]):
        pos = eq
        while pos < len(segment) and segment[pos] in " \t*_$€£(\u00a0\u202f":
            pos += 1
        m = pattern.match(segment, pos)
        if m:
            return _value(m, lang), segment[eq - 1:m.end()].strip()
    return None


def _number_answer(value: float, rule: str, found: str) -> Answer:
    return Answer(key=format_number(value), value=float(value), rule=rule, found=found.strip())


# --------------------------------------------------------------------------- extractors
def extract_number(text: str, lang: str = "en") -> Answer:
    """Apply the three-step rule of the module docstring."""
    text = text or ""
    start = last_phrase_end(text)
    if start is not None:
        segment = sentence_after(text, start)
        hit = _number_after_equals(segment, lang)
        if hit:
            return _number_answer(hit[0], "phrase", _phrase_text(text, start) + segment)
        found = numbers(segment, lang)
        if found:
            phrase = _phrase_text(text, start)
            return _number_answer(found[0][0], "phrase", phrase + segment[:found[0][1].end()])
    hit = _number_after_equals(text, lang)
    if hit:
        return _number_answer(hit[0], "equals", hit[1])
    found = numbers(text, lang)
    if found:
        value, m = found[-1]
        return _number_answer(value, "last_number", _context(text, m.start(), m.end()))
    return NONE


def _phrase_text(text: str, end: int) -> str:
    m = None
    for m in _PHRASE_RE.finditer(text[:end]):
        pass
    return text[m.start():end] if m else ""


def _context(text: str, start: int, end: int, width: int = 24) -> str:
    return text[max(0, start - width):min(len(text), end + width)].replace("\n", " ")


def label_pattern(aliases: Sequence[str]) -> re.Pattern:
    names = sorted({normalize(a) for a in aliases}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)")


def extract_label(text: str, labels: Mapping[str, Sequence[str]]) -> Answer:
    """``labels``: canonical label → accepted spellings (the label itself included)."""
    text = text or ""
    patterns = {label: label_pattern([label, *aliases]) for label, aliases in labels.items()}
    start = last_phrase_end(text)
    if start is not None:
        segment = normalize(sentence_after(text, start))
        hits = [(m.start(), label) for label, p in patterns.items() for m in [p.search(segment)] if m]
        if hits:
            return Answer(key=min(hits)[1], value=min(hits)[1], rule="label_phrase",
                          found=(_phrase_text(text, start) + sentence_after(text, start)).strip())
    whole = normalize(text)
    last: tuple[int, str] | None = None
    for label, p in patterns.items():
        for m in p.finditer(whole):
            if last is None or m.start() > last[0]:
                last = (m.start(), label)
    if last is not None:
        return Answer(key=last[1], value=last[1], rule="label_last", found=whole[max(0, last[0] - 24):last[0] + 24])
    return NONE


def _clean(fragment: str) -> str:
    fragment = _LIST_MARKER_RE.sub("", fragment.strip())
    fragment = fragment.strip(_STRIP_CHARS)
    return fragment.rstrip(".").strip(_STRIP_CHARS)


def extract_text(text: str) -> Answer:
    text = text or ""
    start = last_phrase_end(text)
    if start is not None:
        cleaned = _clean(sentence_after(text, start))
        if cleaned:
            return Answer(key=normalize(cleaned), value=cleaned, rule="text_phrase", found=cleaned)
    for line in reversed(text.splitlines()):
        cleaned = _clean(line)
        if cleaned:
            return Answer(key=normalize(cleaned), value=cleaned, rule="text_last_line", found=cleaned)
    return NONE


def extract(text: str, kind: str, lang: str = "en", labels: Mapping[str, Sequence[str]] | None = None) -> Answer:
    """Dispatch on the task kind: ``number``, ``label`` or ``text``."""
    if kind == "number":
        return extract_number(text, lang)
    if kind == "label":
        return extract_label(text, labels or {})
    return extract_text(text)


# --------------------------------------------------------------------------- grading
TEXT_EXTRA_WORDS = 5


def is_correct(answer: Answer, kind: str, expected: float | str | None, lang: str = "en",
               labels: Mapping[str, Sequence[str]] | None = None) -> bool | None:
    """Grade an extracted answer; None when the task has no expected answer.

    Numbers: equal within 1e-6 (relative). Labels: the same canonical label. Free text: the
    expected text, normalised, equals the answer or appears in it as whole words, the answer
    being at most five words longer (so that copying the whole input does not count).
    """
    if expected is None or (isinstance(expected, str) and not expected.strip()):
        return None
    if not answer.ok:
        return False
    if kind == "number":
        target = expected if isinstance(expected, (int, float)) else parse_number(str(expected), lang)
        if target is None or not isinstance(answer.value, float):
            return False
        return abs(answer.value - float(target)) <= 1e-6 * max(1.0, abs(float(target)))
    if kind == "label":
        if labels and str(expected) in labels:
            return answer.key == str(expected)
        return normalize(str(answer.key)) == normalize(str(expected))
    want, got = normalize(str(expected)), normalize(str(answer.value))
    if want == got:
        return True
    inside = re.search(r"(?<!\w)" + re.escape(want) + r"(?!\w)", got) is not None
    return inside and len(got.split()) <= len(want.split()) + TEXT_EXTRA_WORDS
