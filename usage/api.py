"""REST endpoints of the usage log, the credits ledger and spending alerts."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFound
from core.rest import PageQuery, envelope, keyset_page, parse, parse_query
from projects import access
from projects.models import Membership
from usage import selectors, services
from usage.analytics import usage_summary
from usage.serializers import AlertIn, AlertOut, LogQuery, TransactionOut, UsageLogOut, UsageQuery

Role = Membership.Role


def _page(name: str, serializer):
    return inline_serializer(
        name=f"{name.title()}Page", fields={name: serializer, "nextCursor": serializers.CharField(allow_null=True)}
    )


class LogListView(APIView):
    @extend_schema(parameters=[LogQuery], responses={200: _page("logs", UsageLogOut(many=True))})
    def get(self, request):
        query = parse_query(LogQuery, request)
        project = access.project_for(request.user, query.pop("project_id"))
        cursor, limit = query.pop("cursor", None), query.pop("limit")
        logs = selectors.logs_matching(project=project, **query)
        rows, cursor = keyset_page(logs, cursor=cursor, limit=limit)
        return Response({"logs": UsageLogOut(rows, many=True).data, "nextCursor": cursor})


class UsageView(APIView):
    @extend_schema(
        parameters=[UsageQuery],
        responses={200: inline_serializer("Usage", {
            "summary": serializers.DictField(), "daily": serializers.ListField(child=serializers.DictField()),
            "byModel": serializers.ListField(child=serializers.DictField()),
        })},
    )
    def get(self, request):
        query = parse_query(UsageQuery, request)
        project = access.project_for(request.user, query["projectId"])
        return Response(usage_summary(project=project, days=query["days"]))


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
