"""Everything that is not UI, in packages by concern (docs/architecture.md has the map).

Two modules stay at this level because every package uses them: :mod:`engine.errors` (the
``UserError`` a visitor reads, translated by the UI) and :mod:`engine.limits` (the profile's
limits). Each package's docstring says what it owns and which packages it may import; the
rules are kept by ``tests/test_layout.py``. Nothing here imports Gradio.
"""
