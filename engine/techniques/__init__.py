"""Prompt-engineering techniques: answer extraction, majority vote, the techniques and their benchmark."""
