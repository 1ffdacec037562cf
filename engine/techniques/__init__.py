"""Prompt-engineering techniques: answer extraction, majority vote, the techniques and their benchmark.

May import: ``engine.errors``, ``engine.limits``, ``engine.runtime``, ``engine.models``, ``engine.generation``.
"""
