"""Distinct synthetic A4 report pages as images, for the GPU benchmarks (bench/gpu_ocr.py, bench/gpu_scaleout.py).

Pillow only: these run on the GPU machine, where pymupdf is a stand-in (module_standins.py).
"""

from __future__ import annotations

import random

WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have "
         "an they you were her she there been one all we their has would when if so no will can more other about "
         "revenue table figure section result analysis method data model report annual total increase decrease "
         "value page document market growth company quarter policy review system design").split()


def report_page(i: int):
    """A distinct A4 page at 144 DPI: a title, text lines and small ruled tables (as the shared vLLM bench)."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(1000003 * i + 7)
    width, height = 1191, 1684
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    try:
        font, big = ImageFont.load_default(size=20), ImageFont.load_default(size=34)
    except TypeError:  # Pillow without FreeType sizes
        font = big = ImageFont.load_default()
    draw.text((90, 60), f"Synthetic report page {i}", fill="black", font=big)
    y = 130
    while y < height - 120:
        if rng.random() < 0.08:
            rows, cols = rng.randint(3, 6), rng.randint(3, 5)
            cw = (width - 180) // cols
            for r in range(rows):
                for c in range(cols):
                    x0, y0 = 90 + c * cw, y + r * 30
                    draw.rectangle([x0, y0, x0 + cw, y0 + 30], outline="black")
                    draw.text((x0 + 6, y0 + 5), f"{rng.randint(0, 999)}.{rng.randint(0, 99):02d}", fill="black",
                              font=font)
            y += rows * 30 + 30
            continue
        draw.text((90, y), " ".join(rng.choice(WORDS) for _ in range(rng.randint(7, 13))).capitalize(),
                  fill="black", font=font)
        y += 28
    draw.text((width // 2 - 20, height - 70), str(i), fill="black", font=font)
    return img
