"""Write requirements.txt / requirements-test.txt from the freezes tools/update_pins.sh makes.

usage: pins.py TORCH_CLOSURE RUNTIME_FREEZE ALL_FREEZE OUT_DIR

Runtime pins: every package in RUNTIME_FREEZE except torch and what only torch brings.
Test pins: what ALL_FREEZE adds to the runtime set. Versions come from ALL_FREEZE, the set the suite ran with.
"""
from __future__ import annotations

import sys
from pathlib import Path

# torch's own dependencies: a torch from Spaces/Colab/CUDA may need other versions of these.
TORCH_ONLY = {"torch", "triton", "sympy", "mpmath", "networkx", "setuptools"}
HEADER = {
    "requirements.txt": [
        "# Runtime dependencies, pinned to the exact versions the test suite passed with",
        "# (Hugging Face Spaces installs this file). Allowed ranges: requirements.in.",
        "# To move the pins: tools/update_pins.sh (tries the newest allowed releases), then --write.",
        "# On a CPU-only machine install the CPU build of torch first: pip install torch==2.13.0",
    ],
    "requirements-test.txt": [
        "# Test-only dependencies, pinned (ranges: requirements-test.in; update: tools/update_pins.sh).",
    ],
}


def norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def read_freeze(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[norm(name)] = f"{name.strip()}=={version.strip()}"
    return pins


def main(closure: str, runtime: str, everything: str, out: str) -> None:
    torch_closure = {norm(n) for n in Path(closure).read_text().split()}
    torch_only = TORCH_ONLY | {n for n in torch_closure if n.startswith(("nvidia-", "cuda-"))}
    run = read_freeze(Path(runtime))
    allp = read_freeze(Path(everything))
    runtime_lines = ["torch>=2.5,<3"] + sorted((allp.get(k, v) for k, v in run.items() if k not in torch_only), key=str.lower)
    test_lines = sorted((v for k, v in allp.items() if k not in run and k not in torch_only), key=str.lower)
    for name, lines in (("requirements.txt", runtime_lines), ("requirements-test.txt", test_lines)):
        Path(out, name).write_text("\n".join(HEADER[name] + lines) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:5])
