from django.db import models


class CachedResponse(models.Model):
    """A stored gateway answer, on the embedded defaults (with Redis the answers live there).
    Expired rows are removed by the cache-expiry task."""

    key = models.CharField(max_length=160, primary_key=True)
    project_id = models.CharField(max_length=40, db_index=True)
    value = models.BinaryField()
    size = models.PositiveIntegerField()
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.key} ({self.size} bytes)"


class CacheStats(models.Model):
    """What a project's response cache holds, measured by the cache-expiry task."""

    project = models.OneToOneField("projects.Project", on_delete=models.CASCADE, related_name="cache_stats")
    entries = models.PositiveIntegerField(default=0)
    bytes = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.project_id}: {self.entries} entries, {self.bytes} bytes"
