from django.urls import include, path
from rest_framework.routers import DefaultRouter

from labelling import api

router = DefaultRouter()
router.register("projects", api.ProjectViewSet, basename="project")
router.register("taxonomies", api.TaxonomyViewSet, basename="taxonomy")
router.register("clips", api.ClipViewSet, basename="clip")
router.register("imports", api.ImportBatchViewSet, basename="importbatch")
router.register("annotations", api.AnnotationViewSet, basename="annotation")

members = api.MembershipViewSet.as_view({"get": "list", "post": "create"})
member = api.MembershipViewSet.as_view(
    {"patch": "partial_update", "put": "update", "delete": "destroy"}
)

urlpatterns = [
    path("projects/<slug:project_slug>/members/", members, name="project-members"),
    path("projects/<slug:project_slug>/members/<int:pk>/", member, name="project-member"),
    path("", include(router.urls)),
]
