"""Dashboard pages of accounts, organizations, members and projects: parse → service → render.

The same services as the REST API (projects/services.py); access through projects/access.py.
"""

from django.contrib import messages
from django.contrib.auth import login, logout
from django.http import HttpRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from apikeys import services as key_services
from apikeys.forms import ApiKeyForm
from apikeys.selectors import payment_gap
from core.dashboard import dashboard_view, redirect_page, render_page, show_error
from core.errors import NotFound, ServiceError
from projects import access, services
from projects.dashboard import SESSION_ORGANIZATION, organization_page, project_page
from projects.forms import (
    MODE_HELP,
    LoginForm,
    MemberAddForm,
    MemberRoleForm,
    OrganizationForm,
    ProjectCachingForm,
    ProjectDeleteForm,
    ProjectModeForm,
    ProjectNameForm,
    ProjectSettingsForm,
    SignupForm,
    describe_seconds,
)
from projects.models import Membership, Project

Role = Membership.Role


# --- home, sign up, log in, log out ---------------------------------------------------------------


def home(request):
    """The landing page for visitors; members go to their current organization's work."""
    if not request.user.is_authenticated:
        return render(request, "projects/landing.html")
    memberships = list(access.memberships(request.user))
    if not memberships:
        return redirect("organization_new")
    current = request.session.get(SESSION_ORGANIZATION)
    membership = next((m for m in memberships if m.organization_id == current), memberships[0])
    project = membership.organization.projects.filter(status=Project.Status.ACTIVE).order_by("name").first()
    if project is not None:
        return redirect("project_overview", project_id=project.pk)
    if membership.has_role(Role.ADMIN):
        return redirect("project_new", organization_id=membership.organization_id)
    return redirect("organization", organization_id=membership.organization_id)


def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, organization = services.user_signup(
                email=form.cleaned_data["email"], password=form.cleaned_data["password"], name=form.cleaned_data["name"]
            )
        except ServiceError as e:
            show_error(form, e)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            if request.POST.get("next"):  # e.g. back to the invitation that brought them
                return redirect(_next_url(request))
            messages.success(request, "Welcome! Create your first project to get an API key.")
            return redirect("project_new", organization_id=organization.pk)
    context = {"form": form, "next": request.GET.get("next") or request.POST.get("next", "")}
    return render(request, "projects/signup.html", context, status=400 if form.errors else 200)


def _next_url(request: HttpRequest) -> str:
    """Where to go after signing in: a path on this site (never another host, a view name
    or a string with control characters), else home."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    on_site = target.startswith("/") and target.isprintable() and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if on_site else reverse("home")


def log_in(request):
    if request.user.is_authenticated:
        return redirect(_next_url(request))
    form = LoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:  # the same check, and the same throttle, as the API's login
            user = services.user_authenticate(
                request=request, email=form.cleaned_data["email"], password=form.cleaned_data["password"]
            )
        except ServiceError as e:
            form.add_error(None, "Invalid email or password." if e.status == 401 else e.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect(_next_url(request))
    context = {"form": form, "next": request.GET.get("next", "")}
    return render(request, "projects/login.html", context, status=400 if form.errors else 200)


@require_POST
def log_out(request):
    logout(request)
    return redirect("home")


# --- organizations and members ---------------------------------------------------------------


@dashboard_view
def organization_new(request):
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            organization = services.organization_create(user=request.user, name=form.cleaned_data["name"])
        except ServiceError as e:
            show_error(form, e)
        else:
            messages.success(request, f"Organization \u201c{organization.name}\u201d created.")
            return redirect_page(request, reverse("project_new", args=[organization.pk]))
    return render_page(request, "projects/organization_new.html", {"form": form}, partial="form",
                       status=400 if form.errors else 200)


def _members_context(context: dict, **forms) -> dict:
    organization = context["organization"]
    context = {
        **context,
        "org_tab": "members",
        "members": organization.memberships.select_related("user").order_by("created_at"),
        "add_form": forms.get("add_form") or MemberAddForm(),
        "rename_form": forms.get("rename_form") or OrganizationForm(initial={"name": organization.name}),
        "role_choices": Membership.Role.choices,
        "invitations": organization.invitations.filter(accepted_at__isnull=True),
    }
    return context


@dashboard_view
def organization(request, organization_id):
    context = organization_page(request, organization_id)
    context["has_projects"] = context["organization"].projects.exists()
    return render_page(request, "projects/organization.html", _members_context(context))


@dashboard_view
@require_POST
def organization_rename(request, organization_id):
    context = organization_page(request, organization_id, Role.ADMIN)
    form = OrganizationForm(request.POST)
    if form.is_valid():
        try:
            services.organization_update(organization=context["organization"], name=form.cleaned_data["name"])
        except ServiceError as e:
            show_error(form, e)
        else:
            messages.success(request, "Organization renamed.")
            return redirect_page(request, reverse("organization", args=[organization_id]))
    return render_page(request, "projects/organization.html", _members_context(context, rename_form=form),
                       partial="rename", status=400)


@dashboard_view
@require_POST
def member_add(request, organization_id):
    """Invites a member by email (projects.services.member_invite)."""
    context = organization_page(request, organization_id, Role.ADMIN)
    form = MemberAddForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            services.member_invite(organization=context["organization"], actor=context["membership"],
                                   accept_url=request.build_absolute_uri("/invitations/") + "{token}/",
                                   **form.cleaned_data)
        except ServiceError as e:
            show_error(form, e)
        else:
            context["notice"] = f"Invitation sent to {form.cleaned_data['email']}."
            form, status = None, 200
    return render_page(request, "projects/organization.html", _members_context(context, add_form=form),
                       partial="members", status=status)


@dashboard_view
@require_POST
def invitation_revoke(request, organization_id, invitation_id):
    context = organization_page(request, organization_id, Role.ADMIN)
    invitation = context["organization"].invitations.filter(pk=invitation_id).first()
    if invitation is None:
        raise NotFound("invitation not found")
    services.invitation_revoke(invitation=invitation)
    context["notice"] = f"Invitation of {invitation.email} revoked."
    return render_page(request, "projects/organization.html", _members_context(context), partial="members")


def invitation(request, token):
    """The link of an invitation: who invites whom to what, and, signed in as the invitee,
    a button to accept it. Signed out, the way to sign in or up and come back."""
    try:
        found = services.invitation_for(token)
    except ServiceError:
        return render(request, "projects/invitation.html", {"invalid": True}, status=404)
    context = {"invitation": found, "next": request.path}
    if request.method == "POST" and request.user.is_authenticated:
        try:
            membership = services.invitation_accept(token=token, user=request.user)
        except ServiceError as e:
            context["error"] = e.message
            return render(request, "projects/invitation.html", context, status=e.status)
        messages.success(request, f"You joined {membership.organization.name} as {membership.get_role_display()}.")
        return redirect("organization", organization_id=membership.organization_id)
    return render(request, "projects/invitation.html", context)


def _member(organization, user_id) -> Membership:
    membership = organization.memberships.select_related("user").filter(user_id=user_id).first()
    if membership is None:
        raise NotFound("member not found")
    return membership


@dashboard_view
@require_POST
def member_role(request, organization_id, user_id):
    context = organization_page(request, organization_id, Role.ADMIN)
    form = MemberRoleForm(request.POST)
    status = 400
    if not form.is_valid():
        context["error"] = "Pick one of the roles."
    else:
        try:
            services.member_update(
                membership=_member(context["organization"], user_id), role=form.cleaned_data["role"],
                actor=context["membership"],
            )
        except NotFound:
            raise
        except ServiceError as e:
            context["error"] = e.message
        else:
            status = 200
            context["notice"] = "Role changed."
    return render_page(request, "projects/organization.html", _members_context(context), partial="members", status=status)


@dashboard_view
@require_POST
def member_remove(request, organization_id, user_id):
    context = organization_page(request, organization_id)
    actor = context["membership"]
    target = _member(context["organization"], user_id)
    leaving = target.pk == actor.pk
    if not leaving:
        access.require_role(actor, Role.ADMIN)
    try:
        services.member_remove(membership=target, actor=actor)
    except NotFound:
        raise
    except ServiceError as e:
        context["error"] = e.message
        return render_page(request, "projects/organization.html", _members_context(context), partial="members", status=409)
    if leaving:
        request.session.pop(SESSION_ORGANIZATION, None)
        messages.success(request, f"You left {context['organization'].name}.")
        return redirect_page(request, reverse("home"))
    context["notice"] = f"{target.user.email} was removed."
    return render_page(request, "projects/organization.html", _members_context(context), partial="members")


# --- the New Project wizard ----------------------------------------------------------------------

WIZARD_STEPS = ["Name", "Mode", "Caching", "First API key"]
WIZARD_FORMS = {1: ProjectNameForm, 2: ProjectModeForm, 3: ProjectCachingForm}
WIZARD_FIELDS = ["name", "mode", "caching_enabled", "cache_duration_seconds"]


def _limit_context(organization) -> dict:
    limit = organization.effective_project_limit
    active = organization.projects.filter(status=Project.Status.ACTIVE).count()
    return {"project_limit": limit, "active_projects": active, "limit_reached": active >= limit}


def _wizard(request, context: dict, step: int, forms: dict, status: int = 200, **extra):
    carry = {f: request.POST.get(f, "") for f in WIZARD_FIELDS} if request.method == "POST" else {}
    context = {
        **context, **_limit_context(context["organization"]), **extra,
        "step": step, "steps": WIZARD_STEPS, "carry": carry, "forms": forms,
        "form": forms.get(step), "mode_help": MODE_HELP,
    }
    if step >= 4 and request.htmx:  # the new project joins the sidebar at once
        context["sidebar_refresh"] = list(
            context["organization"].projects.filter(status=Project.Status.ACTIVE).order_by("name", "created_at")
        )
    return render_page(request, "projects/wizard.html", context, partial="wizard", status=status)


def _unbound_forms(data) -> dict:
    """Every step's form showing what was typed so far, without errors."""
    forms = {}
    for number, form_class in WIZARD_FORMS.items():
        initial = {f: data[f] for f in form_class.base_fields if data and f in data}
        if data is not None and "caching_enabled" in form_class.base_fields:
            initial["caching_enabled"] = data.get("caching_enabled") in ("on", "true", "True", "1")
        forms[number] = form_class(initial=initial)
    return forms


@dashboard_view
def project_new(request, organization_id):
    context = organization_page(request, organization_id, Role.ADMIN)
    if request.method != "POST":
        return _wizard(request, context, 1, _unbound_forms(None))
    if request.POST.get("step") == "4":
        return _wizard_first_key(request, context)
    try:
        step = min(max(int(request.POST.get("step", "1")), 1), 3)
    except ValueError:
        step = 1
    forms = _unbound_forms(request.POST)
    if "back" in request.POST:
        return _wizard(request, context, max(step - 1, 1), forms)
    for number in range(1, step + 1):  # every step so far must still hold
        forms[number] = WIZARD_FORMS[number](request.POST)
        if not forms[number].is_valid():
            return _wizard(request, context, number, forms, status=400)
    if step < 3:
        return _wizard(request, context, step + 1, forms)
    data = {k: v for number in (1, 2, 3) for k, v in forms[number].cleaned_data.items()}
    try:
        project = services.project_create(organization=context["organization"], **data)
    except ServiceError as e:
        target = 1 if "name" in e.fields else 3
        show_error(forms[target], e)
        return _wizard(request, context, target, forms, status=409 if e.status == 409 else 400)
    return _wizard(request, context, 4, forms, project=project, key_form=ApiKeyForm(initial={"description": "Default key"}))


def _wizard_first_key(request, context: dict):
    project_id = request.POST.get("project", "")
    if "\x00" in project_id:  # never an id; PostgreSQL refuses it
        raise NotFound("project not found")
    project = access.project_for(request.user, project_id)
    if project.organization_id != context["organization"].pk:
        raise NotFound("project not found")
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            token, key = key_services.api_key_create(project=project, created_by=request.user, **form.cleaned_data)
        except ServiceError as e:
            show_error(form, e)
        else:
            return _wizard(request, context, 5, {}, project=project, token=token, api_key=key,
                           payment_gap=payment_gap(project))
    return _wizard(request, context, 4, {}, project=project, key_form=form, status=400)


# --- project settings ------------------------------------------------------------------------------


def _settings_context(context: dict, form=None, delete_form=None) -> dict:
    project = context["project"]
    if form is None:
        form = ProjectSettingsForm(
            initial={
                "name": project.name, "mode": project.mode, "caching_enabled": project.caching_enabled,
                "cache_duration_seconds": str(project.cache_duration_seconds),
                "log_content": project.log_content, "content_retention_days": project.content_retention_days,
            },
            current_duration=project.cache_duration_seconds,
        )
    return {
        **context,
        "tab": "settings",
        "form": form,
        "delete_form": delete_form or ProjectDeleteForm(project=project),
        "mode_help": MODE_HELP,
        "cache_duration_text": describe_seconds(project.cache_duration_seconds),
        "key_count": project.api_keys.count(),
        "log_count": project.usage_logs.count(),
    }


@dashboard_view
def project_settings(request, project_id):
    if request.method != "POST":
        context = project_page(request, project_id)
        return render_page(request, "projects/settings.html", _settings_context(context))
    context = project_page(request, project_id, Role.ADMIN)
    project = context["project"]
    form = ProjectSettingsForm(request.POST, current_duration=project.cache_duration_seconds)
    status = 400
    if form.is_valid():
        try:
            project = services.project_update(project=project, **form.cleaned_data)
        except ServiceError as e:
            show_error(form, e)
        else:
            context["project"], context["saved"], status = project, True, 200
            form = None
    return render_page(request, "projects/settings.html", _settings_context(context, form=form),
                       partial="settings", status=status)


@dashboard_view
@require_POST
def project_archive(request, project_id):
    context = project_page(request, project_id, Role.ADMIN)
    project = context["project"]
    archived = project.status == Project.Status.ARCHIVED
    try:
        services.project_update(project=project, status=Project.Status.ACTIVE if archived else Project.Status.ARCHIVED)
    except ServiceError as e:
        messages.error(request, e.message)
    else:
        messages.success(request, f"\u201c{project.name}\u201d {'restored' if archived else 'archived'}.")
    return redirect_page(request, reverse("project_settings", args=[project.pk]))


@dashboard_view
@require_POST
def project_delete(request, project_id):
    context = project_page(request, project_id, Role.OWNER)
    project = context["project"]
    form = ProjectDeleteForm(request.POST, project=project)
    if not form.is_valid():
        return render_page(request, "projects/settings.html", _settings_context(context, delete_form=form),
                           partial="delete", status=400)
    services.project_delete(project=project)
    messages.success(request, f"Project \u201c{project.name}\u201d was deleted.")
    return redirect_page(request, reverse("organization", args=[project.organization_id]))

