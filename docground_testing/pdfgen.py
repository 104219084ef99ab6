"""Synthetic documents for tests: every fact the tests check is known from how the page was drawn."""

from __future__ import annotations

import io
import random

import pymupdf
from PIL import Image, ImageDraw

WORDS = ("ingestion citation retrieval layout column paragraph evidence region engine vector corpus "
         "reading order chunk page span table figure caption heading model answer source").split()
A4 = (595.0, 842.0)


def sentence(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def two_column_pdf(pages: int = 1, seed: int = 0, header: str | None = None) -> tuple[bytes, list[dict]]:
    """Two-column pages; returns the PDF and, per drawn line, its text, page, column and box in points."""
    rng = random.Random(seed)
    doc = pymupdf.open()
    lines: list[dict] = []
    for pno in range(pages):
        page = doc.new_page(width=A4[0], height=A4[1])
        if header:
            page.insert_text((60, 30), f"{header}", fontsize=8)
            page.insert_text((A4[0] / 2 - 5, A4[1] - 25), f"{pno + 1}", fontsize=8)
        if pno == 0:
            page.insert_text((60, 80), "Grounded Retrieval Study", fontsize=22)
        for col, x in enumerate((60, 315)):
            y = 120
            for para in range(4):
                for _ in range(6):
                    text = f"p{pno + 1}c{col}q{para} " + sentence(rng, 5)
                    page.insert_text((x, y), text, fontsize=9)
                    width = pymupdf.get_text_length(text, fontsize=9)
                    lines.append({"text": text, "page": pno + 1, "column": col,
                                  "bbox": (x, y - 9 * 0.8, x + width, y + 9 * 0.25)})
                    y += 12
                y += 14
    return doc.tobytes(), lines


def rotated_pdf(rotation: int) -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 100), "Rotated page marker sentence for boxes.", fontsize=12)
    page.insert_text((72, 400), "Second line far below the first one.", fontsize=12)
    page.set_rotation(rotation)
    return doc.tobytes()


def cjk_pdf() -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 100), "文档理解与检索增强生成系统", fontname="china-s", fontsize=14)
    # Wide character spacing makes some extractors insert spaces between CJK characters.
    page.insert_text((72, 140), "知 识 库 问 答", fontname="china-s", fontsize=14)
    page.insert_text((72, 180), "日本語の文書を検索します", fontname="japan", fontsize=14)
    page.insert_text((72, 220), "한국어 문서를 검색합니다", fontname="korea", fontsize=14)
    return doc.tobytes()


QUARTERLY = [["Region", "Revenue", "Growth"], ["North", "1,204", "3.1%"], ["South", "987", "-0.4%"],
             ["East", "2,310", "7.9%"], ["West", "1,555", "2.2%"]]


def table_pdf(rows: list[list[str]] = QUARTERLY) -> tuple[bytes, list[list[str]]]:
    """A fully ruled table between two sentences."""
    doc, page = _page_opening_with("Quarterly figures are listed in the table below.", fontsize=11)
    x0, y0, cw, rh = 72, 100, 120, 22
    _ruled_rows(page, rows, (x0, y0, cw, rh), rule=0.7, baseline=7)
    page.insert_text((72, y0 + len(rows) * rh + 30), "The table ends the quarterly section.", fontsize=11)
    return doc.tobytes(), rows


def continued_table_pdf(rows: list[list[str]] = QUARTERLY,
                        repeat_header: bool = False) -> tuple[bytes, list[list[str]]]:
    """A ruled table that runs on over a page break: the header and the first rows at the foot of page 1,
    the rest at the top of page 2 (under the header again when `repeat_header`)."""
    doc, page = _page_opening_with("Quarterly figures are listed in the table below.", fontsize=11)
    cut = 3
    x0, cw, rh = 72, 120, 22
    _ruled_rows(page, rows[:cut], (x0, A4[1] - 72 - cut * rh, cw, rh), rule=0.7, baseline=7)
    page = doc.new_page(width=A4[0], height=A4[1])
    rest = ([rows[0]] if repeat_header else []) + rows[cut:]
    _ruled_rows(page, rest, (x0, 72, cw, rh), rule=0.7, baseline=7)
    page.insert_text((72, 72 + len(rest) * rh + 30), "The table ends the quarterly section.", fontsize=11)
    return doc.tobytes(), rows


def image_bytes(fmt: str, size=(400, 300), dpi: int | None = None, frames: int = 1, exif_rotate: bool = False) -> bytes:
    images = [Image.new("RGB", size, (255, 255, 255 - 40 * i)) for i in range(frames)]
    buf = io.BytesIO()
    kwargs: dict = {}
    if dpi:
        kwargs["dpi"] = (dpi, dpi)
    if frames > 1:
        kwargs.update(save_all=True, append_images=images[1:])
    if exif_rotate:
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90° clockwise to display
        kwargs["exif"] = exif
    images[0].save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def image_only_pdf(data: bytes, dpi: int = 150, rotation: int = 0, skew: float = 0.0) -> bytes:
    """A scan of a PDF: each page rendered at `dpi`, tilted by `skew` degrees and turned by `rotation`
    (both counterclockwise, as the page is then displayed), with no text layer left."""
    src = pymupdf.open(stream=data)
    out = pymupdf.open()
    for page in src:
        pix = page.get_pixmap(dpi=dpi, colorspace=pymupdf.csGRAY)
        img = Image.frombytes("L", (pix.width, pix.height), pix.samples)
        if skew:
            img = img.rotate(skew, resample=Image.Resampling.BILINEAR, fillcolor=255)
        img = img.rotate(rotation, expand=True) if rotation else img
        w, h = (page.rect.height, page.rect.width) if rotation in (90, 270) else (page.rect.width, page.rect.height)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.new_page(width=w, height=h).insert_image(pymupdf.Rect(0, 0, w, h), stream=buf.getvalue())
    return out.tobytes()


def header_outside_grid_pdf() -> tuple[bytes, list[list[str]]]:
    """A ruled table body whose header row sits above the rules, unruled (as table finders miss it)."""
    rows = [["Source", "Tokens", "Docs"], ["Web pages", "3.71T", "2.95B"], ["Code", "83.0B", "78.7M"],
            ["Papers", "58.6B", "38.8M"], ["Math", "12.2B", "2.89M"]]
    doc, page = _page_opening_with("The composition of the data is given below in detail.", fontsize=10)
    x0, cw, rh, top = 72, 130, 18, 120
    for c, cell in enumerate(rows[0]):
        page.insert_text((x0 + c * cw + 4, top - 5), cell, fontsize=10)
    _ruled_rows(page, rows[1:], (x0, top, cw, rh), rule=0.6, baseline=5)
    return doc.tobytes(), rows


def _page_opening_with(sentence: str, fontsize: float) -> tuple[pymupdf.Document, pymupdf.Page]:
    """A one-page A4 document whose page starts with the sentence."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    page.insert_text((72, 80), sentence, fontsize=fontsize)
    return doc, page


def _ruled_rows(page, rows: list[list[str]], grid: tuple[float, float, float, float], rule: float,
                baseline: float) -> None:
    """Rows of cells, each in its own ruled box: grid is (left, top, cell width, row height)."""
    x0, y0, cw, rh = grid
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            rect = pymupdf.Rect(x0 + c * cw, y0 + r * rh, x0 + (c + 1) * cw, y0 + (r + 1) * rh)
            page.draw_rect(rect, color=(0, 0, 0), width=rule)
            page.insert_text((rect.x0 + 4, rect.y1 - baseline), cell, fontsize=10)


# Prose written for these tests: a title and three paragraphs per language, in PyMuPDF's built-in fonts.
PROSE = {
    "ko": ("korea", [
        "문서 이해와 검색 증강 생성",
        ("문서 이해와 검색 증강 생성은 기업의 지식 관리에 점점 더 중요해지고 있다. 스캔한 계약서, 사진으로 찍은 "
        "영수증, 오래된 보고서는 텍스트 층이 없기 때문에 광학 문자 인식을 거쳐야 검색할 수 있다. 이 시스템은 각 "
        "페이지를 읽고, 문단과 줄의 위치를 기록하며, 질문에 답할 때 근거가 된 정확한 줄을 표시한다."),
        ("두 번째 문단에서는 처리 속도와 정확도를 다룬다. 그래픽 처리 장치가 없는 컴퓨터에서도 테서랙트 엔진은 한 "
        "페이지를 약 일 초 안에 읽는다. 회전된 페이지와 약간 기울어진 스캔도 자동으로 바로잡으며, 결과 상자는 "
        "화면에 보이는 페이지의 좌표로 돌려준다. 사용자는 인용된 줄을 눌러 원문을 확인할 수 있다."),
        ("한국어는 단어 사이를 띄어 쓰므로 줄을 합칠 때 공백을 지켜야 한다. 중국어와 일본어는 띄어쓰기 없이 "
        "쓰이므로 글자 사이의 공백을 지운다. 이러한 규칙은 검색 품질에 직접 영향을 준다."),
    ]),
    "ja": ("japan", [
        "文書理解と検索拡張生成",
        ("スキャンした契約書や写真に撮った領収書には文字の層がないため、光学文字認識を通さなければ検索できない。"
        "このシステムは各ページを読み取り、段落と行の位置を記録し、質問に答えるときに根拠となった正確な行を示す。"),
        ("画像処理装置のない計算機でも、この読み取り機能は一ページを数秒で読み取る。回転したページや少し傾いた"
        "スキャンも自動的に補正され、結果の枠は画面に表示されるページの座標に戻される。"),
        ("日本語と中国語は単語の間に空白を入れずに書くため、行をつなぐときに文字の間の空白を取り除く。"
        "このような規則は検索の品質に直接影響する。"),
    ]),
    "zh": ("china-s", [
        "文档理解与检索增强生成",
        ("扫描的合同、用手机拍摄的收据和旧报告没有文字层，必须经过光学字符识别才能被检索。本系统读取每一页，"
        "记录段落和文字行的位置，并在回答问题时标出作为依据的准确行。"),
        ("即使在没有图形处理器的计算机上，这个识别引擎也能在几秒内读完一页。旋转的页面和轻微倾斜的扫描件会被"
        "自动校正，结果框会映射回页面显示时的坐标。"),
        "中文和日文的词语之间不加空格，因此合并行时要删除字符之间的空格。这些规则直接影响检索质量。",
    ]),
}
CJK_LINE_CHARS = 34  # Chinese and Japanese wrap anywhere: lines of this many characters


def prose_pdf(language: str) -> bytes:
    font, paragraphs = PROSE[language]
    doc = pymupdf.open()
    page = doc.new_page(width=595, height=842)
    y = 90.0
    for i, text in enumerate(paragraphs):
        size = 18.0 if i == 0 else 11.0
        if language == "ko":  # Korean wraps at spaces
            rect = pymupdf.Rect(72, y - size, 523, y + 400)
            y += 400 - page.insert_textbox(rect, text, fontname=font, fontsize=size, lineheight=1.5)
        else:
            for start in range(0, len(text), CJK_LINE_CHARS):
                page.insert_text((72, y), text[start:start + CJK_LINE_CHARS], fontname=font, fontsize=size)
                y += size * 1.5
        y += size * 1.5
    return doc.tobytes()


# Runs of a styled line: (font, size relative to the body, baseline raised by this share of the body size).
STYLES = {"body": ("helv", 1.0, 0.0), "mono": ("cour", 1.0, 0.0), "bold": ("hebo", 1.0, 0.0),
          "italic": ("heit", 1.0, 0.0), "sup": ("helv", 0.6, 0.35), "small": ("helv", 0.8, 0.0),
          "heading": ("hebo", 1.4, 0.0)}


def styled_pdf(lines: list[list[tuple[str, str]]], size: float = 10.0) -> bytes:
    """One page of lines at x=72, each a list of (text, style) runs set one after another on one
    baseline, so that a line changes font mid-way the way typeset prose does (inline code, emphasis, a
    superscript, small capitals)."""
    doc = pymupdf.open()
    page = doc.new_page(width=A4[0], height=A4[1])
    y = 80.0
    for runs in lines:
        x = 72.0
        y += max(STYLES[style][1] for _, style in runs) * size - size  # a larger line needs more room
        for text, style in runs:
            font, scale, rise = STYLES[style]
            page.insert_text((x, y - rise * size), text, fontname=font, fontsize=scale * size)
            x += pymupdf.get_text_length(text, fontname=font, fontsize=scale * size)
        y += 1.4 * size
    return doc.tobytes()


def scan_with_red_box() -> bytes:
    """A 1000x800 PNG at 144 DPI, white but for one red box (pixels 200..599 x 160..479): a figure."""
    image = Image.new("RGB", (1000, 800), "white")
    ImageDraw.Draw(image).rectangle([200, 160, 599, 479], fill=(255, 0, 0))
    buf = io.BytesIO()
    image.save(buf, format="PNG", dpi=(144, 144))
    return buf.getvalue()
