from django.db import models


class Event(models.Model):
    """A change event for the gateway processes on the embedded defaults, where there is no
    Redis pub/sub (core/events.py)."""

    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "gateway_event"  # created when this model lived in the gateway app

    def __str__(self) -> str:
        return f"{self.data.get('kind', 'event')} at {self.created_at:%Y-%m-%d %H:%M:%S}"
