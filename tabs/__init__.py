"""One module per tab: UI wiring only (the engine does the work).

How a tab is written
--------------------
Every module here has the same parts, in this order, so that a reader who has read one has read
them all (``tabs/tokenizers.py`` is a short example):

1. **Helpers**: plain functions of data (choices, tables, texts, HTML), no events. Tests and
   benchmarks import them.
2. **Layout**: ``@dataclass class View`` names the components the events read or write, and
   ``layout(ctx) -> View`` creates them, in page order, and nothing else. A long layout is cut into
   ``_layout_<part>()`` functions whose components it gathers into the ``View``.
3. **Handlers**: one named module-level function per event. A handler that needs the app (its
   catalog, manager or limits, a default that depends on the profile, the class wall) is made by a
   small factory named after it, ``<handler>_for(ctx)`` (or of what it needs:
   ``join_room_for(wall, store)``), which returns it; a factory returns a few handlers only where
   they share what it made (``about_for``, ``wall_api_for``). Gradio reads a handler's name
   (``ui/validation.py``'s rules and ``ui/scheduling.py``'s queue groups are keyed on it) and its
   parameters, defaults and docstring (the API's): moving a handler keeps all four. A one-line
   ``lambda`` in ``wire`` is fine where an event only shows or hides something.
4. **Wiring**: ``wire(view, ctx)`` connects each event to its handler, then the share row
   (``ui.share.share_row``, built after the event it shares, under the tab's components). The order
   of the events is part of the behaviour (several handlers on one trigger run in that order).
5. ``build(ctx, …)``: what ``app.py`` calls; ``wire(layout(ctx), ctx)``, and the sections that live in
   their own module (``quantization_live``, ``tokenizers_embeddings``, …: the same parts, their own
   ``build``) at their place in the page.

Widgets and handler patterns shared by several tabs live in ``ui/`` (``ui/widgets.py``: the model
picker, sampling controls, the run row and its one-run-at-a-time wiring), never copied between tabs.
"""
