from django.urls import path

from apikeys import api

urlpatterns = [
    path("api-keys", api.ApiKeyListView.as_view()),
    path("api-keys/<str:key_id>", api.ApiKeyDetailView.as_view()),
    path("api-keys/<str:key_id>/check", api.ApiKeyCheckView.as_view()),
    path("api-keys/<str:key_id>/roll", api.ApiKeyRollView.as_view()),
    path("api-keys/<str:key_id>/iam-rules", api.IamRuleListView.as_view()),
    path("api-keys/<str:key_id>/iam-rules/<str:rule_id>", api.IamRuleDetailView.as_view()),
    path("provider-keys", api.ProviderKeyListView.as_view()),
    path("provider-keys/<str:key_id>", api.ProviderKeyDetailView.as_view()),
]


# The dashboard's pages (config/urls.py mounts them at the root).
from apikeys import views  # noqa: E402

pages = [
    path("projects/<str:project_id>/keys/", views.api_keys, name="api_keys"),
    path("projects/<str:project_id>/keys/<str:key_id>/", views.api_key_detail, name="api_key_detail"),
    path("projects/<str:project_id>/keys/<str:key_id>/status", views.api_key_status, name="api_key_status"),
    path("projects/<str:project_id>/keys/<str:key_id>/delete", views.api_key_delete, name="api_key_delete"),
    path("projects/<str:project_id>/keys/<str:key_id>/roll", views.api_key_roll, name="api_key_roll"),
    path("projects/<str:project_id>/keys/<str:key_id>/rules", views.iam_rule_add, name="iam_rule_add"),
    path("projects/<str:project_id>/keys/<str:key_id>/rules/<str:rule_id>/status", views.iam_rule_status,
         name="iam_rule_status"),
    path("projects/<str:project_id>/keys/<str:key_id>/rules/<str:rule_id>/delete", views.iam_rule_delete,
         name="iam_rule_delete"),
    path("projects/<str:project_id>/keys/<str:key_id>/check", views.iam_check, name="iam_check"),
    path("projects/<str:project_id>/playground/", views.playground, name="playground"),
    path("projects/<str:project_id>/playground/key", views.playground_key, name="playground_key"),
    path("org/<str:organization_id>/provider-keys/", views.provider_keys, name="provider_keys"),
    path("org/<str:organization_id>/provider-keys/<str:key_id>/status", views.provider_key_status,
         name="provider_key_status"),
    path("org/<str:organization_id>/provider-keys/<str:key_id>/edit", views.provider_key_edit,
         name="provider_key_edit"),
    path("org/<str:organization_id>/provider-keys/<str:key_id>/delete", views.provider_key_delete,
         name="provider_key_delete"),
]
