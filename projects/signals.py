"""What other apps may react to. Sent inside the service's transaction, so a receiver's
writes commit or roll back with it."""

from django.dispatch import Signal

# sender: the Membership class; membership: the Membership just deleted (its user and
# organization still loaded). apikeys revokes the member's playground keys.
member_removed = Signal()
