"""Where shared experiments live: SQLite (WAL) under a data folder, images as files beside it.

Layout of the data folder (``GENAI_DATA_DIR`` / ``--data-dir``; default ``/data/genai-class`` on a
Space with persistent storage, else ``data/`` next to ``app.py``)::

    genai.db            experiments, rooms, wall entries (SQLite, WAL journal)
    images/<id>/...     each experiment's images: full PNGs and small JPEG thumbnails
    snapshot/genai.db   a consistent copy made for the optional Hub backup (engine/share/backup.py)

Only ``images/`` is ever served over HTTP (the wall shows thumbnails from there); the database is not.
"""
from __future__ import annotations

import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from engine.errors import UserError

ENV_DIR = "GENAI_DATA_DIR"
SPACE_STORAGE = Path("/data")
APP_ROOT = Path(__file__).resolve().parents[2]
DB_NAME = "genai.db"
ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,32}$")
FILE_RE = re.compile(r"^[A-Za-z0-9_-]{8,32}/[A-Za-z0-9_.-]{1,80}$")
THUMB_SIDE = 480
MB = 1024 * 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, tab TEXT NOT NULL, created REAL NOT NULL,
    inputs TEXT NOT NULL, outputs TEXT NOT NULL, bytes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    code TEXT PRIMARY KEY, token_hash TEXT NOT NULL, title TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, closed REAL, version INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS entries (
    room TEXT NOT NULL REFERENCES rooms(code), num INTEGER NOT NULL,
    experiment TEXT NOT NULL REFERENCES experiments(id), name TEXT NOT NULL, tab TEXT NOT NULL,
    title TEXT NOT NULL, card TEXT NOT NULL, bytes INTEGER NOT NULL, created REAL NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0, pinned INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (room, num));
"""
# Columns added after the first release: (table, column, definition), added to older databases on open.
MIGRATIONS = (
    ("entries", "fingerprint", "TEXT NOT NULL DEFAULT ''"),   # what the card shows, hashed: one card per result
)


def default_data_dir(env: dict | None = None) -> Path:
    """``GENAI_DATA_DIR``; else the Space's persistent storage; else ``data/`` beside app.py."""
    env = os.environ if env is None else env
    if env.get(ENV_DIR):
        return Path(env[ENV_DIR]).expanduser()
    if SPACE_STORAGE.is_dir() and os.access(SPACE_STORAGE, os.W_OK):
        return SPACE_STORAGE / "genai-class"
    return APP_ROOT / "data"


@dataclass(frozen=True)
class StoreLimits:
    """What one shared experiment and the whole folder may hold."""

    experiment_mb: int = 8       # inputs + outputs as JSON (a 20,000-character prompt is 0.02 MB)
    images: int = 64             # images per experiment (a sweep grid's gallery fits)
    images_mb: int = 48          # their PNGs together
    total_mb: int = 5000         # the whole data folder's experiments

    @classmethod
    def from_env(cls, env: dict | None = None) -> "StoreLimits":
        env = os.environ if env is None else env
        return cls(total_mb=int(env.get("GENAI_SHARE_TOTAL_MB", cls.total_mb)))


@dataclass
class Experiment:
    """One tab's inputs and result. ``outputs`` maps a name to a typed record (see ui/share_codec.py);
    a record holding ``"images"`` (PIL images or PNG bytes) gets them written as files, replaced by ``"files"``."""

    kind: str                     # the tab action's API name, e.g. "compare", "tokenize"
    tab: str                      # the top-level tab id, e.g. "base_vs_instruct"
    inputs: dict[str, Any]
    outputs: dict[str, dict] = field(default_factory=dict)
    id: str = ""
    created: float = 0.0
    bytes: int = 0


class Store:
    """Thread-safe access to the data folder (one SQLite connection per thread)."""

    def __init__(self, folder: str | Path, limits: StoreLimits | None = None) -> None:
        self.folder = Path(folder).expanduser().resolve()
        self.images_dir = self.folder / "images"
        self.db_path = self.folder / DB_NAME
        self.limits = limits or StoreLimits.from_env()
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.db().executescript(SCHEMA)
        self._migrate()

    # ------------------------------------------------------------------ database
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")      # a commit is on disk before the student sees "sent"
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken at once (BEGIN IMMEDIATE): concurrent writers queue, never interleave."""
        db = self.db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _migrate(self) -> None:
        """Add the columns a database made by an older version lacks (its rows keep working)."""
        db = self.db()
        for table, column, definition in MIGRATIONS:
            have = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                try:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
                except sqlite3.OperationalError as exc:   # another process added it first
                    if "duplicate column" not in str(exc):
                        raise
        db.execute("CREATE INDEX IF NOT EXISTS entries_fingerprint ON entries (room, fingerprint)")

    def journal_mode(self) -> str:
        return self.db().execute("PRAGMA journal_mode").fetchone()[0]

    def snapshot(self, dest: str | Path) -> Path:
        """A consistent copy of the database (SQLite's online backup), safe to upload while in use."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        target = sqlite3.connect(tmp)
        try:
            self.db().backup(target)
        finally:
            target.close()
        os.replace(tmp, dest)
        return dest

    # ------------------------------------------------------------------ experiments
    def put_experiment(self, exp: Experiment) -> Experiment:
        """Store ``exp`` (its images as files) under a new unguessable id; raise UserError past the limits."""
        exp.id = secrets.token_urlsafe(9)          # 72 random bits: links cannot be enumerated
        exp.created = time.time()
        folder = self.images_dir / exp.id
        try:
            image_bytes = self._write_images(exp, folder)
            inputs, outputs = json.dumps(exp.inputs, ensure_ascii=False), json.dumps(exp.outputs, ensure_ascii=False)
            json_bytes = len(inputs.encode()) + len(outputs.encode())
            if json_bytes > self.limits.experiment_mb * MB:
                raise UserError("share.err.too_large", size=-(-json_bytes // MB), limit=self.limits.experiment_mb)
            exp.bytes = json_bytes + image_bytes
            with self.transaction() as db:
                used = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM experiments").fetchone()[0]
                if used + exp.bytes > self.limits.total_mb * MB:
                    raise UserError("share.err.storage_full")
                db.execute("INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (exp.id, exp.kind, exp.tab, exp.created, inputs, outputs, exp.bytes))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return exp

    def get_experiment(self, exp_id: str) -> Experiment | None:
        if not isinstance(exp_id, str) or not ID_RE.match(exp_id):
            return None
        row = self.db().execute("SELECT * FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None:
            return None
        return Experiment(kind=row["kind"], tab=row["tab"], inputs=json.loads(row["inputs"]),
                          outputs=json.loads(row["outputs"]), id=row["id"], created=row["created"], bytes=row["bytes"])

    def image_path(self, rel: str) -> Path:
        """The file behind a stored ``<id>/<name>`` reference (never outside ``images/``)."""
        if not isinstance(rel, str) or not FILE_RE.match(rel) or ".." in rel:
            raise UserError("share.err.not_found")
        path = (self.images_dir / rel).resolve()
        if self.images_dir not in path.parents or not path.is_file():
            raise UserError("share.err.not_found")
        return path

    def _write_images(self, exp: Experiment, folder: Path) -> int:
        """Write every ``"images"`` list of ``exp.outputs`` as PNG + thumbnail files; return their bytes."""
        records = [(name, rec) for name, rec in exp.outputs.items() if isinstance(rec, dict) and "images" in rec]
        count = sum(len(rec["images"]) for _, rec in records)
        if count > self.limits.images:
            raise UserError("share.err.too_many_images", n=count, limit=self.limits.images)
        total = 0
        for name, rec in records:
            files, thumbs = [], []
            safe = re.sub(r"[^A-Za-z0-9_-]", "-", name)[:40] or "image"
            for i, image in enumerate(rec.pop("images")):
                folder.mkdir(parents=True, exist_ok=True)
                png, thumb = encode_png(image), encode_thumbnail(image)
                total += len(png) + len(thumb)
                if total > self.limits.images_mb * MB:
                    raise UserError("share.err.too_large", size=-(-total // MB), limit=self.limits.images_mb)
                for data, filename, bucket in ((png, f"{safe}-{i}.png", files),
                                               (thumb, f"{safe}-{i}.thumb.jpg", thumbs)):
                    (folder / filename).write_bytes(data)
                    bucket.append(f"{exp.id}/{filename}")
            rec["files"], rec["thumbs"] = files, thumbs
        return total


def encode_png(image) -> bytes:
    """PNG bytes of a PIL image; PNG bytes given as such are checked and kept (with their text chunks)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (bytes, bytearray)):
        try:
            with Image.open(io.BytesIO(image)) as img:
                if img.format != "PNG":
                    raise UserError("share.err.bad_image")
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise UserError("share.err.bad_image") from exc
        return bytes(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def encode_thumbnail(image) -> bytes:
    """A JPEG at most THUMB_SIDE pixels wide/high (transparent parts on white): what the wall shows."""
    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        with Image.open(io.BytesIO(image)) as img:
            img.load()
            image = img.copy()
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    if thumb.mode in ("RGBA", "LA", "P"):
        thumb = thumb.convert("RGBA")
        background = Image.new("RGB", thumb.size, "white")
        background.paste(thumb, mask=thumb.getchannel("A"))
        thumb = background
    buf = io.BytesIO()
    thumb.convert("RGB").save(buf, format="JPEG", quality=82)
    return buf.getvalue()
