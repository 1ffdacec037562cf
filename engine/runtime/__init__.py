"""Process machinery every other package leans on, with no knowledge of models: stop signals
(:mod:`.stopping`), locks renewed in a forked ZeroGPU worker (:mod:`.forksafe`), the ``spaces``
wrapper and streamed calls (:mod:`.zerogpu`), round-robin turns between sessions
(:mod:`.fairness`), one model built at a time (:mod:`.build_lock`), temporary files
(:mod:`.tempfiles`) and secrets kept out of logs (:mod:`.redact`).

May import: ``engine.errors``, ``engine.limits``.
"""
