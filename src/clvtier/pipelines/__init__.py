"""Pipelines compose the library's modules into jobs; no maths here."""
