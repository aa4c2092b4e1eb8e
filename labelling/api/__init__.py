"""REST API under /api/. Each endpoint validates with a serializer and calls one service.

Access goes through the one project-scoped layer (labelling/scoping.py; the contract is
docs/security.md): non-members get 404, members whose role is too low 403, and every list
holds only objects of projects where the caller has the role its action needs.

One module per room: projects (and starting an import), members (members and
invitations), taxonomies, clips (and their audio), imports (batches and staging), and
annotations (read-only). labelling/urls.py routes the view sets re-exported here.
"""

from labelling.api.annotations import AnnotationViewSet
from labelling.api.clips import ClipViewSet
from labelling.api.imports import ImportBatchViewSet
from labelling.api.members import AcceptInvitationView, InvitationViewSet, MembershipViewSet
from labelling.api.projects import ProjectViewSet
from labelling.api.taxonomies import TaxonomyViewSet

__all__ = [
    "AcceptInvitationView",
    "AnnotationViewSet",
    "ClipViewSet",
    "ImportBatchViewSet",
    "InvitationViewSet",
    "MembershipViewSet",
    "ProjectViewSet",
    "TaxonomyViewSet",
]
