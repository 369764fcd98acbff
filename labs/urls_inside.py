"""Routes of the inside panel's API (included before labs.urls)."""
from __future__ import annotations

from django.urls import path

from labs import api_inside as api

urlpatterns = [
    path("api/sessions/<str:sid>/layers", api.session_layers),
    path("api/sessions/<str:sid>/changes", api.session_changes),
    path("api/sessions/<str:sid>/container", api.session_container),
    path("api/sessions/<str:sid>/tree", api.session_tree),
    path("api/sessions/<str:sid>/checkpoints", api.session_checkpoints),
    path("api/sessions/<str:sid>/rewind", api.session_rewind),
    path("api/sessions/<str:sid>/commit", api.session_commit),
    path("api/images/", api.images),
    path("api/images/download", api.image_download),
]
