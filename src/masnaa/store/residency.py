"""Residency tables: datasets and artifacts, transfer grounds, job reads, the audit chain.

Writers:
- ``datasets`` (registered data and job outputs, one table: an artifact is a
  dataset with ``derived_from``), ``transfer_grounds`` and ``job_datasets``:
  the API (``service.residency``). ``datasets.version`` is bumped whenever a
  ground or a serving copy is added: the eligibility cache keys on it.
- ``audit_records`` and ``audit_head``: whoever makes the change being
  recorded, in the same transaction (``service.audit.append_audit``).
  Records are append-only: an ``UPDATE`` is refused by a trigger (migration
  0003); a removed row breaks the hash chain, and ``audit_head`` (the last
  ``seq`` and ``hash``, updated with every append) is the anchor that shows a
  cut-off tail.

Invariants: ``audit_records.seq`` is 0, 1, 2, ... without gaps and unique;
``at`` is stored as the chain's canonical UTC text so a record reads back to
exactly the bytes it was hashed from; ``details`` holds no floats.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from masnaa.store.base import Base


class DataKind:
    DATASET = "dataset"
    ARTIFACT = "artifact"


class DatasetRow(Base):
    """A registered dataset, or an artifact (a job's output, with lineage)."""

    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_tenant_id_name", "tenant_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16), default=DataKind.DATASET)
    home_site: Mapped[str] = mapped_column(String(64))
    jurisdictions: Mapped[list[str]] = mapped_column(JSON)
    classes: Mapped[list[str]] = mapped_column(JSON)
    """One class for a dataset; every input class for an artifact (the strictest governs)."""
    owner: Mapped[str] = mapped_column(String(128))
    serving_copy_countries: Mapped[list[str]] = mapped_column(JSON, default=list)
    version: Mapped[int] = mapped_column(Integer, default=1)
    derived_from: Mapped[list[str]] = mapped_column(JSON, default=list)
    job_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    """The job whose output this artifact is."""
    uri: Mapped[str] = mapped_column(Text, default="")
    """Where the bytes are, at the home site (the factory's storage serves them)."""
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(64))


class TransferGroundRow(Base):
    """A recorded legal basis for moving a dataset out of one of its jurisdictions."""

    __tablename__ = "transfer_grounds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    country: Mapped[str] = mapped_column(String(2))
    condition: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    reference: Mapped[str | None] = mapped_column(String(128), default=None)
    expires: Mapped[float | None] = mapped_column(Float, default=None)
    destinations: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    granted_at: Mapped[float] = mapped_column(Float)
    granted_by: Mapped[str] = mapped_column(String(64))


class JobDataset(Base):
    """A job reads a dataset (or an artifact)."""

    __tablename__ = "job_datasets"

    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_id: Mapped[str] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class AuditRow(Base):
    """One sealed audit record (``masnaa.audit.chain.AuditRecord``)."""

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_action_at", "action", "at"),)

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(32), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    site: Mapped[str | None] = mapped_column(String(64), default=None)
    data_ids: Mapped[list[str]] = mapped_column(JSON)
    rule_id: Mapped[str | None] = mapped_column(Text, default=None)
    legal_basis: Mapped[str | None] = mapped_column(Text, default=None)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The newest record's ``seq`` and ``hash`` (one row, ``id = 1``): the published anchor."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    hash: Mapped[str] = mapped_column(String(64))
