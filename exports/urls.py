"""Dataset version routes, mounted under /api/."""

from django.urls import path

from exports import api

urlpatterns = [
    path("projects/<slug:slug>/datasets/", api.DatasetListView.as_view(), name="dataset-list"),
    path(
        "projects/<slug:slug>/datasets/<int:number>/",
        api.DatasetDetailView.as_view(),
        name="dataset-detail",
    ),
    path(
        "projects/<slug:slug>/datasets/<int:number>/files/",
        api.DatasetFilesView.as_view(),
        name="dataset-files",
    ),
    path(
        "projects/<slug:slug>/datasets/<int:number>/files/<path:path>",
        api.DatasetFileView.as_view(),
        name="dataset-file",
    ),
    path(
        "projects/<slug:slug>/datasets/<int:number>/download.zip",
        api.DatasetZipView.as_view(),
        name="dataset-zip",
    ),
    path(
        "projects/<slug:slug>/datasets/<int:number>/download/<str:fmt>.zip",
        api.DatasetFormatZipView.as_view(),
        name="dataset-format-zip",
    ),
    path(
        "projects/<slug:slug>/datasets/<int:number>/diff/<int:other>/",
        api.DatasetDiffView.as_view(),
        name="dataset-diff",
    ),
]
