"""Is a page's output usable? Each check names what is wrong, so that the retry and the page's reason say it.

The known failure is a repetition loop: the model copies a block 10-20 times or cycles until max_tokens
(the authors report 2.9-4.2% of production pages). Their scripts drop such pages silently; here they fail
validation and climb the retry ladder. All checks are linear in the output's length.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from .output import BOX_SCALE, page_boxes, strip_eos
from .schema import Generation, GroundedBlock

MIN_BLOCK_REPEATS = 5  # the same block this often on one page is a loop, not a layout
MIN_REPEATED_CHARS = 12  # shorter blocks ("$", "Yes") repeat legitimately
MAX_LOOP_PERIOD = 1000  # characters; the n-gram ban already prevents loops shorter than its window
MIN_LOOP_SPAN = 120
MIN_LOOP_REPEATS = 3
MAX_DEGENERATE_SHARE = 0.25
MIN_LAYER_CHARS = 50  # a text layer shorter than this says too little to judge the OCR by
DISAGREEMENT = 0.3  # Dice similarity of character bigrams below which OCR and text layer disagree badly

_TAG = re.compile(r"<[^>]*>")


def problems(generation: Generation, blocks: list[GroundedBlock], grounded: bool,
             layer_text: str | None = None) -> list[str]:
    """What is wrong with one page's output; empty when it can be used."""
    if generation.error:
        return [f"request failed: {generation.error}"]
    found = []
    if not generation.ended:
        found.append(f"no EOS after {generation.tokens} tokens" if generation.tokens else "no EOS")
    if loop := repetition(generation.text, blocks):
        found.append(loop)
    if grounded:
        found += box_problems(blocks)
    if layer_text is not None:
        score = text_agreement(" ".join(b.content for b in blocks), layer_text)
        if score is not None and score < DISAGREEMENT:
            found.append(f"disagrees with the text layer (similarity {score:.2f})")
    return found


def repetition(text: str, blocks: list[GroundedBlock]) -> str | None:
    counts = Counter(" ".join(b.content.split()) for b in blocks if len(b.content) >= MIN_REPEATED_CHARS)
    if counts:
        _, times = counts.most_common(1)[0]
        if times >= MIN_BLOCK_REPEATS:
            return f"repetition (a block {times} times)"
    if period := tail_period(strip_eos(text).rstrip()):
        return f"repetition (ends in a {period}-character loop)"
    return None


def tail_period(text: str) -> int | None:
    """The period of a loop the text ends in: its last MIN_LOOP_SPAN+ characters repeat with that period.

    Candidate periods are the distances back to earlier copies of the text's last few characters, nearest
    first, so a page costs a handful of `rfind`s rather than a test of every period up to MAX_LOOP_PERIOD.
    """
    n = len(text)
    if n < MIN_LOOP_SPAN:
        return None
    probe = 32
    tail = text[n - probe:]
    low = max(0, n - probe - MAX_LOOP_PERIOD)
    end = n - 1
    while (start := text.rfind(tail, low, end)) >= 0:
        period = n - probe - start
        repeats = max(MIN_LOOP_REPEATS, -(-MIN_LOOP_SPAN // period))
        if repeats * period <= n and text[n - repeats * period:] == text[n - period:] * repeats:
            return period
        end = start + probe - 1
    return None


def box_problems(blocks: list[GroundedBlock]) -> list[str]:
    boxes = [b for blk in blocks for b in blk.boxes]
    found = []
    out_of_range = sum(1 for b in boxes if not all(0 <= v <= BOX_SCALE for v in b))
    if out_of_range:
        found.append(f"boxes out of range ({out_of_range} of {len(boxes)})")
    degenerate = sum(1 for x0, y0, x1, y1 in boxes if x1 <= x0 or y1 <= y0)
    degenerate += sum(b.malformed_boxes for b in blocks)
    if degenerate and degenerate > MAX_DEGENERATE_SHARE * (len(boxes) + sum(b.malformed_boxes for b in blocks)):
        found.append(f"degenerate boxes ({degenerate} of {len(boxes)})")
    unboxed = sum(1 for b in blocks if b.content and not page_boxes(b))
    if unboxed:
        found.append("no boxes" if unboxed == len(blocks) else f"{unboxed} blocks without a box")
    return found


def text_agreement(ocr_text: str, layer_text: str) -> float | None:
    """Dice similarity of the two texts' character bigrams (letters and digits only), or None where the
    text layer is too short or too broken (replacement characters, private-use glyphs) to judge by."""
    layer = _letters(layer_text)
    if len(layer) < MIN_LAYER_CHARS or not _healthy(layer_text):
        return None
    a, b = _bigrams(layer), _bigrams(_letters(_TAG.sub(" ", ocr_text)))
    total = sum(a.values()) + sum(b.values())
    return 2 * sum((a & b).values()) / total if total else None


def _letters(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _bigrams(text: str) -> Counter:
    return Counter(text[i:i + 2] for i in range(len(text) - 1))


def _healthy(text: str) -> bool:
    visible = [ch for ch in text if not ch.isspace()]
    if not visible:
        return False
    broken = sum(1 for ch in visible if ch == "\ufffd" or unicodedata.category(ch) in ("Co", "Cc", "Cs"))
    return broken / len(visible) < 0.02 and sum(ch.isalnum() for ch in visible) / len(visible) > 0.5
