"""Admin: which outside identity owns which account (read-only)."""
from __future__ import annotations

from django.contrib import admin

from sso.models import ExternalIdentity


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(admin.ModelAdmin):
    list_display = ("provider", "subject", "user", "last_login_at")
    list_filter = ("provider",)
    search_fields = ("subject", "user__username")
    readonly_fields = ("provider", "subject", "user", "created_at", "last_login_at")

    def has_add_permission(self, request) -> bool:
        return False
