"""docground: grounded document ingestion and retrieval."""
__version__ = "0.1.0"
