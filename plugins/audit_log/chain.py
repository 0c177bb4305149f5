"""The hash chain: canonical rows, appends serialized per chain, and verification.

Each row's ``hash`` is SHA-256 over the canonical serialization of the row (every column
but ``id`` and ``hash``, ``prev_hash`` included): JSON with sorted keys, no whitespace, UTF-8,
times as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``. The first row of a chain links to GENESIS, or, once
old rows were swept, to the checkpoint the sweep stored on the chain's head row.

Appends to one chain are serialized: the chain's head row is locked (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite's IMMEDIATE write transactions already admit one writer) in the
transaction that inserts the row and moves the head, so two appends never link to the same row.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ctxcloud import database, for_update, utcnow
from ctxcloud.plugins.audit_log.models import AuditChain, AuditEvent

GENESIS = "0" * 64
BATCH = 1000


def timestamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(row: Mapping[str, Any]) -> bytes:
    """The bytes a row's hash covers."""
    fields = {
        "chain": row["chain"],
        "seq": row["seq"],
        "tenant_id": row["tenant_id"],
        "occurred_at": timestamp(row["occurred_at"]),
        "type": row["type"],
        "actor_kind": row["actor_kind"],
        "actor_id": row["actor_id"],
        "target": row["target"],
        "request_id": row["request_id"],
        "client_address": row["client_address"],
        "details": row["details"],
        "prev_hash": row["prev_hash"],
    }
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def row_hash(row: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(row)).hexdigest()


def _as_row(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in AuditEvent._meta.fields}


def locked_head(chain: str, tenant_id: str | None) -> AuditChain:
    head = for_update(AuditChain.select().where(AuditChain.chain == chain)).first()
    if head is None:
        # Two first appends may race here: one insert wins, both then lock the same row.
        AuditChain.insert(
            chain=chain, tenant_id=tenant_id, head_hash=GENESIS, checkpoint_hash=GENESIS
        ).on_conflict_ignore().execute()
        head = for_update(AuditChain.select().where(AuditChain.chain == chain)).get()
    return head


def append(chain: str, fields: Mapping[str, Any]) -> AuditEvent:
    """Add a row at the head of `chain` (joins the caller's transaction, if any, as a savepoint).

    `fields`: tenant_id, type, actor_kind, actor_id, target, request_id, client_address,
    details (JSON-ready values).
    """
    with database.atomic():
        head = locked_head(chain, fields.get("tenant_id"))
        row = {
            **fields,
            "chain": chain,
            "seq": head.head_seq + 1,
            "occurred_at": utcnow(),
            "prev_hash": head.head_hash,
        }
        row["hash"] = row_hash(row)
        event = AuditEvent.create(**row)
        AuditChain.update(head_seq=row["seq"], head_hash=row["hash"]).where(
            AuditChain.chain == chain
        ).execute()
    return event


# Verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    chain: str
    kind: str  # edited, missing, broken_link, reordered, duplicate, truncated, head_mismatch
    seq: int | None
    id: int | None
    detail: str


@dataclass
class ChainReport:
    chain: str
    tenant_id: str | None
    rows: int = 0
    first_seq: int | None = None
    head_seq: int = 0
    head_hash: str = GENESIS
    checkpoint_seq: int = 0
    problems: list[Problem] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def rows_of(chain: str, after_seq: int, until_seq: int | None = None) -> Iterator[AuditEvent]:
    """The chain's rows past `after_seq`, in seq order, read in bounded batches."""
    last = after_seq
    while True:
        query = AuditEvent.select().where(AuditEvent.chain == chain, AuditEvent.seq > last)
        if until_seq is not None:
            query = query.where(AuditEvent.seq <= until_seq)
        batch = list(query.order_by(AuditEvent.seq).limit(BATCH))
        yield from batch
        if len(batch) < BATCH:
            return
        last = batch[-1].seq


class Walk:
    """Checks rows one by one from a known (seq, hash), noting each problem once."""

    def __init__(self, chain: str, seq: int, hash_: str) -> None:
        self.chain = chain
        self.seq = seq
        self.hash = hash_
        self.last_id: int | None = None
        self.problems: list[Problem] = []

    def note(self, kind: str, event: AuditEvent | None, detail: str) -> None:
        self.problems.append(
            Problem(
                self.chain,
                kind,
                None if event is None else event.seq,
                None if event is None else event.id,
                detail,
            )
        )

    def step(self, event: AuditEvent) -> None:
        if event.seq <= self.seq:
            self.note("duplicate", event, f"seq {event.seq} again, after seq {self.seq}")
        elif event.seq > self.seq + 1:
            missing = f"{self.seq + 1}" + (
                "" if event.seq == self.seq + 2 else f"..{event.seq - 1}"
            )
            self.note("missing", event, f"rows {missing} are missing (deleted)")
        elif event.prev_hash != self.hash:
            self.note(
                "broken_link",
                event,
                "prev_hash is not the previous row's hash (rows reordered or replaced)",
            )
        if self.last_id is not None and event.id < self.last_id:
            self.note("reordered", event, f"id {event.id} comes after id {self.last_id}")
        if row_hash(_as_row(event)) != event.hash:
            self.note("edited", event, "the row's content does not match its hash")
        self.seq, self.hash, self.last_id = event.seq, event.hash, event.id


def verify_chain(head: AuditChain) -> ChainReport:
    """Walk one chain from its checkpoint to its head."""
    report = ChainReport(
        head.chain,
        head.tenant_id,
        head_seq=head.head_seq,
        head_hash=head.head_hash,
        checkpoint_seq=head.checkpoint_seq,
    )
    walk = Walk(head.chain, head.checkpoint_seq, head.checkpoint_hash)
    for event in rows_of(head.chain, head.checkpoint_seq):
        report.rows += 1
        if report.first_seq is None:
            report.first_seq = event.seq
        walk.step(event)
    stale = AuditEvent.select().where(
        AuditEvent.chain == head.chain, AuditEvent.seq <= head.checkpoint_seq
    )
    if stale.exists():
        walk.note("duplicate", None, "rows at or before the checkpoint remain")
    if walk.seq < head.head_seq:
        walk.note(
            "truncated",
            None,
            f"the head is seq {head.head_seq} but the rows end at seq {walk.seq} "
            "(the newest rows were deleted)",
        )
    elif walk.seq > head.head_seq or walk.hash != head.head_hash:
        walk.note(
            "head_mismatch",
            None,
            f"the head row says seq {head.head_seq}, the rows end at seq {walk.seq} "
            "with another hash",
        )
    report.problems = walk.problems
    return report


def verify(chain: str | None = None) -> list[ChainReport]:
    """Every chain (or one), plus rows whose chain has no head row."""
    heads = AuditChain.select().order_by(AuditChain.chain)
    if chain is not None:
        heads = heads.where(AuditChain.chain == chain)
    reports = [verify_chain(head) for head in heads]
    known = {report.chain for report in reports}
    orphans = AuditEvent.select(AuditEvent.chain).distinct()
    if chain is not None:
        orphans = orphans.where(AuditEvent.chain == chain)
    for (name,) in orphans.tuples():
        if name not in known:
            reports.append(
                ChainReport(
                    name,
                    None,
                    problems=[Problem(name, "head_mismatch", None, None, "the head row is gone")],
                )
            )
    return reports
