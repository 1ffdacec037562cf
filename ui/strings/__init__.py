"""All UI strings, English and French, one module per tab (keys are prefixed by the tab).

Each module defines ``EN`` and ``FR`` dicts with the same keys; :mod:`ui.i18n` merges them.
"""
