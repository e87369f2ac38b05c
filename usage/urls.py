from django.urls import path

from usage import api

urlpatterns = [
    path("logs", api.LogListView.as_view()),
    path("logs/<str:log_id>", api.LogDetailView.as_view()),
    path("usage", api.UsageView.as_view()),
    path("organizations/<str:organization_id>/transactions", api.TransactionListView.as_view()),
    path("organizations/<str:organization_id>/alerts", api.AlertListView.as_view()),
    path("organizations/<str:organization_id>/alerts/<str:alert_id>", api.AlertDetailView.as_view()),
]


# The dashboard's pages (config/urls.py mounts them at the root).
from usage import views  # noqa: E402

pages = [
    path("projects/<str:project_id>/", views.project_overview, name="project_overview"),
    path("projects/<str:project_id>/logs/", views.logs, name="logs"),
    path("projects/<str:project_id>/logs/<str:log_id>/", views.log_detail, name="log_detail"),
    path("projects/<str:project_id>/requests/<str:request_id>/cost", views.request_cost, name="request_cost"),
    path("org/<str:organization_id>/usage/", views.organization_usage, name="organization_usage"),
    path("org/<str:organization_id>/metrics/", views.organization_metrics, name="organization_metrics"),
    path("org/<str:organization_id>/billing/", views.billing, name="billing"),
    path("org/<str:organization_id>/alerts/add", views.alert_add, name="alert_add"),
    path("org/<str:organization_id>/alerts/<str:alert_id>/delete", views.alert_delete, name="alert_delete"),
]
