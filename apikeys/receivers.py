"""apikeys' answers to other apps' signals."""

from django.dispatch import receiver

from apikeys import services
from projects.models import Membership
from projects.signals import member_removed


@receiver(member_removed, sender=Membership)
def revoke_playground_keys(sender: type[Membership], membership: Membership, **kwargs: object) -> None:
    services.playground_keys_revoke(organization=membership.organization, user=membership.user)
