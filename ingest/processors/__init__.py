"""Processors transform page layouts: reading order within a page, furniture across a document."""
