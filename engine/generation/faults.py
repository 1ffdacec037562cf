"""What a failure in the decode loop becomes for the request it touched."""
from __future__ import annotations

import torch

from engine.errors import UserError, as_user_error


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def return_cached_memory() -> None:
    """Before retrying after an out-of-memory error: give PyTorch's cached CUDA blocks back."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def row_error(exc: BaseException, model: str) -> UserError:
    """The message the user gets for their failed request, the original kept as its cause."""
    if isinstance(exc, UserError):
        return exc
    if is_oom(exc):
        err = UserError("engine.err_oom_row", model=model)
    else:
        err = as_user_error(exc, model) or UserError("engine.err_row_failed", model=model,
                                                     detail=f"{type(exc).__name__}: {exc}"[:200])
    err.__cause__ = exc
    return err
