"""Strings of the ZeroGPU integration (GPU time limit, About: what stays on the GPU)."""

EN = {
    "zerogpu.time_limit": "⏱️ This run reached its GPU time limit ({seconds} s on the Space's GPU) and stopped: the results so far are shown. Ask for less (fewer tokens, problems, precisions or images) to finish.",
    "zerogpu.about_title": "On the Space's GPU (ZeroGPU)",
    "zerogpu.about_body": "Each run gets a slice of an NVIDIA H200 ({slice} GB) for its duration only. The resident models (≈ {used} GB with head-room) are loaded at start-up and placed on the GPU of every run at once; the others load inside the run that needs them (it takes longer, and they stay only as long as that GPU worker).",
    "zerogpu.resident": "Resident (loaded at start-up)",
    "zerogpu.on_demand": "Loaded on demand",
}

FR = {
    "zerogpu.time_limit": "⏱️ Cette exécution a atteint sa limite de temps GPU ({seconds} s sur le GPU du Space) et s'est arrêtée : les résultats obtenus sont affichés. Demandez moins (moins de tokens, de problèmes, de précisions ou d'images) pour aller au bout.",
    "zerogpu.about_title": "Sur le GPU du Space (ZeroGPU)",
    "zerogpu.about_body": "Chaque exécution reçoit une part d'un NVIDIA H200 ({slice} Go) pour sa durée seulement. Les modèles résidents (≈ {used} Go avec la marge) sont chargés au démarrage et placés d'emblée sur le GPU de chaque exécution ; les autres se chargent dans l'exécution qui en a besoin (c'est plus long, et ils ne restent que le temps de ce processus GPU).",
    "zerogpu.resident": "Résidents (chargés au démarrage)",
    "zerogpu.on_demand": "Chargés à la demande",
}
