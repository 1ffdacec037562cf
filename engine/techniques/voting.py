"""Majority vote over extracted answers (self-consistency).

Every path with an extracted answer casts one vote for its canonical key; paths where nothing
could be extracted abstain. **Tie rule:** among the answers with the most votes, the one that
some path reached *first* (the lowest path number) wins; the result says it was a tie and lists
the tied answers, so the UI can show it instead of hiding it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from engine.techniques.extraction import Answer


@dataclass
class VoteResult:
    counts: list[tuple[str, int]]  # most votes first; equal counts in order of first appearance
    first_path: dict[str, int]  # answer key → index of the first path that reached it
    winner: str | None
    winner_votes: int
    votes: int  # paths that voted (an answer was extracted)
    paths: int  # all paths, abstentions included
    tied: list[str] = field(default_factory=list)  # the answers sharing the top count, if more than one

    @property
    def tie(self) -> bool:
        return len(self.tied) > 1

    @property
    def share(self) -> float:
        """The winner's share of the votes cast (0 when nobody voted)."""
        return self.winner_votes / self.votes if self.votes else 0.0

    @property
    def abstentions(self) -> int:
        return self.paths - self.votes

    def as_dict(self) -> dict:
        return {"counts": [list(c) for c in self.counts], "winner": self.winner, "winner_votes": self.winner_votes,
                "votes": self.votes, "paths": self.paths, "share": round(self.share, 4), "tie": self.tie,
                "tied": list(self.tied), "first_path": dict(self.first_path)}


def majority_vote(answers: Sequence[Answer | str | None]) -> VoteResult:
    """``answers`` in path order: :class:`Answer` objects, keys, or None for no answer."""
    keys = [a.key if isinstance(a, Answer) else a for a in answers]
    first: dict[str, int] = {}
    tally: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key is None:
            continue
        first.setdefault(key, i)
        tally[key] = tally.get(key, 0) + 1
    counts = sorted(tally.items(), key=lambda kv: (-kv[1], first[kv[0]]))
    if not counts:
        return VoteResult(counts=[], first_path={}, winner=None, winner_votes=0, votes=0, paths=len(keys))
    top = counts[0][1]
    tied = [k for k, c in counts if c == top]
    return VoteResult(counts=counts, first_path=first, winner=counts[0][0], winner_votes=top,
                      votes=sum(tally.values()), paths=len(keys), tied=tied if len(tied) > 1 else [])
