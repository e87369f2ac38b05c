"""The usage record: what the data plane hands to the usage app for each request, across
the Celery boundary (JSON, one list per batch). Pure: it imports no app.

Its fields are the UsageLog table's columns (tests/usage/test_record.py holds them equal),
plus two the ingestion needs and the table does not keep: `organization_id` (whose credits
pay) and `paid_with_credits`, and `content`, kept in a table of its own (usage.LogContent). Money is a decimal string of USD, times ISO 8601 in UTC,
durations whole milliseconds.
"""

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One gateway request's usage log entry (its log id chosen when the request arrived)."""

    id: str  # "log_…": storing a record twice is a no-op
    request_id: str
    project_id: str
    organization_id: str
    api_key_id: str
    created_at: str  # ISO 8601, UTC
    requested_model: str = ""
    used_model: str = ""
    used_provider: str = ""
    used_mode: str = ""  # "api-keys" | "credits"
    paid_with_credits: bool = False
    streamed: bool = False
    cached: bool = False
    cache_status: str = ""  # "hit" | "miss" | "skip" | "" (the project does not cache)
    saved_cost: str = "0"  # USD a cache hit saved
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cost: str = "0"  # USD: input + output + fee
    input_cost: str = "0"
    output_cost: str = "0"
    fee: str = "0"
    duration: int = 0  # milliseconds
    time_to_first_token: int | None = None  # milliseconds
    finish_reason: str = ""
    status_code: int = 200
    has_error: bool = False
    error_message: str = ""
    canceled: bool = False
    cached_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to it
    reasoning_tokens: int = 0  # of completion_tokens
    priced: bool = True  # False: the model's price is unknown and the request cost 0
    endpoint: str = "chat.completions"  # chat.completions | messages | responses | embeddings
    user: str = ""  # the request's `user` (the client's end-user id)
    # What was asked and answered, for a project that keeps it (gateway/content.py):
    # {"request": …, "response": … | None, "truncated": bool}; None otherwise. Stored apart
    # from the log row (usage.LogContent).
    content: dict[str, Any] | None = field(default=None, hash=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "UsageRecord":
        """A record from its JSON object; keys this version does not know are ignored (a
        newer gateway may send more during a rolling deploy). Raises TypeError when a
        required field is missing or `data` is not an object."""
        if not isinstance(data, dict):
            raise TypeError(f"a usage record is a JSON object, not {type(data).__name__}")
        return cls(**{name: data[name] for name in FIELD_NAMES if name in data})

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)


# Where the gateway puts usage records when Redis is configured (one entry per record, field
# "r": its JSON), and the consumer group ingestion reads them with (usage/stream.py).
USAGE_STREAM = "llmgw:usage"
USAGE_GROUP = "ingest"

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(UsageRecord))
# Kept by ingestion but not columns of the usage log.
NOT_STORED: frozenset[str] = frozenset({"organization_id", "paid_with_credits", "content"})
