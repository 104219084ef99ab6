"""DeepSeek-OCR-2: one page engine over three interchangeable backends (chandra style: backend, prompt, output).

- `backend_endpoint.EndpointBackend`: an OpenAI-compatible server such as `vllm serve`;
- `backend_vllm.VllmBackend`: vLLM in-process, every page in flight, rendering fed by a worker pool;
- `backend_transformers.TransformersBackend`: transformers' native model from a local directory.

Backends import their heavy dependencies only when built.
"""

from docground.errors import OcrUnavailable

from .engine import DeepseekOcr2Engine
from .schema import Backend, Generation, PageRequest

__all__ = ["Backend", "DeepseekOcr2Engine", "Generation", "OcrUnavailable", "PageRequest"]
