"""Workspace pages (filled in by issue 11)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
