"""Two owners stepping down at the same moment: one of them stays owner. The invariant "an
organization keeps an owner" is checked by counting rows, which needs a lock that locks."""

import threading

import pytest
from django.db import connection

from core.errors import Conflict
from projects import services
from projects.models import Membership
from tests.conftest import make_person


def _step_down_together(org, people, action) -> list[BaseException | None]:
    barrier = threading.Barrier(len(people))
    outcomes: list[BaseException | None] = [None] * len(people)

    def step_down(index: int, person) -> None:
        membership = Membership.objects.get(organization=org, user=person.user)
        barrier.wait()
        try:
            action(membership)
        except BaseException as e:
            outcomes[index] = e
        finally:
            connection.close()

    threads = [threading.Thread(target=step_down, args=(i, p)) for i, p in enumerate(people)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


@pytest.mark.parametrize("run", range(6))
@pytest.mark.parametrize("how", ["demote", "leave"])
def test_two_owners_stepping_down_at_once_leave_one_owner(transactional_db, how, run):
    first = make_person("first@example.com")
    org = first.organization
    second = make_person("second@example.com", org, Membership.Role.OWNER)

    def demote(membership):
        services.member_update(membership=membership, role="developer", actor=membership)

    def leave(membership):
        services.member_remove(membership=membership, actor=membership)

    outcomes = _step_down_together(org, [first, second], demote if how == "demote" else leave)

    assert Membership.objects.filter(organization=org, role="owner").count() == 1
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "NoneType"], outcomes
    assert all(o is None or isinstance(o, Conflict) for o in outcomes)
