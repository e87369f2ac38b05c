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
    path("organizations/<str:organization_id>/invitations", api.InvitationListView.as_view()),
    path("organizations/<str:organization_id>/invitations/<str:invitation_id>", api.InvitationDetailView.as_view()),
    path("invitations/accept", api.InvitationAcceptView.as_view()),
    path("projects", api.ProjectListView.as_view()),
    path("projects/<str:project_id>", api.ProjectDetailView.as_view()),
]


# The dashboard's pages (config/urls.py mounts them at the root).
from projects import views  # noqa: E402

pages = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("login/", views.log_in, name="login"),
    path("logout/", views.log_out, name="logout"),
    path("org/new/", views.organization_new, name="organization_new"),
    path("org/<str:organization_id>/", views.organization, name="organization"),
    path("org/<str:organization_id>/rename", views.organization_rename, name="organization_rename"),
    path("org/<str:organization_id>/members/add", views.member_add, name="member_add"),
    path("org/<str:organization_id>/invitations/<str:invitation_id>/revoke", views.invitation_revoke,
         name="invitation_revoke"),
    path("invitations/<str:token>/", views.invitation, name="invitation"),
    path("org/<str:organization_id>/members/<str:user_id>/role", views.member_role, name="member_role"),
    path("org/<str:organization_id>/members/<str:user_id>/remove", views.member_remove, name="member_remove"),
    path("org/<str:organization_id>/projects/new/", views.project_new, name="project_new"),
    path("projects/<str:project_id>/settings/", views.project_settings, name="project_settings"),
    path("projects/<str:project_id>/archive", views.project_archive, name="project_archive"),
    path("projects/<str:project_id>/delete", views.project_delete, name="project_delete"),
]
