"""The tokenizer tab's engine: the tokenizers compared (:mod:`.tokenizers`, one backend per
library in :mod:`.backends`), each token's characters and bytes (:mod:`.pieces`), and a token's
row of a model's input embedding matrix (:mod:`.embeddings`, read from the checkpoint without
loading the model). Named ``tokenization`` so that it never shadows the ``tokenizers`` package.

May import: ``engine.errors``, ``engine.limits``, ``engine.runtime``, ``engine.models``.
"""
