"""The live comparison's results: one :class:`Row` per precision, the table and its CSV.

The CSV keeps machine-readable column names (``COLUMNS``, documented in the README); a CSV
round trip gives back the same frame (``normalize_frame``: nullable ints, floats, strings).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence


@dataclass
class Row:
    precision: str
    method: str
    bits: float
    status: str = "pending"  # ok | skipped | failed
    memory_mb: float | None = None  # what the weights really take, quantization scales included
    hf_footprint_mb: float | None = None  # model.get_memory_footprint()
    memory_ratio: float | None = None  # vs the reference row
    load_s: float | None = None
    ttft_s: float | None = None
    tokens: int | None = None
    seconds: float | None = None
    tok_per_s: float | None = None
    speed_ratio: float | None = None
    ppl_en: float | None = None
    ppl_fr: float | None = None
    agreement_pct: float | None = None
    first_divergence: int | None = None
    note: str = ""
    output: str = ""
    token_ids: list[int] = field(default_factory=list, repr=False)

    def as_record(self) -> dict:
        rec = asdict(self)
        rec.pop("token_ids")
        return rec


COLUMNS = [f.name for f in fields(Row) if f.name != "token_ids"]
INT_COLUMNS = ("tokens", "first_divergence")
TEXT_COLUMNS = ("precision", "method", "status", "note", "output")


def to_frame(rows: Sequence[Row]):
    import pandas as pd

    df = pd.DataFrame([r.as_record() for r in rows], columns=COLUMNS)
    return normalize_frame(df)


def normalize_frame(df):
    """Column types a CSV round trip preserves: nullable ints, floats, plain strings."""
    import pandas as pd

    df = df.copy()
    for col in COLUMNS:
        if col in INT_COLUMNS:
            df[col] = pd.array(df[col], dtype="Int64")
        elif col in TEXT_COLUMNS:
            df[col] = df[col].fillna("").astype(str)
        else:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    return df[COLUMNS]


def write_csv(rows: Sequence[Row], path: str | Path) -> Path:
    path = Path(path)
    to_frame(rows).to_csv(path, index=False)
    return path


def read_csv(path: str | Path):
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False, na_values={c: [""] for c in COLUMNS if c not in TEXT_COLUMNS})
    return normalize_frame(df)
