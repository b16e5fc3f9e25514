"""Loading a cached embedded default: a failure after the folder's hashes matched is not damage."""

from __future__ import annotations

from ..errors import PruneScopeError
from ..loading.models import _from_pretrained, _short


def cached_loader(task: str, what: str, placement):
    """``load(folder) -> (model, tokenizer)`` for a cached default; a failure is raised only once
    the folder's hashes matched (:func:`pruning.store.integrity.load_verified`), so it is not damage."""

    def load(folder):
        try:
            return _from_pretrained(str(folder), task, placement=placement)
        except Exception as exc:  # noqa: BLE001
            raise PruneScopeError(f"could not load the cached {what} at {folder} ({_short(exc)})") from None

    return load
