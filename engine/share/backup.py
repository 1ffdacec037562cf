"""Optional backup of the data folder to a private Hub dataset with ``huggingface_hub.CommitScheduler``.

Off unless ``GENAI_HUB_BACKUP_REPO=<user>/<dataset>`` (or ``--hub-backup``) is set; needs ``HF_TOKEN``
with write access. Every ``GENAI_HUB_BACKUP_EVERY`` minutes (default 10) the scheduler takes a
consistent snapshot of the database (``snapshot/genai.db``, SQLite's online backup: the live
``genai.db`` and its WAL are never uploaded) and pushes it with the new images. The scheduler is
started in a background thread: an unreachable Hub or a bad token logs a warning and the app goes on
(the data stays safe on disk).
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from engine.share.store import DB_NAME, Store

log = logging.getLogger(__name__)
ENV_REPO = "GENAI_HUB_BACKUP_REPO"
ENV_EVERY = "GENAI_HUB_BACKUP_EVERY"
SNAPSHOT = Path("snapshot") / DB_NAME
PATTERNS = [f"snapshot/{DB_NAME}", "images/**"]


@dataclass
class HubBackup:
    store: Store
    repo_id: str
    every_minutes: float = 10.0
    scheduler: object | None = None
    error: str | None = None
    started: threading.Event = field(default_factory=threading.Event)

    @property
    def folder(self) -> Path:
        return self.store.folder

    def settings(self) -> dict:
        """What the scheduler is (or will be) given: checked by the tests without pushing anything."""
        return {"repo_id": self.repo_id, "repo_type": "dataset", "folder_path": self.folder,
                "every": self.every_minutes, "private": True, "allow_patterns": list(PATTERNS)}

    def start(self) -> "HubBackup":
        threading.Thread(target=self._run, name="hub-backup", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            from huggingface_hub import CommitScheduler

            store = self.store

            class SnapshotScheduler(CommitScheduler):
                def push_to_hub(self):  # snapshot first: a copy of a database being written is not a backup
                    store.snapshot(store.folder / SNAPSHOT)
                    return super().push_to_hub()

            self.store.snapshot(self.folder / SNAPSHOT)
            self.scheduler = SnapshotScheduler(**self.settings())   # creates the repo: needs the Hub
        except Exception as exc:  # noqa: BLE001 - the class goes on without the backup
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("Hub backup to %s is off: %s", self.repo_id, self.error)
        finally:
            self.started.set()


def start_hub_backup(store: Store, repo_id: str | None = None, env: dict | None = None) -> HubBackup | None:
    """Start the backup if a repo is configured (argument or ``GENAI_HUB_BACKUP_REPO``); None otherwise."""
    env = os.environ if env is None else env
    repo_id = (repo_id or env.get(ENV_REPO) or "").strip()
    if not repo_id:
        return None
    every = float(env.get(ENV_EVERY) or 10)
    return HubBackup(store, repo_id, every).start()
