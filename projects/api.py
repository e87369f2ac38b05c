"""REST endpoints of auth, organizations, members and projects: parse → service → render."""

from django.contrib.auth import logout as django_logout
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFound
from core.rest import envelope, parse
from projects import access, services
from projects.models import Membership, Project, SessionToken
from projects.serializers import (
    InvitationAcceptIn,
    InvitationCreatedOut,
    InvitationOut,
    LoginIn,
    MemberIn,
    MemberOrganizationOut,
    MemberOut,
    MemberPatchIn,
    OrganizationIn,
    OrganizationOut,
    ProjectIn,
    ProjectOut,
    ProjectPatchIn,
    SignupIn,
    UserOut,
)

Role = Membership.Role



# --- auth ---------------------------------------------------------------------------------


class SignupView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        request=SignupIn,
        responses={201: inline_serializer("Signup", {"user": UserOut(), "organization": OrganizationOut(), "token": serializers.CharField()})},
    )
    def post(self, request):
        data = parse(SignupIn, request)
        user, organization = services.user_signup(**data)
        token, _ = services.session_create(user=user)
        body = {"user": UserOut(user).data, "organization": OrganizationOut(organization).data, "token": token}
        return Response(body, status=201)


class LoginView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        request=LoginIn,
        responses={200: inline_serializer("Login", {"token": serializers.CharField(), "expiresAt": serializers.DateTimeField()})},
    )
    def post(self, request):
        token, record = services.session_login(request=request._request, **parse(LoginIn, request))
        return Response({"token": token, "expiresAt": serializers.DateTimeField().to_representation(record.expires_at)})


class LogoutView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        if isinstance(request.auth, SessionToken):
            services.session_logout(token=request.auth)
        else:
            django_logout(request._request)
        return Response(status=204)


class MeView(APIView):
    @extend_schema(responses={200: inline_serializer("Me", {"user": UserOut(), "organizations": MemberOrganizationOut(many=True)})})
    def get(self, request):
        return Response(
            {
                "user": UserOut(request.user).data,
                "organizations": MemberOrganizationOut(access.memberships(request.user), many=True).data,
            }
        )


# --- organizations ------------------------------------------------------------------------


class OrganizationListView(APIView):
    @extend_schema(responses={200: envelope("organizations", OrganizationOut(many=True))})
    def get(self, request):
        organizations = [m.organization for m in access.memberships(request.user)]
        return Response({"organizations": OrganizationOut(organizations, many=True).data})

    @extend_schema(request=OrganizationIn, responses={201: envelope("organization", OrganizationOut())})
    def post(self, request):
        organization = services.organization_create(user=request.user, **parse(OrganizationIn, request))
        return Response({"organization": OrganizationOut(organization).data}, status=201)


class OrganizationDetailView(APIView):
    @extend_schema(responses={200: envelope("organization", OrganizationOut())})
    def get(self, request, organization_id):
        organization = access.organization_for(request.user, organization_id)
        return Response({"organization": OrganizationOut(organization).data})

    @extend_schema(request=OrganizationIn, responses={200: envelope("organization", OrganizationOut())})
    def patch(self, request, organization_id):
        organization = access.organization_for(request.user, organization_id, Role.ADMIN)
        organization = services.organization_update(organization=organization, **parse(OrganizationIn, request))
        return Response({"organization": OrganizationOut(organization).data})

    @extend_schema(responses={204: None})
    def delete(self, request, organization_id):
        organization = access.organization_for(request.user, organization_id, Role.OWNER)
        services.organization_delete(organization=organization)
        return Response(status=204)


class MemberListView(APIView):
    @extend_schema(responses={200: envelope("members", MemberOut(many=True))})
    def get(self, request, organization_id):
        organization = access.organization_for(request.user, organization_id)
        members = organization.memberships.select_related("user")
        return Response({"members": MemberOut(members, many=True).data})

    @extend_schema(request=MemberIn, responses={201: envelope("invitation", InvitationCreatedOut())})
    def post(self, request, organization_id):
        """Invites a person by email; they join when they accept (no account is revealed)."""
        actor = access.membership_for(request.user, organization_id, Role.ADMIN)
        accept_url = request.build_absolute_uri("/invitations/") + "{token}/"
        token, invitation = services.member_invite(
            organization=actor.organization, actor=actor, accept_url=accept_url, **parse(MemberIn, request)
        )
        created = InvitationCreatedOut((invitation, accept_url.replace("{token}", token))).data
        return Response({"invitation": created}, status=201)


class InvitationListView(APIView):
    @extend_schema(responses={200: envelope("invitations", InvitationOut(many=True))})
    def get(self, request, organization_id):
        organization = access.organization_for(request.user, organization_id, Role.ADMIN)
        pending = organization.invitations.filter(accepted_at__isnull=True)
        return Response({"invitations": InvitationOut(pending, many=True).data})


class InvitationDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, organization_id, invitation_id):
        organization = access.organization_for(request.user, organization_id, Role.ADMIN)
        invitation = organization.invitations.filter(pk=invitation_id).first()
        if invitation is None:
            raise NotFound("invitation not found")
        services.invitation_revoke(invitation=invitation)
        return Response(status=204)


class InvitationAcceptView(APIView):
    @extend_schema(request=InvitationAcceptIn, responses={200: envelope("member", MemberOut())})
    def post(self, request):
        """The signed-in user accepts an invitation sent to their email address."""
        membership = services.invitation_accept(user=request.user, **parse(InvitationAcceptIn, request))
        return Response({"member": MemberOut(membership).data})


class MemberDetailView(APIView):
    def _target(self, organization_id, user_id) -> Membership:
        membership = Membership.objects.select_related("user").filter(organization_id=organization_id, user_id=user_id).first()
        if membership is None:
            raise NotFound("member not found")
        return membership

    @extend_schema(request=MemberPatchIn, responses={200: envelope("member", MemberOut())})
    def patch(self, request, organization_id, user_id):
        actor = access.membership_for(request.user, organization_id, Role.ADMIN)
        membership = services.member_update(
            membership=self._target(organization_id, user_id), actor=actor, **parse(MemberPatchIn, request)
        )
        return Response({"member": MemberOut(membership).data})

    @extend_schema(responses={204: None})
    def delete(self, request, organization_id, user_id):
        actor = access.membership_for(request.user, organization_id)
        target = self._target(organization_id, user_id)
        if target.pk != actor.pk:  # leaving needs no role; removing someone else does
            access.require_role(actor, Role.ADMIN)
        services.member_remove(membership=target, actor=actor)
        return Response(status=204)


# --- projects -----------------------------------------------------------------------------


class ProjectListView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("organizationId", str, description="only this organization's projects")],
        responses={200: envelope("projects", ProjectOut(many=True))},
    )
    def get(self, request):
        organization_id = request.query_params.get("organizationId")
        if organization_id:
            projects = access.organization_for(request.user, organization_id).projects.all()
        else:
            projects = Project.objects.filter(organization__memberships__user=request.user)
        return Response({"projects": ProjectOut(projects.order_by("created_at"), many=True).data})

    @extend_schema(request=ProjectIn, responses={201: envelope("project", ProjectOut())})
    def post(self, request):
        data = parse(ProjectIn, request)
        organization = access.organization_for(request.user, data.pop("organization_id"), Role.ADMIN)
        project = services.project_create(organization=organization, **data)
        return Response({"project": ProjectOut(project).data}, status=201)


class ProjectDetailView(APIView):
    @extend_schema(responses={200: envelope("project", ProjectOut())})
    def get(self, request, project_id):
        return Response({"project": ProjectOut(access.project_for(request.user, project_id)).data})

    @extend_schema(request=ProjectPatchIn, responses={200: envelope("project", ProjectOut())})
    def patch(self, request, project_id):
        project = access.project_for(request.user, project_id, Role.ADMIN)
        project = services.project_update(project=project, **parse(ProjectPatchIn, request))
        return Response({"project": ProjectOut(project).data})

    @extend_schema(responses={204: None})
    def delete(self, request, project_id):
        project = access.project_for(request.user, project_id, Role.OWNER)
        services.project_delete(project=project)
        return Response(status=204)
