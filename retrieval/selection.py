"""Choosing what to cite: the unit (sentence, table row, code line) that answers, not the one that restates.

Every unit of the top chunks is scored on
- its own share of the question's weighted topic terms (a table row also by its header's terms, and twice
  more by its first cell's when the question names the row by that cell; a sentence also by the long form of
  an acronym its chunk defines);
- its neighbourhood: the unit after one that restates the question is often the answer ("...the Master
  Settlement Agreement (MSA)." then "The MSA provided for $206 billion..."), so a unit inherits part of
  its predecessor's match (nearly all of it after a colon, before code, after a sentence that restates the
  question, or when it opens with an anaphor);
- the kind of answer asked for: an amount (with what it measures, where the question says), a time, a
  command (in a code line or in prose) or a section title;
- what a unit is: a reference-list entry names the topic in its title and answers nothing;
- novelty: a unit made only of the question's own words restates it (unless it is the title asked for).
(Word-vector similarity to the question was tried as a further term and cost hit@1 on bench/qa.py once
the hybrid search ranked well: table rows of numbers look like nothing, and it moved only lexical ties.)
The chunks of the cited units come first in the response, the rest keep the fused order. The relevance
gate asks for evidence of an answer (a well-supported unit, of the asked-for kind), so it works in any
language the index can split, and does not trust the English embedder's cosine alone.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .lexical import QueryTerms, is_topic, language_of, stems
from .store import Hit
from .units import DIGIT, YEAR, Unit, opens_line, units

# Chunks the store returns for the answer stage to rerank (the response keeps the top_k asked for).
RERANK_DEPTH = 16
NEIGHBOUR_BEFORE = 0.45
NEIGHBOUR_AFTER = 0.1
NEIGHBOUR_AFTER_COLON = 0.9
INTRODUCTION_FACTOR = 0.5
HEADER_WEIGHT = 0.5
HEADER_ROW_FACTOR = 0.5
# A row's first cell names the row: when the question has all of it, its terms count this much more
# (bench/qa.py born-digital tables hit@1 0.333 -> 0.519 at 1, 0.593 from 2 to 5; any cell instead of the
# first: 0.519, and two unanswerable questions answered)
KEY_WEIGHT = 2.0
TITLE_FACTOR = 1.5  # "which section covers X?" asks for the heading itself
NUMBER_BONUS = 0.25
# Two translations of one manual (zh-CN, zh-TW) fold to the same terms: the one written as asked wins.
SAME_SCRIPT_BONUS = 0.1
RESTATEMENT_PENALTY = 0.1
# A unit with less than this share of topic terms the question lacks restates the question.
RESTATES = 0.25
# An entry of a reference list names the question's topic in its title, and answers nothing itself.
BIBLIOGRAPHY_FACTOR = 0.5
RANK_DECAY = 0.01
# Relevance, calibrated on bench/qa.py's 183 questions: the best unit's score (at 0.35, 7 of 19 unanswerable
# questions refused and 2 answerable ones whose first citation would have been right; 0.5 refuses 10 of 19
# and costs 12 right answers: the lexical evidence of unanswerable questions written about a document is
# as strong as that of answerable ones). The cosine alone is no gate: unanswerable questions about a
# document score 0.45-0.72 with the default embedder, as high as answerable ones. What refuses most of them is
# the measure an amount question asks for (Measure, below): with it, 17 of 19, and no answerable question.
BEST_MIN = 0.35
# Or two units that hold this share of the question's weighted terms between them.
TOGETHER_MIN = 0.6
TYPED_READ = 3
# How much of the question a unit must hold for the asked-for measure's figure to lift it (OCR noise with a
# "$" in it holds little of it).
MEASURE_TOPIC_MIN = 0.2
ANSWER_SHARE = 0.6
_WANTS_AMOUNT = re.compile(
    r"\b(how (many|much|long|old|often|far|big|large|high)|what (percentage|amount|number|size|price|cost)|"
    r"combien|quel (montant|prix|nombre)|wie (viel|viele|lange|alt|hoch|oft|groß)|cuánto|cuántos)\b|"
    r"多少|几|いくつ|いくら|何人|何個|何件|몇|얼마", re.IGNORECASE)
_WANTS_TITLE = re.compile(
    r"\b(which|what) (section|chapter|subsection|part|table|figure)\b|\btitle of the (table|figure)|"
    r"\btitre d[ue] (la |l')?(tableau|figure|section)|\bquel (tableau|titre)|\bwelche (tabelle|abbildung)|"
    r"哪[个張张]?[表图]|どの[表図]|[表図]の番号|어느 (표|그림)|\bsection number|\bquelle (section|partie)|"
    r"\bquel chapitre|\bcomment s'intitule|\bwelche[rms]? (abschnitt|kapitel)|überschrieben|"
    r"\bwie heißt (der|das|die) (abschnitt|kapitel|tabelle|abbildung)|"
    r"哪一?[节章]|第几[节章]|何[節章]|どの[節章]|절 번호|몇 절|어느 절",
    re.IGNORECASE)
_WANTS_COMMAND = re.compile(
    r"\b((which|what) ([\w.-]+ ){0,2}(command|option|flag|function|expression|code|line|statement)|how (do|can|should) "
    r"(i|you|one) (run|call|type|invoke|write|generate)|quelle (commande|option|fonction)|comment (exécuter|lancer|"
    r"écrire|générer)|welche[rmns]? (befehl|option|funktion|aufruf)|mit welchem (befehl|aufruf)|wie (rufe|schreibe|"
    r"exportiere|installiere|starte|erzeuge))\b|命令|指令|コマンド|명령|커맨드", re.IGNORECASE)
# An entry of a reference list: "Borgström B, Hreinsson J, et al. Fertility preservation in girls...",
# "Shao, Z., Wang, P. (2024). ...", "[12] Smith J. ...": authors first, surname then initials.
_BIBLIOGRAPHY = re.compile(r"\s*(\[\d+\]\s*|\d+\.\s+)?(\w[\w'’-]+ [A-Z]{1,3}(, | and |, and )\w[\w'’-]+ [A-Z]{1,3}\b|"
                           r"\w[\w'’-]+, ([A-Z]\.\s?)+(,| &| and) )")
# A sentence that goes on about the previous one's subject: it inherits nearly all of its match.
_ANAPHOR = re.compile(r"(they|it|its|this|these|those|he|she|their|such|il|elle|ils|elles|ce|cette|ces|er|sie|es|"
                      r"dies|diese|dieser|dieses)\b|它|其|这|该|此|それ|これ|この|その|그|이것", re.IGNORECASE)
_CODE_START = re.compile(r"\s*([$>%#]\s|:\w|--?[A-Za-z]|[\w.-]+\s+-{1,2}\w|[\w.]+\(|[\w.$]+\s*(<-|=)\s)")
# A unit that looks like code: a prompt, an option, a call, an assignment, a path; code in prose counts too
# ("...use the command make uninstall", "vclear $gridname resets...").
_CODE = re.compile(r"(^|\s)[$>%#]\s|(^|\s)\$[A-Za-z_]\w*|\b(use|run|type|with) the command\b|"
                   r"(^|\s)--?[A-Za-z]|\w\(|[:=]\s*\w+\(|(^|\s):\w|\s->\s|/[\w.-]+/|"
                   r"[\w-]+\.(sh|py|conf|cf|rhs|txt)\b")
_WANTS_FORMULA = re.compile(r"\b(formula|equation|expression|computed|calculated|formule|équation|formel|gleichung|"
                            r"berechnet)\b|公式|数式|수식", re.IGNORECASE)
# A formula: a relation or an operator between terms ("k× 144 + 256", "y ~ x + I(x^2)", "WE = ...").
_FORMULA = re.compile(r"[=≤≥≈~∈×∑√^]|\w\s*[+·−]\s*\w|\d\s*[*/]\s*\d")
# The section a question names by number: "section 1.4", "Abschnitt 4.1", "3.1节", "6.2.2절".
_SECTION_NAMED = re.compile(r"\b(sections?|sec\.|chapters?|chapitre|partie|abschnitt|kapitel)\s*(\d+(?:\.\d+)*)|"
                            r"(\d+(?:\.\d+)*)\s*(节|절|章)", re.IGNORECASE)
NUMBERED_HEADING_BONUS = 1.0
_URL = re.compile(r"\b(https?://|www\.)\S+", re.IGNORECASE)
# A question for an address: an e-mail address, or where something is on the web.
_WANTS_EMAIL = re.compile(r"\b(e-?mail|courriel|adresse (é|e)lectronique)\b|邮箱|电子邮件|メールアドレス|이메일",
                          re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_WANTS_WEB = re.compile(r"\b(url|web ?(site|page|address)|(available|found|read) online|online at|download(ed)? "
                        r"from|site (web|internet)|adresse web|en ligne|webseite|internetseite|herunterladen)\b|"
                        r"网址|网站|ウェブサイト|웹사이트", re.IGNORECASE)
_WEB = re.compile(r"\b(https?://|www\.)\S+|\b[\w-]+(\.[\w-]+)*\.(org|com|net|edu|io|fr|de)(/\S*)?", re.IGNORECASE)
# A question for a person, and a person's name: two capitalised words, initials between them.
_WANTS_PERSON = re.compile(r"^\W*(who|whom|by whom|qui|par qui|wer|von wem)\b|谁|誰が|누가|누구", re.IGNORECASE)
_PERSON = re.compile(r"\b[A-Z][a-z]+(?: [A-Z]\.)* [A-Z][a-z]+\b")
# A question for a reason, and a unit that gives one ("...was chosen for compatibility with matlab", "...ためです").
_WANTS_REASON = re.compile(r"^\W*why\b|\bpourquoi\b|\b(warum|wieso|weshalb)\b|为什么|为何|なぜ|どうして|왜",
                           re.IGNORECASE)
_REASON = re.compile(r"\b(because|so that|in order to|due to|for (compatibility|the sake|this reason)|the reason|"
                     r"parce que|afin (de|que)|pour que|weil|damit|aufgrund)\b|因为|由于|为了|以便|ため|ので|때문|위해",
                     re.IGNORECASE)
# Answer types an introduction holds as its own point ("...the tutorial written by Charles Staats:"); one that
# introduces code or a table holds an option, a path or a figure only by the way.
_SELF_EVIDENT = frozenset({"person", "email", "web"})
# "when" asks for a time where it opens the question ("When was...", "By when..."); inside one it is a
# conjunction ("Which form is attached when reporting grants?").
_WANTS_TIME = re.compile(
    r"^\W*((by|since|until|till) )?when\b|\b(what (year|date|time|day)|which (year|date|day)|quand|"
    r"en quelle année|quelle date|wann|"
    r"in welchem jahr|an welchem tag|cuándo)\b|何年|何日|何時|いつ|哪一?年|何时|什么时候|언제|몇 ?년", re.IGNORECASE)
# A time of day: "At what time is the report?" wants "6:05", not the meeting's year.
_WANTS_CLOCK = re.compile(r"\b((at )?what time|à quelle heure|um wie ?viel uhr)\b|几点|何時に|몇 시", re.IGNORECASE)
_CLOCK = re.compile(r"\b\d{1,2}[:h]\d{2}\b|\b\d{1,2}\s?[ap]\.?m\b|\d{1,2}\s?(点|時|시)", re.IGNORECASE)
# Numbers that name things rather than count them: "Fig. 3", "Table 2", "[12]", "(5)", "Section 4.1".
_REFERENCE = re.compile(r"\b(fig(ure)?s?|tab(le)?s?|eqs?|equations?|sections?|sec|chapters?|ch|pages?|p|pp|"
                        r"abb|tabelle|abschnitt|kapitel|seite|chapitre|page|tableau|图|表|第)\.?\s*[\dIVX]+(\.\d+)*|"
                        r"\[\d+(,\s*\d+)*\]|\(\d+\)", re.IGNORECASE)
_MONTH = (r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?|janvier|février|mars|avril|mai|juin|"
          r"juillet|août|septembre|octobre|novembre|décembre|januar|februar|märz|juni|juli|oktober|dezember")
# A day of a month is a date, not an amount: "26 May 2004", "May 26".
_DATE = re.compile(rf"\b\d{{1,2}}\.?\s+({_MONTH})\b|\b({_MONTH})\s+\d{{1,2}}\b", re.IGNORECASE)
_AMOUNT = re.compile(
    r"[$€£¥%]|\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|thousand|million|billion|percent|half|dozen|once|twice|deux|trois|quatre|cinq|dix|cent|mille|"
    r"zwei|drei|vier|fünf|zehn|hundert|tausend|prozent|einmal|zweimal)\b|[一二三四五六七八九十百千万亿两]|"
    r"(하나|둘|두|세|네|다섯|여섯|일곱|여덟|아홉|열|백|천|만) ?(번|개|명|시간|일|년)", re.IGNORECASE)

# What an amount is measured in, where the question says: money ("how much did they pay", "combien coûte",
# "いくら"), a duration ("how long does it take"), a size ("how much disk space") or a unit ("how many GPU
# hours"). The answer writes it beside its figure, or its table names it in the column's header: a unit with
# figures of something else does not answer (the unanswerable questions about a document hold those).
_ASKS_MONEY = re.compile(
    r"\bhow much\b.*\b(cost|costs|pay|paid|pays|price|charge|charged|fee|fees|spend|spent)\b|"
    r"\bwhat (is|was) the (price|cost|fee)\b|combien (co[uû]t|pay|fau[td]-il payer)|\bwie viel (kostet|kosten|"
    r"zahl|bezahl)|多少钱|多少費|费用是多少|会费|いくら(払|かか)|料金|얼마를? (내|지불)|비용은 얼마", re.IGNORECASE)
_ASKS_DURATION = re.compile(r"\bhow long (does|did|do|will|would|should|can)\b.*\b(take|takes|last|run|need)\b|"
                            r"\bhow much time\b|\bcombien de (temps|jours|heures|minutes|secondes|semaines|mois)\b|"
                            r"\bwie lange\b|\bwie viele (tage|stunden|minuten|sekunden|wochen|monate)\b|多长时间|多久|"
                            r"どのくらいの時間|何分|何秒|얼마나 걸", re.IGNORECASE)
_ASKS_SIZE = re.compile(r"\b(how (big|large)|how much (disk|memory|storage|space)|disk space|espace disque|"
                        r"speicherplatz|plattenplatz|(what|quelle|welche) (is|est|ist) (the|la|die) ((max|min)\w* )?"
                        r"(size|taille|größe))\b|容量多大|多大|どのくらいの容量|용량은", re.IGNORECASE)
_ASKS_SHARE = re.compile(r"\b((what|which) (percentage|proportion|fraction|share)|how many percent|percentage of|"
                         r"quel pourcentage|quelle (part|proportion)|wie viel prozent|welche[rn]? anteil)\b|"
                         r"利率|百分之|百分比|比例|比率|割合|何パーセント|何%|몇 퍼센트|비율", re.IGNORECASE)
_ASKS_POWER = re.compile(r"\b(power (consumption|draw|usage)|how many watts|consommation électrique|"
                         r"leistungsaufnahme|stromverbrauch)\b|功耗|消費電力|소비 전력", re.IGNORECASE)
_UNITS = {  # a unit a question counts in, and how an answer writes it
    "second": r"s|sec|secs|seconds?", "minute": r"min|mins|minutes?", "hour": r"h|hrs?|hours?",
    "day": r"days?", "week": r"weeks?", "byte": r"b|bytes?", "kilobyte": r"kb|kib|k|kbytes?|kilobytes?",
    "megabyte": r"mb|mib|m|mbytes?|megabytes?", "gigabyte": r"gb|gib|g|gbytes?|gigabytes?",
    "terabyte": r"tb|tib|terabytes?", "percent": r"%|percent|per cent",
}
_ASKS_UNIT = re.compile(r"\bhow many (?:[\w-]+ ){0,2}?(" + "|".join(_UNITS) + r")s?\b", re.IGNORECASE)


@dataclass(frozen=True)
class Measure:
    written: re.Pattern  # how an answer writes it beside its figure
    named: re.Pattern  # a table column of its bare figures

    def held_by(self, text: str, header: str) -> bool:
        return bool(self.written.search(text) or (header and DIGIT.search(text) and self.named.search(header)))


MONEY = Measure(
    re.compile(r"[$€£¥₩]|\b(usd|eur|gbp|chf|dollars?|euros?|cents?|pounds|francs?|yen|yuan|rmb|won)\b|"
               r"\d\s*(元|円|원|块)|美元|欧元|人民币", re.IGNORECASE),
    re.compile(r"price|cost|amount|fee|montant|prix|coût|betrag|preis|kosten|金额|价格|费用|金額|価格|料金|금액|가격|"
               r"[$€£¥₩]", re.IGNORECASE))
DURATION = Measure(
    re.compile(r"\d\s*(ms|µs|ns|s|sec|secs|seconds?|min|mins|minutes?|h|hrs?|hours?|days?|weeks?|months?|years?|"
               r"secondes?|heures?|jours?|sekunden?|minuten|stunden?|tage?n?)\b|\d\s*(毫秒|秒|分钟|分|小时|時間|天|日|초|분|"
               r"시간)", re.IGNORECASE),
    re.compile(r"time|duration|temps|durée|dauer|zeit|时间|時間|시간|\((m?s|min|h)\)", re.IGNORECASE))
SIZE = Measure(
    re.compile(r"\d\s*([kmgtp]i?b|[kmgtp]?bytes?|[kmgt]?octets?|[kmgt]io|[kmgt]o|kilobytes?|megabytes?|gigabytes?|"
               r"terabytes?)(?![a-z])", re.IGNORECASE),
    re.compile(r"size|taille|größe|容量|大小|サイズ|용량|크기|\b[kmg]i?b\b|bytes", re.IGNORECASE))
SHARE = Measure(
    re.compile(r"[%％‰]|\b(percent|per cent|pour cent|prozent|half|third|quarter|majority|one in \w+|\d+ (of|in|out "
               r"of) \d+)\b|百分之|成|割|퍼센트", re.IGNORECASE),
    re.compile(r"%|rate|ratio|share|taux|quote|anteil|率|比|비율", re.IGNORECASE))
POWER = Measure(re.compile(r"\d\s*(k|m)?w(atts?)?\b", re.IGNORECASE), re.compile(r"power|watt|\(w\)", re.IGNORECASE))


def _measure_asked(question: str) -> Measure | None:
    """What an answer to an amount question must hold beside its figure, where the question says."""
    if _ASKS_MONEY.search(question):
        return MONEY
    if _ASKS_DURATION.search(question):
        return DURATION
    if _ASKS_SIZE.search(question):
        return SIZE
    if _ASKS_SHARE.search(question):
        return SHARE
    if _ASKS_POWER.search(question):
        return POWER
    unit = _ASKS_UNIT.search(question)
    if unit:
        word = unit.group(1).lower()
        # "880 GPU hours": the unit may follow the figure's own words
        written = re.compile(rf"\d\s*([A-Za-z-]+\s+){{0,2}}?({_UNITS[word]})(?![a-z])", re.IGNORECASE)
        return Measure(written, re.compile(word, re.IGNORECASE))
    return None


@dataclass
class Candidate:
    hit: Hit
    rank: int
    unit: Unit
    own: float = 0.0
    window: float = 0.0  # weighted topic coverage of the unit with its predecessor and header
    score: float = 0.0
    terms: frozenset[str] = frozenset()  # the question's terms the unit holds

    @property
    def text(self) -> str:
        return self.hit.payload.get("text", "")[self.unit.start:self.unit.end]


# What holds each kind of answer, read in the unit's text as written and with its web addresses taken out (a
# web address holds no amount, time, command or formula).
_HOLDS = {
    "email": lambda raw, plain: _EMAIL.search(raw),
    "web": lambda raw, plain: _WEB.search(raw),
    "person": lambda raw, plain: any(m.start() for m in _PERSON.finditer(raw)),  # not the sentence's first word
    "amount": lambda raw, plain: _AMOUNT.search(_REFERENCE.sub("", YEAR.sub("", _DATE.sub("", plain)))),
    "time": lambda raw, plain: YEAR.search(plain),
    "clock": lambda raw, plain: _CLOCK.search(plain),
    "command": lambda raw, plain: _CODE.search(plain),
    "formula": lambda raw, plain: _FORMULA.search(plain),
    "reason": lambda raw, plain: _REASON.search(plain),
}
# The kinds of answer a question asks for, the first that matches taken.
_ASKS = (("formula", _WANTS_FORMULA), ("title", _WANTS_TITLE), ("command", _WANTS_COMMAND), ("email", _WANTS_EMAIL),
         ("web", _WANTS_WEB), ("person", _WANTS_PERSON), ("reason", _WANTS_REASON), ("amount", _WANTS_AMOUNT),
         ("clock", _WANTS_CLOCK), ("time", _WANTS_TIME))


def _answer_type_bonus(kind: str, text: str) -> float:
    """A question for an amount, a time, a command, a formula, an address or a person wants a unit that holds
    one (a year is no amount)."""
    holds = _HOLDS.get(kind)
    return NUMBER_BONUS if holds and holds(text, _URL.sub(" ", text)) else 0.0


def _asks_for(question: str) -> str:
    return next((kind for kind, wants in _ASKS if wants.search(question)), "")


@dataclass(frozen=True)
class Asked:
    """What a question asks for, read once: the kind of answer, what an amount measures, a section number."""
    kind: str
    measure: Measure | None
    section: str

    @classmethod
    def of(cls, question: str) -> Asked:
        named = _SECTION_NAMED.search(question)
        section = (named.group(2) or named.group(3)) if named else ""
        return cls(_asks_for(question), _measure_asked(question), section)

    def bonus(self, text: str, header: str, own: float) -> float:
        """The answer type's bonus. Where the question says what an amount measures ("what share...", "how
        much did they pay"), only a unit about the question holding a figure of it gains, and more; a
        figure of something else gains nothing."""
        bonus = _answer_type_bonus(self.kind, text)
        if self.measure is None:
            return bonus
        return bonus + NUMBER_BONUS if own >= MEASURE_TOPIC_MIN and self.measure.held_by(text, header) else 0.0


@dataclass(frozen=True)
class _Read:
    """A retrieved chunk cut into units, with each unit's terms (acronyms expanded) in the question's language."""

    hit: Hit
    cut: list[Unit]
    found: list[set[str]]

    @classmethod
    def of(cls, hit: Hit, language: str) -> _Read:
        text = hit.payload.get("text", "")
        cut = units(text, hit.payload.get("spans"))
        expand = acronyms(text)
        return cls(hit, cut, [set(stems(text[u.start:u.end] + expansion(text[u.start:u.end], expand), language))
                              for u in cut])

    @property
    def terms(self) -> set[str]:
        """The chunk's terms: its units' together (the text between units is markup)."""
        return set().union(*self.found)


def _score_chunk(question: QueryTerms, read: _Read, rank: int, asked: Asked) -> list[Candidate]:
    hit, cut, found = read.hit, read.cut, read.found
    text = hit.payload.get("text", "")
    share = [question.matched(f) for f in found]
    restating = [_restates(question, f) for f in found]
    headers = {h: question.of(h) for h in {u.header for u in cut if u.header}}  # a table's rows share one
    out = []
    for i, unit in enumerate(cut):
        own_terms = found[i]
        extra = headers[unit.header] - own_terms if unit.header else set()
        own = share[i] + HEADER_WEIGHT * question.matched(extra) + _named_row(question, text, unit)
        if unit.kind in ("header", "heading", "caption"):  # a title names the topic; the answer is under it
            own *= TITLE_FACTOR if asked.kind == "title" and unit.kind != "header" else HEADER_ROW_FACTOR
        if unit.kind == "heading" and asked.section and _numbered(text[unit.start:unit.end], asked.section):
            own += NUMBERED_HEADING_BONUS  # "What is section 1.4 called?": the heading numbered 1.4
        lead = _lead(text, cut[i - 1], unit) if i > 0 and unit.kind != "header" else 0.0  # a header names, not answers
        if lead == NEIGHBOUR_BEFORE and restating[i - 1] and "\n" not in text[cut[i - 1].end:unit.start]:
            lead = NEIGHBOUR_AFTER_COLON  # the sentence after a restatement: "Scholarship grants. Attach Form 1042-S"
        before = found[i - 1] if lead else set()
        after = share[i + 1] if i + 1 < len(found) and cut[i + 1].block == unit.block else 0.0
        # a unit inherits its neighbours' match only for what it does not match itself
        inherited = lead * share[i - 1] + NEIGHBOUR_AFTER * after
        if _BIBLIOGRAPHY.match(text, unit.start, unit.end):
            own *= BIBLIOGRAPHY_FACTOR
        promises = _introduces(text, unit) or _ANNOUNCES.search(text, unit.start, unit.end)
        if promises and not (asked.kind in _SELF_EVIDENT and _answer_type_bonus(asked.kind, text[unit.start:unit.end])):
            # "...run the following command:", "...are listed below": it promises the answer, which is elsewhere
            # (unless it holds what is asked for itself: "...the tutorial written by Charles Staats:")
            own *= INTRODUCTION_FACTOR
        score = own + max(0.0, 1.0 - own) * inherited + asked.bonus(text[unit.start:unit.end], unit.header, own)
        score += SAME_SCRIPT_BONUS * _same_script(question.raw_pairs, text[unit.start:unit.end])
        names_asked = asked.kind == "title" and unit.kind in ("heading", "caption")  # a title restates by nature
        if restating[i] and not names_asked:
            score -= RESTATEMENT_PENALTY
        score *= 1.0 - RANK_DECAY * rank
        window = question.matched(own_terms | before | extra)
        out.append(Candidate(hit, rank, unit, own, window, score, frozenset(own_terms & question.weights.keys())))
    return out


def _restates(question: QueryTerms, terms: set[str]) -> bool:
    return bool(terms) and question.novelty(terms) < RESTATES


def _named_row(question: QueryTerms, text: str, unit: Unit) -> float:
    """A table row the question names by its first cell ("Alaska's total", "the ESAW method", "in 2021"):
    the question has every topic term of that cell, and they count again."""
    if unit.kind != "row" or not unit.key_end:
        return 0.0
    key = {t for t in question.of(text[unit.start:unit.key_end]) if is_topic(t)}
    return KEY_WEIGHT * question.matched(key) if key and key <= question.weights.keys() else 0.0


# A sentence that announces what comes after it, when what comes is a block of its own.
_ANNOUNCES = re.compile(r"\b(the following|as follows|below|shown here|ci-dessous|suivant(e|es|s)?|folgende[nrs]?|"
                        r"wie folgt|unten)\b|以下|下記|次の|如下|下面|下列|다음", re.IGNORECASE)


def _introduces(text: str, unit: Unit) -> bool:
    """"...run the following command:" or "The following program draws a circle." before a new block."""
    said = text[unit.start:unit.end].rstrip()
    if said.endswith((":", "：")):
        return True
    block_ends = not text[unit.end:unit.end + 2].strip(" \t|") or text.startswith("\n\n", unit.end)
    return block_ends and bool(_ANNOUNCES.search(said))  # at a chunk's end too: what it announces is in the next


def _lead(text: str, prev: Unit, unit: Unit) -> float:
    """How much of the previous unit's match a unit inherits: an introduction ending in a colon, or the
    prose right before a block of code, hands on nearly all of it; a sentence of the same paragraph part
    of it; another block nothing."""
    if _introduces(text, prev) or (unit.block == prev.block + 1 and _CODE_START.match(text, unit.start, unit.end)
                                   and not _CODE_START.match(text, prev.start, prev.end)):
        return NEIGHBOUR_AFTER_COLON
    if prev.block == unit.block and _ANAPHOR.match(text, unit.start, unit.end):  # "They fell by 12%."
        return NEIGHBOUR_AFTER_COLON
    return NEIGHBOUR_BEFORE if prev.block == unit.block else 0.0


def _same_script(pairs: set[str], text: str) -> float:
    """Share of the question's CJK bigrams found as written (simplified or traditional, as asked)."""
    return sum(1 for p in pairs if p in text) / len(pairs) if pairs else 0.0


_ACRONYM = re.compile(r"\(([A-Z][A-Za-z]?[A-Z]{1,6}s?)\)")
_WORD = re.compile(r"[^\W\d_][\w'’-]*")


def acronyms(text: str) -> dict[str, str]:
    """Acronyms the text defines, "Master Settlement Agreement (MSA)" → {"MSA": "Master Settlement Agreement"},
    so a later sentence that only says "the MSA" still matches the question's words."""
    out = {}
    for m in _ACRONYM.finditer(text):
        short = m.group(1).rstrip("s")
        capitals = [c for c in short if c.isupper()]
        words = _WORD.findall(text[max(0, m.start() - 120):m.start()])
        long = [w for w in words if w[0].isupper() or len(w) > 3][-len(capitals):]
        if len(long) == len(capitals) and all(w[0].upper() == c for w, c in zip(long, capitals, strict=True)):
            out[short] = " ".join(long)
    return out


def expansion(text: str, expand: dict[str, str]) -> str:
    return "".join(" " + long for short, long in expand.items() if short in text)


def _numbered(heading: str, number: str) -> bool:
    return re.match(rf"\s*#*\s*{re.escape(number)}\.?(\s|$)", heading) is not None


# A footnote: a line that opens with its number ("1 Comma-separated lists...", "1http://...", "⁸ Vous...", not a
# list's "1." or "2)") in the lower part of its page. It goes on about the sentence that carries its mark
# ("...the Objective Caml reference manual1)"), often in another chunk, and inherits that sentence's match as a
# unit inherits an introduction's.
_FOOTNOTE = re.compile(r"\s*([1-9]\d?|[¹²³⁴⁵⁶⁷⁸⁹])(?![\d.)\]:,])")
FOOT_OF_PAGE = 0.5
_SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _credit_footnotes(found: list[Candidate]) -> None:
    """Each footnote's score gains the match of the sentence that cites it (same document and page)."""
    for c, number in [(c, n) for c in found if (n := _footnote_number(c))]:
        # glued to a word's end ("manual1)", "lists1 are"), not a name's digits ("Qwen2.5", "mp3s")
        mark = re.compile(rf"(?<=[^\W\d_]){number}(?!\w|\.\d)|{number.translate(_SUPERSCRIPT)}")
        where = (c.hit.payload.get("document_id", ""), _page_top(c)[0])
        cited = [o.own for o in found if o is not c and _marked(o, number, mark)
                 and (o.hit.payload.get("document_id", ""), _page_top(o)[0]) == where]
        if cited:
            c.score += max(0.0, 1.0 - c.own) * NEIGHBOUR_AFTER_COLON * max(cited)


def _marked(c: Candidate, number: str, mark: re.Pattern) -> bool:
    """Whether the unit carries the footnote's mark (the plain search first: most units hold no such digit)."""
    text, start, end = c.hit.payload.get("text", ""), c.unit.start, c.unit.end
    if text.find(number, start, end) < 0 and text.find(number.translate(_SUPERSCRIPT), start, end) < 0:
        return False
    return mark.search(text, start, end) is not None


def _footnote_number(c: Candidate) -> str:
    """The number a footnote opens with, or "" for any other unit."""
    text = c.hit.payload.get("text", "")
    m = _FOOTNOTE.match(text, c.unit.start, c.unit.end) if c.unit.kind == "sentence" else None
    if not m or not opens_line(text, c.unit.start):
        return ""  # not at the start of a line (a footnote set in a code font is a line of a code block)
    if _page_top(c)[1] < FOOT_OF_PAGE:
        return ""
    number = m.group(1)
    return number if number.isascii() else str(unicodedata.digit(number))


def _page_top(c: Candidate) -> tuple[int, float]:
    """The page a unit starts on and the top of its first line (0..1)."""
    for span in c.hit.payload.get("spans") or []:
        if span["char_start"] <= c.unit.start < span["char_end"]:
            return span["page"], span["bbox"][1]
    return 0, 0.0


def candidates(question: str, hits: list[Hit]) -> list[Candidate]:
    """Units of the top chunks, best first."""
    language = language_of(question)
    read = [_Read.of(hit, language) for hit in hits[:RERANK_DEPTH]]
    below = [set(stems(h.payload.get("text", ""), language)) for h in hits[RERANK_DEPTH:]]
    terms = QueryTerms(question, [r.terms for r in read] + below)
    asked = Asked.of(question)
    found = [c for rank, r in enumerate(read) for c in _score_chunk(terms, r, rank, asked)]
    _credit_footnotes(found)
    found = [c for c in found if c.score > 0 or c.own > 0]
    found.sort(key=lambda c: (-c.score, c.rank, c.unit.start))  # ties broken the same way every time
    return found


def is_relevant(question: str, found: list[Candidate]) -> bool:
    """Whether the retrieved text answers the question, or is only the nearest noise: the best unit must
    be well supported, and a question for an amount or a time needs one among the best units."""
    asked = Asked.of(question)
    if asked.kind in ("amount", "time") and not any(_answer_type_bonus(asked.kind, c.text)
                                                    for c in found[:TYPED_READ]):
        return False
    measure = asked.measure
    if measure and not any(measure.held_by(c.text, c.unit.header) for c in found[:TYPED_READ]):
        return False
    if not found:
        return False
    return found[0].score >= BEST_MIN or _covered_together(question, found[:2]) >= TOGETHER_MIN


def _covered_together(question: str, best: list[Candidate]) -> float:
    """How much of the question two units hold together: "What happened to nitrate levels and to the
    coffee price?" is answered by two sentences, each holding half of it."""
    if len(best) < 2 or best[0].terms == best[1].terms:
        return 0.0
    unweighted = QueryTerms(question, [])  # every term of the question counts the same here
    return unweighted.matched(best[0].terms | best[1].terms)


def chosen(found: list[Candidate], limit: int) -> list[Candidate]:
    """The units to cite, the one that answers first: the best and those close to it, one per unit."""
    if not found:
        return []
    best = found[0].score
    out: list[Candidate] = []
    for c in found:
        if len(out) == limit or c.score < ANSWER_SHARE * best:
            break
        if all(c.hit.id != o.hit.id or c.unit != o.unit for o in out):
            out.append(c)
    if len(out) > 1 and _adjacent(out[0], out[1]):
        out[:2] = [_joined(out[0], out[1])]
    return out


def _adjacent(a: Candidate, b: Candidate) -> bool:
    """The best unit `a` and the runner-up `b` with nothing between them in one chunk, where `b` goes on
    from `a` (the sentence after a restatement, the code after its introduction): cited as one quote, the
    first citation holds both. A runner-up before the best unit stays a citation of its own."""
    if a.hit.id != b.hit.id:
        return False
    text = a.hit.payload.get("text", "")
    if a.unit.start < b.unit.start:
        return not text[a.unit.end:b.unit.start].strip(" \t\n|#>-*")
    gap = text[b.unit.end:a.unit.start]
    return not gap.strip(" \t\n|#>-*") and (_introduces(text, b.unit) or bool(_CODE_START.match(text, a.unit.start)))


def _joined(a: Candidate, b: Candidate) -> Candidate:
    start, end = min(a.unit.start, b.unit.start), max(a.unit.end, b.unit.end)
    unit = Unit(start, end, a.unit.kind, min(a.unit.block, b.unit.block), a.unit.header)
    return Candidate(a.hit, a.rank, unit, a.own, a.window, a.score, a.terms | b.terms)


def rerank(hits: list[Hit], cited: list[Candidate]) -> list[Hit]:
    """The chunks of the cited units first, in citation order, then the rest in the store's fused order:
    the fused ranking places the answering chunk in the top five more often than any one unit's score
    (bench/qa.py: 133 of 164 questions against 123 when every chunk was ordered by its best unit)."""
    first = list(dict.fromkeys(c.hit.id for c in cited))
    order = {hit_id: i for i, hit_id in enumerate(first)}
    return sorted(hits, key=lambda h: order.get(h.id, len(first)))
