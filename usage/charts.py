"""Server-side SVG charts of a project's usage (pygal): no JavaScript, no CDN."""

from decimal import Decimal

import pygal
from django.utils.safestring import SafeString, mark_safe
from pygal.style import Style

from core.templatetags.dashboard import usd

STYLE = Style(
    background="transparent",
    plot_background="transparent",
    foreground="#334155",
    foreground_strong="#0f172a",
    foreground_subtle="#e2e8f0",
    opacity=".85",
    opacity_hover="1",
    colors=("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c"),
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    label_font_size=11,
    major_label_font_size=11,
    legend_font_size=12,
    value_font_size=11,
    tooltip_font_size=12,
)


def _config(**overrides) -> dict:
    config = {
        "style": STYLE,
        "js": [],  # pygal's tooltips script lives on a CDN: none
        "disable_xml_declaration": True,
        "explicit_size": False,  # a viewBox only: the SVG takes its container's width
        "width": 520,
        "height": 300,
        "margin": 8,
        "legend_at_bottom": True,
        "legend_box_size": 10,
        "show_y_guides": True,
        "print_values": False,
        "include_x_axis": True,
    }
    config.update(overrides)
    return config


def _count_labels(top: int) -> dict:
    """Whole numbers on a count axis (pygal would show 0.2 steps for small counts)."""
    if top <= 10:
        return {"y_labels": list(range(0, max(top, 1) + 1))}
    return {}


def _svg(chart) -> SafeString:
    return mark_safe(chart.render(is_unicode=True))


def _day_labels(daily: list[dict]) -> tuple[list[str], list[str]]:
    labels = [d["date"][5:] for d in daily]  # MM-DD
    every = 1 if len(labels) <= 10 else 5
    return labels, labels[::every]


def requests_by_day(daily: list[dict]) -> SafeString:
    labels, major = _day_labels(daily)
    chart = pygal.StackedBar(**_config(x_label_rotation=0 if len(labels) <= 10 else 45,
                                       show_minor_x_labels=len(labels) <= 10, x_labels_major=major,
                                       **_count_labels(max((d["requests"] for d in daily), default=0))))
    chart.x_labels = labels
    chart.add("Answered", [d["requests"] - d["errors"] for d in daily])
    chart.add("Errors", [d["errors"] for d in daily])
    return _svg(chart)


def _usd(value: float) -> str:
    return usd(Decimal(str(value)).quantize(Decimal("1e-8")))


def cost_by_day(daily: list[dict]) -> SafeString:
    labels, major = _day_labels(daily)
    chart = pygal.Bar(**_config(x_label_rotation=0 if len(labels) <= 10 else 45,
                                show_minor_x_labels=len(labels) <= 10, x_labels_major=major, show_legend=False,
                                value_formatter=_usd))
    chart.x_labels = labels
    chart.add("Cost (USD)", [float(Decimal(d["cost"])) for d in daily])
    return _svg(chart)


def by_model(models: list[dict]) -> SafeString:
    top = models[:8]
    chart = pygal.HorizontalBar(**_config(width=760, height=max(120, 50 + 34 * len(top)), show_legend=False,
                                          truncate_label=40,
                                          **_count_labels(max((m["requests"] for m in top), default=0))))
    chart.x_labels = [m["model"] or "(unknown)" for m in top]
    chart.add("Requests", [m["requests"] for m in top])
    return _svg(chart)


def cost_by_group(groups: list[dict], labels: dict[str, str]) -> SafeString:
    """Cost (USD) of the eight costliest groups of usage_summary's `groups`, each named by
    `labels` (group key → what people call it)."""
    top = groups[:8]
    chart = pygal.HorizontalBar(**_config(width=760, height=max(120, 50 + 34 * len(top)), show_legend=False,
                                          truncate_label=40, value_formatter=_usd))
    chart.x_labels = [labels.get(g["key"]) or g["key"] or "(none)" for g in top]
    chart.add("Cost (USD)", [float(Decimal(g["cost"])) for g in top])
    return _svg(chart)
