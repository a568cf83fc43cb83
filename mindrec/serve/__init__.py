"""Serving: load a version directory's newest full version, apply its deltas in order,
answer predictions over HTTP."""
from mindrec.serve.app import serve
from mindrec.serve.model import ServedModel

__all__ = ["ServedModel", "serve"]
