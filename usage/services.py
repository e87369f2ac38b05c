"""Actions on credits and spending alerts: the only code that writes them."""

import dataclasses
import functools
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from django.conf import settings
from django.core.mail import send_mail
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from apikeys import services as key_services
from apikeys.models import ApiKey
from core import events, logs, metrics
from core.errors import ValidationFailed
from core.money import format_money
from core.text import each_isolated, one_line, storable
from gateway.record import FIELD_NAMES, NOT_STORED, UsageRecord
from projects.models import Organization, Project, User
from usage import rollups
from usage.analytics import spend_since
from usage.models import AlertNotice, CreditTransaction, DailyUsage, LogContent, RejectedUsageRecord, SpendAlert, UsageLog

log = logging.getLogger(__name__)


def _amount(value, field: str = "amount") -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValidationFailed.field(field, "must be a number of USD") from None
    if not amount.is_finite():
        raise ValidationFailed.field(field, "must be a number of USD")
    return amount


@transaction.atomic
def credits_add(
    *,
    organization: Organization,
    amount,
    note: str = "",
    kind: str = CreditTransaction.Kind.TOPUP,
    created_by: User | None = None,
) -> CreditTransaction:
    """Moves the balance by `amount` (negative for a correction) and records why."""
    amount = _amount(amount)
    if amount == 0:
        raise ValidationFailed.field("amount", "must not be zero")
    if kind == CreditTransaction.Kind.TOPUP and amount < 0:
        raise ValidationFailed.field("amount", "a top-up must be positive; use an adjustment to lower the balance")
    locked = Organization.objects.select_for_update().get(pk=organization.pk)
    locked.credits += amount
    locked.save(update_fields=["credits", "updated_at"])
    organization.credits = locked.credits
    events.config_changed(organization.pk)
    return CreditTransaction.objects.create(
        organization=locked, kind=kind, amount=amount, balance_after=locked.credits,
        note=(note or "")[:255], created_by=created_by,
    )


def alert_create(
    *, organization: Organization, threshold_usd, period: str = SpendAlert.Period.MONTH, project: Project | None = None
) -> SpendAlert:
    threshold = _amount(threshold_usd, "threshold_usd")
    if threshold <= 0:
        raise ValidationFailed.field("threshold_usd", "must be more than zero USD")
    if period not in SpendAlert.Period.values:
        raise ValidationFailed.field("period", f"must be one of {', '.join(SpendAlert.Period.values)}")
    if project is not None and project.organization_id != organization.pk:
        raise ValidationFailed.field("project", "must be a project of this organization")
    return SpendAlert.objects.create(organization=organization, project=project, threshold_usd=threshold, period=period)


def alert_delete(*, alert: SpendAlert) -> None:
    alert.delete()


# --- usage ingestion (the Celery task usage.tasks.ingest_usage calls this) -----------------

_LOG_FIELDS = [name for name in FIELD_NAMES if name not in NOT_STORED and name != "created_at"]
_MONEY_FIELDS = {"cost", "input_cost", "output_cost", "fee", "saved_cost"}


def _insert_rows(records: list[UsageRecord]) -> None:
    """The records' log rows, through the driver: COPY on PostgreSQL (about half the server's
    CPU of multi-row INSERTs), one executemany elsewhere. At thousands of rows a second,
    building model instances for bulk_create costs more than the database does. The caller
    has checked the primary keys: none is stored yet."""
    if not records:
        return
    columns = [*_LOG_FIELDS, "created_at"]
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)  # `user` is a reserved word
    table = connection.ops.quote_name(UsageLog._meta.db_table)
    rows = [[*(Decimal(getattr(r, f)) if f in _MONEY_FIELDS else getattr(r, f) for f in _LOG_FIELDS), r.created]
            for r in records]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Django wraps execute()'s driver errors in its own classes, not copy()'s.
            with connection.wrap_database_errors, cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {table} ({quoted}) VALUES ({', '.join(['%s'] * len(columns))})", rows)


def _content_row(r: UsageRecord) -> LogContent | None:
    content = r.content
    if not isinstance(content, dict):
        return None
    response = content.get("response")
    return LogContent(
        log_id=r.id, project_id=r.project_id, created_at=r.created,
        request=orjson.dumps(content.get("request")).decode(),
        response="" if response is None else orjson.dumps(response).decode(),
        truncated=bool(content.get("truncated")),
    )


def _insert_content(records: list[UsageRecord]) -> None:
    """The request content of the records that carry some (projects with log_content), in
    savepoints: content that cannot be stored is dropped, never the log row or the bill."""
    rows = [row for r in records if r.content is not None and (row := _content_row(r)) is not None]
    if not rows:
        return
    try:
        with transaction.atomic():
            LogContent.objects.bulk_create(rows, ignore_conflicts=True)
        return
    except (DataError, IntegrityError, ValueError, TypeError):
        pass
    for row in rows:
        try:
            with transaction.atomic():
                LogContent.objects.bulk_create([row], ignore_conflicts=True)
        except (DataError, IntegrityError, ValueError, TypeError) as e:
            log.warning("request content of %s not kept: %s", row.log_id, e)


def _debit_credits(organization_id: str, amount: Decimal, count: int, usage_log_id: str | None = None) -> None:
    organization = Organization.objects.select_for_update().filter(pk=organization_id).first()
    if organization is None:
        return  # deleted since: nothing left to bill
    organization.credits -= amount
    organization.credits_spent += amount
    organization.save(update_fields=["credits", "credits_spent", "updated_at"])
    CreditTransaction.objects.create(
        organization=organization, kind=CreditTransaction.Kind.USAGE, amount=-amount,
        balance_after=organization.credits, usage_log_id=usage_log_id,
        note=f"usage of {count} request{'s' if count != 1 else ''}",
    )


def _lock_projects(project_ids: set[str]) -> set[str]:
    """The projects that still exist, share-locked in a fixed order until the batch commits.

    A project deletion locks its project row first (FOR UPDATE); taking the same row first
    here means one of the two waits for the other, instead of each holding a lock the other
    needs (the rows' foreign keys to the project's API keys) and deadlocking. FOR SHARE lets
    concurrent batches of the same project proceed together. SQLite serializes writers, so
    nothing is needed there."""
    ids = sorted(project_ids)
    if connection.vendor != "postgresql":
        return set(Project.objects.filter(pk__in=ids).values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {Project._meta.db_table} WHERE id = ANY(%s) ORDER BY id FOR SHARE", [ids]
        )
        return {row[0] for row in cursor.fetchall()}


@transaction.atomic
def usage_ingest(*, records: list[UsageRecord]) -> int:
    """Stores usage records once each, however often a batch is delivered, and moves key
    usage and organization credits by exactly the amounts of the rows stored.

    Idempotent: a record whose log id is already stored is skipped. A record of a project
    deleted meanwhile leaves no row, but its credits are still debited, once, by a ledger
    entry carrying its log id."""
    by_id = {r.id: r for r in records}
    stored = set(UsageLog.objects.filter(id__in=list(by_id)).values_list("id", flat=True))
    billed = set(CreditTransaction.objects.filter(usage_log_id__in=list(by_id)).values_list("usage_log_id", flat=True))
    fresh = [r for rid, r in by_id.items() if rid not in stored and rid not in billed]
    if not fresh:
        return 0
    live = _lock_projects({r.project_id for r in fresh})
    kept = [r for r in fresh if r.project_id in live]
    _insert_rows(kept)
    _insert_content(kept)
    transaction.on_commit(functools.partial(_count_stored, len(kept), len(fresh) - len(kept)))
    transaction.on_commit(lambda: _log_stored(kept, fresh))
    rollups.add_records(kept)

    per_key: dict[str, Decimal] = defaultdict(Decimal)
    per_org: dict[str, tuple[Decimal, int]] = defaultdict(lambda: (Decimal(0), 0))
    for r in fresh:
        cost = Decimal(r.cost)
        per_key[r.api_key_id] += cost
        if r.paid_with_credits and cost:
            if r.project_id in live:
                total, count = per_org[r.organization_id]
                per_org[r.organization_id] = (total + cost, count + 1)
            else:
                _debit_credits(r.organization_id, cost, 1, usage_log_id=r.id)
    for key_id in sorted(per_key):  # a fixed order: concurrent batches cannot deadlock
        if per_key[key_id]:
            ApiKey.objects.filter(pk=key_id).update(usage=F("usage") + per_key[key_id])
    for org_id in sorted(per_org):
        _debit_credits(org_id, *per_org[org_id])
    key_services.api_key_limits_enforce(key_ids=list(per_key))
    return len(fresh)


def _count_stored(written: int, of_deleted_projects: int) -> None:
    metrics.USAGE_WRITTEN.inc(written)
    if of_deleted_projects:
        metrics.USAGE_DROPPED.labels("project_deleted").inc(of_deleted_projects)


def _ids_of(record: UsageRecord | dict[str, Any]) -> dict[str, str]:
    """The ids a log line about this record carries (core/logs.py)."""
    if isinstance(record, dict):
        return {name: str(record.get(name) or "") for name in logs.IDS}
    return {name: str(getattr(record, name, "") or "") for name in logs.IDS}


def _log_stored(kept: list[UsageRecord], fresh: list[UsageRecord]) -> None:
    """Once committed: a DEBUG line per record, with its ids (to follow one request from the
    gateway's lines to here), and an INFO line per batch."""
    if log.isEnabledFor(logging.DEBUG):
        live = {r.id for r in kept}
        for r in fresh:
            with logs.bound(**_ids_of(r)):
                if r.id in live:
                    log.debug("usage record %s stored", r.id, extra={"log_id": r.id})
                else:
                    log.debug("usage record %s billed, not stored: its project was deleted", r.id, extra={"log_id": r.id})
    deleted = len(fresh) - len(kept)
    log.info("%d usage records stored%s", len(kept), f", {deleted} of deleted projects billed only" if deleted else "")


# Errors of one record's content (a bad value, a constraint): the record is set aside and the
# rest of its batch stored. Anything else (the database away) fails the batch, to be retried.
_RECORD_ERRORS = (DataError, IntegrityError, InvalidOperation, ValueError, TypeError, KeyError)


def _escaped(payload: bytes | str | dict[str, Any]) -> str:
    """A payload as text any column can hold: JSON with control characters escaped."""
    if isinstance(payload, dict):
        return orjson.dumps(payload, default=str).decode()
    text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
    return storable(text.replace("\x00", "\\u0000"))


def _set_aside(payload: bytes | str | dict[str, Any], reason: str) -> None:
    log.error("usage record set aside: %s", reason)
    RejectedUsageRecord.objects.create(payload=_escaped(payload), reason=storable(one_line(reason), 500))
    metrics.USAGE_SET_ASIDE.inc()


def usage_ingest_payloads(payloads: Sequence[bytes | str | dict[str, Any]]) -> int:
    """Stores usage records as they arrive from the gateway (each a JSON object, as bytes,
    text or already decoded). A record that cannot be read or stored is set aside
    (RejectedUsageRecord, with the reason) and the others are stored. Returns how many new
    rows were stored. Raises only what is worth retrying the whole batch for (the database
    being away)."""
    records: list[UsageRecord] = []
    for payload in payloads:
        data: Any = None
        try:
            data = payload if isinstance(payload, dict) else orjson.loads(payload)
            records.append(UsageRecord.from_dict(data))
        except (orjson.JSONDecodeError, TypeError, ValueError) as e:
            with logs.bound(**(_ids_of(data) if isinstance(data, dict) else {})):
                _set_aside(payload, f"unreadable record: {e}")
    try:
        return usage_ingest(records=records)
    except _RECORD_ERRORS:
        pass  # one record at a time, to find the bad ones
    stored = 0
    for record in records:
        with logs.bound(**_ids_of(record)):
            try:
                stored += usage_ingest(records=[record])
            except _RECORD_ERRORS as e:
                _set_aside(dataclasses.asdict(record), f"{type(e).__name__}: {e}")
    return stored


def rejected_usage_retry(*, rejected: RejectedUsageRecord) -> bool:
    """Ingests a set-aside record again, after its cause was fixed. True when it is stored
    (or already was) and no longer set aside; False, and marked as retried, when it still
    cannot be."""
    try:
        usage_ingest(records=[UsageRecord.from_dict(orjson.loads(rejected.payload))])
    except (orjson.JSONDecodeError, *_RECORD_ERRORS):
        RejectedUsageRecord.objects.filter(pk=rejected.pk).update(retried_at=timezone.now())
        return False
    rejected.delete()
    return True


# --- request content retention (the Celery task usage.tasks.expire_log_content calls this) ----

CONTENT_DELETE_BATCH = 1000


def log_content_expire(*, now=None) -> int:
    """Deletes the request content each project has kept longer than its
    content_retention_days (whether it keeps content now or not), a batch per statement so
    that no delete holds many rows. Returns how many were deleted."""
    now = now or timezone.now()
    deleted = 0
    for project_id, days in Project.objects.values_list("pk", "content_retention_days").order_by():
        old = LogContent.objects.filter(project_id=project_id, created_at__lt=now - timedelta(days=days))
        while ids := list(old.values_list("pk", flat=True)[:CONTENT_DELETE_BATCH]):
            deleted += LogContent.objects.filter(pk__in=ids).delete()[0]
    return deleted


# --- reconciliation and alerts (Celery tasks call these) ------------------------------------


def usage_reconcile() -> dict:
    """Brings key usage and organization credits back to what the records say, disables keys
    at their limit and re-enables keys whose limit was raised. Safe to run any time."""
    fixed = {"keys": _reconcile_keys(), "organizations": _reconcile_organizations()}
    fixed["enabled"] = key_services.api_key_limits_enforce()["enabled"]
    return fixed


@transaction.atomic
def _reconcile_keys() -> int:
    """Key usage = the sum of its rollups. The keys are locked first: an ingest that is
    mid-way either finished before (and is counted on both sides) or waits (on neither)."""
    keys = list(ApiKey.objects.select_for_update().only("id", "usage"))
    spent = dict(DailyUsage.objects.values("api_key_id").annotate(total=Sum("cost")).values_list("api_key_id", "total"))
    fixed = 0
    for key in keys:
        expected = spent.get(key.id) or Decimal(0)
        if key.usage != expected:
            ApiKey.objects.filter(pk=key.pk).update(usage=expected)
            fixed += 1
    return fixed


@transaction.atomic
def _reconcile_organizations() -> int:
    """Balance = the sum of the ledger; credits spent = its usage debits (same locking)."""
    organizations = list(Organization.objects.select_for_update().only("id", "credits", "credits_spent"))
    ledger = CreditTransaction.objects.values("organization_id")
    balances = dict(ledger.annotate(total=Sum("amount")).values_list("organization_id", "total"))
    debits = dict(ledger.filter(kind=CreditTransaction.Kind.USAGE).annotate(total=Sum("amount")).values_list("organization_id", "total"))
    fixed = 0
    for organization in organizations:
        balance = balances.get(organization.id) or Decimal(0)
        spent_total = -(debits.get(organization.id) or Decimal(0))
        if (organization.credits, organization.credits_spent) != (balance, spent_total):
            Organization.objects.filter(pk=organization.pk).update(credits=balance, credits_spent=spent_total)
            events.config_changed(organization.pk)
            fixed += 1
    return fixed


def _period_start(period: str, today):
    return today.replace(day=1) if period == SpendAlert.Period.MONTH else today


def alerts_check(today=None) -> int:
    """Fires each alert whose period's spend crossed its threshold: one notice and one email
    per alert and period, however often this runs (an email that failed is sent next run).
    One alert that fails (its organization's data, its mail) never stops the others."""
    today = today or timezone.now().date()
    each_isolated(SpendAlert.objects.all(), lambda alert: _fire_if_crossed(alert, today), what="spending alert", log=log)
    notices = list(AlertNotice.objects.filter(emailed=False).select_related("alert__organization", "alert__project"))
    failed = each_isolated(notices, _email_notice, what="spending alert email", log=log)
    return len(notices) - failed


def _fire_if_crossed(alert: SpendAlert, today) -> None:
    start = _period_start(alert.period, today)
    if AlertNotice.objects.filter(alert=alert, period_start=start).exists():
        return
    spend = spend_since(organization_id=alert.organization_id, project_id=alert.project_id, since=start)
    if spend >= alert.threshold_usd:
        try:
            with transaction.atomic():
                AlertNotice.objects.create(alert=alert, period_start=start, spend=spend)
        except IntegrityError:
            pass  # another run fired it


def _email_notice(notice) -> None:
    alert = notice.alert
    scope = f"project {alert.project.name}" if alert.project else f"organization {alert.organization.name}"
    recipients = list(alert.organization.memberships.filter(role__in=["owner", "admin"]).values_list("user__email", flat=True))
    send_mail(  # names are the tenants' own text: one line, or the mail header is refused
        subject=one_line(f"Spending alert: {scope} passed {format_money(alert.threshold_usd)} USD this {alert.period}"),
        message=f"Spend this {alert.period} (since {notice.period_start}): {format_money(notice.spend)} USD.",
        from_email=settings.DEFAULT_FROM_EMAIL, recipient_list=recipients,
    )
    AlertNotice.objects.filter(pk=notice.pk).update(emailed=True)
