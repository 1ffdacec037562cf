"""Image generation: loading and running SDXL / FLUX pipelines with previews while they draw
(:mod:`.imagegen`, :mod:`.preview`), the comparison grid (:mod:`.grid`) and PNG files that carry
their settings (:mod:`.png`), and the course's structured image prompt (:mod:`.prompt_recipe`).

May import: ``engine.errors``, ``engine.limits``, ``engine.runtime``, ``engine.models``.
"""
