"""One module per tab: UI wiring only (the engine does the work)."""
