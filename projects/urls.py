from django.urls import path

from projects import api

urlpatterns = [
    path("auth/signup", api.SignupView.as_view()),
    path("auth/login", api.LoginView.as_view()),
    path("auth/logout", api.LogoutView.as_view()),
    path("me", api.MeView.as_view()),
    path("organizations", api.OrganizationListView.as_view()),
    path("organizations/<str:organization_id>", api.OrganizationDetailView.as_view()),
    path("organizations/<str:organization_id>/members", api.MemberListView.as_view()),
    path("organizations/<str:organization_id>/members/<str:user_id>", api.MemberDetailView.as_view()),
    path("projects", api.ProjectListView.as_view()),
    path("projects/<str:project_id>", api.ProjectDetailView.as_view()),
]
