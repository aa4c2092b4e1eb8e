"""The Users and roles page (/projects/<slug>/members/): what its admin reads, who else may
open it, and the link in the project navigation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labelling.models import Invitation, Membership, Role
from labelling.services import annotations as annotation_service
from labelling.services import invitations, queue
from tests.conftest import make_user
from tests.factories import ClipFactory

pytestmark = pytest.mark.django_db


def _url(project) -> str:
    return f"/projects/{project.slug}/members/"


def _row(html: str, username: str) -> str:
    start = html.index(f'data-username="{username}"')
    return html[start : html.index("</tr>", start)]


def test_the_admin_reads_each_members_role_status_labels_and_open_leases(
    client, project, project_admin, annotator, second_annotator, django_assert_max_num_queries
):
    clips = [ClipFactory(project=project) for _ in range(3)]
    queue.enqueue_clips(project, clips)
    for clip in clips[:2]:  # two labels by anna, one by bert
        annotation_service.record_annotation(clip=clip, annotator=annotator, node_key="mad")
    annotation_service.record_annotation(clip=clips[0], annotator=second_annotator, node_key="sad")
    queue.next_clip(project, annotator)  # anna holds one lease
    Membership.objects.filter(user=second_annotator).update(
        is_active=False, deactivated_at=timezone.now(), deactivated_by=project_admin
    )
    _open, _ = invitations.create(
        project, role=Role.REVIEWER, by=project_admin, by_role=Role.ADMIN, note="for Rosa"
    )
    revoked, _ = invitations.create(
        project, role=Role.ANNOTATOR, by=project_admin, by_role=Role.ADMIN, note="for Rex"
    )
    invitations.revoke(revoked)
    expired, _ = invitations.create(
        project, role=Role.ANNOTATOR, by=project_admin, by_role=Role.ADMIN, note="for Old"
    )
    Invitation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(1))
    client.force_login(project_admin)

    with django_assert_max_num_queries(12):
        response = client.get(_url(project))

    assert response.status_code == 200
    html = response.content.decode()
    anna, bert, ada = _row(html, "anna"), _row(html, "bert"), _row(html, "ada")
    assert 'class="member-labels">2<' in anna
    assert 'class="member-leases">1<' in anna
    assert ">Deactivate<" in anna
    assert 'class="member-labels">1<' in bert
    assert 'class="member-leases">0<' in bert
    assert "Deactivated" in bert
    assert "by ada" in bert
    assert ">Reactivate<" in bert
    assert "(you)" in ada
    assert "member-toggle" not in ada, "no button to deactivate oneself"
    assert "for Rosa" in html
    assert "for Rex" not in html
    assert "for Old" not in html
    assert 'src="/static/js/console/members.js"' in html
    assert "<script>" not in html, "no inline script (CSP)"


@pytest.mark.parametrize("who", ["annotator", "reviewer", "engineer"])
def test_other_members_get_403(request, client, project, project_admin, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get(_url(project)).status_code == 403


def test_non_members_and_deactivated_admins_get_404_and_anonymous_the_login(
    client, project, project_admin, outsider
):
    assert client.get(_url(project)).url.startswith("/accounts/login/")
    client.force_login(outsider)
    assert client.get(_url(project)).status_code == 404
    Membership.objects.create(user=make_user("adam"), project=project, role=Role.ADMIN)
    Membership.objects.filter(user=project_admin).update(is_active=False)
    client.force_login(project_admin)
    assert client.get(_url(project)).status_code == 404


def test_the_project_navigation_links_the_page_for_admins_only(
    client, project, project_admin, engineer
):
    link = f'href="{_url(project)}"'
    client.force_login(engineer)
    engineer_page = client.get(f"/projects/{project.slug}/overview/").content.decode()
    client.force_login(project_admin)
    admin_page = client.get(f"/projects/{project.slug}/overview/").content.decode()
    members_page = client.get(_url(project)).content.decode()

    assert link not in engineer_page
    assert link in admin_page
    assert f'{link} aria-current="page"' in members_page


def test_a_superuser_who_is_no_member_may_open_it(client, project, project_admin, superuser):
    client.force_login(superuser)
    response = client.get(_url(project))
    assert response.status_code == 200
    assert "member-toggle" in _row(response.content.decode(), "ada")
