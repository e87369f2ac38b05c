"""Dashboard pages of API keys (with their IAM rules), provider keys and the playground:
parse → the same services as the REST API (apikeys/services.py) → render."""


from django.http import JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from apikeys import selectors, services
from apikeys.forms import ApiKeyForm, ApiKeyRollForm, IamCheckForm, IamRuleForm, ProviderKeyEditForm, ProviderKeyForm
from apikeys.models import ApiKey, IamRule, ProviderKey
from core.dashboard import dashboard_view, redirect_page, render_page, show_error
from core.errors import NotFound, ServiceError
from core.money import format_money
from gateway import catalog, iam, routing
from gateway.errors import GatewayError
from gateway.providers import PROVIDERS
from projects.dashboard import organization_page, project_page
from projects.models import Membership, Project

Role = Membership.Role

KEYS_PAGE = "apikeys/keys.html"
KEY_PAGE = "apikeys/key_detail.html"
PROVIDER_KEYS_PAGE = "apikeys/provider_keys.html"


# --- API keys --------------------------------------------------------------------------------------


def _with_usage_share(key: ApiKey) -> ApiKey:
    """How much of its limit a key has used, for the bar (None: no limit)."""
    if key.usage_limit:
        key.usage_percent = min(100, int(key.usage * 100 / key.usage_limit))
    else:
        key.usage_percent = 100 if key.usage_limit == 0 else None
    return key


def _keys_context(context: dict, form=None, **extra) -> dict:
    project = context["project"]
    keys = [_with_usage_share(k) for k in project.api_keys.order_by("created_at")]
    return {**context, "tab": "keys", "keys": keys, "form": form or ApiKeyForm(), **extra}


@dashboard_view
def api_keys(request, project_id):
    context = project_page(request, project_id)
    if request.method != "POST":
        return render_page(request, KEYS_PAGE, _keys_context(context))
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            token, key = services.api_key_create(project=context["project"], created_by=request.user, **form.cleaned_data)
        except ServiceError as e:
            show_error(form, e)
        else:
            response = render_page(request, KEYS_PAGE, _keys_context(context, token=token, api_key=key), partial="keys")
            response["Cache-Control"] = "no-store"
            return response
    return render_page(request, KEYS_PAGE, _keys_context(context, form=form, form_open=True), partial="keys", status=400)


def _key_of(project: Project, key_id: str) -> ApiKey:
    key = project.api_keys.filter(pk=key_id).first()
    if key is None:
        raise NotFound("API key not found")
    return key


def _back_to(request, context, key, fallback_partial="keys", **extra):
    """Actions come from the list or from a key's page; answer with the one they came from."""
    if request.POST.get("from") == "detail":
        return render_page(request, KEY_PAGE, _key_context(context, key, **extra), partial="edit")
    return render_page(request, KEYS_PAGE, _keys_context(context, **extra), partial=fallback_partial)


@dashboard_view
@require_POST
def api_key_status(request, project_id, key_id):
    context = project_page(request, project_id)
    key = _key_of(context["project"], key_id)
    status = ApiKey.Status.INACTIVE if key.status == ApiKey.Status.ACTIVE else ApiKey.Status.ACTIVE
    try:
        key = services.api_key_update(api_key=key, status=status)
    except ServiceError as e:
        return _back_to(request, context, key, error=e.message)
    word = "enabled" if key.status == ApiKey.Status.ACTIVE else "disabled"
    return _back_to(request, context, key, notice=f"Key {key.masked_token} {word}.")


@dashboard_view
@require_POST
def api_key_delete(request, project_id, key_id):
    context = project_page(request, project_id)
    key = _key_of(context["project"], key_id)
    services.api_key_delete(api_key=key)
    if request.POST.get("from") == "detail":
        return redirect_page(request, reverse("api_keys", args=[project_id]))
    return render_page(request, KEYS_PAGE, _keys_context(context, notice=f"Key {key.masked_token} deleted."),
                       partial="keys")


# --- one key: limit, IAM rules and the allow check ------------------------------------------------


def _custom_names(organization) -> list[str]:
    return list(
        ProviderKey.objects.filter(organization=organization, provider="custom").order_by("name").values_list("name", flat=True)
    )


def rule_text(rule: IamRule) -> str:
    value = rule.rule_value or {}
    if "models" in value:
        return ", ".join(value["models"])
    if "providers" in value:
        return ", ".join(value["providers"])
    parts = []
    if value.get("pricingType"):
        parts.append(f"{value['pricingType']} models")
    if "maxInputPrice" in value:
        parts.append(f"input over ${value['maxInputPrice']}/1M" if rule.rule_type.startswith("deny") else f"input ≤ ${value['maxInputPrice']}/1M")
    if "maxOutputPrice" in value:
        parts.append(f"output over ${value['maxOutputPrice']}/1M" if rule.rule_type.startswith("deny") else f"output ≤ ${value['maxOutputPrice']}/1M")
    return ", ".join(parts) or "—"


def _key_context(context: dict, key: ApiKey, *, edit_form=None, rule_form=None, check=None, **extra) -> dict:
    rules = list(key.iam_rules.order_by("created_at"))
    for rule in rules:
        rule.label = iam.RULE_LABELS.get(rule.rule_type, rule.rule_type)
        rule.text = rule_text(rule)
    custom = _custom_names(context["organization"])
    return {
        **context,
        "tab": "keys",
        "api_key": _with_usage_share(key),
        "rules": rules,
        "edit_form": edit_form or ApiKeyForm(initial={
            "description": key.description, "usage_limit": format_money(key.usage_limit),
            "period_usage_limit": format_money(key.period_usage_limit), "period_usage_duration": key.period_usage_duration or "",
            "expires_at": key.expires_at, "rate_limit_rpm": key.rate_limit_rpm, "rate_limit_tpm": key.rate_limit_tpm,
        }),
        "period": selectors.api_key_period(key),
        "now": timezone.now(),
        "expired": key.expires_at is not None and key.expires_at <= timezone.now(),
        "roll_form": ApiKeyRollForm(),
        "rule_form": rule_form or IamRuleForm(custom_names=custom),
        "check_form": IamCheckForm(initial={"model": check.model} if check else None),
        "check": check,
        "model_ids": _model_ids(custom),
        **extra,
    }


def _model_ids(custom_names=()) -> list[str]:
    return [*catalog.model_ids(), *(f"{name}/" for name in custom_names)]


@dashboard_view
def api_key_detail(request, project_id, key_id):
    context = project_page(request, project_id)
    key = _key_of(context["project"], key_id)
    if request.method != "POST":
        return render_page(request, KEY_PAGE, _key_context(context, key))
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            key = services.api_key_update(api_key=key, **form.cleaned_data)
        except ServiceError as e:
            show_error(form, e)
        else:
            return render_page(request, KEY_PAGE, _key_context(context, key, notice="Key saved."), partial="edit")
    return render_page(request, KEY_PAGE, _key_context(context, key, edit_form=form), partial="edit", status=400)


@dashboard_view
@require_POST
def api_key_roll(request, project_id, key_id):
    """A new token for the key, shown once; the old one keeps working for the grace chosen."""
    context = project_page(request, project_id)
    key = _key_of(context["project"], key_id)
    form = ApiKeyRollForm(request.POST)
    if not form.is_valid():
        return render_page(request, KEY_PAGE, _key_context(context, key, error="Choose how long the old token keeps working."),
                           partial="edit", status=400)
    token, key = services.api_key_roll(api_key=key, grace_seconds=form.cleaned_data["grace_seconds"])
    response = render_page(request, KEY_PAGE, _key_context(context, key, token=token), partial="edit")
    response["Cache-Control"] = "no-store"
    return response


@dashboard_view
@require_POST
def iam_rule_add(request, project_id, key_id):
    context = project_page(request, project_id)
    key = _key_of(context["project"], key_id)
    form = IamRuleForm(request.POST, custom_names=_custom_names(context["organization"]))
    if form.is_valid():
        try:
            services.iam_rule_create(api_key=key, rule_type=form.cleaned_data["rule_type"], rule_value=form.rule_value())
        except ServiceError as e:
            show_error(form, e)
        else:
            return render_page(request, KEY_PAGE, _key_context(context, key, rules_notice="Rule added."), partial="rules")
    return render_page(request, KEY_PAGE, _key_context(context, key, rule_form=form), partial="rules", status=400)


def _rule_of(key: ApiKey, rule_id: str) -> IamRule:
    rule = key.iam_rules.filter(pk=rule_id).first()
    if rule is None:
        raise NotFound("IAM rule not found")
    return rule


@dashboard_view
@require_POST
def iam_rule_status(request, project_id, key_id, rule_id):
    context = project_page(request, project_id)
    key = _key_of(context["project"], key_id)
    rule = _rule_of(key, rule_id)
    active = IamRule.Status.ACTIVE
    services.iam_rule_update(rule=rule, status=IamRule.Status.INACTIVE if rule.status == active else active)
    return render_page(request, KEY_PAGE, _key_context(context, key), partial="rules")


@dashboard_view
@require_POST
def iam_rule_delete(request, project_id, key_id, rule_id):
    context = project_page(request, project_id)
    key = _key_of(context["project"], key_id)
    services.iam_rule_delete(rule=_rule_of(key, rule_id))
    return render_page(request, KEY_PAGE, _key_context(context, key, rules_notice="Rule deleted."), partial="rules")


@dashboard_view
def iam_check(request, project_id, key_id):
    context = project_page(request, project_id)
    key = _key_of(context["project"], key_id)
    form = IamCheckForm(request.GET)
    check = selectors.api_key_check(api_key=key, model=form.cleaned_data["model"].strip()) if form.is_valid() else None
    return render_page(request, KEY_PAGE, _key_context(context, key, check=check), partial="check")


# --- provider keys (organization) ----------------------------------------------------------------


def _provider_keys_context(context: dict, form=None, **extra) -> dict:
    """The organization's keys by provider, each provider's in the order the gateway tries them."""
    keys = list(context["organization"].provider_keys.order_by("provider", "priority", "created_at"))
    for key in keys:
        key.provider_name = PROVIDERS[key.provider].name if key.provider in PROVIDERS else key.provider
    return {
        **context, "org_tab": "provider_keys", "provider_keys": keys,
        "invalid_keys": [k for k in keys if k.status == ProviderKey.Status.INVALID],
        "form": form or ProviderKeyForm(initial={"validate": True, "priority": 0}), **extra,
    }


@dashboard_view
def provider_keys(request, organization_id):
    if request.method != "POST":
        context = organization_page(request, organization_id)
        return render_page(request, PROVIDER_KEYS_PAGE, _provider_keys_context(context))
    context = organization_page(request, organization_id, Role.ADMIN)
    form = ProviderKeyForm(request.POST)
    if form.is_valid():
        try:
            key = services.provider_key_create(organization=context["organization"], **form.cleaned_data)
        except ServiceError as e:
            show_error(form, e)
        else:
            label = key.name or PROVIDERS[key.provider].name
            return render_page(request, PROVIDER_KEYS_PAGE, _provider_keys_context(context, notice=f"{label} key added."),
                               partial="provider_keys")
    return render_page(request, PROVIDER_KEYS_PAGE, _provider_keys_context(context, form=form), partial="provider_keys",
                       status=400)


def _provider_key_of(organization, key_id: str) -> ProviderKey:
    key = organization.provider_keys.filter(pk=key_id).first()
    if key is None:
        raise NotFound("provider key not found")
    return key


@dashboard_view
@require_POST
def provider_key_status(request, organization_id, key_id):
    context = organization_page(request, organization_id, Role.ADMIN)
    key = _provider_key_of(context["organization"], key_id)
    active = ProviderKey.Status.ACTIVE
    key = services.provider_key_update(provider_key=key, status=ProviderKey.Status.INACTIVE if key.status == active else active)
    word = "enabled" if key.status == active else "disabled"
    return render_page(request, PROVIDER_KEYS_PAGE, _provider_keys_context(context, notice=f"Key {key.masked_token} {word}."),
                       partial="provider_keys")


@dashboard_view
@require_POST
def provider_key_edit(request, organization_id, key_id):
    """A key's name and priority, and a new token when one is given, from its row."""
    context = organization_page(request, organization_id, Role.ADMIN)
    key = _provider_key_of(context["organization"], key_id)
    form = ProviderKeyEditForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in form.errors.items())
        return render_page(request, PROVIDER_KEYS_PAGE, _provider_keys_context(context, error=errors),
                           partial="provider_keys", status=400)
    try:
        key = services.provider_key_update(provider_key=key, **form.changes())
    except ServiceError as e:
        return render_page(request, PROVIDER_KEYS_PAGE, _provider_keys_context(context, error=e.message),
                           partial="provider_keys", status=e.status)
    return render_page(request, PROVIDER_KEYS_PAGE, _provider_keys_context(context, notice=f"Key {key.masked_token} saved."),
                       partial="provider_keys")


@dashboard_view
@require_POST
def provider_key_delete(request, organization_id, key_id):
    context = organization_page(request, organization_id, Role.ADMIN)
    key = _provider_key_of(context["organization"], key_id)
    services.provider_key_delete(provider_key=key)
    return render_page(request, PROVIDER_KEYS_PAGE, _provider_keys_context(context, notice=f"Key {key.masked_token} deleted."),
                       partial="provider_keys")


# --- playground ----------------------------------------------------------------------------------


def usable_models(project: Project) -> list[dict]:
    """The catalog's models this project can call now, each with who would serve it."""
    snapshot = selectors.project_snapshot(project)
    models = []
    for model in catalog.model_ids():
        try:
            first = routing.candidates(snapshot, model)[0]
        except GatewayError:
            continue
        models.append({
            "id": model,
            "provider": first.provider,
            "credits": first.paid_with_credits,
            "price": f"${first.offer.input_price} in / ${first.offer.output_price} out per 1M",
        })
    return sorted(models, key=lambda m: m["id"])


@dashboard_view
def playground(request, project_id):
    context = project_page(request, project_id)
    project = context["project"]
    key = project.api_keys.filter(description=services.playground_description(request.user), created_by=request.user).first()
    return render_page(request, "apikeys/playground.html", {
        **context,
        "tab": "playground",
        "models": usable_models(project),
        "custom_names": list(selectors.project_snapshot(project).custom_keys),
        "playground_key": key,
        "credits": format_money(project.organization.credits),
    })


@never_cache
@dashboard_view
@require_POST
def playground_key(request, project_id):
    """A fresh key for this user's playground in this project, its token given to the page
    once (the browser keeps it in sessionStorage). The user's previous playground key goes."""
    context = project_page(request, project_id)
    project = context["project"]
    token, key = services.playground_key_create(project=project, user=request.user)
    return JsonResponse({"token": token, "keyId": key.pk, "maskedToken": key.masked_token})
