"""Strings of the decode engine and the model cache: queue positions and per-request failures."""

EN = {
    "engine.queue_next": "⏳ Waiting for memory to free up: you are next.",
    "engine.queue_ahead_one": "⏳ 1 request ahead of you.",
    "engine.queue_ahead": "⏳ {n} requests ahead of you.",
    "engine.err_row_failed": "{model} failed on this request ({detail}). The other requests went on; try again.",
    "engine.err_oom_row": "Out of memory on {model}: this request was stopped so that the others could go on. "
                          "Try again with fewer new tokens or a shorter prompt.",
    "engine.err_nan": "{model} produced invalid numbers (NaN or infinity) for this request, so it was stopped. "
                      "Try again, or use a higher precision.",
    "engine.err_kv_too_long": "This request needs {tokens} tokens of context on {model} ({need_mb} MB of KV cache), "
                              "but at most {free_mb} MB can be given to it here. Shorten the prompt or lower the "
                              "maximum of new tokens.",
    "engine.err_memory_busy": "{model} needs about {need_gb:.1f} GB, held by models in use ({busy}). Waited {seconds} s; "
                              "try again in a moment.",
    "engine.err_memory_pinned": "{model} needs about {need_gb:.1f} GB, but with the models this request already uses "
                                "it cannot fit in the {budget_gb:.1f} GB budget. Choose a lower precision or a "
                                "smaller model.",
    "engine.err_loop": "The generation engine kept failing ({detail}); the running requests were stopped. Try again.",
    "engine.err_queue_timeout": "⏳ This request waited {seconds} s for room on {model} "
                                "({ahead:plural|# request|# requests} ahead of it) and was cancelled rather than "
                                "wait for ever: the class is using all the memory. Try again in a moment, or ask "
                                "for fewer new tokens.",
    "engine.err_turn_timeout": "⏳ This request waited {seconds} s for its turn ({ahead:plural|# request|# requests} "
                               "ahead of it) and was cancelled rather than wait for ever: the class is using this "
                               "model. Try again in a moment.",
    "engine.err_admission": "The engine could not admit this request on {model} ({detail}); it was cancelled and "
                            "the others went on. Try again.",
    "engine.err_already_running": "⏳ Your previous run of this is still going: wait for it to end, or press Stop "
                                  "before starting a new one (one run at a time for each button).",
    "engine.stats_batching": "- batching: {rows:,} rows decoded in {steps:,} model steps (mean batch {mean:.2f})",
}

FR = {
    "engine.queue_next": "⏳ En attente de mémoire libre : vous êtes le prochain.",
    "engine.queue_ahead_one": "⏳ 1 demande avant la vôtre.",
    "engine.queue_ahead": "⏳ {n} demandes avant la vôtre.",
    "engine.err_row_failed": "{model} a échoué sur cette demande ({detail}). Les autres demandes ont continué ; "
                             "réessayez.",
    "engine.err_oom_row": "Mémoire insuffisante sur {model} : cette demande a été arrêtée pour que les autres "
                          "continuent. Réessayez avec moins de nouveaux tokens ou un prompt plus court.",
    "engine.err_nan": "{model} a produit des nombres invalides (NaN ou infini) pour cette demande, qui a donc été "
                      "arrêtée. Réessayez, ou choisissez une précision plus élevée.",
    "engine.err_kv_too_long": "Cette demande a besoin de {tokens} tokens de contexte sur {model} ({need_mb} Mo de "
                              "cache KV), mais au plus {free_mb} Mo peuvent lui être donnés ici. Raccourcissez le "
                              "prompt ou baissez le maximum de nouveaux tokens.",
    "engine.err_memory_busy": "{model} demande environ {need_gb:.1f} Go, occupés par des modèles en cours "
                              "d'utilisation ({busy}). Attente de {seconds} s ; réessayez dans un instant.",
    "engine.err_memory_pinned": "{model} demande environ {need_gb:.1f} Go, mais avec les modèles que cette demande "
                                "utilise déjà, il ne tient pas dans le budget de {budget_gb:.1f} Go. Choisissez une "
                                "précision plus basse ou un modèle plus petit.",
    "engine.err_loop": "Le moteur de génération échoue à répétition ({detail}) ; les demandes en cours ont été "
                       "arrêtées. Réessayez.",
    "engine.err_queue_timeout": "⏳ Cette demande a attendu {seconds} s de la place sur {model} "
                                "({ahead:plural|# demande|# demandes} avant elle) et a été annulée plutôt que "
                                "d'attendre sans fin : la classe utilise toute la mémoire. Réessayez dans un "
                                "instant, ou demandez moins de nouveaux tokens.",
    "engine.err_turn_timeout": "⏳ Cette demande a attendu {seconds} s son tour ({ahead:plural|# demande|# demandes} "
                               "avant elle) et a été annulée plutôt que d'attendre sans fin : la classe utilise ce "
                               "modèle. Réessayez dans un instant.",
    "engine.err_admission": "Le moteur n'a pas pu admettre cette demande sur {model} ({detail}) ; elle a été "
                            "annulée et les autres ont continué. Réessayez.",
    "engine.err_already_running": "⏳ Votre exécution précédente est encore en cours : attendez qu'elle se termine, "
                                  "ou appuyez sur Stop avant d'en lancer une nouvelle (une exécution à la fois par "
                                  "bouton).",
    "engine.stats_batching": "- regroupement : {rows:,} lignes décodées en {steps:,} étapes de modèle (lot moyen "
                             "{mean:.2f})",
}
