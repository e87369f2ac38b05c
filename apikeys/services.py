"""Actions on API keys, their IAM rules and provider keys: the only code that writes them."""

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from apikeys import crypto
from apikeys.models import ApiKey, IamRule, ProviderKey, mask
from apikeys.validation import validate_provider_token
from core import events, periods
from core.errors import Conflict, ValidationFailed
from core.hashing import sha256_hex
from core.ids import random_string
from core.urlsafety import check_base_url
from gateway.providers import PROVIDERS
from projects.models import Organization, Project, User

Status = ApiKey.Status
Reason = ApiKey.DisabledReason


# --- API keys ---------------------------------------------------------------------------------


def _check_limit(value, field: str = "usage_limit") -> Decimal | None:
    if value is None:
        return None
    try:
        limit = Decimal(str(value))
    except InvalidOperation:
        raise ValidationFailed.field(field, "must be a number of USD or null") from None
    if not limit.is_finite() or limit < 0:
        raise ValidationFailed.field(field, "must be zero or more USD, or null for no limit")
    return limit


def _check_rate(value, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationFailed.field(field, "must be a whole number of at least 1, or null for no limit")
    return value


MAX_GRACE_SECONDS = 86_400
# The limits a key may carry besides its lifetime usage limit, all optional (None: none).
LIMIT_FIELDS = ("period_usage_limit", "period_usage_duration", "expires_at", "rate_limit_rpm", "rate_limit_tpm")


def _apply_limits(key: ApiKey, limits: dict) -> None:
    """Sets the recurring limit (USD per hour|day|week|month, windows aligned to UTC), the
    expiry (an aware datetime) and the rate limits (requests and tokens per minute) given in
    `limits` on `key`, each checked; ValidationFailed names the field at fault."""
    unknown = set(limits) - set(LIMIT_FIELDS)
    if unknown:
        raise TypeError(f"unknown limit fields: {sorted(unknown)}")
    if "period_usage_limit" in limits:
        key.period_usage_limit = _check_limit(limits["period_usage_limit"], "period_usage_limit")
    if "period_usage_duration" in limits:
        duration = limits["period_usage_duration"] or None
        if duration is not None and duration not in periods.DURATIONS:
            raise ValidationFailed.field("period_usage_duration", f"must be one of {', '.join(periods.DURATIONS)}")
        key.period_usage_duration = duration
    if key.period_usage_limit is not None and not key.period_usage_duration:
        raise ValidationFailed.field("period_usage_duration", "is required with a period usage limit: hour, day, week or month")
    if "expires_at" in limits:
        expires = limits["expires_at"]
        if expires is not None and (not isinstance(expires, datetime) or expires.tzinfo is None):
            raise ValidationFailed.field("expires_at", "must be a date and time with its time zone, or null")
        key.expires_at = expires
    for field in ("rate_limit_rpm", "rate_limit_tpm"):
        if field in limits:
            setattr(key, field, _check_rate(limits[field], field))


def _over_limit(key: ApiKey) -> bool:
    return key.usage_limit is not None and key.usage >= key.usage_limit


def _new_token() -> tuple[str, str, str]:
    """(plaintext, its SHA-256, its mask) of a fresh key token."""
    plaintext = ApiKey.PREFIX + random_string(40)
    return plaintext, sha256_hex(plaintext), mask(plaintext, keep_start=len(ApiKey.PREFIX))


def api_key_create(
    *, project: Project, description: str = "", usage_limit=None, created_by: User | None = None, **limits
) -> tuple[str, ApiKey]:
    """Returns the plaintext token (shown once, never stored) and the key. `limits`: any of
    LIMIT_FIELDS (_apply_limits)."""
    plaintext, token_hash, masked = _new_token()
    key = ApiKey(
        project=project,
        token_hash=token_hash,
        masked_token=masked,
        description=(description or "").strip()[:255],
        usage_limit=_check_limit(usage_limit),
        created_by=created_by,
    )
    _apply_limits(key, limits)
    key.save()
    return plaintext, key


@transaction.atomic  # its event goes out once the change is committed
def api_key_roll(*, api_key: ApiKey, grace_seconds: int = 0) -> tuple[str, ApiKey]:
    """Gives the key a new token (returned in plaintext, shown once) and keeps its id, limits,
    usage and rules. The old token keeps working for `grace_seconds` (0 to 86,400), then stops
    on every gateway process; a token replaced by an earlier roll stops at once."""
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int) or not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise ValidationFailed.field("grace_seconds", f"must be a whole number of seconds from 0 to {MAX_GRACE_SECONDS}")
    key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    plaintext, token_hash, masked = _new_token()
    key.previous_token_hash = key.token_hash
    key.previous_token_expires_at = datetime.now(UTC) + timedelta(seconds=grace_seconds)
    key.token_hash, key.masked_token = token_hash, masked
    key.save()
    _changed(key)
    return plaintext, key


_UNSET = object()


@transaction.atomic
def api_key_update(*, api_key: ApiKey, description=_UNSET, usage_limit=_UNSET, status=_UNSET, **limits) -> ApiKey:
    """Edits a key. A key disabled for its limit comes back when the limit is raised past
    its usage, and goes inactive when the limit is lowered to or below it. `limits`: any of
    LIMIT_FIELDS (_apply_limits)."""
    key = ApiKey.objects.select_for_update().get(pk=api_key.pk)
    _apply_limits(key, limits)
    if description is not _UNSET:
        key.description = (description or "").strip()[:255]
    if usage_limit is not _UNSET:
        key.usage_limit = _check_limit(usage_limit)
        if key.disabled_reason == Reason.USAGE_LIMIT and not _over_limit(key):
            key.status, key.disabled_reason = Status.ACTIVE, None
    if status is not _UNSET:
        if status not in Status.values:
            raise ValidationFailed.field("status", f"must be one of {', '.join(Status.values)}")
        if status == Status.ACTIVE and _over_limit(key):
            raise Conflict(
                "usage_limit: this key's usage has reached its limit; raise the limit to enable it",
                code="usage_limit_reached",
                fields={"usage_limit": ["usage has reached this limit"]},
            )
        if status != key.status:
            key.status = status
            key.disabled_reason = None if status == Status.ACTIVE else Reason.MANUAL
    if _over_limit(key) and key.status == Status.ACTIVE:
        key.status, key.disabled_reason = Status.INACTIVE, Reason.USAGE_LIMIT
    key.save()
    _changed(key)
    return key


@transaction.atomic  # its event goes out once the change is committed
def api_key_limits_enforce(*, key_ids: list[str] | None = None) -> dict[str, int]:
    """The one writer of "a key at its limit goes inactive": active keys whose usage reached
    their limit become inactive (`disabled_reason: usage_limit`), and keys disabled for
    their limit come back once it is raised past their usage or removed. Only the keys in
    `key_ids` (all keys when None). Returns {"disabled": n, "enabled": n}."""
    keys = ApiKey.objects.all() if key_ids is None else ApiKey.objects.filter(pk__in=key_ids)
    reached = keys.filter(status=Status.ACTIVE, usage_limit__isnull=False, usage__gte=F("usage_limit"))
    raised = keys.filter(status=Status.INACTIVE, disabled_reason=Reason.USAGE_LIMIT).filter(
        Q(usage_limit__isnull=True) | Q(usage__lt=F("usage_limit"))
    )
    counts = {"disabled": 0, "enabled": 0}
    for key in reached.select_related("project"):
        counts["disabled"] += keys.filter(pk=key.pk, status=Status.ACTIVE).update(
            status=Status.INACTIVE, disabled_reason=Reason.USAGE_LIMIT
        )
        _changed(key)
    for key in raised.select_related("project"):
        counts["enabled"] += keys.filter(pk=key.pk, disabled_reason=Reason.USAGE_LIMIT).update(
            status=Status.ACTIVE, disabled_reason=None
        )
        _changed(key)
    return counts


def playground_description(user: User) -> str:
    return f"Playground ({user.email})"


@transaction.atomic
def playground_key_create(*, project: Project, user: User) -> tuple[str, ApiKey]:
    """A fresh key for this user's dashboard playground in this project (the token is given
    to the page once); the user's previous playground key of the project goes."""
    description = playground_description(user)
    for old in project.api_keys.filter(description=description, created_by=user):
        api_key_delete(api_key=old)
    return api_key_create(project=project, description=description, created_by=user)


def playground_keys_revoke(*, organization: Organization, user: User) -> int:
    """Deletes the user's playground keys in the organization's projects: a member who
    leaves loses the keys the dashboard made for them. (Keys they created for services stay:
    they belong to the project, and the team rolls or deletes them.) Returns how many went."""
    keys = ApiKey.objects.filter(project__organization=organization, created_by=user,
                                 description=playground_description(user)).select_related("project")
    revoked = 0
    for key in keys:
        api_key_delete(api_key=key)
        revoked += 1
    return revoked


@transaction.atomic  # its event goes out once the change is committed
def api_key_delete(*, api_key: ApiKey) -> None:
    _changed(api_key)
    api_key.delete()


def _changed(api_key: ApiKey) -> None:
    events.config_changed(api_key.project.organization_id)


# --- IAM rules --------------------------------------------------------------------------------

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_LIST_KEYS: dict[str, str] = {
    IamRule.Type.ALLOW_MODELS: "models",
    IamRule.Type.DENY_MODELS: "models",
    IamRule.Type.ALLOW_PROVIDERS: "providers",
    IamRule.Type.DENY_PROVIDERS: "providers",
}
_PRICING_KEYS = ("pricingType", "maxInputPrice", "maxOutputPrice")


def _value_error(key: str, message: str) -> ValidationFailed:
    return ValidationFailed.field(f"rule_value.{key}" if key else "rule_value", message)


def _clean_list_rule(key: str, value: dict) -> dict:
    if set(value) != {key}:
        raise _value_error("", f'must be {{"{key}": [...]}}')
    items = value[key]
    if not isinstance(items, list) or not items or len(items) > 500:
        raise _value_error(key, "must be a list of 1 to 500 names")
    for item in items:
        if not isinstance(item, str) or not item.strip() or len(item) > 200:
            raise _value_error(key, "each entry must be a non-empty name of at most 200 characters")
        if key == "providers" and not _NAME_RE.match(item):
            raise _value_error(key, f"{item!r} is not a provider id or custom provider name")
    return {key: [item.strip() for item in items]}


def _clean_pricing_rule(value: dict) -> dict:
    unknown = set(value) - set(_PRICING_KEYS)
    if unknown or not value:
        raise _value_error("", f"takes any of {', '.join(_PRICING_KEYS)}")
    cleaned: dict = {}
    if "pricingType" in value:
        if value["pricingType"] not in ("free", "paid"):
            raise _value_error("pricingType", "must be free or paid")
        cleaned["pricingType"] = value["pricingType"]
    for key in ("maxInputPrice", "maxOutputPrice"):
        if key in value:
            raw = value[key]
            try:
                price = Decimal(str(raw)) if not isinstance(raw, bool) else None
            except InvalidOperation:
                price = None
            if price is None or not price.is_finite() or price < 0:
                raise _value_error(key, "must be zero or more USD per 1M tokens")
            cleaned[key] = str(price)
    return cleaned


def iam_rule_value_clean(rule_type: str, rule_value) -> dict:
    """The rule value as stored, or a ValidationFailed naming `rule_type` or `rule_value.<key>`."""
    if rule_type not in IamRule.Type.values:
        raise ValidationFailed.field("rule_type", f"must be one of {', '.join(IamRule.Type.values)}")
    if not isinstance(rule_value, dict):
        raise _value_error("", "must be a JSON object")
    if rule_type in _LIST_KEYS:
        return _clean_list_rule(_LIST_KEYS[rule_type], rule_value)
    return _clean_pricing_rule(rule_value)


def _check_rule_status(status: str) -> str:
    if status not in IamRule.Status.values:
        raise ValidationFailed.field("status", f"must be one of {', '.join(IamRule.Status.values)}")
    return status


@transaction.atomic  # its event goes out once the change is committed
def iam_rule_create(*, api_key: ApiKey, rule_type: str, rule_value, status: str = "active") -> IamRule:
    rule = IamRule.objects.create(
        api_key=api_key,
        rule_type=rule_type,
        rule_value=iam_rule_value_clean(rule_type, rule_value),
        status=_check_rule_status(status),
    )
    _changed(api_key)
    return rule


@transaction.atomic  # its event goes out once the change is committed
def iam_rule_update(*, rule: IamRule, rule_type=_UNSET, rule_value=_UNSET, status=_UNSET) -> IamRule:
    new_type = rule.rule_type if rule_type is _UNSET else rule_type
    new_value = rule.rule_value if rule_value is _UNSET else rule_value
    rule.rule_value = iam_rule_value_clean(new_type, new_value)
    rule.rule_type = new_type
    if status is not _UNSET:
        rule.status = _check_rule_status(status)
    rule.save()
    _changed(rule.api_key)
    return rule


@transaction.atomic  # its event goes out once the change is committed
def iam_rule_delete(*, rule: IamRule) -> None:
    _changed(rule.api_key)
    rule.delete()


# --- provider keys ----------------------------------------------------------------------------


def _check_provider(provider: str) -> str:
    if provider not in PROVIDERS:
        raise ValidationFailed.field("provider", f"must be one of {', '.join(PROVIDERS)}")
    return provider


def _check_token(token: str) -> str:
    token = (token or "").strip()
    if not token or len(token) > 4096 or any(c.isspace() for c in token):
        raise ValidationFailed.field("token", "must be the provider's key: 1 to 4096 characters, no spaces")
    return token


def _check_custom_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME_RE.match(name):
        raise ValidationFailed.field("name", "a custom provider needs a name of lowercase letters, digits and '-'")
    if name in PROVIDERS:
        raise ValidationFailed.field("name", f"{name!r} is a built-in provider id; pick another name")
    return name


def _check_unique(organization: Organization, provider: str, name: str, exclude: str | None = None) -> None:
    """One key per name and provider: a custom provider is its name; several keys of a
    built-in provider are told apart by theirs."""
    others = ProviderKey.objects.filter(organization=organization, provider=provider, name=name).exclude(pk=exclude)
    if not others.exists():
        return
    if provider == "custom":
        raise Conflict(f"a custom provider named {name!r} already exists", code="provider_key_exists")
    which = f"named {name!r}; pick another name" if name else "without a name; name this one to tell them apart"
    message = f"this organization already has a key for {PROVIDERS[provider].name} {which}"
    raise Conflict(message, code="provider_key_exists", fields={"name": [message]})


PRIORITY_MIN, PRIORITY_MAX = -1_000_000, 1_000_000


def _check_priority(priority) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValidationFailed.field(
            "priority", f"must be an integer from {PRIORITY_MIN} to {PRIORITY_MAX} (lower is tried first)"
        )
    return priority


def _upstream_url(provider: str, base_url: str) -> str:
    return base_url or settings.PROVIDER_BASE_URLS[provider]


PRICES_MAX_MODELS = 500
PRICE_MAX = Decimal(10000)  # USD per 1M tokens: far above any real model's price
PRICE_PLACES = 9
_PRICE_KEYS = ("inputPrice", "outputPrice")
_PRICE_STEP = Decimal(1).scaleb(-PRICE_PLACES)
_DECIMAL_RE = re.compile(r"[0-9]{1,30}(\.[0-9]{1,30})?")


def _prices_error(path: str, message: str) -> ValidationFailed:
    return ValidationFailed.field(f"prices.{path}" if path else "prices", message)


def _clean_model_id(model) -> str:
    # A bad id is named by `prices` alone: the id itself may be long or hold control characters.
    if (not isinstance(model, str) or not model.strip() or len(model) > 200
            or any(unicodedata.category(c) == "Cc" for c in model)):
        raise _prices_error("", "model ids must be 1 to 200 characters without control characters")
    return model


def _clean_price(path: str, raw) -> str:
    """A price as stored: a plain decimal string (`"0.5"`, `"1000"`) of USD per 1M tokens."""
    price = None
    # A string must be a plain decimal; a JSON number arrives as int or float (never bool).
    if isinstance(raw, str) and _DECIMAL_RE.fullmatch(raw) or isinstance(raw, int) and not isinstance(raw, bool):
        price = Decimal(raw)
    elif isinstance(raw, float):
        price = Decimal(str(raw))  # its shortest repr: 0.1 is "0.1", not the binary fraction
    # Comparisons and the quantize are exact here: at most 5 + 9 digits once in range.
    if price is None or not price.is_finite() or not 0 <= price <= PRICE_MAX or price != price.quantize(_PRICE_STEP):
        raise _prices_error(
            path, f"must be a decimal from 0 to {PRICE_MAX} (USD per 1M tokens) with at most {PRICE_PLACES} decimal places"
        )
    return format(abs(price.normalize()), "f")  # "f": never an exponent; abs: -0 is 0


def provider_prices_clean(prices) -> dict[str, dict[str, str]]:
    """A custom provider's prices as stored (the API's own names, like IAM rule values):
    `{"<model id>": {"inputPrice": "0.5", "outputPrice": "1.5"}}`, USD per 1M tokens as plain
    decimal strings; None is `{}`. Prices may arrive as decimal strings or JSON numbers. Else a
    ValidationFailed naming `prices`, `prices.<model>` or `prices.<model>.inputPrice` (or
    `outputPrice`)."""
    if prices is None:
        return {}
    if not isinstance(prices, dict):
        raise _prices_error("", 'must be a JSON object: {"<model>": {"inputPrice": "…", "outputPrice": "…"}}')
    if len(prices) > PRICES_MAX_MODELS:
        raise _prices_error("", f"at most {PRICES_MAX_MODELS} models")
    cleaned: dict[str, dict[str, str]] = {}
    for model, entry in prices.items():
        model = _clean_model_id(model)
        if not isinstance(entry, dict) or set(entry) - set(_PRICE_KEYS):
            raise _prices_error(model, 'must be {"inputPrice": "…", "outputPrice": "…"}')
        for key in _PRICE_KEYS:
            if key not in entry:
                raise _prices_error(f"{model}.{key}", "is required (USD per 1M tokens)")
        cleaned[model] = {key: _clean_price(f"{model}.{key}", entry[key]) for key in _PRICE_KEYS}
    return cleaned


def _check_prices(provider: str, prices) -> dict[str, dict[str, str]]:
    # Built-in providers are priced by the catalog; only a custom provider's are unknown.
    if provider != "custom" and prices not in (None, {}):
        raise _prices_error("", "only a custom provider takes prices; the catalog prices the others")
    return provider_prices_clean(prices)


def provider_key_create(
    *,
    organization: Organization,
    provider: str,
    token: str,
    base_url: str = "",
    name: str = "",
    prices=None,
    priority: int = 0,
    validate: bool = True,
) -> ProviderKey:
    """A new provider key; `prices` (custom providers only) as provider_prices_clean takes it.
    Several keys of one provider are tried in `priority` order (lower first)."""
    provider = _check_provider(provider)
    token = _check_token(token)
    priority = _check_priority(priority)
    if provider == "custom":
        name = _check_custom_name(name)
        if not base_url:
            raise ValidationFailed.field("base_url", "a custom provider needs the base URL of its OpenAI-compatible API")
    else:
        name = (name or "").strip()[:64]
    base_url = check_base_url(base_url) if base_url else ""
    prices = _check_prices(provider, prices)
    _check_unique(organization, provider, name)  # fail fast, before asking the provider
    if validate:  # outside the transaction: the provider may take seconds to answer
        validate_provider_token(provider=provider, token=token, base_url=_upstream_url(provider, base_url))
    with transaction.atomic():
        Organization.objects.select_for_update().get(pk=organization.pk)  # serialise the check
        _check_unique(organization, provider, name)
        key = ProviderKey.objects.create(
            organization=organization,
            provider=provider,
            name=name,
            base_url=base_url,
            prices=prices,
            priority=priority,
            encrypted_token=crypto.encrypt(token),
            masked_token=mask(token),
        )
        events.config_changed(organization.pk)
        return key


USER_STATUSES = (ProviderKey.Status.ACTIVE, ProviderKey.Status.INACTIVE)  # `invalid` is the gateway's verdict


def provider_key_update(
    *, provider_key: ProviderKey, token=_UNSET, base_url=_UNSET, name=_UNSET, prices=_UNSET, status=_UNSET,
    priority=_UNSET, validate: bool = True,
) -> ProviderKey:
    """Edits a key; `prices`, when given, replaces them all (see provider_prices_clean). A key
    the gateway marked invalid comes back (active) when given a new token or base URL, or
    when its status is set again."""
    key = provider_key
    changes: dict = {}
    if priority is not _UNSET:
        changes["priority"] = _check_priority(priority)
    if name is not _UNSET:
        changes["name"] = _check_custom_name(name) if key.provider == "custom" else (name or "").strip()[:64]
        _check_unique(key.organization, key.provider, changes["name"], exclude=key.pk)
    if base_url is not _UNSET:
        if not base_url and key.provider == "custom":
            raise ValidationFailed.field("base_url", "a custom provider needs a base URL")
        changes["base_url"] = check_base_url(base_url) if base_url else ""
    if prices is not _UNSET:
        changes["prices"] = _check_prices(key.provider, prices)
    plaintext = _check_token(token) if token is not _UNSET else None
    if plaintext is not None:
        changes["encrypted_token"] = crypto.encrypt(plaintext)
        changes["masked_token"] = mask(plaintext)
    if status is not _UNSET:
        if status not in USER_STATUSES:
            raise ValidationFailed.field(
                "status", f"must be one of {', '.join(USER_STATUSES)} (the gateway sets invalid on its own)"
            )
        changes["status"] = status
    if validate and (plaintext is not None or "base_url" in changes):
        validate_provider_token(
            provider=key.provider,
            token=plaintext or crypto.decrypt(key.encrypted_token),
            base_url=_upstream_url(key.provider, changes.get("base_url", key.base_url)),
        )
    with transaction.atomic():
        key = ProviderKey.objects.select_for_update().get(pk=key.pk)
        if "name" in changes:
            _check_unique(key.organization, key.provider, changes["name"], exclude=key.pk)
        for field, value in changes.items():
            setattr(key, field, value)
        fixed = "encrypted_token" in changes or "base_url" in changes
        if key.status == ProviderKey.Status.INVALID and fixed and "status" not in changes:
            key.status = ProviderKey.Status.ACTIVE
        if key.status != ProviderKey.Status.INVALID:
            key.rejections, key.rejected_status = 0, None
        key.save()
        events.config_changed(key.organization_id)
    return key


@transaction.atomic  # its event goes out once the change is committed
def provider_key_mark_invalid(*, key_id: str, rejections: int, status: int | None = None) -> bool:
    """The gateway's verdict on an active key its provider refused `rejections` times in a
    row (HTTP `status` the last time): status `invalid`, so no process uses it until a user
    gives it a new token or base URL, or sets its status again. Returns whether this call
    changed it (the gateway processes may all reach the verdict at once)."""
    key = ProviderKey.objects.select_for_update().filter(pk=key_id, status=ProviderKey.Status.ACTIVE).first()
    if key is None:
        return False
    key.status, key.rejections, key.rejected_status = ProviderKey.Status.INVALID, rejections, status
    key.save(update_fields=["status", "rejections", "rejected_status", "updated_at"])
    events.config_changed(key.organization_id)
    return True


@transaction.atomic  # its event goes out once the change is committed
def provider_key_delete(*, provider_key: ProviderKey) -> None:
    events.config_changed(provider_key.organization_id)
    provider_key.delete()


def provider_keys_reencrypt() -> int:
    """Re-encrypts every provider key with the first ENCRYPTION_KEYS key, so older keys can
    then be removed from the setting. Safe to run twice."""
    count = 0
    for key in ProviderKey.objects.only("pk", "encrypted_token").iterator():
        ProviderKey.objects.filter(pk=key.pk).update(encrypted_token=crypto.rotate(key.encrypted_token))
        count += 1
    return count
