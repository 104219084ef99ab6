"""The viewer in headless Chromium: the highlight in the screenshot sits on the quoted text, whose true
position comes from PyMuPDF's own search of the PDF drawn for the test."""

from __future__ import annotations

import io
import shutil
import subprocess
from urllib.parse import quote as urlquote

import httpx
import numpy as np
import pytest
from PIL import Image

from docground.service import Docground
from docground.settings import Settings
from docground_testing.citation_docs import displayed_rects, report_pdf
from docground_testing.live_server import LiveServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FRAME = (0, 153, 136)  # the page frame's colour in viewer.css
ADMIN = "admin-secret"
QUESTION = "How much did nitrate levels fall downstream of Vienna?"


@pytest.fixture(scope="module")
def live(tmp_path_factory, embedder):
    settings = Settings(home=tmp_path_factory.mktemp("viewer") / "home", admin_key=ADMIN)
    service = Docground(settings)
    service._embedder = embedder
    pdf = report_pdf()
    with LiveServer(settings, service) as server:
        created = httpx.post(server.url + "/v1/knowledge-bases", json={"name": "viewer"},
                             headers={"Authorization": f"Bearer {ADMIN}"})
        assert created.status_code == 201, created.text
        assert service.ingest("viewer", "report.pdf", pdf).status == "ready"
        yield server, created.json()["api_key"], pdf
    service.close()


def ask(server, key: str) -> dict:
    r = httpx.post(f"{server.url}/v1/knowledge-bases/viewer/query", json={"query": QUESTION, "mode": "extractive"},
                   headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def screenshot(url: str, tmp_path, size=(1200, 1000)) -> np.ndarray:
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make install installs it)")
    out = tmp_path / "shot.png"
    for _ in range(3):  # on a loaded machine the page image can miss the virtual-time budget: look again
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--no-first-run", "--hide-scrollbars",
                        "--force-device-scale-factor=1",
                        f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={size[0]},{size[1]}",
                        "--virtual-time-budget=20000", f"--screenshot={out}", url],
                       check=True, capture_output=True, timeout=120)
        shot = np.asarray(Image.open(out).convert("RGB")).astype(int)
        if np.all(shot == FRAME, axis=2).any():
            break
    return shot


def page_area(shot: np.ndarray) -> tuple[int, int, int, int]:
    """The page image inside its frame: (left, top, right, bottom) in screenshot pixels."""
    ys, xs = np.nonzero(np.all(shot == FRAME, axis=2))
    assert xs.size > 0, "no page frame in the screenshot"
    border = 4
    return xs.min() + border, ys.min() + border, xs.max() - border + 1, ys.max() - border + 1


def is_highlight(pixels: np.ndarray) -> np.ndarray:
    """The highlight colour multiplied into white paper or light anti-aliasing."""
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return (b < 60) & (r > 120) & (g > 0.74 * r) & (g < 0.92 * r)


def check_highlight_on_quote(shot: np.ndarray, expected_norm: list[tuple]) -> None:
    left, top, right, bottom = page_area(shot)
    page = shot[top:bottom, left:right]
    h, w = page.shape[:2]
    expected = [(x0 * w, y0 * h, x1 * w, y1 * h) for x0, y0, x1, y1 in expected_norm]
    lit = is_highlight(page)
    assert lit.sum() > 0, "nothing is highlighted"
    inside = np.zeros_like(lit)
    for x0, y0, x1, y1 in expected:
        inside[max(0, int(y0) - 3):int(y1) + 4, max(0, int(x0) - 3):int(x1) + 4] = True
    stray = lit & ~inside
    assert stray.sum() <= 0.01 * lit.sum(), f"{stray.sum()} highlighted pixels lie off the quoted text"
    for x0, y0, x1, y1 in expected:
        core = page[int(y0) + 2:int(y1) - 1, int(x0) + 2:int(x1) - 1]
        paper = np.all(core > 235, axis=2)  # white: not under the highlight
        assert paper.mean() < 0.03, f"the quoted line at y={y0:.0f} is not covered ({paper.mean():.0%} paper)"
        assert is_highlight(core).mean() > 0.5


def test_ask_and_cite_page_highlights_the_cited_sentence(live, tmp_path):
    server, key, pdf = live
    citation = next(c for c in ask(server, key)["citations"] if c["n"] == 1)
    url = f"{server.url}/viewer?kb=viewer&q={urlquote(QUESTION)}&mode=extractive&cite=1#key={key}"
    shot = screenshot(url, tmp_path)
    check_highlight_on_quote(shot, displayed_rects(pdf, citation["page"], citation["quote"]))


def test_page_view_draws_given_boxes_over_the_page(live, tmp_path):
    server, key, pdf = live
    citation = ask(server, key)["citations"][-1]
    boxes = ";".join(",".join(f"{v:.6f}" for v in b) for b in citation["boxes"])
    url = f"{server.url}/viewer/documents/{citation['document_id']}/pages/{citation['page']}?boxes={boxes}#key={key}"
    shot = screenshot(url, tmp_path, size=(900, 1300))
    check_highlight_on_quote(shot, displayed_rects(pdf, citation["page"], citation["quote"]))


def test_page_image_needs_the_documents_own_key_and_draws_boxes(live):
    server, key, _ = live
    citation = ask(server, key)["citations"][0]
    path = f"{server.url}/v1/documents/{citation['document_id']}/pages/{citation['page']}/image"
    assert httpx.get(path).status_code == 401
    other = httpx.post(server.url + "/v1/knowledge-bases", json={"name": "other"},
                       headers={"Authorization": f"Bearer {ADMIN}"}).json()["api_key"]
    assert httpx.get(path, headers={"Authorization": f"Bearer {other}"}).status_code == 404
    auth = {"Authorization": f"Bearer {key}"}
    plain = np.asarray(Image.open(io.BytesIO(httpx.get(path, headers=auth).content)).convert("RGB")).astype(int)
    box = citation["boxes"][0]
    drawn_r = httpx.get(path, params={"boxes": ",".join(map(str, box))}, headers=auth)
    assert drawn_r.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(io.BytesIO(drawn_r.content)).convert("RGB")).astype(int)
    h, w = plain.shape[:2]
    x0, y0, x1, y1 = round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)
    changed = np.any(drawn != plain, axis=2)
    assert changed[y0:y1, x0:x1].mean() > 0.9 and changed.sum() == changed[y0:y1, x0:x1].sum()
    assert httpx.get(path, params={"boxes": "0.5,0.5,2,2"}, headers=auth).status_code == 422
    assert httpx.get(path.replace("/pages/1/", "/pages/99/"), headers=auth).status_code == 404


def test_image_documents_are_served_as_scanned(tmp_path, embedder):
    """A photo or scan is shown as its pixels, upright, whatever engine read it."""
    settings = Settings(home=tmp_path / "home", ocr_backend="none")
    service = Docground(settings)
    service._embedder = embedder
    scan = Image.new("RGB", (400, 300), "white")
    scan.paste((200, 30, 30), (50, 60, 150, 90))
    buffer = io.BytesIO()
    scan.save(buffer, format="PNG")
    doc = service.ingest("scans", "scan.png", buffer.getvalue()).document_id
    with LiveServer(settings, service) as server:
        r = httpx.get(f"{server.url}/v1/documents/{doc}/pages/1/image")
    served = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    assert r.status_code == 200 and served.shape == (300, 400, 3)
    assert np.array_equal(served, np.asarray(scan).astype(int))
    service.close()
