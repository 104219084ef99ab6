"""Documents for the citation tests, drawn here so every fact checked is known from how it was drawn.

Topics are far apart (rivers, coffee, astronomy) so that retrieval and relevance have a right answer,
and paragraphs flow through text boxes so sentences start and end mid-line.
"""

from __future__ import annotations

import pymupdf

RIVERS = (
    "The Danube river basin covers parts of nineteen countries in central and eastern Europe. Its mean "
    "discharge at the delta is about six thousand five hundred cubic metres per second. Spring floods are "
    "driven by snowmelt in the Alps and the Carpathian mountains. The survey measured nitrate concentrations "
    "at forty monitoring stations between 2001 and 2004. Nitrate levels fell by twelve percent over the study "
    "period, mostly downstream of Vienna. Phosphorus loads stayed roughly constant because of agricultural runoff."
)
COFFEE = (
    "Arabica coffee grows best at altitudes between one thousand and two thousand metres. Brazil is the largest "
    "producer of coffee beans and exports most of its harvest through the port of Santos. The market price of "
    "arabica rose sharply in 2021 after a severe frost damaged plantations in Minas Gerais. Roasting develops "
    "the aroma compounds that give each coffee its characteristic flavour."
)
ASTRONOMY = (
    "Jupiter is the largest planet of the solar system and has a mass more than three hundred times that of the "
    "Earth. Its Great Red Spot is an anticyclonic storm larger than our planet. The Galileo probe entered the "
    "Jovian atmosphere in December 1995 and measured winds of over six hundred kilometres per hour. Europa, "
    "one of its moons, is thought to hide a salty ocean beneath its icy crust."
)
TOPICS = {"Rivers of Europe": RIVERS, "Coffee markets": COFFEE, "The planet Jupiter": ASTRONOMY}
FONT_SIZE = 11


def report_pdf(rotation: int = 0, topics: dict[str, str] = TOPICS) -> bytes:
    """One page per topic: a heading, then the paragraph flowed through a text box."""
    doc = pymupdf.open()
    for heading, paragraph in topics.items():
        page = doc.new_page(width=595, height=842)
        page.insert_text((72, 80), heading, fontsize=20)
        spare = page.insert_textbox(pymupdf.Rect(72, 110, 523, 600), paragraph, fontsize=FONT_SIZE)
        assert spare >= 0, "the paragraph must fit its box"
        if rotation:
            page.set_rotation(rotation)
    return doc.tobytes()


def displayed_rects(pdf: bytes, page: int, quote: str) -> list[tuple[float, float, float, float]]:
    """Where the quote's lines are, as PyMuPDF finds them: normalized boxes of the displayed page."""
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    p = doc[page - 1]
    w, h = p.rect.width, p.rect.height
    rects = [r * p.rotation_matrix for r in p.search_for(quote)]
    assert rects, f"{quote!r} is not on page {page}"
    return [(r.x0 / w, r.y0 / h, r.x1 / w, r.y1 / h) for r in rects]


def same_region(found, expected, tolerance: float = 0.006) -> bool:
    """Boxes that cover the same lines, each edge within the tolerance (a fraction of the page)."""
    if len(found) != len(expected):
        return False
    by_top = sorted(found, key=lambda b: (b[1], b[0])), sorted(expected, key=lambda b: (b[1], b[0]))
    return all(abs(a - b) <= tolerance for f, e in zip(*by_top, strict=True) for a, b in zip(f, e, strict=True))
