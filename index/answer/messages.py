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


def not_stated_message(findings: tuple[Finding, ...], language: str) -> str:
    """One or two sentences for a reader: the documents do not state it, and why."""
    first = findings[0] if findings else Finding(Reason.WEAK)
    return _chinese(first) if language == "zh" else _english(first)


def _chinese(finding: Finding) -> str:
    detail = finding.detail
    match finding.reason:
        case Reason.UNKNOWN_NAME:
            why = f"文件未提到“{detail}”。"
        case Reason.YEAR:
            why = f"文件未涉及“{detail}”。"
        case Reason.FIGURE:
            why = f"最相关的段落没有给出所问的{_KIND_ZH.get(_kind(detail), '数据')}。"
        case Reason.CATALOG:
            why = f"目录未记录该文件的{_ASPECT_ZH.get(detail, detail)}。"
        case Reason.NO_PASSAGES:
            why = "没有找到相关段落。"
        case _:
            why = "最相关的段落与问题关联不够紧密。"
    return f"文件中没有说明这一点：{why}以下是最接近的段落，仅供参考。"


def _english(finding: Finding) -> str:
    detail = finding.detail
    match finding.reason:
        case Reason.UNKNOWN_NAME:
            why = f"they never mention “{detail}”."
        case Reason.YEAR:
            why = f"they say nothing about {detail}."
        case Reason.FIGURE:
            why = f"the closest passages give no {_KIND_EN.get(_kind(detail), 'figure')} for it."
        case Reason.CATALOG:
            why = f"the catalog records no {detail} for the document."
        case Reason.NO_PASSAGES:
            why = "no passage is related to the question."
        case _:
            why = "the closest passages are only loosely related to the question."
    return f"The documents do not state this: {why} The closest passages are below."


def _kind(detail: str) -> Kind:
    return Kind(detail) if detail in Kind.__members__.values() else Kind.NUMBER
