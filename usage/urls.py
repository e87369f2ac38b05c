from django.urls import path

from usage import api

urlpatterns = [
    path("logs", api.LogListView.as_view()),
    path("usage", api.UsageView.as_view()),
    path("organizations/<str:organization_id>/transactions", api.TransactionListView.as_view()),
    path("organizations/<str:organization_id>/alerts", api.AlertListView.as_view()),
    path("organizations/<str:organization_id>/alerts/<str:alert_id>", api.AlertDetailView.as_view()),
]
