"""Dashboard pages of usage: a project's overview and logs, an organization's usage, credits
and spending alerts (an API key's usage panel is usage/templatetags/usage_panels.py). Reads
come from the rollups (usage/analytics.py) and the log; writes go through usage/services.py.
CSV exports are links to the REST API's (GET /api/v1/logs?format=csv), which the dashboard's
session signs in to."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from apikeys.models import ApiKey
from apikeys.selectors import payment_gap
from core.dashboard import dashboard_view, render_page, show_error
from core.errors import NotFound, ServiceError
from core.money import format_money
from core.rest import keyset_page
from projects.dashboard import organization_page, project_page
from projects.models import Membership
from usage import charts, selectors, services
from usage.analytics import provider_metrics, usage_summary
from usage.content import answer_messages, request_messages
from usage.forms import AlertForm, LogFilterForm
from usage.models import AlertNotice, DailyUsage, UsageLog

Role = Membership.Role
LOGS_PAGE_SIZE = 50
LOGS_API = "/api/v1/logs"  # usage/urls.py under config/urls.py's api/v1/

# logs_matching's names → the REST API's query parameters.
_API_NAMES = {"project_id": "projectId", "organization_id": "organizationId", "api_key_id": "apiKeyId", "model": "model",
              "provider": "provider", "cached": "cached", "has_error": "hasError", "since": "from", "until": "to"}


def logs_export_url(**filters: Any) -> str:
    """The CSV export of the logs that usage.selectors.logs_matching(**filters) reads, as a
    link to the REST API (`project_id` or `organization_id`, then its filters; None: any)."""
    query: dict[str, str] = {}
    for name, value in filters.items():
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, datetime):
            value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        query[_API_NAMES[name]] = str(value)
    return f"{LOGS_API}?{urlencode({**query, 'format': 'csv'})}"


def start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- project overview ----------------------------------------------------------------------------


def _percent(rate: float) -> str:
    return f"{rate * 100:.1f}%".replace(".0%", "%")


@dashboard_view
def project_overview(request, project_id):
    context = project_page(request, project_id)
    project = context["project"]
    days = 7 if request.GET.get("days") == "7" else 30
    usage = usage_summary(project=project, days=days)
    summary = usage["summary"]
    recent = timezone.now() - timedelta(days=7)
    notices = AlertNotice.objects.filter(alert__organization=project.organization, created_at__gte=recent).filter(
        Q(alert__project=project) | Q(alert__project__isnull=True)
    ).select_related("alert")[:3]
    context.update(
        tab="overview",
        days=days,
        summary=summary,
        tokens=summary["promptTokens"] + summary["completionTokens"],
        cache_hit_rate=_percent(summary["cacheHitRate"]),
        error_rate=_percent(summary["errorRate"]),
        daily=usage["daily"],
        by_model=usage["byModel"],
        has_usage=summary["requests"] > 0,
        key_count=project.api_keys.count(),
        notices=notices,
        payment_gap=payment_gap(project),
    )
    if context["has_usage"]:
        context["charts"] = {
            "requests": charts.requests_by_day(usage["daily"]),
            "cost": charts.cost_by_day(usage["daily"]),
            "models": charts.by_model(usage["byModel"]),
        }
    return render_page(request, "usage/overview.html", context, partial="overview")


# --- logs --------------------------------------------------------------------------------------------


@dashboard_view
def logs(request, project_id):
    context = project_page(request, project_id)
    project = context["project"]
    keys = list(ApiKey.objects.filter(project=project).order_by("created_at"))
    seen = DailyUsage.objects.filter(project=project)
    providers = sorted(p for p in seen.values_list("provider", flat=True).distinct() if p)
    models = sorted(m for m in seen.values_list("model", flat=True).distinct() if m)
    form = LogFilterForm(request.GET, keys=keys, providers=providers)
    rows, next_cursor, status = [], None, 200
    if form.is_valid():
        try:
            rows, next_cursor = keyset_page(
                selectors.logs_matching(project=project, **form.filters()),
                cursor=form.cleaned_data.get("cursor") or None, limit=LOGS_PAGE_SIZE,
            )
        except ServiceError as e:  # a cursor this page did not give out
            form.add_error(None, e.message)
            status = 400
    else:
        status = 400
    labels = {k.pk: k.description or k.masked_token for k in keys}
    for row in rows:
        row.key_label = labels.get(row.api_key_id, "deleted key")
    filters = {name: request.GET[name] for name in LogFilterForm.FILTERS if request.GET.get(name)}
    context.update(
        tab="logs", form=form, rows=rows, models=models, filtered=bool(filters),
        export_url=logs_export_url(project_id=project.pk, **form.filters()) if form.is_valid() else None,
        next_query=urlencode({**filters, "cursor": next_cursor}) if next_cursor else "",
    )
    partial = None
    if request.htmx:
        partial = "rows" if request.GET.get("cursor") else "logs"
    return render_page(request, "usage/logs.html", context, partial=partial, status=status)


def _log_of(project, log_id: str) -> UsageLog:
    log = UsageLog.objects.filter(project=project, pk=log_id).first()
    if log is None:
        raise NotFound("log not found")
    return log


@dashboard_view
def log_detail(request, project_id, log_id):
    context = project_page(request, project_id)
    log = _log_of(context["project"], log_id)
    key = ApiKey.objects.filter(project=context["project"], pk=log.api_key_id).first()
    context.update(tab="logs", log=log, key=key)
    kept = selectors.log_content(log)
    if kept is not None:
        context.update(content=kept, asked=request_messages(log.endpoint, kept["request"]),
                       answer=None if kept["response"] is None else answer_messages(kept["response"]))
    return render_page(request, "usage/log_detail.html", context)


@dashboard_view
def request_cost(request, project_id, request_id):
    """What one request cost once its log is stored (the playground asks until it is)."""
    context = project_page(request, project_id)
    log = UsageLog.objects.filter(project=context["project"], request_id=request_id).order_by("-created_at").first()
    if log is None:
        return HttpResponse(status=204)
    return render(request, "usage/log_detail.html#cost", {**context, "log": log})


# --- an organization's usage ---------------------------------------------------------------------

# The page's group selector, in its order: groupBy value → what it is called.
GROUP_NAMES = {"project": "Project", "apiKey": "API key", "model": "Model", "provider": "Provider"}  # = GROUP_BY's keys


def _group_rows(organization, group_by: str, groups: list[dict]) -> list[dict]:
    """usage_summary's groups with what people call each (`label`) and, for a project or a
    key that still exists, the page it has (`url`)."""
    keys = [g["key"] for g in groups if g["key"]]
    labels: dict[str, str] = {}
    urls: dict[str, str] = {}
    if group_by == "project":
        for pk, name in organization.projects.filter(pk__in=keys).values_list("pk", "name"):
            labels[pk], urls[pk] = name, reverse("project_overview", args=[pk])
    elif group_by == "apiKey":
        labels = dict.fromkeys(keys, "deleted key")
        for key in ApiKey.objects.filter(pk__in=keys, project__organization=organization).select_related("project"):
            labels[key.pk] = f"{key.description or key.masked_token} · {key.project.name}"
            urls[key.pk] = reverse("api_key_detail", args=[key.project_id, key.pk])
    return [{**g, "label": labels.get(g["key"]) or g["key"] or "(none)", "url": urls.get(g["key"])} for g in groups]


@dashboard_view
def organization_usage(request, organization_id):
    """Every project's usage together for 7 or 30 days: totals, by day, and grouped by
    project, API key, model or provider (`?group=`, the REST API's groupBy values)."""
    context = organization_page(request, organization_id)
    organization = context["organization"]
    days = 7 if request.GET.get("days") == "7" else 30
    group_by = request.GET.get("group") if request.GET.get("group") in GROUP_NAMES else "project"
    usage = usage_summary(organization=organization, days=days, group_by=group_by)
    summary = usage["summary"]
    groups = _group_rows(organization, group_by, usage["groups"])
    context.update(
        org_tab="usage",
        days=days,
        group_by=group_by,
        group_name=GROUP_NAMES[group_by],
        group_choices=GROUP_NAMES.items(),
        summary=summary,
        tokens=summary["promptTokens"] + summary["completionTokens"],
        cache_hit_rate=_percent(summary["cacheHitRate"]),
        error_rate=_percent(summary["errorRate"]),
        daily=usage["daily"],
        groups=groups,
        has_usage=summary["requests"] > 0,
        export_url=logs_export_url(organization_id=organization.pk, since=start_of(date.fromisoformat(usage["daily"][0]["date"]))),
    )
    if context["has_usage"]:
        context["charts"] = {
            "requests": charts.requests_by_day(usage["daily"]),
            "cost": charts.cost_by_day(usage["daily"]),
            "groups": charts.cost_by_group(groups, {g["key"]: g["label"] for g in groups}),
        }
    return render_page(request, "usage/organization_usage.html", context, partial="usage")


# --- an organization's metrics at a glance ------------------------------------------------------

METRIC_WINDOWS = (("hour", "Last hour", timedelta(hours=1)), ("day", "Last 24 hours", timedelta(days=1)))


@dashboard_view
def organization_metrics(request, organization_id):
    """Per provider, over the last hour and the last day: requests, error rate, p50/p95
    latency and time to first token (usage.analytics.provider_metrics, from the usage log)."""
    context = organization_page(request, organization_id)
    now = timezone.now()
    windows = []
    for key, title, length in METRIC_WINDOWS:
        providers = provider_metrics(organization=context["organization"], since=now - length)
        requests = sum(p["requests"] for p in providers)
        errors = sum(p["errors"] for p in providers)
        for p in providers:
            p["error_rate"] = _percent(p["errorRate"])
        windows.append({"key": key, "title": title, "providers": providers, "requests": requests,
                        "error_rate": _percent(errors / requests if requests else 0.0)})
    context.update(org_tab="metrics", windows=windows, now=now)
    return render_page(request, "usage/organization_metrics.html", context, partial="metrics")


# --- credits and spending alerts (organization) --------------------------------------------------


def _billing_context(context: dict, alert_form=None, **extra) -> dict:
    organization = context["organization"]
    projects = list(organization.projects.order_by("name"))
    return {
        **context,
        "org_tab": "billing",
        "credits": format_money(organization.credits),
        "alerts": organization.alerts.select_related("project").order_by("created_at"),
        "notices": AlertNotice.objects.filter(alert__organization=organization).select_related("alert__project")[:50],
        "alert_form": alert_form or AlertForm(projects=projects),
        **extra,
    }


@dashboard_view
def billing(request, organization_id):
    context = organization_page(request, organization_id)
    organization = context["organization"]
    cursor = request.GET.get("cursor") or None
    try:
        transactions, next_cursor = keyset_page(organization.transactions.all(), cursor=cursor, limit=LOGS_PAGE_SIZE)
    except ServiceError:
        transactions, next_cursor = keyset_page(organization.transactions.all(), cursor=None, limit=LOGS_PAGE_SIZE)
    context = _billing_context(context, transactions=transactions, next_cursor=next_cursor)
    partial = "ledger_rows" if request.htmx and cursor else None
    return render_page(request, "usage/billing.html", context, partial=partial)


@dashboard_view
@require_POST
def alert_add(request, organization_id):
    context = organization_page(request, organization_id, Role.ADMIN)
    organization = context["organization"]
    form = AlertForm(request.POST, projects=organization.projects.order_by("name"))
    if form.is_valid():
        project = organization.projects.filter(pk=form.cleaned_data["project"]).first() if form.cleaned_data["project"] else None
        try:
            services.alert_create(
                organization=organization, threshold_usd=form.cleaned_data["threshold_usd"],
                period=form.cleaned_data["period"], project=project,
            )
        except ServiceError as e:
            show_error(form, e)
        else:
            return render_page(request, "usage/billing.html", _billing_context(context, alerts_notice="Alert added."),
                               partial="alerts")
    return render_page(request, "usage/billing.html", _billing_context(context, alert_form=form), partial="alerts", status=400)


@dashboard_view
@require_POST
def alert_delete(request, organization_id, alert_id):
    context = organization_page(request, organization_id, Role.ADMIN)
    alert = context["organization"].alerts.filter(pk=alert_id).first()
    if alert is None:
        raise NotFound("alert not found")
    services.alert_delete(alert=alert)
    return render_page(request, "usage/billing.html", _billing_context(context, alerts_notice="Alert deleted."),
                       partial="alerts")
