"""What a question asks for: a kind of figure, a date, names, a goal, measures, or a fact
about a document itself.

Read from the question's wording alone (Chinese or English), by patterns a reviewer can
check; the answer stage then prefers sentences that give that kind of thing and says "not
stated" when none does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from index.answer.figures import Kind


class Asks(StrEnum):
    """The kind of answer a question wants."""

    CONTACT = "contact"
    AREA = "area"
    MONEY = "money"
    COUNT = "count"
    SHARE = "share"
    QUANTITY = "quantity"
    DATE = "date"
    WHO = "who"
    LIST = "list"
    GOAL = "goal"
    HOW = "how"
    OTHER = "other"


class Aspect(StrEnum):
    """A fact about a document that its catalog entry holds."""

    ISSUER = "issuer"
    DATE = "date"
    NUMBER = "number"
    TITLE = "title"


# The figures that answer each kind of question; an empty set means no figure is needed.
WANTED_FIGURES: dict[Asks, frozenset[Kind]] = {
    Asks.CONTACT: frozenset({Kind.CONTACT}),
    Asks.AREA: frozenset({Kind.AREA}),
    Asks.MONEY: frozenset({Kind.MONEY}),
    Asks.COUNT: frozenset({Kind.COUNT}),
    Asks.SHARE: frozenset({Kind.SHARE}),
    Asks.QUANTITY: frozenset({Kind.MONEY, Kind.COUNT, Kind.SHARE, Kind.MULTIPLE, Kind.NUMBER}),
    Asks.DATE: frozenset({Kind.DATE}),
}

STRONG_ASKS = frozenset({Asks.CONTACT, Asks.AREA, Asks.MONEY, Asks.COUNT, Asks.SHARE, Asks.DATE})
"""Asks that only a figure of their kind answers (a count never answers "how much money")."""

_COUNT_UNITS = "家个项人名所款件颗只支种台位次座条部本辆批"

# Checked in this order: the first kind whose pattern matches is what the question asks.
_ZH: tuple[tuple[Asks, str], ...] = (
    (Asks.CONTACT, r"电话|邮箱|网址|网站|联系方式|地址在哪"),
    (Asks.AREA, r"面积|平方公里|平方米|多少亩|公顷|占地"),
    (
        Asks.DATE,
        r"什么时候|何时|哪一年|哪年|哪一天|哪天|几月|几号|日期|落款|哪几年|哪个时期|哪个五年|起止",
    ),
    (
        Asks.SHARE,
        r"比重|占比|比例|份额|百分之|百分比|多少%|几成|强度|增速|增长率|税率|费率|利率|"
        r"占.{0,8}(?:多少|多大)",
    ),
    (
        Asks.MONEY,
        r"多少钱|金额|估值|市值|融资|营收|营业收入|利润|投资额|拨了多少|花了多少|多少亿|"
        r"多少万元|多少元|补助|补贴|奖励|费用|租金|薪|工资|价格|收入.{0,6}多少|多少.{0,6}收入|"
        r"经费.{0,6}多少|资金.{0,6}多少|投入.{0,4}多少|投了多少",
    ),
    (
        Asks.COUNT,
        rf"多少[{_COUNT_UNITS}]|(?<!哪)几[{_COUNT_UNITS}]|数量|多少(?:名|位)?\w{{0,6}}(?:人|人才)",
    ),
    (Asks.QUANTITY, r"多少|多大|多高|多长|多快|多久|(?<!哪)几"),
    (
        Asks.WHO,
        r"谁|哪个部门|哪个单位|哪家|哪些单位|哪两个单位|什么机构|哪个机构|哪家机构|叫什么|名字|"
        r"名称|哪个部委|领衔|署名",
    ),
    (Asks.LIST, r"哪些|哪几|有什么|包括什么|分别是"),
    (Asks.GOAL, r"目标|到20\d\d年|要达到|要建成|设想|努力方向|希望|要求|打算|要打造|要实现"),
    (Asks.HOW, r"怎么|如何|怎样|什么办法|什么措施|哪些措施|举措|做法|采取"),
)
_EN_MONEY_WORD = (
    r"money|funding|funds? raised|raised?|valuation|valued|worth|revenue|income|profits?|"
    r"spend(?:ing)?|spent|invest(?:ed|ment)?|costs?|budget|fees?|salary|wages?|price|rent|"
    r"yuan|rmb|dollars?|subsid(?:y|ies)|reward|grant|cash"
)
_EN: tuple[tuple[Asks, str], ...] = (
    (
        Asks.CONTACT,
        r"\b(?:phone|telephone|hotline|e-?mail|website|web address|contact details)\b",
    ),
    (Asks.AREA, r"\b(?:area|hectares?|square (?:kilometres|kilometers|metres|meters)|acres?)\b"),
    (
        Asks.DATE,
        r"^\s*when\b|\bwhat (?:year|date|day|month)\b|\bwhich (?:year|date|month)\b|"
        r"\bwhich year's\b|\bwhat period\b|\bsince when\b|\bdeadline\b",
    ),
    (
        Asks.SHARE,
        r"\b(?:what|which) (?:share|percentage|proportion|portion|percent|fraction|ratio)\b|"
        r"\bhow (?:large|big) a (?:share|proportion)\b|\bpercentage\b|\bper ?cent\b|"
        r"\bshare of\b|\brate\b|\bintensity\b",
    ),
    (
        Asks.MONEY,
        rf"\bhow much (?:money|funding|capital|cash)\b|"
        rf"\b(?:how much|how (?:big|large)|what (?:is|was) the (?:total|combined)|total|combined|"
        rf"amount)\b.*\b(?:{_EN_MONEY_WORD})\b|\b(?:{_EN_MONEY_WORD})\b.*\b(?:how much|"
        rf"how (?:big|large)|in total|altogether)\b|\bhow much (?:does|do|did|is|was) .*\b(?:"
        rf"{_EN_MONEY_WORD})\b|\bhow (?:large|big) a (?:{_EN_MONEY_WORD})\b|"
        rf"\bwhat (?:was|is|were|are) (?:the )?[\w.-]+(?:'s)? (?:\w+ )?(?:revenue|income|profits?|"
        rf"valuation|budget|spending|turnover)\b|"
        rf"\bwhat (?:\w+ ){{0,3}}(?:fees?|salary|wages?|price|rent|costs?|valuation|revenue|income|"
        rf"profits?|budget)\b",
    ),
    (Asks.COUNT, r"\bhow many\b|\bnumber of\b"),
    (
        Asks.QUANTITY,
        r"\bhow much\b|\bhow (?:big|large|high|fast|far)\b|"
        r"\bwhat (?:level|value|figure|amount|size|scale)\b|\btotal\b|\bhow long\b",
    ),
    (
        Asks.WHO,
        r"\bwho\b|\bwhich (?:\w+ )?(?:body|bodies|ministry|ministries|agency|agencies|"
        r"organi[sz]ations?|institutions?|institutes?|compan(?:y|ies)|universit(?:y|ies)|"
        r"departments?|government|authority|authorities|firms?|partners?)\b|"
        r"\b(?:called|named)\b|\bname of\b|\bwhat is the name\b",
    ),
    (Asks.LIST, r"\bwhich\b|\bwhat are\b|\bwhat (?:\w+ ){0,3}(?:include|includes|cover|covers)\b"),
    (
        Asks.GOAL,
        r"\b(?:targets?|goals?|aims?|aim for|by 20\d\d|expects?|envisages?|envisions?|wants?|"
        r"supposed to|meant to|set out to|looking ahead)\b",
    ),
    (
        Asks.HOW,
        r"^\s*how\b|\bwhat (?:measures|steps|actions|policies|support|stance|kind)\b|"
        r"\bwhat (?:is|are|has|have) .*\b(?:doing|done)\b|"
        r"\bwhat does .*\b(?:do|say|propose|promise)\b",
    ),
)
_COMPILED = {
    "zh": [(asks, re.compile(pattern)) for asks, pattern in _ZH],
    "en": [(asks, re.compile(pattern, re.IGNORECASE)) for asks, pattern in _EN],
}

# Questions about a document itself: who issued it, when, under what number, its title.
_ASPECTS_ZH = (
    (Aspect.NUMBER, r"文号|发文字号|字号|编号"),
    (
        Aspect.DATE,
        r"落款|印发日期|发文日期|成文日期|(?:哪一天|哪天|什么时候|何时)\w{0,4}(?:印发|发布|出台|签发)",
    ),
    (Aspect.TITLE, r"标题|题目|全称|全名|(?:文章|方案|文件|通知)\w{0,4}叫什么"),
    (
        Aspect.ISSUER,
        r"(?:谁|哪个部门|哪些部门|哪个单位|哪些单位|哪两个单位|哪几个单位|几家单位|多少个部门|哪个部委)"
        r"\w{0,6}(?:发布|印发|制定|署名|发的|写的|领衔|参与)|署名|发文单位|发布单位|制定单位|领衔|"
        r"哪个部委|(?:是|也是)\w{0,12}(?:制定|发布|印发)单位",
    ),
)
_ASPECTS_EN = (
    (Aspect.NUMBER, r"\b(?:document|reference|official|file|serial) number\b|\bissued under\b"),
    (
        Aspect.DATE,
        r"\bwhat date\b|\bwhen was (?:it|the \w+(?: \w+){0,8}) (?:issued|published|released|signed)"
        r"|\bdate (?:of|does|on)\b",
    ),
    (Aspect.TITLE, r"\btitle\b|\bheadline\b|\bfull name\b"),
    (
        Aspect.ISSUER,
        r"\bwho (?:issued|published|wrote|authored|drew up|signed|is behind)\b|"
        r"\b(?:issued|published|authored|co-?authored|drawn up|drew up|signed|headed) "
        r"(?:by|the list)\b|"
        r"\bput (?:their|its) name\b|\bbehind the\b|\bco-?authored\b|"
        r"\btake part in drawing up\b|\bjointly drew up\b|\bwhich (?:\w+ ){0,2}(?:bodies|body|"
        r"ministry|ministries|agencies|departments) (?:published|issued|drew|signed)\b",
    ),
)
_ASPECTS = {
    "zh": [(aspect, re.compile(pattern)) for aspect, pattern in _ASPECTS_ZH],
    "en": [(aspect, re.compile(pattern, re.IGNORECASE)) for aspect, pattern in _ASPECTS_EN],
}
# The question refers to a document as a whole, not only to what the document says.
_DOCUMENT_WORDS = {
    "zh": re.compile(r"这份|那份|这篇|那篇|文章|文件|通知|方案|回顾|该文|印发|发布"),
    "en": re.compile(r"\b(?:review|plan|document|notice|paper|article|report)\b", re.IGNORECASE),
}
_YEAR = re.compile(r"(?<!\d)((?:19|20)\d\d)(?!\d)")
_PERIOD_ZH = re.compile(r"[“\"]?(十[一二三四五六七八九]五)[”\"]?")
_PERIOD_EN = re.compile(r"\b(1[1-9])th five[- ]year plan\b", re.IGNORECASE)
_PERIOD_NUMERALS = "一二三四五六七八九"
# Where a question asks two things ("多少家？总收入是多少？", "how many ..., and what share").
_PART_BREAK = {
    "zh": re.compile(r"[？?；;]|，(?=(?:其中|以及|另外|还有|总|规模|保障))"),
    "en": re.compile(r"[?;]|,? and (?=(?:what|how|which|when|who|can you)\b)", re.IGNORECASE),
}


_SUBJECT = {
    "zh": [
        re.compile(rf"(?:多少|几)[{_COUNT_UNITS}](?P<subject>[\u4e00-\u9fff“”A-Za-z0-9]{{2,16}})"),
        re.compile(
            rf"(?P<subject>[\u4e00-\u9fff“”A-Za-z0-9]{{2,16}}?)(?:一共|总共|累计|共)?"
            rf"(?:有|是|达|为|建了|设了)?(?:多少|几)[{_COUNT_UNITS}]?"
        ),
    ],
    "en": [
        re.compile(
            r"\bhow (?:many|much) (?P<subject>(?:[\w&'-]+ ){0,5}?[\w&'-]+?)"
            r"(?= (?:does|do|did|has|have|had|is|are|was|were|will|can|could|should|in|of)\b)",
            re.IGNORECASE,
        ),
        re.compile(
            r"\bwhat (?:is|was) (?:the )?(?:total |combined )?(?P<subject>(?:[\w&'-]+ ){0,5}?"
            r"[\w&'-]+?)(?= (?:of|in|for)\b)",
            re.IGNORECASE,
        ),
    ],
}


@dataclass(frozen=True, slots=True)
class Question:
    """A question as the answer stage reads it."""

    text: str
    language: str
    asks: Asks
    """What the question (its first part) asks for."""
    wanted: frozenset[Kind]
    """Figure kinds that answer some part of it (empty: no figure needed)."""
    required: tuple[frozenset[Kind], ...]
    """For each part that only a figure answers (how much money, how many, when), the
    kinds that answer it."""
    parts: int
    years: tuple[str, ...]
    periods: tuple[str, ...]
    """Five-Year Plan periods it names, as the documents write them (十四五)."""
    aspects: tuple[Aspect, ...]
    """Set when the question asks about a document itself (its issuer, date, ...)."""
    subject: str = ""
    """What a "how many" or "how much" question counts or measures (高新技术企业 in
    "北京累计认定了多少家高新技术企业？"): a figure about something else does not answer it."""


def read_question(text: str, language: str) -> Question:
    """Classify a (Simplified, for Chinese) question.

    Args:
        text: the question.
        language: ``zh`` or ``en``, as detected.
    """
    key = "zh" if language == "zh" else "en"
    parts = [part for part in _PART_BREAK[key].split(text) if len(part.strip()) > 1] or [text]
    asked = [_asks(part, key) for part in parts]
    aspects: tuple[Aspect, ...] = ()
    if _DOCUMENT_WORDS[key].search(text):
        aspects = tuple(a for a, pattern in _ASPECTS[key] if pattern.search(text))
    periods = list(_PERIOD_ZH.findall(text))
    periods += [f"十{_PERIOD_NUMERALS[int(n) - 11]}五" for n in _PERIOD_EN.findall(text)]
    return Question(
        text=text,
        language=key,
        asks=asked[0],
        wanted=frozenset().union(*(WANTED_FIGURES.get(a, frozenset()) for a in asked)),
        required=tuple(WANTED_FIGURES[a] for a in asked if a in STRONG_ASKS),
        parts=len(parts),
        years=tuple(dict.fromkeys(_YEAR.findall(text))),
        periods=tuple(dict.fromkeys(periods)),
        aspects=aspects,
        subject=_subject(parts[0], key),
    )


def _subject(text: str, key: str) -> str:
    """The thing a counting or measuring question is about, as worded ("" if unclear)."""
    for pattern in _SUBJECT[key]:
        match = pattern.search(text)
        if match:
            return match["subject"].strip()
    return ""


def _asks(text: str, key: str) -> Asks:
    return next((kind for kind, pattern in _COMPILED[key] if pattern.search(text)), Asks.OTHER)
