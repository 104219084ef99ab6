"""The service the CLI, the HTTP API and the workers share: one facade over its concerns.

components.py builds the parts on first use; ingestion.py runs the ingestion stages; export.py reads an
ingested document back; querying.py answers. Errors live in errors.py.
"""

from __future__ import annotations

from .export import Export
from .ingestion import Ingestion
from .querying import Querying

__all__ = ["Docground"]


class Docground(Ingestion, Export, Querying):
    """Ingest bytes into knowledge bases, read documents back, answer questions."""
