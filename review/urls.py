"""Quality and review pages and API (filled in by issue 11)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
