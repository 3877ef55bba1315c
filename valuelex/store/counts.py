"""What a write stored, counted where the shards are published and added up on the driver.

`StageCounts.of(shard)` is the one count of a stored shard: rows, failed rows (``error`` set),
prompt and completion tokens, and the first line of each (redacted) error. The driver path counts
each shard it publishes with it; the workers' path (`valuelex.engines.sink`) counts in the write
task and returns `ShardStats` (per stage), the only thing that comes back to the driver.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class StageCounts:
    """What was stored for one stage: rows, failed rows, tokens, the first line of each error."""

    rows: int = 0
    failed: int = 0
    shards: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, shard: pa.Table) -> StageCounts:
        """The counts of one stored shard (its error text already redacted)."""
        errors = [e for e in shard["error"].to_pylist() if e is not None]
        return cls(
            rows=shard.num_rows, failed=len(errors), shards=1,
            prompt_tokens=int(pc.sum(shard["n_prompt_tokens"]).as_py() or 0),
            completion_tokens=int(pc.sum(shard["n_completion_tokens"]).as_py() or 0),
            reasons=Counter(e.strip().splitlines()[0] if e.strip() else "(no message)" for e in errors),
        )

    def add(self, other: StageCounts) -> None:
        self.rows += other.rows
        self.failed += other.failed
        self.shards += other.shards
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.reasons.update(other.reasons)


@dataclass
class ShardStats:
    """Counts per stage of what one or more write tasks stored."""

    stages: dict[str, StageCounts] = field(default_factory=dict)

    def add(self, other: ShardStats) -> None:
        for stage, counts in other.stages.items():
            self.stages.setdefault(stage, StageCounts()).add(counts)

    def total(self) -> StageCounts:
        """Every stage's counts added up."""
        whole = StageCounts()
        for counts in self.stages.values():
            whole.add(counts)
        return whole

    @classmethod
    def sum(cls, parts: Iterable[ShardStats]) -> ShardStats:
        whole = cls()
        for part in parts:
            whole.add(part)
        return whole
