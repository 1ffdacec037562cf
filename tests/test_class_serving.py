"""A class at once: concurrent /compare calls on the served app are batched and stay exact."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

PROMPTS = [f"Question {i} : combien font {i} + {i} ?" for i in range(10)]


def compare(client_factory, prompt):
    client = client_factory()
    result = client.predict(prompt, "", "tiny/mistral-base", "tiny/mistral-instruct", False, False,
                            24, 0.7, 0.95, 50, 1.0, True, 1, api_name="/compare")
    raw = result[-1]
    return raw["base"]["output"], raw["instruct"]["output"]


def test_ten_concurrent_comparisons_are_batched_and_exact(app_url, client):
    from gradio_client import Client

    def factory():
        return Client(app_url, verbose=False)

    alone = [compare(lambda: client, p) for p in PROMPTS]
    with ThreadPoolExecutor(max_workers=10) as pool:
        together = list(pool.map(lambda p: compare(factory, p), PROMPTS))
    assert together == alone
    assert all(b and i for b, i in together)
    overview, _ = client.predict(api_name="/about")
    largest = int(re.search(r"largest batch so far: (\d+)", overview).group(1))
    assert largest > 1, overview
