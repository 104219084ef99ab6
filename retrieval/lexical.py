"""What a question is about, in any language: its topic terms, stemmed and weighted.

The sparse index's terms (words; CJK character bigrams and unigrams) are the vocabulary. For matching
sentences against a question, Latin-script words are also stemmed (Snowball, in the language the
question's function words point to) so "provided" meets "provide" and "Rechnungen" meets "Rechnung",
and function words of English, French, German and Spanish, CJK question words and Japanese kana-only
terms (particles, inflections) carry no topic.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

import snowballstemmer

from .tokens import terms

STOPWORDS_BY_LANGUAGE = {
    "english": frozenset("""a about above after again against all also am an and any are as at be because been
        before being below between both but by can could did do does doing down during each few for from further
        had has have having he her here hers him his how i if in into is it its itself just me more most my no nor
        not now of off on once only or other our ours out over own same she should so some such than that the
        their theirs them then there these they this those through to too under until up very was we were what
        when where which while who whom why will with would you your yours tell show give list describe explain
        please much many does did""".split()),
    "french": frozenset("""au aux avec ce ces dans de des du elle en et eux il je la le les leur lui ma mais me
        même mes moi mon ne nos notre nous on ou par pas pour qu que qui sa se ses son sur ta te tes toi ton tu un
        une vos votre vous est sont été être avoir a ont quel quelle quels quelles quoi comment combien où quand
        pourquoi lequel laquelle faut peut doit fait cette cet y d l s n c j m t""".split()),
    "german": frozenset("""aber als am an auch auf aus bei bin bis bist da damit dann der den des dem die das
        dass du er es ein eine einem einen einer eines für hat hatte hattest ich ihr ihre im in ist ja kann kein
        mit muss nach nicht noch nun nur ob oder ohne sie sind so über um und uns unter vom von vor war was
        welche welcher welches welchen wem wen wer wie wieviel viele wo woher wohin zu zum zur wird werden wann
        warum man soll sollte gibt""".split()),
    "spanish": frozenset("""a al algo como con cual cuál cuando cuándo cuanto cuánto de del donde dónde el
        ella en es esta este esto fue ha hay la las le lo los más me mi no nos o para pero por que qué quien
        quién se sin son su sus un una y""".split()),
}
STOPWORDS = frozenset().union(*STOPWORDS_BY_LANGUAGE.values())
# Words by which a question points at its source ("does the Octave manual mention", "according to the guide",
# "laut Handbuch"): they name no topic of the answer, and a sentence that says "as mentioned above" or
# "see the manual" holds them by chance.
SOURCE_WORDS = frozenset("""manual manuals guide handbook paper mention mentions mentioned according manuel
    mentionne mentionné selon handbuch laut gemäß erwähnt erwähnen""".split())
# CJK question and function words, as the bigrams the sparse terms cut them into.
CJK_STOP = frozenset("""什么 哪些 哪个 哪里 多少 怎么 怎样 如何 是否 为什 么是 么时 请问 可以 是什 的是 中的
    哪一 一个 这个 那个 有哪 有多 是多 什麼 們的 何が 何を 何で 何の 何か 何と 何年 何日 何時 どの どこ どれ
    だれ いつ なに 무엇 어떤 어떻 어디 언제 얼마 누구 입니 니까 습니 합니 있습 인가 나요
    까요 되나 는가 무슨 에서""".split())
_CJK_PAIR = re.compile(r"^[\u3040-\u9fff\uac00-\ud7af]{2}$")
JOIN_WEIGHT = 0.2
_HAN_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_KANA_ONLY = re.compile(r"^[\u3040-\u309f\u30fc]+$")
_LATIN_WORD = re.compile(r"^[^\W\d_]+$")


@lru_cache(maxsize=8)
def _stemmer(language: str):
    return snowballstemmer.stemmer(language)


@lru_cache(maxsize=200_000)
def _stem(word: str, language: str) -> str:
    return _stemmer(language).stemWord(word) if len(word) > 3 and _LATIN_WORD.match(word) else word


def language_of(text: str) -> str:
    """The Latin-script language whose function words the text uses most (English when none)."""
    words = [t for t in terms(text) if t.isascii() or _LATIN_WORD.match(t)]
    best, best_n = "english", 0
    for language, stop in STOPWORDS_BY_LANGUAGE.items():
        n = sum(1 for w in words if w in stop)
        if n > best_n:
            best, best_n = language, n
    return best


ISO_CODES = {"english": "en", "french": "fr", "german": "de", "spanish": "es"}
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def query_language(text: str) -> str:
    """The ISO code of a question's language: by script for Japanese, Korean and Chinese, else by the
    Latin-script function words it uses (English when none)."""
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    if len(_HAN.findall(text)) >= 2:
        return "zh"
    return ISO_CODES[language_of(text)]


@lru_cache(maxsize=200_000)
def is_topic(term: str) -> bool:
    if term in STOPWORDS or term in SOURCE_WORDS or term in CJK_STOP or _KANA_ONLY.match(term):
        return False
    return len(term) > 1 or not term.isascii()


def stems(text: str, language: str) -> list[str]:
    """The text's terms, Latin words stemmed in the given language."""
    return stemmed(terms(text), language)


def stemmed(words: list[str], language: str) -> list[str]:
    return [_stem(t, language) for t in words]


def topic_terms(text: str, language: str | None = None) -> set[str]:
    """The stemmed terms a text is about."""
    language = language or language_of(text)
    return {_stem(t, language) for t in terms(text) if is_topic(t)}


class QueryTerms:
    """A question's topic terms with weights: rarer among the retrieved texts weighs more. `found` holds
    each retrieved text's terms as `of` reads them (stemmed in the question's language)."""

    def __init__(self, question: str, found: list[set[str]]):
        self.language = language_of(question)
        wanted = topic_terms(question, self.language) or set(stems(question, self.language))
        n = max(len(found), 1)
        self.weights = {}
        for t in sorted(wanted):  # one order: sums of float weights must not depend on the hash seed
            df = sum(1 for f in found if t in f)
            weight = math.log(1 + n / (1 + df)) + 0.1
            # a CJK bigram no retrieved text holds most likely straddles two words of the question
            self.weights[t] = weight * JOIN_WEIGHT if df == 0 and _CJK_PAIR.match(t) else weight
        self.total = sum(self.weights.values()) or 1.0
        han = _HAN_RUN.findall(question)
        self.raw_pairs = {run[i:i + 2] for run in han for i in range(len(run) - 1)}

    def of(self, text: str) -> set[str]:
        return set(stems(text, self.language))

    def matched(self, found: set[str]) -> float:
        """Share of the question's weight the found terms carry (0..1)."""
        return sum(w for t, w in self.weights.items() if t in found) / self.total

    def novelty(self, found: set[str]) -> float:
        """Share of a text's topic terms the question does not have: a restatement has little."""
        topical = {t for t in found if is_topic(t)}
        return len(topical - self.weights.keys()) / len(topical) if topical else 0.0
