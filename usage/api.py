"""REST endpoints of the usage log, the credits ledger and spending alerts."""

from django.utils import timezone
from django.utils.cache import patch_vary_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFound
from core.rest import PageQuery, envelope, keyset_page, parse, parse_query
from projects import access
from projects.models import Membership
from usage import export, selectors, services
from usage.analytics import usage_summary
from usage.serializers import AlertIn, AlertOut, LogQuery, TransactionOut, UsageLogDetailOut, UsageLogOut, UsageQuery

Role = Membership.Role


def _page(name: str, serializer):
    return inline_serializer(
        name=f"{name.title()}Page", fields={name: serializer, "nextCursor": serializers.CharField(allow_null=True)}
    )


class CsvRenderer(BaseRenderer):
    """Lets content negotiation pick CSV (`Accept: text/csv`, `format=csv`); the view answers
    with its own streamed response (usage/export.py), so nothing is rendered here."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        raise NotImplementedError("LogListView streams its CSV itself")


class FormatOrAccept(DefaultContentNegotiation):
    """DRF's negotiation, except that an unknown `format=` falls back to JSON instead of a bare
    404, so that LogQuery refuses it with a 400 naming `format`."""

    def filter_renderers(self, renderers, format):
        return [r for r in renderers if r.format == format] or renderers[:1]


def _scope(user, query: dict) -> dict:
    """{"project": …} or {"organization": …}, whichever the (validated) query names, taken
    out of it; another organization's id is a 404 (projects/access.py)."""
    project_id, organization_id = query.pop("project_id", None), query.pop("organization_id", None)
    if project_id:
        return {"project": access.project_for(user, project_id)}
    return {"organization": access.organization_for(user, organization_id)}


class LogListView(APIView):
    renderer_classes = [JSONRenderer, CsvRenderer]
    content_negotiation_class = FormatOrAccept

    @extend_schema(
        parameters=[LogQuery],
        responses={
            (200, "application/json"): _page("logs", UsageLogOut(many=True)),
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="every matching row, newest first: a header line of the log's JSON field names, then one line per log",
            ),
        },
    )
    def get(self, request):
        """The usage log of a project (or of every project of an organization), newest first:
        a page of JSON, or with `Accept: text/csv` (`format=csv`) every matching row as a
        streamed CSV attachment: a header of the log's JSON field names, then one line per log."""
        query = parse_query(LogQuery, request)
        scope = _scope(request.user, query)
        cursor, limit = query.pop("cursor", None), query.pop("limit")
        query.pop("format", None)  # negotiation read it: request.accepted_renderer
        logs = selectors.logs_matching(**scope, **query)
        if request.accepted_renderer.format == "csv":
            owner = next(iter(scope.values()))
            filename = f"usage-logs-{owner.pk}-{timezone.now():%Y%m%d-%H%M%S}.csv"
            return export.csv_response(request, logs, filename=filename)
        rows, cursor = keyset_page(logs, cursor=cursor, limit=limit)
        return Response({"logs": UsageLogOut(rows, many=True).data, "nextCursor": cursor})

    def finalize_response(self, request, response, *args, **kwargs):
        # An error asked for as CSV is still the API's JSON error (the body is never CSV).
        if isinstance(response, Response) and getattr(request, "accepted_renderer", None) is not None \
                and request.accepted_renderer.format == "csv":
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type
        response = super().finalize_response(request, response, *args, **kwargs)
        patch_vary_headers(response, ["Accept"])  # JSON or CSV, by the same URL
        return response


class LogDetailView(APIView):
    @extend_schema(responses={200: envelope("log", UsageLogDetailOut())})
    def get(self, request, log_id):
        """One log with `content`: what the request asked and what it got, when its project keeps
        request content (`logContent`), else null. The list (GET /logs) never carries content."""
        log = selectors.log_for(request.user, log_id)
        return Response({"log": UsageLogDetailOut(log, context={"content": selectors.log_content(log)}).data})


class UsageView(APIView):
    @extend_schema(
        parameters=[UsageQuery],
        responses={200: inline_serializer("Usage", {
            "summary": serializers.DictField(), "daily": serializers.ListField(child=serializers.DictField()),
            "byModel": serializers.ListField(child=serializers.DictField()),
            "groups": serializers.ListField(child=serializers.DictField(), required=False,
                                            help_text="with groupBy: [{key, requests, cost, promptTokens, completionTokens}]"),
        })},
    )
    def get(self, request):
        """Requests, cost (USD decimal strings), tokens, cache and error rates and latency of a
        project (or of every project of an organization) over `days`, by day and by model, and
        with `groupBy` per API key, model, project or provider (usage.analytics.usage_summary)."""
        query = parse_query(UsageQuery, request)
        scope = _scope(request.user, query)
        return Response(usage_summary(**scope, days=query["days"], group_by=query.get("group_by")))


class TransactionListView(APIView):
    @extend_schema(parameters=[PageQuery], responses={200: _page("transactions", TransactionOut(many=True))})
    def get(self, request, organization_id):
        organization = access.organization_for(request.user, organization_id)
        query = parse_query(PageQuery, request)
        rows, cursor = keyset_page(organization.transactions.all(), cursor=query.get("cursor"), limit=query["limit"])
        return Response({"transactions": TransactionOut(rows, many=True).data, "nextCursor": cursor})


class AlertListView(APIView):
    @extend_schema(responses={200: envelope("alerts", AlertOut(many=True))})
    def get(self, request, organization_id):
        organization = access.organization_for(request.user, organization_id)
        return Response({"alerts": AlertOut(organization.alerts.all(), many=True).data})

    @extend_schema(request=AlertIn, responses={201: envelope("alert", AlertOut())})
    def post(self, request, organization_id):
        organization = access.organization_for(request.user, organization_id, Role.ADMIN)
        data = parse(AlertIn, request)
        project_id, project = data.pop("project_id"), None
        if project_id:
            project = organization.projects.filter(pk=project_id).first()
            if project is None:
                raise NotFound("project not found")
        alert = services.alert_create(organization=organization, project=project, **data)
        return Response({"alert": AlertOut(alert).data}, status=201)


class AlertDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, organization_id, alert_id):
        organization = access.organization_for(request.user, organization_id, Role.ADMIN)
        alert = organization.alerts.filter(pk=alert_id).first()
        if alert is None:
            raise NotFound("alert not found")
        services.alert_delete(alert=alert)
        return Response(status=204)
