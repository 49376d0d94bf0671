"""Dialects: pure translation and normalisation of request, response, stream-event and error bodies.
No I/O lives here, so every function can be tested over plain dicts and byte chunks."""
