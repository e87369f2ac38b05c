from django.db import models


class Event(models.Model):
    """An event for the gateway processes, on the embedded defaults (gateway/events.py)."""

    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
