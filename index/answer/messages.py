""" "The documents do not state this", said plainly in the question's language, with why."""

from __future__ import annotations

from index.answer.decide import Finding, Reason
from index.answer.figures import Kind

_KIND_ZH = {
    Kind.MONEY: "金额",
    Kind.COUNT: "数量",
    Kind.SHARE: "比例",
    Kind.DATE: "日期或年份",
    Kind.AREA: "面积",
    Kind.CONTACT: "联系方式",
}
_KIND_EN = {
    Kind.MONEY: "amount of money",
    Kind.COUNT: "count",
    Kind.SHARE: "share or rate",
    Kind.DATE: "date or year",
    Kind.AREA: "area",
    Kind.CONTACT: "contact details",
}
_ASPECT_ZH = {"issuer": "发布单位", "date": "日期", "number": "文号", "title": "标题"}


_WHY = {
    "zh": {
        Reason.UNKNOWN_NAME: "文件未提到“{detail}”。",
        Reason.YEAR: "文件未涉及“{detail}”。",
        Reason.FIGURE: "最相关的段落没有给出所问的{kind}。",
        Reason.CATALOG: "目录未记录该文件的{aspect}。",
        Reason.NO_PASSAGES: "没有找到相关段落。",
        Reason.WEAK: "最相关的段落与问题关联不够紧密。",
    },
    "en": {
        Reason.UNKNOWN_NAME: "they never mention “{detail}”.",
        Reason.YEAR: "they say nothing about {detail}.",
        Reason.FIGURE: "the closest passages give no {kind} for it.",
        Reason.CATALOG: "the catalog records no {aspect} for the document.",
        Reason.NO_PASSAGES: "no passage is related to the question.",
        Reason.WEAK: "the closest passages are only loosely related to the question.",
    },
}
_SAY = {
    "zh": "文件中没有说明这一点：{why}以下是最接近的段落，仅供参考。",
    "en": "The documents do not state this: {why} The closest passages are below.",
}


def not_stated_message(findings: tuple[Finding, ...], language: str) -> str:
    """One or two sentences for a reader: the documents do not state it, and why."""
    first = findings[0] if findings else Finding(Reason.WEAK)
    key = "zh" if language == "zh" else "en"
    kinds, fallback = (_KIND_ZH, "数据") if key == "zh" else (_KIND_EN, "figure")
    kind = kinds.get(Kind(first.detail), fallback) if first.detail in set(Kind) else fallback
    aspect = _ASPECT_ZH.get(first.detail, first.detail) if key == "zh" else first.detail
    why = _WHY[key][first.reason].format(detail=first.detail, kind=kind, aspect=aspect)
    return _SAY[key].format(why=why)
