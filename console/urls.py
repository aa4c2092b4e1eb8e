"""The ML engineer's workspace pages (docs/console.md), under /projects/<slug>/."""

from django.urls import URLPattern, path

from console import members_page, views

urlpatterns: list[URLPattern] = [
    path("projects/<slug:slug>/overview/", views.overview_page, name="console-overview"),
    path("projects/<slug:slug>/imports/", views.imports, name="console-imports"),
    path("projects/<slug:slug>/models/", views.models_page, name="console-models"),
    path(
        "projects/<slug:slug>/models/<int:number>/<str:kind>.png",
        views.model_plot,
        name="console-model-plot",
    ),
    path("projects/<slug:slug>/ranking/", views.ranking, name="console-ranking"),
    path("projects/<slug:slug>/settings/", views.settings_page, name="console-settings"),
    path("projects/<slug:slug>/members/", members_page.members_page, name="console-members"),
]
