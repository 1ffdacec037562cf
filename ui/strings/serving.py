"""Strings of the one-run-at-a-time rule: the run button while its run goes on."""

EN = {
    "run.busy": "⏳ Running…",
}

FR = {
    "run.busy": "⏳ En cours…",
}
