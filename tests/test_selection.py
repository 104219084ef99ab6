"""Choosing what an answer cites: units cut as a reader cuts them, the answering unit ranked first."""

from __future__ import annotations

import pytest

from docground.retrieval import selection, sparse
from docground.retrieval.embeddings import DEFAULT_MODEL, model_languages
from docground.retrieval.lexical import QueryTerms, language_of, query_language, stems
from docground.retrieval.store import Hit
from docground.retrieval.tokens import terms
from docground.retrieval.units import units


def _texts(text: str) -> list[str]:
    return [text[u.start:u.end] for u in units(text)]


def _hit(text: str, n: int = 0, dense: float = 0.2) -> Hit:
    return Hit(id=f"c{n}", score=1.0 / (n + 1), dense_score=dense, payload={"text": text, "document_id": "d"})


def _first(question: str, text: str) -> str:
    """The unit the answer stage puts first among one chunk's units."""
    return selection.candidates(question, [_hit(text)])[0].text


def test_sentences_end_at_sentence_ends_not_at_abbreviations_decimals_or_initials():
    text = ("Results improve by 3.5 points, e.g. on tables (see Fig. 3 and Eq. 2). S. Chapman et al. agree. "
            "The next sentence starts here.")
    assert _texts(text) == [
        "Results improve by 3.5 points, e.g. on tables (see Fig. 3 and Eq. 2).",
        "S. Chapman et al. agree.",
        "The next sentence starts here.",
    ]


def test_cjk_full_stops_end_sentences_and_blocks_and_list_lines_stay_apart():
    text = "软件包名最短长度两个字符。它必须以字母开头！\n\n- first item\n- second item"
    assert _texts(text) == ["软件包名最短长度两个字符。", "它必须以字母开头！", "first item", "second item"]


def test_korean_sentences_end_at_a_latin_full_stop_before_the_next_syllable():
    # Korean writes ". " between sentences; the sentence that answers must not run on into the next one
    text = ("압축을 풉니다: dpkg --unpack foo.deb. 이 명령이 반드시 남겨두는 것은 아닙니다. "
            "예를 들어 apache 패키지는 pool/main/a/apache/ 에 저장됩니다.")
    assert _texts(text) == ["압축을 풉니다: dpkg --unpack foo.deb.", "이 명령이 반드시 남겨두는 것은 아닙니다.",
                            "예를 들어 apache 패키지는 pool/main/a/apache/ 에 저장됩니다."]


def test_the_number_a_line_opens_with_does_not_end_a_sentence():
    text = "6.2.2. 코드명은 어디서 왔나요?\n1. We apply GRPO to olmOCR. It helps.\nSee section 2. Then stop."
    assert _texts(text) == ["6.2.2. 코드명은 어디서 왔나요?", "1. We apply GRPO to olmOCR.", "It helps.",
                            "See section 2.", "Then stop."]


def test_a_table_row_is_one_unit_that_knows_its_header():
    text = "Intro sentence here.\n\n| INSTITUTION | DEGREE | YEAR |\n| --- | --- | --- |\n| MIT | PhD | 1999 |"
    cut = units(text)
    assert [(u.kind, text[u.start:u.end]) for u in cut[1:]] == [
        ("header", "INSTITUTION | DEGREE | YEAR"), ("row", "MIT | PhD | 1999")]
    assert cut[2].header == "INSTITUTION | DEGREE | YEAR"


def test_a_tables_title_row_names_the_table_and_does_not_hide_its_column_names():
    text = ("| List of services |  |  |\n| --- | --- | --- |\n| Service | Common name | DNS name |\n"
            "| Clock synchronisation | NTP | ntp |")
    cut = units(text)
    assert [u.kind for u in cut] == ["caption", "header", "row"]
    assert cut[2].header == "List of services Service | Common name | DNS name"


def _line_spans(text: str, rows: list[list[str]], top: float = 0.1) -> list[dict]:
    """Line spans of cells laid out in a grid: one visual row per list, cells side by side."""
    spans, pos = [], 0
    for r, cells in enumerate(rows):
        y0 = top + 0.02 * r
        for c, cell in enumerate(cells):
            start = text.index(cell, pos)
            pos = start + len(cell)
            spans.append({"page": 1, "bbox": [0.1 + 0.25 * c, y0, 0.3 + 0.25 * c, y0 + 0.015],
                          "char_start": start, "char_end": pos})
    return spans


def test_a_paragraph_set_in_columns_is_cut_into_its_rows():
    rows = [["Department", "Budget 2014", "Budget 2015"], ["Agriculture", "1,204", "1,310"],
            ["Health", "8,877", "9,102"], ["Transport", "3,301", "3,450"]]
    text = " ".join(cell for row in rows for cell in row)  # how a text layer without rules reads a table
    cut = units(text, _line_spans(text, rows))
    assert [(u.kind, text[u.start:u.end]) for u in cut] == [
        ("header", "Department Budget 2014 Budget 2015"), ("row", "Agriculture 1,204 1,310"),
        ("row", "Health 8,877 9,102"), ("row", "Transport 3,301 3,450")]
    assert cut[2].header == "Department Budget 2014 Budget 2015"


def test_prose_with_one_span_per_line_stays_sentences():
    lines = [["The committee met twice. It approved"], ["the budget for health and"], ["transport. Nothing else."]]
    text = " ".join(line[0] for line in lines)
    assert [text[u.start:u.end] for u in units(text, _line_spans(text, lines))] == [
        "The committee met twice.", "It approved the budget for health and transport.", "Nothing else."]


@pytest.mark.parametrize("question, text, answer", [
    # the sentence after a restatement
    ("How much money did the Master Settlement Agreement provide to the states?",
     "As the judgment threatened to spread, the industry struck the historic Master Settlement Agreement (MSA) "
     "with the state attorneys general in November 1998. The MSA provided for $206 billion to be paid by the "
     "companies to the states. Other settlements followed later in the decade.",
     "The MSA provided for $206 billion"),
    # the sentence after one that restates the question, not another block that names its topic
    ("Which form should be attached when reporting scholarship and fellowship grants?",
     "Scholarship and fellowship grants excluded\n\nScholarship and fellowship grants. Attach Form 1042-S or the "
     "required statement.", "Attach Form 1042-S"),
    # the footnote that answers, not a sentence that shares the words by which the question points at its source
    ("What informal name does the Octave manual mention for comma-separated lists?",
     "As has been mentioned above, elements of a cell array can be extracted into comma separated lists.\n\n"
     "1 Comma-separated lists are also sometimes informally referred to as cs-lists.", "cs-lists"),
    # the unit that gives a reason, for a question for one
    ("Why do Octave function files use the .m suffix?",
     "Octave looks for function definitions in its load path.\n\n"
     "The .m suffix was chosen for compatibility with matlab.", "chosen for compatibility"),
    ("休暇のお知らせメールの件名に印を付けるのはなぜですか？",
     "件名の先頭に [VAC] と付けたメールを送ります。\n\n"
     "これは、休暇のメッセージを読みたくない人が簡単に振り分けるためです。", "振り分けるため"),
    # the heading numbered as the question names it, not the sentence that names the number
    ("Comment s'intitule la section 1.4 du Guide du nouveau responsable Debian ?",
     "Si vous avez besoin d'aide sur l'empaquetage, veuillez consulter la section 1.4 du guide.\n\n"
     "## 1.3 Autres guides du responsable\n\nLe guide du nouveau responsable Debian en cite d'autres.\n\n"
     "## 1.4 Où demander de l'aide\n\nAvant de poser une question, lisez la documentation.",
     "1.4 Où demander de l'aide"),
    # the unit that holds a command, for a command question (a code line, or a command named in prose)
    ("Which gnuplot command resets a voxel grid to all zeros?",
     "Resets the value of all voxels in an existing grid to zero. vclear $gridname resets an existing voxel grid "
     "to contain all zero values.", "vclear $gridname"),
    ("What command removes all files installed from a source distribution?",
     "Fedora users can install a recent version from a source distribution with the command dnf "
     "--enablerepo=rawhide install asymptote. To uninstall all files installed from a source distribution, use "
     "the command make uninstall.", "To uninstall"),
    ("Wie erzeuge ich das Datum im richtigen Format für einen Changelog-Eintrag?",
     "Sie können den Changelog-Eintrag im richtigen Format bereinigen. Um das Datum in das benötigte Format zu "
     "bekommen, verwenden Sie LANG=C date -R.", "Um das Datum"),
    # the table row the question names by its first cell, not the sentence that shares more of its words
    ("Which graphics card was the ZSAD real-time stereo method run on?",
     "This method runs on massively parallel hardware.\n\n"
     "| Method | GPU | FPS |\n| --- | --- | --- |\n| Ours | GeForce 8800 GTX | 79 |\n"
     "| ZSAD [6] | Radeon HD 4870 | 41 |",
     "ZSAD [6] | Radeon HD 4870"),
    ("2021年给发行人做主体信用评级的是哪家机构？",
     "| 年份 | 评级 | 评级机构 |\n| --- | --- | --- |\n| 2020 | AA+ | 联合资信评估有限公司 |\n"
     "| 2021 | AA+ | 联合资信评估有限公司 |\n| 2022 | AA+ | 中诚信国际信用评级有限责任公司 |",
     "2021 | AA+"),
    # a table's title row, for a question that asks what the table is called
    ("Wie heißt die Tabelle, die die Dienste des Hauptservers mit ihren DNS-Namen auflistet?",
     "Den Diensten des Hauptservers wird ein DNS-Name zugewiesen.\n\n| Tabelle der Dienste |  |  |\n"
     "| --- | --- | --- |\n| Beschreibung des Dienstes | Name | DNS-Name |\n| Verzeichnisdienst | OpenLDAP | ldap |",
     "Tabelle der Dienste"),
    # the unit that holds an address, for a question for an e-mail address or a place on the web
    ("What is the e-mail address of the corresponding author of the afforestation paper?",
     "This paper by the corresponding author assesses the impact of afforestation on flow duration. "
     "E-mail address: jlane@unimelb.edu.au (J. Lane).", "jlane@unimelb.edu.au"),
    ("Where is the reference manual of the compiler available online?",
     "The reference manual of the compiler describes every option of the compiler in detail. "
     "It is at caml.inria.fr/ocaml/htmlman/index.html for readers.", "caml.inria.fr"),
    # the person asked for, in an introduction that holds the name itself (not the address it introduces)
    ("Who wrote the more thorough tutorial that the manual recommends?",
     "For a more thorough introduction, see the excellent tutorial written by Charles Staats:\n\n"
     "https://asymptote.sourceforge.io/asymptote_tutorial.pdf", "Charles Staats"),
])
def test_the_unit_that_answers_comes_first(question, text, answer):
    assert answer in _first(question, text)


def test_a_year_question_cites_the_row_not_the_table_header():
    text = ("| INSTITUTION | DEGREE | YEAR | FIELD OF STUDY |\n| --- | --- | --- | --- |\n"
            "| Stanford University | BS | 1995 | Physics |\n| University of Cambridge | PhD | 2001 | Astronomy |")
    assert _first("In what year did she get her PhD?", text) == "University of Cambridge | PhD | 2001 | Astronomy"


def test_the_gate_refuses_unrelated_questions_in_any_language_and_accepts_answered_ones():
    invoice = _hit("Montant total de la facture : 1 250,00 EUR. Compte bancaire IBAN FR76 3000 4000 0500 0012 "
                   "3456 789. Date d'échéance : 30 juin 2024.", dense=0.1)
    question = "Quel est le montant total de la facture ?"
    found = selection.candidates(question, [invoice])
    assert selection.is_relevant(question, found)
    assert "1 250,00" in found[0].text
    off = "Qui a peint le plafond de la chapelle Sixtine ?"
    assert not selection.is_relevant(off, selection.candidates(off, [invoice]))


def test_a_question_for_an_amount_is_refused_when_no_unit_holds_one():
    text = ("The gnuplot-info mailing list is the place for questions about gnuplot. Subscribers receive "
            "announcements of new releases and discuss plotting problems with the developers.")
    question = "How many subscribers does the gnuplot-info mailing list have?"
    assert not selection.is_relevant(question, selection.candidates(question, [_hit(text)]))
    answered = text + " The list had 1,200 subscribers in 2020."
    assert selection.is_relevant(question, selection.candidates(question, [_hit(answered)]))


@pytest.mark.parametrize("question, unanswered, answered", [
    ("How much did Philip Morris pay to be a gold sponsor of the 2004 conference?",
     "Philip Morris was a gold sponsor of the 2004 conference, with 3 other firms.",
     "Philip Morris paid $25,000 to be a gold sponsor of the 2004 conference."),
    ("Combien coûte une licence Debian Edu par poste de travail ?",
     "Une licence Debian Edu couvre 30 postes de travail.",
     "Une licence Debian Edu ne coûte rien : 0 € par poste de travail."),
    ("How long does zsolve take to solve the system example?",
     "zsolve solves the system example with 4 variables and 3 equations.",
     "zsolve takes 2.5 seconds to solve the system example."),
    ("How many GPU hours did the training of the 7B model take?",
     "The training of the 7B model used 8 GPUs and 2 epochs.",
     "The training of the 7B model took 880 GPU hours."),
    ("盐城高新区投资集团这期超短期融资券的票面利率是多少？",
     "盐城高新区投资集团本期超短期融资券发行金额为5亿元，期限270天。",
     "盐城高新区投资集团本期超短期融资券的票面利率为3.2%。"),
])
def test_an_amount_question_needs_a_figure_of_what_it_measures(question, unanswered, answered):
    """A unit with figures of something else (a count for a price, a size for a duration) does not answer."""
    assert not selection.is_relevant(question, selection.candidates(question, [_hit(unanswered)]))
    assert selection.is_relevant(question, selection.candidates(question, [_hit(answered)]))


def test_a_stray_currency_sign_in_ocr_noise_does_not_answer_a_money_question():
    question = "How much did Philip Morris pay to be a gold sponsor of Ethical Corporation Asia 2004?"
    story = _hit("On 26 May 2004, observers noticed that BAT and Philip Morris were getting top billing as gold "
                 "sponsors of Ethical Corporation Asia 2004. Despite Philip Morris being a gold sponsor, a few "
                 "emails made the organisers think again. The conference went ahead in Hong Kong.")
    noise = _hit("r eg $ Hear how to reach standaids for enviro magmas foo click here to ope ~sponsoring?", n=1)
    assert not selection.is_relevant(question, selection.candidates(question, [story, noise]))


def test_a_table_column_named_for_the_measure_holds_its_bare_figures():
    text = "| Package | Popcon | Size | Locale |\n| --- | --- | --- | --- |\n| ibus-mozc | V:1, I:2 | 1037 | ja |"
    question = "What is the size of the ibus-mozc package?"
    found = selection.candidates(question, [_hit(text)])
    assert selection.is_relevant(question, found)
    assert found[0].text.startswith("ibus-mozc")


def test_question_terms_are_stemmed_in_the_questions_language():
    assert language_of("Wie viele Rechnungen wurden im Jahr bezahlt?") == "german"
    terms = QueryTerms("Wie viele Rechnungen wurden bezahlt?", [set(stems("Die Rechnung wurde bezahlt.", "german"))])
    assert terms.matched(terms.of("Die Rechnung wurde bezahlt.")) > 0.9


def test_sparse_terms_fold_traditional_chinese_and_keep_cjk_unigrams():
    assert sparse.terms("軟體套件") == sparse.terms("软体套件")
    ids, weights = sparse.query_vector("表")
    assert len(ids) == 2 and sorted(weights) == [sparse.UNIGRAM_QUERY_WEIGHT, 1.0]


def test_when_inside_a_question_is_a_conjunction_and_asks_for_no_time():
    text = "Scholarship and fellowship grants. Attach Form 1042-S or the required statement."
    question = "Which form should be attached when reporting scholarship and fellowship grants?"
    assert selection.is_relevant(question, selection.candidates(question, [_hit(text)]))
    assert selection._asks_for("By when was the factory supposed to finish?") == "time"


def test_a_reference_list_entry_does_not_outrank_the_sentence_that_answers():
    references = _hit("Borgström B, Hreinsson J, Rasmussen C, et al. Fertility preservation in girls with Turner "
                      "syndrome: prognostic signs of the presence of ovarian follicles. J Clin Endocrinol Metab. "
                      "2009;94:74-80.")
    body = _hit("Approximately 30% of girls with Turner syndrome enter puberty spontaneously, but only 1% are "
                "fertile without help.", n=3)
    question = "What share of girls with Turner syndrome are fertile?"
    found = selection.candidates(question, [references, body])
    assert selection.is_relevant(question, found)
    assert found[0].text.startswith("Approximately 30%")


def test_a_formula_question_cites_the_formula_not_the_sentence_naming_its_symbols():
    definition = _hit("V P is TableFormer's prediction variation percentage after perturbation.")
    display = _hit("To evaluate robustness after perturbations, we also report a lower bound of example prediction "
                   "variation percentage:\n\nV P = (t2f + f2t) / (t2t + t2f + f2t + f2f) (5)\n\nwhere t2t, t2f, "
                   "f2t and f2f count predictions turning from correct to correct, and so on.", n=1)
    found = selection.candidates("In TableFormer's prediction variation percentage formula, what is the "
                                 "denominator?", [definition, display])
    assert found[0].text.startswith("V P = (t2f")


def test_a_time_of_day_question_cites_a_clock_time_not_a_year():
    minutes = _hit("The treasurer's summary of the February 2018 meeting.")
    agenda = _hit("Agenda of the meeting:\n\n- 6:00 - 6:05 Welcome\n- 6:05 - 6:15 Principal's Report\n"
                  "- 6:15 - 6:25 Committee Reports", n=1)
    found = selection.candidates("At what time is the Principal's Report scheduled at the February 2018 Miner PTO "
                                 "meeting?", [minutes, agenda])
    assert "6:05" in found[0].text


def test_a_dotted_number_is_also_one_term():
    assert "1.4" in terms("gnuplot 5.4 et la section 1.4") and "5.4" in terms("gnuplot 5.4")


def test_the_digits_of_a_web_address_are_no_year():
    question = "On what date was R version 1.0.0 released?"
    text = "Revolution Analytics released REvolution R (see https://blog.example.com/2016/01/r-open.html)."
    assert not selection.is_relevant(question, selection.candidates(question, [_hit(text)]))


def test_a_duration_question_in_french_or_german_wants_a_duration():
    question = "Wie lange hat ein Betreuer Zeit, einer Paketbergung zu widersprechen?"
    assert not selection.is_relevant(question, selection.candidates(
        question, [_hit("Ein Betreuer kann einer Paketbergung widersprechen, 3 Mitbetreuer ebenso.")]))
    assert selection.is_relevant(question, selection.candidates(
        question, [_hit("Ein Betreuer hat 21 Tage Zeit, einer Paketbergung zu widersprechen.")]))
    assert selection._measure_asked("Jusqu'à combien de jours peut-on retarder un envoi ?") is selection.DURATION


def test_a_command_question_cites_the_command_after_its_introduction_first():
    text = ("Debian packages are built from source.\n\nTo find the packages a new build needs, run the "
            "following command:\n\n$ dpkg-depcheck -d ./configure\n\nOther tools exist as well.")
    found = selection.candidates("Which command finds the packages a new build needs?", [_hit(text)])
    first = selection.chosen(found, 3)[0]
    assert first.text.endswith("$ dpkg-depcheck -d ./configure")


def test_code_is_cited_without_its_introduction_and_prose_sentences_stay_apart():
    text = "To list the packages that can be upgraded, run:\n\n$ apt list --upgradable\n\nOther commands exist."
    found = selection.candidates("Which command lists the packages that can be upgraded?", [_hit(text)])
    assert selection.chosen(found, 3)[0].text == "$ apt list --upgradable"
    prose = ("The survey measured nitrate at forty stations between 2001 and 2004. Nitrate levels fell by twelve "
             "percent over the study period.")
    found = selection.candidates("How much did nitrate levels fall in the survey?", [_hit(prose)])
    assert ([c.text for c in selection.chosen(found, 3)][0]
            == "Nitrate levels fell by twelve percent over the study period.")

@pytest.mark.parametrize(("question", "code"), [
    ("Which command refreshes the file database?", "en"),
    ("Quelle commande permet de comparer deux versions ?", "fr"),
    ("Wie oft wird der Schlüsselbund erneuert?", "de"),
    ("软件包名至少要有几个字符？", "zh"),
    ("休暇を取ることを知らせるメールでは何を付けますか？", "ja"),
    ("데비안 아카이브는 하루에 몇 번 업데이트되나요?", "ko"),
])
def test_a_questions_language_is_told_by_its_script_and_function_words(question, code):
    assert query_language(question) == code


def test_the_packaged_model_counts_fully_only_in_english_and_a_chosen_model_everywhere():
    assert model_languages(DEFAULT_MODEL, "auto") == frozenset({"en"})
    assert model_languages("/models/multilingual-e5", "auto") is None
    assert model_languages(DEFAULT_MODEL, "en, FR") == frozenset({"en", "fr"})
    assert model_languages(DEFAULT_MODEL, "*") is None


def test_the_english_embedder_counts_less_for_other_languages(embedder):
    assert embedder.dense_weight("en") == 1.0
    assert 0 < embedder.dense_weight("zh") < 1.0


def test_a_sentence_announcing_a_block_below_it_is_an_introduction():
    text = "The engines are listed below.\n\n| Engine | Language |\n| --- | --- |\n| ibus-hangul | Korean |"
    assert _first("Which engine is listed for Korean?", text) == "ibus-hangul | Korean"


def _on_page(text: str, n: int, top: float) -> Hit:
    """A chunk of one block on page 1, its lines from `top` down."""
    lines, spans, pos = text.split("\n"), [], 0
    for i, line in enumerate(lines):
        spans.append({"page": 1, "bbox": [0.1, top + 0.02 * i, 0.9, top + 0.02 * i + 0.015],
                      "char_start": pos, "char_end": pos + len(line)})
        pos += len(line) + 1
    hit = _hit(text, n)
    hit.payload["spans"] = spans
    return hit


def test_a_footnote_inherits_the_match_of_the_sentence_that_carries_its_mark():
    question = "Where is the Objective Caml reference manual available online?"
    cited = _on_page("Camlidl generates stub code (as described in the Objective Caml reference manual1) from an IDL "
                     "description of the C functions.", 0, 0.2)
    other = _on_page("An up-to-date HTML version is always available for web browsing at "
                     "https://stat.ethz.ch/R-manual/.", 1, 0.3)
    footnote = _on_page("1http://caml.inria.fr/ocaml/htmlman/index.html", 2, 0.9)
    first = selection.candidates(question, [cited, other, footnote])[0]
    assert first.text.startswith("1http://caml.inria.fr")
    # the same line high on the page is no footnote, and inherits nothing
    not_a_footnote = _on_page("1http://caml.inria.fr/ocaml/htmlman/index.html", 2, 0.1)
    assert not selection.candidates(question, [cited, other, not_a_footnote])[0].text.startswith("1http")
