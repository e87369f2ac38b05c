"""Recurring usage windows, aligned to UTC: the hour, the day, the ISO week (from Monday 00:00)
and the month. Pure: the API key services, the dashboard and the gateway's spend store all
cut time the same way."""

from datetime import UTC, datetime, timedelta

DURATIONS = ("hour", "day", "week", "month")


def window(duration: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(start, end) of the `duration` window holding `now` (default: the present), in UTC,
    start included and end excluded. Raises ValueError for a duration not in DURATIONS."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if duration == "hour":
        start = now.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if duration == "day":
        return day, day + timedelta(days=1)
    if duration == "week":
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if duration == "month":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        return start, end
    raise ValueError(f"unknown period duration {duration!r}; one of {', '.join(DURATIONS)}")


def window_id(duration: str, start: datetime) -> str:
    """A short name of a window, unique per duration: `day:20261201T000000`."""
    return f"{duration}:{start.strftime('%Y%m%dT%H%M%S')}"
