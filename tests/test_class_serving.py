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


def batching_counters(client) -> tuple[int, int]:
    """(rows decoded, model steps) so far: About's cumulative counters."""
    overview, _ = client.predict(api_name="/about")
    found = re.search(r"batching: ([\d,]+) rows decoded in ([\d,]+) model steps", overview)
    return int(found.group(1).replace(",", "")), int(found.group(2).replace(",", ""))


def test_ten_concurrent_comparisons_are_batched_and_exact(app_url, client):
    """Batching is measured on this test's own window (the counters before and after its ten
    comparisons; the app's lifetime largest batch was already > 1 from earlier tests)."""
    from gradio_client import Client

    def factory():
        return Client(app_url, verbose=False)

    alone = [compare(lambda: client, p) for p in PROMPTS]
    rows_before, steps_before = batching_counters(client)
    with ThreadPoolExecutor(max_workers=10) as pool:
        together = list(pool.map(lambda p: compare(factory, p), PROMPTS))
    rows_after, steps_after = batching_counters(client)
    assert together == alone
    assert all(b and i for b, i in together)
    rows, steps = rows_after - rows_before, steps_after - steps_before
    assert 0 < rows <= 10 * 2 * 23  # this window's rows only (each row's first token comes from its prefill)
    assert rows / steps > 1, (rows, steps)  # rows decoded together: fewer model steps than rows
