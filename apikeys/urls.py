from django.urls import path

from apikeys import api

urlpatterns = [
    path("api-keys", api.ApiKeyListView.as_view()),
    path("api-keys/<str:key_id>", api.ApiKeyDetailView.as_view()),
    path("api-keys/<str:key_id>/iam-rules", api.IamRuleListView.as_view()),
    path("api-keys/<str:key_id>/iam-rules/<str:rule_id>", api.IamRuleDetailView.as_view()),
    path("provider-keys", api.ProviderKeyListView.as_view()),
    path("provider-keys/<str:key_id>", api.ProviderKeyDetailView.as_view()),
]
