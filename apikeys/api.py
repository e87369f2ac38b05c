"""REST endpoints of API keys, IAM rules and provider keys: parse → service → render."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from apikeys import selectors, services
from apikeys.models import ApiKey, IamRule, ProviderKey
from apikeys.serializers import (
    ApiKeyCheckIn,
    ApiKeyCheckOut,
    ApiKeyCreatedOut,
    ApiKeyIn,
    ApiKeyOut,
    ApiKeyPatchIn,
    ApiKeyRollIn,
    IamRuleIn,
    IamRuleOut,
    IamRulePatchIn,
    ProviderKeyIn,
    ProviderKeyOut,
    ProviderKeyPatchIn,
)
from core.errors import NotFound
from core.rest import envelope, parse
from projects import access
from projects.models import Membership

Role = Membership.Role



def _api_key_for(user, key_id: str) -> ApiKey:
    return access.scoped_get(
        ApiKey.objects.select_related("project__organization"), user, key_id,
        org_path="project__organization", what="API key",
    )


def _provider_key_for(user, key_id: str, role: str = Role.DEVELOPER) -> ProviderKey:
    return access.scoped_get(
        ProviderKey.objects.select_related("organization"), user, key_id,
        org_path="organization", role=role, what="provider key",
    )


# --- API keys (developers manage them too) ------------------------------------------------


class ApiKeyListView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("projectId", str, description="only this project's keys")],
        responses={200: envelope("apiKeys", ApiKeyOut(many=True))},
    )
    def get(self, request):
        project_id = request.query_params.get("projectId")
        if project_id:
            keys = access.project_for(request.user, project_id).api_keys.all()
        else:
            keys = ApiKey.objects.filter(project__organization__memberships__user=request.user)
        return Response({"apiKeys": ApiKeyOut(keys.order_by("created_at"), many=True).data})

    @extend_schema(request=ApiKeyIn, responses={201: envelope("apiKey", ApiKeyCreatedOut())})
    def post(self, request):
        data = parse(ApiKeyIn, request)
        project = access.project_for(request.user, data.pop("project_id"))
        token, key = services.api_key_create(project=project, created_by=request.user, **data)
        return Response({"apiKey": ApiKeyCreatedOut((key, token)).data}, status=201)


class ApiKeyDetailView(APIView):
    @extend_schema(responses={200: envelope("apiKey", ApiKeyOut())})
    def get(self, request, key_id):
        return Response({"apiKey": ApiKeyOut(_api_key_for(request.user, key_id)).data})

    @extend_schema(request=ApiKeyPatchIn, responses={200: envelope("apiKey", ApiKeyOut())})
    def patch(self, request, key_id):
        key = _api_key_for(request.user, key_id)
        key = services.api_key_update(api_key=key, **parse(ApiKeyPatchIn, request))
        return Response({"apiKey": ApiKeyOut(key).data})

    @extend_schema(responses={204: None})
    def delete(self, request, key_id):
        services.api_key_delete(api_key=_api_key_for(request.user, key_id))
        return Response(status=204)


class ApiKeyRollView(APIView):
    @extend_schema(request=ApiKeyRollIn, responses={201: envelope("apiKey", ApiKeyCreatedOut())})
    def post(self, request, key_id):
        """A new token for the key (shown in this response only): same id, limits, usage and
        rules; the old token stops after `graceSeconds`."""
        key = _api_key_for(request.user, key_id)
        token, key = services.api_key_roll(api_key=key, **parse(ApiKeyRollIn, request))
        return Response({"apiKey": ApiKeyCreatedOut((key, token)).data}, status=201)


class ApiKeyCheckView(APIView):
    @extend_schema(request=ApiKeyCheckIn, responses={200: ApiKeyCheckOut()})
    def post(self, request, key_id):
        """What the gateway would do with this key and model (IAM rules, mode, provider keys,
        credits, limits), without calling any provider."""
        key = _api_key_for(request.user, key_id)
        verdict = selectors.api_key_check(api_key=key, **parse(ApiKeyCheckIn, request))
        return Response(ApiKeyCheckOut(verdict).data)


class IamRuleListView(APIView):
    @extend_schema(responses={200: envelope("iamRules", IamRuleOut(many=True))})
    def get(self, request, key_id):
        key = _api_key_for(request.user, key_id)
        return Response({"iamRules": IamRuleOut(key.iam_rules.all(), many=True).data})

    @extend_schema(request=IamRuleIn, responses={201: envelope("iamRule", IamRuleOut())})
    def post(self, request, key_id):
        key = _api_key_for(request.user, key_id)
        data = parse(IamRuleIn, request)
        rule = services.iam_rule_create(api_key=key, **data)
        return Response({"iamRule": IamRuleOut(rule).data}, status=201)


class IamRuleDetailView(APIView):
    def _rule(self, request, key_id, rule_id) -> IamRule:
        key = _api_key_for(request.user, key_id)
        rule = key.iam_rules.filter(pk=rule_id).first()
        if rule is None:
            raise NotFound("IAM rule not found")
        return rule

    @extend_schema(request=IamRulePatchIn, responses={200: envelope("iamRule", IamRuleOut())})
    def patch(self, request, key_id, rule_id):
        rule = self._rule(request, key_id, rule_id)
        rule = services.iam_rule_update(rule=rule, **parse(IamRulePatchIn, request))
        return Response({"iamRule": IamRuleOut(rule).data})

    @extend_schema(responses={204: None})
    def delete(self, request, key_id, rule_id):
        services.iam_rule_delete(rule=self._rule(request, key_id, rule_id))
        return Response(status=204)


# --- provider keys (admins and owners manage them) ---------------------------------------


class ProviderKeyListView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("organizationId", str, description="only this organization's keys")],
        responses={200: envelope("providerKeys", ProviderKeyOut(many=True))},
    )
    def get(self, request):
        organization_id = request.query_params.get("organizationId")
        if organization_id:
            keys = access.organization_for(request.user, organization_id).provider_keys.all()
        else:
            keys = ProviderKey.objects.filter(organization__memberships__user=request.user)
        return Response({"providerKeys": ProviderKeyOut(keys.order_by("priority", "created_at"), many=True).data})

    @extend_schema(request=ProviderKeyIn, responses={201: envelope("providerKey", ProviderKeyOut())})
    def post(self, request):
        data = parse(ProviderKeyIn, request)
        organization = access.organization_for(request.user, data.pop("organization_id"), Role.ADMIN)
        key = services.provider_key_create(organization=organization, **data)
        return Response({"providerKey": ProviderKeyOut(key).data}, status=201)


class ProviderKeyDetailView(APIView):
    @extend_schema(responses={200: envelope("providerKey", ProviderKeyOut())})
    def get(self, request, key_id):
        return Response({"providerKey": ProviderKeyOut(_provider_key_for(request.user, key_id)).data})

    @extend_schema(request=ProviderKeyPatchIn, responses={200: envelope("providerKey", ProviderKeyOut())})
    def patch(self, request, key_id):
        key = _provider_key_for(request.user, key_id, Role.ADMIN)
        key = services.provider_key_update(provider_key=key, **parse(ProviderKeyPatchIn, request))
        return Response({"providerKey": ProviderKeyOut(key).data})

    @extend_schema(responses={204: None})
    def delete(self, request, key_id):
        services.provider_key_delete(provider_key=_provider_key_for(request.user, key_id, Role.ADMIN))
        return Response(status=204)
