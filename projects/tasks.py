from celery import shared_task
from django.utils import timezone

from projects.models import SessionToken


@shared_task
def expire_session_tokens() -> int:
    """Deletes expired session tokens (they no longer authenticate anyway). Safe to rerun."""
    deleted, _ = SessionToken.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted
