"""The answer stage: its parts worked by hand, then the real model, index and questions."""

from __future__ import annotations

import pytest

from index.answer import Answerer, Reason, Source
from index.answer.figures import Kind, chinese_number, find_figures
from index.answer.messages import not_stated_message
from index.answer.question import Asks, Aspect, read_question
from index.documents import DocumentMeta
from index.glossary import Glossary, GlossaryEntry
from index.references import DocumentKinds
from index.retriever import Retriever


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("目前，北京独角兽企业数量115家", [("115家", Kind.COUNT, "115")]),
        (
            "技术合同成交额从2020年6316.2亿元提高到9865亿元",
            [
                ("2020年", Kind.DATE, "2020"),
                ("6316.2亿元", Kind.MONEY, "631.62 billion yuan"),
                ("9865亿元", Kind.MONEY, "986.5 billion yuan"),
            ],
        ),
        (
            "增加值1.49万亿元，增长56.9%",
            [("1.49万亿元", Kind.MONEY, "1.49 trillion yuan"), ("56.9%", Kind.SHARE, "56.9%")],
        ),
        ("阿斯利康投资25亿美元", [("25亿美元", Kind.MONEY, "2.5 billion US dollars")]),
        ("总规模达8.35亿元", [("8.35亿元", Kind.MONEY, "835 million yuan")]),
        (
            "占全国近三成，约占1/6",
            [("近三成", Kind.SHARE, "nearly 30%"), ("1/6", Kind.SHARE, "one sixth")],
        ),
        ("约三分之一的GDP", [("约三分之一", Kind.SHARE, "about one third")]),
        ("累计部署千余项", [("千余项", Kind.COUNT, "over 1,000")]),
        ("每天有300多家科技企业", [("300多家", Kind.COUNT, "over 300")]),
        ("是2020年的1.4倍", [("2020年", Kind.DATE, "2020"), ("1.4倍", Kind.MULTIPLE, "1.4 times")]),
        ("2023年5月8日", [("2023年5月8日", Kind.DATE, "8 May 2023")]),
        ("（2024-2027年）", [("2024-2027年", Kind.DATE, "2024–2027")]),
        ("“十四五”时期", [("十四五", Kind.DATE, "14th Five-Year Plan period")]),
        ("《全球创业生态系统报告2025》", [("2025", Kind.DATE, "2025")]),
        ("规划面积12平方公里", [("12平方公里", Kind.AREA, "12平方公里")]),
        # Chinese numerals without a unit, or naming a slogan, are words, not figures.
        ("推动三城一区一流企业，实现“五个全球前列”", []),
    ],
)
def test_figures_with_their_kind_and_english(
    text: str, expected: list[tuple[str, Kind, str]]
) -> None:
    assert [(f.text, f.kind, f.english) for f in find_figures(text)] == expected


def test_chinese_numerals() -> None:
    assert chinese_number("三十七") == 37
    assert chinese_number("两万") == 20_000
    assert chinese_number("千") == 1000
    assert chinese_number("12.5") == pytest.approx(12.5)
    assert chinese_number("创新") is None


@pytest.mark.parametrize(
    ("question", "language", "asks", "required"),
    [
        ("北京独角兽企业有多少家？", "zh", Asks.COUNT, [Kind.COUNT]),
        ("北京独角兽企业一共融资了多少钱？", "zh", Asks.MONEY, [Kind.MONEY]),
        ("研发投入强度是多少？", "zh", Asks.SHARE, [Kind.SHARE]),
        ("条例是从哪一年开始施行的？", "zh", Asks.DATE, [Kind.DATE]),
        ("北京目前有哪几个万亿级产业集群？", "zh", Asks.LIST, []),
        ("方案给怀柔科学城定了什么目标？", "zh", Asks.GOAL, []),
        ("How many unicorn companies does Beijing have?", "en", Asks.COUNT, [Kind.COUNT]),
        ("How much money did Beijing unicorns raise in total?", "en", Asks.MONEY, [Kind.MONEY]),
        ("What was ByteDance's revenue in 2024?", "en", Asks.MONEY, [Kind.MONEY]),
        ("What is the average salary of researchers in Beijing?", "en", Asks.MONEY, [Kind.MONEY]),
        ("What share of China's total is that?", "en", Asks.SHARE, [Kind.SHARE]),
        ("When was the regulation adopted?", "en", Asks.DATE, [Kind.DATE]),
        ("What is the phone number of the talent port?", "en", Asks.CONTACT, [Kind.CONTACT]),
        ("How is Beijing promoting scientific instruments?", "en", Asks.HOW, []),
        ("How much technology trading flows to Hebei?", "en", Asks.QUANTITY, []),
    ],
)
def test_what_a_question_asks(
    question: str, language: str, asks: Asks, required: list[Kind]
) -> None:
    read = read_question(question, language)
    assert read.asks is asks
    assert [set(kinds) for kinds in read.required] == [set(required)] * bool(required)


def test_two_part_questions_and_when() -> None:
    read = read_question("中关村特色产业园现在一共有多少家？总收入是多少？", "zh")
    assert read.parts == 2 and read.required == (frozenset({Kind.COUNT}), frozenset({Kind.MONEY}))
    read = read_question("What target does the 15th Five-Year Plan set for 2030?", "en")
    assert read.years == ("2030",) and read.periods == ("十五五",)


@pytest.mark.parametrize(
    ("question", "language", "aspects"),
    [
        ("回顾“十四五”科技创新成绩的那篇文章，是哪两个单位署名发布的？", "zh", (Aspect.ISSUER,)),
        ("那份工作方案的发文字号是多少？", "zh", (Aspect.NUMBER,)),
        ("这份工作方案是哪天印发的？", "zh", (Aspect.DATE,)),
        ("Which body published the review of Beijing's sci-tech work?", "en", (Aspect.ISSUER,)),
        ("What is the headline of Beijing's review?", "en", (Aspect.TITLE,)),
        (
            "What is the document number of the plan, and when was it issued?",
            "en",
            (Aspect.NUMBER, Aspect.DATE),
        ),
        ("How many unicorn companies does Beijing have?", "en", ()),
    ],
)
def test_questions_about_a_document_itself(
    question: str, language: str, aspects: tuple[Aspect, ...]
) -> None:
    assert read_question(question, language).aspects == aspects


def test_documents_named_by_their_kind() -> None:
    kinds = DocumentKinds(
        [
            DocumentMeta("plan", "加快建设的工作方案", "Work Plan for X", "a"),
            DocumentMeta(
                "review", "聚力打造", "Sci-Tech Review of the 14th Five-Year Plan Period", "b"
            ),
        ]
    )
    named = kinds.named("按照工作方案，具体由哪个机构统筹？", "zh")
    assert named.documents == {"plan"} and named.is_naming("工作方案") and named.is_naming("方案")
    assert kinds.named("What does the review say?", "en").documents == {"review"}
    # "Five-Year Plan" is a period, not the plan.
    assert kinds.named("in the 14th Five-Year Plan period", "en").documents == frozenset()
    assert kinds.named("北京独角兽企业有多少家？", "zh").documents == frozenset()
    # A quoted title is the catalog's when it is part of one; else it is another document.
    assert kinds.named("《加快建设的工作方案》的文号？", "zh").elsewhere == frozenset()
    assert kinds.named("谁发布了《“十四五” 行动计划》？", "zh").elsewhere == {"“十四五”行动计划"}


def test_messages_say_why_in_the_question_language() -> None:
    from index.answer.decide import Finding

    money = (Finding(Reason.FIGURE, Kind.MONEY),)
    assert not_stated_message(money, "zh") == (
        "文件中没有说明这一点：最相关的段落没有给出所问的金额。以下是最接近的段落，仅供参考。"
    )
    assert not_stated_message(money, "en") == (
        "The documents do not state this: the closest passages give no amount of money for "
        "it. The closest passages are below."
    )
    place = (Finding(Reason.UNKNOWN_NAME, "Shanghai"),)
    assert "they never mention “Shanghai”" in not_stated_message(place, "en")


def test_glossary_entries_in_an_answer_prefer_the_longest() -> None:
    glossary = Glossary(
        [
            GlossaryEntry("实验室", ("laboratory",), "concept"),
            GlossaryEntry("国家实验室", ("national laboratory",), "institution"),
            GlossaryEntry("独角兽", ("unicorn",), "concept"),
        ]
    )
    found = glossary.entries_in("推动在京国家实验室运行，独角兽企业")
    assert [e.zh for e in found] == ["国家实验室", "独角兽"]


# ---- the real model and index ----------------------------------------------------------


def _answer(retriever: Retriever, answerer: Answerer, question: str, top_k: int = 5):  # type: ignore[no-untyped-def]
    return answerer.answer(retriever.search(question, top_k=top_k))


def test_count_question_quotes_the_count(retriever: Retriever, answerer: Answerer) -> None:
    answer = _answer(retriever, answerer, "北京独角兽企业有多少家？")
    assert answer.stated and answer.source is Source.PASSAGES
    assert answer.text == "目前，北京独角兽企业数量115家，居全国首位、全球前列。[1]"
    [quote] = answer.quotes
    text = retriever.snapshot.documents[quote.doc_id].text
    assert text[quote.start : quote.end] == quote.text and quote.rank == 1
    assert answer.reading_aid is None  # Chinese readers need no aid


def test_english_answer_comes_with_a_reading_aid(retriever: Retriever, answerer: Answerer) -> None:
    answer = _answer(retriever, answerer, "How much did technology contract turnover grow?")
    assert answer.stated and "9865亿元" in answer.text
    aid = answer.reading_aid
    assert aid is not None
    assert ("9865亿元", "986.5 billion yuan") in [(g.text, g.english) for g in aid.figures]
    assert ("技术合同成交额", "technology contract turnover") in [
        (g.text, g.english.lower()) for g in aid.terms
    ]


def test_publisher_question_is_answered_from_the_catalog(
    retriever: Retriever, answerer: Answerer
) -> None:
    question = "Which body published the review of Beijing's 14th Five-Year Plan sci-tech work?"
    answer = _answer(retriever, answerer, question)
    assert answer.stated and answer.source is Source.CATALOG
    assert answer.text.startswith("北京市科学技术委员会、中关村科技园区管理委员会")
    [quote] = answer.quotes
    assert quote.doc_id == "bjsti-review-14fyp"
    assert retriever.snapshot.documents[quote.doc_id].text[quote.start : quote.end] == quote.text
    assert answer.reading_aid is not None and answer.reading_aid.catalog


def test_a_former_name_finds_the_current_one(retriever: Retriever, answerer: Answerer) -> None:
    """国家重点实验室 were reorganised as 全国重点实验室 (a glossary alias); the municipal
    key laboratories beside them are another count."""
    answer = _answer(retriever, answerer, "北京有多少家国家重点实验室？")
    assert answer.stated and "全国重点实验室145家" in answer.text


def test_a_document_outside_the_catalog_is_answered_from_the_passages(
    retriever: Retriever, answerer: Answerer
) -> None:
    """The review cites the action plan; the review's issuer is not the plan's."""
    answer = _answer(
        retriever, answerer, "谁发布了《“十四五”北京国际科技创新中心建设战略行动计划》？"
    )
    assert answer.source is Source.PASSAGES
    assert "北京市科学技术委员会" not in answer.text


def test_a_fact_the_catalog_lacks_is_not_stated(retriever: Retriever, answerer: Answerer) -> None:
    answer = _answer(retriever, answerer, "这篇回顾文章的发文字号是多少？")
    assert not answer.stated
    assert [(f.reason, f.detail) for f in answer.findings] == [(Reason.CATALOG, "number")]


@pytest.mark.parametrize(
    "question",
    ["How much money did Beijing unicorns raise in total?", "北京独角兽企业一共融资了多少钱？"],
)
def test_an_amount_is_not_a_count(retriever: Retriever, answerer: Answerer, question: str) -> None:
    answer = _answer(retriever, answerer, question)
    assert not answer.stated and answer.quotes == ()
    assert (Reason.FIGURE, Kind.MONEY) in [(f.reason, f.detail) for f in answer.findings]


def test_a_ranking_is_not_a_count(retriever: Retriever, answerer: Answerer) -> None:
    result = retriever.search("北京累计认定了多少家高新技术企业？", top_k=5)
    answer = answerer.answer(result)
    assert not answer.stated
    assert [f.reason for f in answer.findings] == [Reason.FIGURE]
    # The passage that gives the ranking is among the closest ones shown.
    assert any("均保持全国城市第一" in hit.text for hit in result.hits)


@pytest.mark.parametrize(
    ("question", "reason", "detail"),
    [
        ("上海2024年的研发经费投入强度是多少？", Reason.UNKNOWN_NAME, "上海"),
        ("How many unicorn companies does Hangzhou have?", Reason.UNKNOWN_NAME, "Hangzhou"),
        ("2022年北京的技术合同成交额是多少亿元？", Reason.YEAR, "2022"),
        ("“十五五”末北京的研发经费投入强度目标定在多少？", Reason.YEAR, "十五五"),
        ("北京“海聚工程”累计引进了多少名海外高层次人才？", Reason.UNKNOWN_NAME, "海聚工程"),
    ],
)
def test_reasons_for_not_stated(
    retriever: Retriever, answerer: Answerer, question: str, reason: Reason, detail: str
) -> None:
    answer = _answer(retriever, answerer, question)
    assert not answer.stated
    assert (reason, detail) in [(f.reason, f.detail) for f in answer.findings]


def test_a_year_the_documents_cover_is_answered(retriever: Retriever, answerer: Answerer) -> None:
    answer = _answer(retriever, answerer, "2024年北京高技术产业增加值是多少？")
    assert answer.stated and "1.49万亿元" in answer.text


def test_lexical_mode_answers_without_cosines(retriever: Retriever, answerer: Answerer) -> None:
    answer = answerer.answer(retriever.search("北京独角兽企业有多少家？", mode="lexical"))
    assert answer.stated and "115家" in answer.text
