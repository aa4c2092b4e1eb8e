from django.urls import include, path
from rest_framework.routers import DefaultRouter

from labelling import api, queue_api
from labelling.api import interop

router = DefaultRouter()
router.register("projects", api.ProjectViewSet, basename="api-project")
router.register("taxonomies", api.TaxonomyViewSet, basename="taxonomy")
router.register("clips", api.ClipViewSet, basename="clip")
router.register("imports", api.ImportBatchViewSet, basename="importbatch")
router.register("annotations", api.AnnotationViewSet, basename="annotation")

members = api.MembershipViewSet.as_view({"get": "list", "post": "create"})
member = api.MembershipViewSet.as_view(
    {"patch": "partial_update", "put": "update", "delete": "destroy"}
)
invitations = api.InvitationViewSet.as_view({"get": "list", "post": "create"})
invitation = api.InvitationViewSet.as_view({"delete": "destroy"})
accept = api.AcceptInvitationView.as_view({"post": "create"})

urlpatterns = [
    path("projects/<slug:slug>/next/", queue_api.NextClipView.as_view(), name="queue-next"),
    path("projects/<slug:slug>/annotations/", queue_api.SubmitView.as_view(), name="queue-submit"),
    path("projects/<slug:slug>/undo/", queue_api.UndoView.as_view(), name="queue-undo"),
    path("clips/<int:pk>/gold/", queue_api.GoldView.as_view(), name="clip-gold"),
    path("projects/<slug:project_slug>/members/", members, name="project-members"),
    path("projects/<slug:project_slug>/members/<int:pk>/", member, name="project-member"),
    path("projects/<slug:project_slug>/invitations/", invitations, name="project-invitations"),
    path(
        "projects/<slug:project_slug>/invitations/<int:pk>/",
        invitation,
        name="project-invitation",
    ),
    path("invitations/accept/", accept, name="invitation-accept"),
    path(
        "projects/<slug:slug>/corpus-imports/",
        interop.CorpusImportView.as_view(),
        name="project-corpus-imports",
    ),
    path(
        "projects/<slug:slug>/predictions/",
        interop.PredictionImportView.as_view(),
        name="project-predictions",
    ),
    path(
        "projects/<slug:slug>/predictions/<str:model_name>/",
        interop.WeakSourceView.as_view(),
        name="project-weak-source",
    ),
    path(
        "projects/<slug:slug>/labelstudio-imports/",
        interop.LabelStudioImportView.as_view(),
        name="project-labelstudio-imports",
    ),
    path("", include(router.urls)),
]
