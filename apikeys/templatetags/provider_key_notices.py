"""The notice on every page of an organization whose provider keys the gateway stopped using
(the provider kept rejecting them): a tag, so that only whole pages (base.html) query for it."""

from typing import Any

from django import template

from apikeys.models import ProviderKey
from gateway.providers import PROVIDERS

register = template.Library()


@register.simple_tag
def invalid_provider_keys(organization: Any) -> list[ProviderKey]:
    """The organization's keys marked invalid, each with `provider_name` for display."""
    keys = list(organization.provider_keys.filter(status=ProviderKey.Status.INVALID).order_by("provider", "priority"))
    for key in keys:
        key.provider_name = PROVIDERS[key.provider].name if key.provider in PROVIDERS else key.provider
    return keys
