"""Prompts and decoding as DeepSeek-OCR-2's authors run them, and the retry ladder built from them."""

from __future__ import annotations

from dataclasses import dataclass, replace

IMAGE_TOKEN = "<image>"
GROUNDING = "<|grounding|>Convert the document to markdown."
FREE_OCR = "Free OCR."
EOS_TEXT = "<｜end▁of▁sentence｜>"
# <td> and </td> repeat legitimately in every table row, so the n-gram ban exempts them.
TABLE_CELL_TOKEN_IDS = (128821, 128822)


def model_prompt(task: str) -> str:
    """The raw prompt for in-process backends; an OpenAI-compatible server inserts the image token itself."""
    return f"{IMAGE_TOKEN}\n{task}"


@dataclass(frozen=True)
class Sampling:
    """Greedy decoding with the windowed no-repeat n-gram ban (vLLM recipe: n 30, window 90)."""

    max_tokens: int = 8192
    ngram_size: int = 30
    ngram_window: int = 90
    exempt_token_ids: tuple[int, ...] = TABLE_CELL_TOKEN_IDS
    ignore_eos: bool = False  # benchmarks only: every page emits exactly max_tokens

    def ngram_args(self) -> dict:
        """The n-gram processor's per-request arguments, named as vLLM's `NGramPerReqLogitsProcessor` reads them."""
        return {"ngram_size": self.ngram_size, "window_size": self.ngram_window,
                "whitelist_token_ids": list(self.exempt_token_ids)}


@dataclass(frozen=True)
class Attempt:
    """One rung of the ladder: what the model is asked, at which resolution."""

    name: str
    task: str
    dpi: int
    grounded: bool  # the output carries <|ref|>/<|det|> boxes
    sampling: Sampling = Sampling()


def ladder(dpi: int = 144, retry_dpi: int = 200, max_tokens: int = 8192) -> tuple[Attempt, ...]:
    """Grounding at the authors' 144 DPI; then grounding at a higher resolution (a different input often
    breaks a loop); then Free OCR, which the authors report captures what grounding sometimes drops."""
    sampling = Sampling(max_tokens=max_tokens)
    return (
        Attempt("grounding", GROUNDING, dpi, True, sampling),
        Attempt(f"grounding at {retry_dpi} DPI", GROUNDING, retry_dpi, True, sampling),
        Attempt("Free OCR", FREE_OCR, dpi, False, sampling),
    )


def fixed_length(attempts: tuple[Attempt, ...], tokens: int) -> tuple[Attempt, ...]:
    """The same ladder with every page emitting exactly `tokens` tokens (benchmarks with random weights)."""
    return tuple(replace(a, sampling=replace(a.sampling, max_tokens=tokens, ignore_eos=True)) for a in attempts)
