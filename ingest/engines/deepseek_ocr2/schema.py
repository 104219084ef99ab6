"""The typed batch between the engine and its backends: page requests in, generations out."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image

from .prompt import Sampling

FINISH_STOP = "stop"  # the model ended the page itself (EOS)
FINISH_LENGTH = "length"  # cut at max_tokens: usually a repetition loop
FINISH_ERROR = "error"  # the backend could not produce anything

TextSink = Callable[[str], None]  # takes each piece of a page's text as the model writes it


@dataclass
class PageRequest:
    image: Image.Image  # the whole page in display orientation: boxes come back per axis of this image
    task: str  # the prompt text after the image token
    sampling: Sampling = field(default_factory=Sampling)


@dataclass
class Generation:
    text: str
    finish_reason: str
    tokens: int = 0
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.finish_reason == FINISH_STOP

    @classmethod
    def failed(cls, error: str) -> Generation:
        return cls(text="", finish_reason=FINISH_ERROR, error=error)


@dataclass
class GroundedBlock:
    """One `<|ref|>label<|/ref|><|det|>[[x0,y0,x1,y1], ...]<|/det|>` and the content after it.

    Boxes stay as the model wrote them (0..999 per axis when sane) so that validation can judge them;
    `output.py` converts them to the one coordinate form.
    """

    label: str
    boxes: list[tuple[float, float, float, float]]
    content: str
    malformed_boxes: int = 0  # det entries that were not four numbers


class Backend(Protocol):
    name: str

    def generate(self, requests: Iterable[PageRequest]) -> list[Generation]:
        """One generation per request, in request order; a failed request yields `Generation.failed`."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class StreamingBackend(Backend, Protocol):
    """A backend that can hand over a page's text while the model is still writing it (`convert --stream`)."""

    def stream(self, request: PageRequest, on_text: TextSink) -> Generation:
        """One page: `on_text` gets each piece of text as it comes; the whole generation is returned at the end,
        a failure included (with the text that came before it)."""
        ...
