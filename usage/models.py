from decimal import Decimal

from django.conf import settings
from django.db import models

from core.ids import PrefixedIdField
from core.money import MONEY_DECIMAL_PLACES, MONEY_MAX_DIGITS
from projects.models import Organization, Project


def money_field(**kwargs) -> models.DecimalField:
    kwargs.setdefault("default", Decimal("0"))
    return models.DecimalField(max_digits=MONEY_MAX_DIGITS, decimal_places=MONEY_DECIMAL_PLACES, **kwargs)


class UsageLog(models.Model):
    """One row per gateway request, errors and cache hits included (inserted in bulk by a task)."""

    # The gateway picks the id when the request arrives: storing a record twice is a no-op.
    id = PrefixedIdField(prefix="log")
    request_id = models.CharField(max_length=64)  # x-request-id, echoed or generated
    # Indexed by the composite indexes below: every index costs each of thousands of
    # inserts a second, so there are no more than the reads need.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="usage_logs", db_index=False)
    # A plain id, not a key: deleting an API key keeps its history readable.
    api_key_id = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField()
    requested_model = models.CharField(max_length=200, blank=True)
    used_model = models.CharField(max_length=200, blank=True)
    used_provider = models.CharField(max_length=64, blank=True)
    used_mode = models.CharField(max_length=16, blank=True)  # api-keys | credits
    streamed = models.BooleanField(default=False)
    cached = models.BooleanField(default=False)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cost = money_field()  # input + output + fee
    input_cost = money_field()
    output_cost = money_field()
    fee = money_field()
    duration = models.PositiveIntegerField(default=0, help_text="milliseconds")
    time_to_first_token = models.PositiveIntegerField(null=True, blank=True, help_text="milliseconds")
    finish_reason = models.CharField(max_length=32, blank=True)
    status_code = models.PositiveSmallIntegerField(default=200)
    has_error = models.BooleanField(default=False)
    error_message = models.TextField(blank=True)
    canceled = models.BooleanField(default=False)
    # Response cache: "hit", "miss", "skip" (x-no-cache) or "" when the project does not
    # cache; a hit costs nothing and saved what the original answer cost.
    cache_status = models.CharField(max_length=8, blank=True)
    saved_cost = money_field()  # a cache hit's original cost, or what the provider's prompt cache saved
    cached_tokens = models.PositiveIntegerField(default=0)  # of prompt_tokens, read from the provider's prompt cache
    cache_write_tokens = models.PositiveIntegerField(default=0)  # of prompt_tokens, written to it
    reasoning_tokens = models.PositiveIntegerField(default=0)  # of completion_tokens
    priced = models.BooleanField(default=True)  # False: the price was unknown, logged at 0
    endpoint = models.CharField(max_length=32, default="chat.completions")
    user = models.CharField(max_length=256, blank=True)  # the request's `user`

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at", "-id"], name="log_project_time"),
            models.Index(fields=["project", "api_key_id", "-created_at"], name="log_project_key_time"),
            models.Index(fields=["request_id"], name="log_request"),  # support looks requests up
        ]

    def __str__(self):
        return f"{self.request_id} {self.used_model} {self.status_code}"


class LogContent(models.Model):
    """What a logged request asked and got, for projects that keep it (Project.log_content):
    the request's messages (or input) and the answer, as JSON text, pictures and files
    replaced by references (type, size, SHA-256) and capped in size (gateway/content.py).
    Deleted with its log and its project, and after the project's content_retention_days
    (usage.tasks.expire_log_content)."""

    log = models.OneToOneField(UsageLog, on_delete=models.CASCADE, primary_key=True, related_name="content")
    # Indexed by the (project, created_at) index below, which the retention task reads.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="log_contents", db_index=False)
    created_at = models.DateTimeField()  # the log's
    request = models.TextField(help_text="JSON: the request's messages, system prompt, tools or input")
    response = models.TextField(blank=True, help_text="JSON: the answer; empty when none came")
    truncated = models.BooleanField(default=False)  # something was cut to fit the size cap

    class Meta:
        indexes = [models.Index(fields=["project", "created_at"], name="content_project_time")]

    def __str__(self) -> str:
        return f"content of {self.log_id}"


class CreditTransaction(models.Model):
    """The credits ledger: every change of an organization's balance, newest last."""

    class Kind(models.TextChoices):
        TOPUP = "topup"
        USAGE = "usage"
        REFUND = "refund"
        ADJUSTMENT = "adjustment"

    id = PrefixedIdField(prefix="txn")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="transactions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = money_field(help_text="USD; positive raises the balance, negative lowers it")
    balance_after = money_field()
    note = models.CharField(max_length=255, blank=True)
    # A debit for a request whose log row could not be kept (its project was deleted) names
    # the log id, so that request is never charged twice.
    usage_log_id = models.CharField(max_length=40, null=True, blank=True, unique=True)
    project_id_ref = models.CharField("project id", max_length=40, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at", "-id"], name="txn_org_time")]

    def __str__(self):
        return f"{self.kind} {self.amount} ({self.id})"


class SpendAlert(models.Model):
    """Email and show a notice when spend in the period crosses the threshold."""

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    id = PrefixedIdField(prefix="alert")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="alerts")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, blank=True, related_name="alerts")
    threshold_usd = money_field()
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self):
        return f"{self.threshold_usd} USD per {self.period}"


# Duration histogram bucket upper bounds (ms); the last bucket is everything above.
DURATION_BUCKETS = [5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500,
                    10_000, 15_000, 20_000, 30_000, 60_000, 120_000]


class DailyUsage(models.Model):
    """Per project, day (UTC), key, model and provider: what analytics read instead of raw logs.
    Kept up to date in the same transaction that inserts the log rows."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="daily_usage")
    day = models.DateField()
    api_key_id = models.CharField(max_length=40, blank=True)
    model = models.CharField(max_length=200, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    cache_hits = models.PositiveIntegerField(default=0)
    cache_misses = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = money_field()
    saved_cost = money_field()
    duration_histogram = models.JSONField(default=list)  # counts per DURATION_BUCKETS (+1 overflow)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "day", "api_key_id", "model", "provider"], name="one_rollup_per_group")
        ]
        indexes = [models.Index(fields=["project", "day"], name="rollup_project_day")]

    def __str__(self) -> str:
        return f"{self.project_id} {self.day} {self.model or '(no model)'}: {self.requests} requests"


class AlertNotice(models.Model):
    """A spending alert that fired: once per alert and period, shown in the dashboard."""

    alert = models.ForeignKey(SpendAlert, on_delete=models.CASCADE, related_name="notices")
    period_start = models.DateField()
    spend = money_field()
    created_at = models.DateTimeField(auto_now_add=True)
    emailed = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alert", "period_start"], name="one_notice_per_period")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.alert_id} since {self.period_start}: {self.spend} USD"


class RejectedUsageRecord(models.Model):
    """A usage record ingestion could not store (malformed, or refused by the database), kept
    aside with the reason so that the rest of its batch commits: one bad record never blocks
    other tenants' bills. Listed in the admin, which can ingest it again after a fix."""

    payload = models.TextField(help_text="the record as it arrived (JSON; control characters escaped)")
    reason = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    retried_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "rejected usage record"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S}: {self.reason[:80]}"
