"""What tests/ and bench/ share: a live HTTP server, a real local cluster (redis-server, Celery workers), stand-ins
(an LLM endpoint, modules a GPU machine lacks), generated documents, citation checks, the load runner and the
evaluation corpus's location. Installed with docground (`pip install -e .`), so `python bench/x.py` imports it
as any test does; it imports nothing at package level (the GPU machine imports it before docground can be)."""
