"""Actions on credits and spending alerts: the only code that writes them."""

from decimal import Decimal, InvalidOperation

from django.db import transaction

from gateway import events
from gateway.errors import ValidationFailed
from projects.models import Organization, Project, User
from usage.models import CreditTransaction, SpendAlert


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
    threshold = _amount(threshold_usd, "thresholdUsd")
    if threshold <= 0:
        raise ValidationFailed.field("thresholdUsd", "must be more than zero USD")
    if period not in SpendAlert.Period.values:
        raise ValidationFailed.field("period", f"must be one of {', '.join(SpendAlert.Period.values)}")
    if project is not None and project.organization_id != organization.pk:
        raise ValidationFailed.field("projectId", "must be a project of this organization")
    return SpendAlert.objects.create(organization=organization, project=project, threshold_usd=threshold, period=period)


def alert_delete(*, alert: SpendAlert) -> None:
    alert.delete()
