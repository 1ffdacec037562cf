"""The quantization tab's engine: one weight matrix (matrices, weights, histogram), memory plans (planner),
live loads (live).

May import: ``engine.errors``, ``engine.limits``, ``engine.runtime``, ``engine.models``, ``engine.generation``.
"""
