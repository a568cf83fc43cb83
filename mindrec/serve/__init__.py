"""Serving: load a version directory's newest full version, apply its deltas in order,
answer predictions over HTTP (``model.ServedModel``, ``app.serve``; the command line:
``command``). Nothing is imported here, so the command line stays light."""
