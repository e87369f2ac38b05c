"""A member who leaves or is removed loses the playground keys the dashboard made for them;
keys they created for services stay with the project (the team rolls or deletes those)."""

from apikeys import services as key_services
from apikeys.models import ApiKey
from projects import services
from projects.models import Membership


def test_a_removed_member_loses_their_playground_key_and_keeps_the_projects_keys(org, project, owner, developer):
    _, playground = key_services.playground_key_create(project=project, user=developer.user)
    _, service_key = key_services.api_key_create(project=project, description="CI", created_by=developer.user)
    _, owners_playground = key_services.playground_key_create(project=project, user=owner.user)

    response = owner.api.delete(f"/api/v1/organizations/{org.pk}/members/{developer.user.pk}")

    assert response.status_code == 204
    assert not ApiKey.objects.filter(pk=playground.pk).exists()
    assert ApiKey.objects.filter(pk=service_key.pk).exists()
    assert ApiKey.objects.filter(pk=owners_playground.pk).exists()


def test_leaving_of_ones_own_accord_does_the_same(org, project, developer):
    _, playground = key_services.playground_key_create(project=project, user=developer.user)

    services.member_remove(membership=Membership.objects.get(organization=org, user=developer.user),
                           actor=Membership.objects.get(organization=org, user=developer.user))

    assert not ApiKey.objects.filter(pk=playground.pk).exists()


def test_a_refused_removal_keeps_the_playground_key(org, project, owner):
    _, playground = key_services.playground_key_create(project=project, user=owner.user)

    response = owner.api.delete(f"/api/v1/organizations/{org.pk}/members/{owner.user.pk}")

    assert response.status_code == 409  # the last owner
    assert ApiKey.objects.filter(pk=playground.pk).exists()


def test_a_new_playground_key_replaces_the_previous_one(project, owner):
    _, first = key_services.playground_key_create(project=project, user=owner.user)
    _, second = key_services.playground_key_create(project=project, user=owner.user)

    assert list(ApiKey.objects.filter(created_by=owner.user).values_list("pk", flat=True)) == [second.pk]
    assert first.pk != second.pk
