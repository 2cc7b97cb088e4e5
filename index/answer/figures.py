"""Figures in Chinese policy text: what kind of quantity a sentence states, and in English.

A question that asks "how much money" is answered only by a sentence that gives an amount
in 元; one that asks "how many" by a count (115家, 37个); "what share" by a percentage or a
fraction (17%, 近三成, 1/6). The same reading renders each figure in English for the reading
aid (9865亿元 → 986.5 billion yuan), so nothing but the quoted text is interpreted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache


class Kind(StrEnum):
    """The kinds of figure a question can ask for."""

    MONEY = "money"
    COUNT = "count"
    SHARE = "share"
    MULTIPLE = "multiple"
    DATE = "date"
    AREA = "area"
    CONTACT = "contact"
    """A telephone number, an e-mail or web address."""
    NUMBER = "number"
    """Any other figure (a level, an index value, a length of time)."""


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure as written, with its kind and an English rendering."""

    text: str
    kind: Kind
    english: str
    start: int
    end: int


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4}
_CN_DIGITS |= {"五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000}
_CN_NUMERAL = "零〇一二两三四五六七八九十百千万"
_NUMBER = rf"\d+(?:\.\d+)?|[{_CN_NUMERAL}]+"
# What a count counts. 批 (a batch), 大 (三大工程) and 区 (三城一区) are not among them.
_COUNT_UNITS = "家个项人名所款件颗只支种台位次座条部本辆"
_MAGNITUDES = {"万亿": Decimal(10) ** 12, "亿": Decimal(10) ** 8, "万": Decimal(10) ** 4}
_MAGNITUDES |= {"千": Decimal(1000)}
_QUALIFIERS = {
    "近": "nearly",
    "约": "about",
    "超过": "over",
    "超": "over",
    "逾": "over",
    "突破": "over",
    "上": "over",
}
_FIGURE = re.compile(
    rf"(?P<qualifier>近|约|超过|超|逾|突破|上(?=[千万]))?"
    rf"(?P<number>{_NUMBER})"
    r"(?P<more>余|多)?"
    r"(?P<magnitude>万亿|亿|万|千)?"
    r"(?P<more2>余|多)?"
    rf"\s?(?P<unit>亿?美元|元|%|倍|成|[{_COUNT_UNITS}]|年(?!代))?"
)
_FRACTION = re.compile(rf"(?P<qualifier>近|约|超过|超)?(?P<den>{_NUMBER})分之(?P<num>{_NUMBER})")
_SLASH_FRACTION = re.compile(r"(?<![\d.])(?P<num>\d)/(?P<den>\d{1,2})(?![\d.])")
_QUOTED = re.compile(r"“[^”]{1,30}”")
_HALF = re.compile(r"(?P<qualifier>近|约|超过|超)?一半")
_DOUBLED = re.compile(r"翻番|翻一番")
_DATE = re.compile(
    r"(?P<year>(?:19|20)\d\d)年(?:(?P<month>1[0-2]|0?[1-9])月(?:(?P<day>[12]\d|3[01]|0?[1-9])日)?)?"
)
_PERIOD = re.compile(r"(十[一二三四五六七八九]五)")
_BARE_YEAR = re.compile(r"(?<![\d.])((?:19|20)\d\d)(?![\d.%年])")
_AREA = re.compile(rf"(?:{_NUMBER})(?:余|多)?(?:万|千)?\s?(?:平方(?:公里|千米|米)|亩|公顷)")
_CONTACT = re.compile(
    r"(?<!\d)(?:0\d{2,3}-?)?\d{7,8}(?!\d)|(?<!\d)1[3-9]\d{9}(?!\d)|[\w.-]+@[\w-]+\.[\w.]+|"
    r"https?://\S+|www\.\S+"
)
_YEAR_RANGE = re.compile(r"(?P<first>(?:19|20)\d\d)\s*[-—–－~至]\s*(?P<last>(?:19|20)\d\d)年?")
_MONTHS = (
    "January February March April May June July August September October November December"
).split()
_FRACTION_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}
_FRACTION_WORDS |= {7: "seven", 8: "eight", 9: "nine", 10: "ten"}
_ORDINALS = {2: "half", 3: "third", 4: "quarter", 5: "fifth", 6: "sixth"}
_ORDINALS |= {7: "seventh", 8: "eighth", 9: "ninth", 10: "tenth"}


def chinese_number(text: str) -> Decimal | None:
    """The value of an Arabic or Chinese numeral (三十七, 两万, 千); None if it is not one."""
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return Decimal(text)
    if not text or any(ch not in _CN_DIGITS and ch not in _CN_UNITS for ch in text):
        return None
    total, section, digit = 0, 0, 0
    for ch in text:
        if ch in _CN_DIGITS:
            digit = _CN_DIGITS[ch]
        elif ch == "万":
            total += (section + digit or 1) * 10_000
            section, digit = 0, 0
        else:
            section += (digit or 1) * _CN_UNITS[ch]
            digit = 0
    return Decimal(total + section + digit)


def find_figures(text: str) -> list[Figure]:
    """Every figure in ``text`` with its kind, in order of position.

    Chinese numerals count only with a unit after them (三成, 37个, 千余项): bare ones are
    ordinary words (一流, 三城一区), and inside quotation marks they name a slogan
    (“五个全球前列”, “四个面向”).
    """
    figures: list[Figure] = []
    taken: list[tuple[int, int]] = []

    def add(start: int, end: int, kind: Kind, english: str) -> None:
        if any(start < e and s < end for s, e in taken):
            return
        taken.append((start, end))
        figures.append(Figure(text[start:end], kind, english, start, end))

    for match in _CONTACT.finditer(text):
        add(match.start(), match.end(), Kind.CONTACT, match.group())
    for match in _AREA.finditer(text):
        add(match.start(), match.end(), Kind.AREA, match.group())
    for match in _PERIOD.finditer(text):
        number = "一二三四五六七八九".index(match.group()[1]) + 11
        add(match.start(), match.end(), Kind.DATE, f"{number}th Five-Year Plan period")
    for match in _YEAR_RANGE.finditer(text):
        add(match.start(), match.end(), Kind.DATE, f"{match['first']}–{match['last']}")
    for match in _DATE.finditer(text):
        add(match.start(), match.end(), Kind.DATE, _english_date(match))
    for match in _BARE_YEAR.finditer(text):
        add(match.start(), match.end(), Kind.DATE, match.group())
    for match in _FRACTION.finditer(text):
        den, num = chinese_number(match["den"]), chinese_number(match["num"])
        if den and num:
            english = _qualified(match["qualifier"], _english_fraction(int(num), int(den)))
            add(match.start(), match.end(), Kind.SHARE, english)
    for match in _SLASH_FRACTION.finditer(text):
        english = _english_fraction(int(match["num"]), int(match["den"]))
        add(match.start(), match.end(), Kind.SHARE, english)
    for match in _HALF.finditer(text):
        add(match.start(), match.end(), Kind.SHARE, _qualified(match["qualifier"], "half"))
    for match in _DOUBLED.finditer(text):
        add(match.start(), match.end(), Kind.MULTIPLE, "doubled")
    slogans = [m.span() for m in _QUOTED.finditer(text)]
    for match in _FIGURE.finditer(text):
        figure = _figure(match)
        quoted = any(s <= match.start() < e for s, e in slogans)
        if figure is not None and not (quoted and not match["number"][0].isdigit()):
            add(match.start(), match.end(), *figure)
    return sorted(figures, key=lambda figure: figure.start)


@lru_cache(maxsize=65_536)
def kinds_in(text: str) -> frozenset[Kind]:
    """The kinds of figure ``text`` states (remembered: the same sentences come up for
    question after question)."""
    return frozenset(figure.kind for figure in find_figures(text))


def _figure(match: re.Match[str]) -> tuple[Kind, str] | None:
    number, unit = match["number"], match["unit"] or ""
    value = chinese_number(number)
    arabic = number[0].isdigit()
    if value is None or (not arabic and not unit) or (not arabic and number == "一"):
        return None
    magnitude = match["magnitude"] or ""
    more = bool(match["more"] or match["more2"])
    qualifier = match["qualifier"]
    if unit.endswith("元"):
        dollars = unit.endswith("美元")
        amount = value * _MAGNITUDES.get(magnitude, Decimal(1)) * (10**8 if unit == "亿美元" else 1)
        english = _english_amount(amount, "US dollars" if dollars else "yuan")
        return Kind.MONEY, _qualified(qualifier, english, more=more)
    if magnitude and not unit and arabic:
        amount = value * _MAGNITUDES[magnitude]
        return Kind.NUMBER, _qualified(qualifier, _english_amount(amount, ""), more=more)
    if unit == "%":
        return Kind.SHARE, _qualified(qualifier, f"{_plain(value)}%", more=more)
    if unit == "成":
        return Kind.SHARE, _qualified(qualifier, f"{_plain(value * 10)}%", more=more)
    if unit == "倍":
        return Kind.MULTIPLE, _qualified(qualifier, f"{_plain(value)} times", more=more)
    if unit == "年":
        if arabic and value >= 1000:  # a bare year, e.g. 2025年 handled by _DATE already
            return Kind.DATE, number
        return Kind.NUMBER, _qualified(qualifier, f"{_plain(value)} years", more=more)
    if unit:
        count = value * _MAGNITUDES.get(magnitude, Decimal(1))
        return Kind.COUNT, _qualified(qualifier, _english_count(count), more=more)
    if arabic and not (1900 <= value <= 2100 and "." not in number):
        return Kind.NUMBER, _qualified(qualifier, _plain(value), more=more)
    return None


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def _english_count(value: Decimal) -> str:
    return f"{int(value):,}" if value >= 1000 and value == value.to_integral() else _plain(value)


def _english_amount(amount: Decimal, currency: str) -> str:
    """9865亿 → 986.5 billion: the Chinese 万/亿 scale in the English thousands scale."""
    for size, word in ((Decimal(10) ** 12, "trillion"), (Decimal(10) ** 9, "billion")):
        if amount >= size:
            scaled = f"{_plain(amount / size)} {word}"
            break
    else:
        million = Decimal(10) ** 6
        scaled = f"{_plain(amount / million)} million" if amount >= million else _plain(amount)
    return f"{scaled} {currency}".strip()


def _english_fraction(numerator: int, denominator: int) -> str:
    if numerator == 1 and denominator == 2:
        return "one half"
    word = _ORDINALS.get(denominator)
    if word is None:
        return f"{numerator}/{denominator}"
    plural = "s" if numerator > 1 and word != "half" else ""
    return f"{_FRACTION_WORDS.get(numerator, str(numerator))} {word}{plural}"


def _english_date(match: re.Match[str]) -> str:
    year, month, day = match["year"], match["month"], match["day"]
    if month and day:
        return f"{int(day)} {_MONTHS[int(month) - 1]} {year}"
    if month:
        return f"{_MONTHS[int(month) - 1]} {year}"
    return year


def _qualified(qualifier: str | None, english: str, *, more: bool = False) -> str:
    if more:
        english = f"over {english}" if qualifier is None else english
    return f"{_QUALIFIERS[qualifier]} {english}" if qualifier else english
