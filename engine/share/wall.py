"""The class wall's rules: rooms, entries, the teacher's secret, size and rate limits.

A teacher opens a room and receives its code (``GENAI-`` + 6 random characters: 887 million codes,
not guessable by counting) and a secret teacher token (shown once, stored only as a SHA-256 hash).
Students post entries (a name they type + an experiment already stored by :class:`Store`); only the
token can hide, pin, close, reopen or export. The same result sent again under the same name (a
second click, a reload) is the card already there, not a new one: entries carry a fingerprint of
what their card shows. Everything typed here is stored as given and escaped wherever
it is shown (ui/wall_view.py, engine/share/export.py).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

from engine.errors import UserError
from engine.share.store import MB, Store

PREFIX = "GENAI-"
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"   # no 0/O, 1/I/L: read aloud and typed without mistakes
CODE_CHARS = 6
CODE_RE = re.compile(rf"^{PREFIX}[{ALPHABET}]{{{CODE_CHARS}}}$")


@dataclass(frozen=True)
class Limits:
    name_chars: int = 40
    title_chars: int = 4000        # the card's prompt (the full one stays in the experiment)
    entries_per_room: int = 300
    room_mb: int = 300
    post_burst: int = 4            # per browser session: 4 at once, then one every 10 s
    post_refill_s: float = 10.0
    address_burst: int = 120       # per network address (a whole class can sit behind one NAT)
    address_refill_s: float = 0.5
    rooms_burst: int = 5           # rooms opened per address
    rooms_refill_s: float = 120.0

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Limits":
        env = os.environ if env is None else env
        return cls(entries_per_room=int(env.get("GENAI_WALL_MAX_ENTRIES", cls.entries_per_room)),
                   room_mb=int(env.get("GENAI_WALL_MAX_MB", cls.room_mb)),
                   post_burst=int(env.get("GENAI_WALL_POST_BURST", cls.post_burst)),
                   post_refill_s=float(env.get("GENAI_WALL_POST_EVERY_S", cls.post_refill_s)),
                   rooms_burst=int(env.get("GENAI_WALL_ROOMS_BURST", cls.rooms_burst)),
                   rooms_refill_s=float(env.get("GENAI_WALL_ROOMS_EVERY_S", cls.rooms_refill_s)))


class RateLimiter:
    """Token buckets by key: ``burst`` actions at once, then one more every ``refill_s`` seconds."""

    def __init__(self, burst: int, refill_s: float, max_keys: int = 10_000) -> None:
        self.burst, self.refill_s, self.max_keys = burst, refill_s, max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """0 if allowed (one token spent), else the seconds to wait."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) / self.refill_s)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) * self.refill_s
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > self.max_keys:   # forget the fullest (idle) buckets
                full = [k for k, (t, _) in self._buckets.items() if t >= self.burst - 1]
                for k in full[: len(self._buckets) - self.max_keys // 2]:
                    self._buckets.pop(k, None)
            return 0.0


@dataclass
class Room:
    code: str
    title: str
    created: float
    closed: float | None
    version: int
    entries: int
    bytes: int


@dataclass
class Entry:
    room: str
    num: int
    experiment: str
    name: str
    tab: str
    title: str
    card: dict
    created: float
    hidden: bool
    pinned: bool
    duplicate: bool = False        # add_entry found this card already on the wall (nothing was added)

    def as_dict(self) -> dict[str, Any]:
        return {"entry": self.num, "name": self.name, "tab": self.tab, "title": self.title,
                "experiment": self.experiment, "link": f"?x={self.experiment}", "created": self.created,
                "hidden": self.hidden, "pinned": self.pinned, "card": self.card, "duplicate": self.duplicate}


def new_code() -> str:
    return PREFIX + "".join(secrets.choice(ALPHABET) for _ in range(CODE_CHARS))


def normalize_code(text: str | None) -> str:
    """What a student typed → ``GENAI-XXXXXX`` (case, spaces and a missing prefix forgiven)."""
    raw = re.sub(r"[\s_]", "", (text or "")).upper()
    if raw.startswith(PREFIX.rstrip("-")):
        raw = raw[len(PREFIX) - 1:].lstrip("-")
    return PREFIX + raw


def clean_name(name: str | None, limit: int) -> str:
    """A display name: control characters removed, spaces collapsed; empty or too long → UserError."""
    text = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in (name or ""))
    text = " ".join(text.split())
    if not text:
        raise UserError("wall.err.no_name")
    if len(text) > limit:
        raise UserError("wall.err.name_too_long", limit=limit)
    return text


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Wall:
    def __init__(self, store: Store, limits: Limits | None = None) -> None:
        self.store = store
        self.limits = limits or Limits.from_env()
        self._post_session = RateLimiter(self.limits.post_burst, self.limits.post_refill_s)
        self._post_address = RateLimiter(self.limits.address_burst, self.limits.address_refill_s)
        self._rooms_address = RateLimiter(self.limits.rooms_burst, self.limits.rooms_refill_s)

    # ------------------------------------------------------------------ rooms
    def open_room(self, title: str = "", address: str = "") -> tuple[str, str]:
        """A new room: (code, teacher token). The token is shown once and stored hashed."""
        self._limit(self._rooms_address, "addr:" + address)
        token = secrets.token_urlsafe(24)
        title = " ".join((title or "").split())[:120]
        with self.store.transaction() as db:
            for _ in range(20):
                code = new_code()
                if db.execute("SELECT 1 FROM rooms WHERE code = ?", (code,)).fetchone() is None:
                    break
            else:  # pragma: no cover - 887 million codes
                raise UserError("wall.err.no_room", room="?")
            db.execute("INSERT INTO rooms (code, token_hash, title, created) VALUES (?, ?, ?, ?)",
                       (code, _hash(token), title, time.time()))
        return code, token

    def room(self, code: str) -> Room:
        code = normalize_code(code)
        row = self.store.db().execute(
            "SELECT r.*, COUNT(e.num) AS n, COALESCE(SUM(e.bytes), 0) AS b FROM rooms r "
            "LEFT JOIN entries e ON e.room = r.code WHERE r.code = ? GROUP BY r.code", (code,)).fetchone()
        if not CODE_RE.match(code) or row is None:
            raise UserError("wall.err.no_room", room=code if CODE_RE.match(code) else "?")
        return Room(row["code"], row["title"], row["created"], row["closed"], row["version"], row["n"], row["b"])

    def version(self, code: str) -> int | None:
        """The room's change counter (cheap: what the auto-refresh polls); None if no such room."""
        row = self.store.db().execute("SELECT version FROM rooms WHERE code = ?", (normalize_code(code),)).fetchone()
        return None if row is None else row["version"]

    def is_teacher(self, code: str, token: str | None) -> bool:
        if not token:
            return False
        row = self.store.db().execute("SELECT token_hash FROM rooms WHERE code = ?", (normalize_code(code),)).fetchone()
        return row is not None and hmac.compare_digest(row["token_hash"], _hash(token))

    def require_teacher(self, code: str, token: str | None) -> Room:
        room = self.room(code)
        if not self.is_teacher(room.code, token):
            raise UserError("wall.err.not_teacher")
        return room

    def close(self, code: str, token: str | None) -> Room:
        room = self.require_teacher(code, token)
        with self.store.transaction() as db:
            db.execute("UPDATE rooms SET closed = COALESCE(closed, ?), version = version + 1 WHERE code = ?",
                       (time.time(), room.code))
        return self.room(room.code)

    def reopen(self, code: str, token: str | None) -> Room:
        """Undo :meth:`close`: the wall takes entries again (teacher only)."""
        room = self.require_teacher(code, token)
        with self.store.transaction() as db:
            db.execute("UPDATE rooms SET closed = NULL, version = version + 1 WHERE code = ? AND closed IS NOT NULL",
                       (room.code,))
        return self.room(room.code)

    # ------------------------------------------------------------------ entries
    def check_post(self, code: str, name: str, session: str = "", address: str = "") -> tuple[Room, str]:
        """Everything a post needs, checked before the experiment is stored: rate, room open and not full, name."""
        name = clean_name(name, self.limits.name_chars)
        room = self.room(code)
        if room.closed:
            raise UserError("wall.err.closed", room=room.code)
        self._check_room_space(room, 0)
        self._limit(self._post_session, "session:" + session)
        self._limit(self._post_address, "addr:" + address)
        return room, name

    def find_duplicate(self, code: str, name: str, fingerprint: str) -> Entry | None:
        """The entry ``name`` already sent to the room with this fingerprint (hidden ones too), if any."""
        if not fingerprint:
            return None
        key = clean_name(name, self.limits.name_chars).casefold()
        rows = self.store.db().execute("SELECT num, name FROM entries WHERE room = ? AND fingerprint = ?",
                                       (normalize_code(code), fingerprint)).fetchall()
        for row in rows:
            if row["name"].casefold() == key:
                found = self.entry(code, row["num"], include_hidden=True)
                found.duplicate = True
                return found
        return None

    def add_entry(self, code: str, name: str, experiment: str, tab: str, title: str, card: dict,
                  fingerprint: str = "") -> Entry:
        """The entry itself (after :meth:`check_post` and storing the experiment); numbered per room.
        With a ``fingerprint``, the same result already sent under the same name is returned instead
        (``duplicate=True``), checked inside the write lock: two clicks at once make one card."""
        name = clean_name(name, self.limits.name_chars)
        exp = self.store.get_experiment(experiment)
        if exp is None:
            raise UserError("share.err.not_found")
        title = title if len(title) <= self.limits.title_chars else title[: self.limits.title_chars - 1] + "…"
        now = time.time()
        with self.store.transaction() as db:       # counts re-checked inside the write lock: 30 at once stay exact
            room = self.room(code)
            if room.closed:
                raise UserError("wall.err.closed", room=room.code)
            same = self.find_duplicate(room.code, name, fingerprint)
            if same is not None:
                return same
            self._check_room_space(room, exp.bytes)
            num = db.execute("SELECT COALESCE(MAX(num), 0) + 1 FROM entries WHERE room = ?", (room.code,)).fetchone()[0]
            db.execute("INSERT INTO entries (room, num, experiment, name, tab, title, card, bytes, created, fingerprint) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (room.code, num, exp.id, name, tab, title, json.dumps(card, ensure_ascii=False), exp.bytes, now,
                        fingerprint))
            db.execute("UPDATE rooms SET version = version + 1 WHERE code = ?", (room.code,))
        return Entry(room.code, num, exp.id, name, tab, title, card, now, False, False)

    def entries(self, code: str, include_hidden: bool = False) -> list[Entry]:
        """Pinned entries first, then the newest first."""
        room = self.room(code)
        rows = self.store.db().execute(
            "SELECT * FROM entries WHERE room = ? AND (hidden = 0 OR ?) ORDER BY pinned DESC, num DESC",
            (room.code, 1 if include_hidden else 0)).fetchall()
        return [Entry(r["room"], r["num"], r["experiment"], r["name"], r["tab"], r["title"], json.loads(r["card"]),
                      r["created"], bool(r["hidden"]), bool(r["pinned"])) for r in rows]

    def entry(self, code: str, num: int, include_hidden: bool = False) -> Entry:
        for e in self.entries(code, include_hidden):
            if e.num == int(num):
                return e
        raise UserError("wall.err.no_entry", entry=num)

    def set_hidden(self, code: str, token: str | None, num: int, hidden: bool = True) -> Entry:
        return self._set_flag(code, token, num, "hidden", hidden)

    def set_pinned(self, code: str, token: str | None, num: int, pinned: bool = True) -> Entry:
        return self._set_flag(code, token, num, "pinned", pinned)

    def _set_flag(self, code: str, token: str | None, num: int, column: str, value: bool) -> Entry:
        room = self.require_teacher(code, token)
        with self.store.transaction() as db:
            sql = f"UPDATE entries SET {column} = ? WHERE room = ? AND num = ?"  # noqa: S608 - column: fixed names
            changed = db.execute(sql, (1 if value else 0, room.code, int(num))).rowcount
            if not changed:
                raise UserError("wall.err.no_entry", entry=num)
            db.execute("UPDATE rooms SET version = version + 1 WHERE code = ?", (room.code,))
        return self.entry(room.code, num, include_hidden=True)

    # ------------------------------------------------------------------ limits
    def _check_room_space(self, room: Room, adding: int) -> None:
        if room.entries >= self.limits.entries_per_room:
            raise UserError("wall.err.room_full", room=room.code, limit=self.limits.entries_per_room)
        if room.bytes + adding > self.limits.room_mb * MB:
            raise UserError("wall.err.room_too_big", room=room.code, limit=self.limits.room_mb)

    @staticmethod
    def _limit(limiter: RateLimiter, key: str) -> None:
        wait = limiter.take(key)
        if wait > 0:
            raise UserError("wall.err.slow_down", seconds=max(1, round(wait)))
