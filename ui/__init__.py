"""Gradio-side helpers shared by the tabs: strings, widgets, error display."""
