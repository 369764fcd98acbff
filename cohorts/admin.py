"""The Django admin covers every model of the app."""
from __future__ import annotations

from django.contrib import admin

from cohorts.models import Cohort, CohortLab, Membership


class CohortLabInline(admin.TabularInline):
    model = CohortLab
    fields = ("lab", "due_at", "position")
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ("user", "role", "joined_at")
    readonly_fields = ("joined_at",)
    raw_id_fields = ("user",)
    extra = 0


@admin.register(Cohort)
class CohortAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "invite_code", "joining_open", "created_at")
    list_filter = ("joining_open",)
    search_fields = ("name", "owner__username", "invite_code")
    inlines = [CohortLabInline, MembershipInline]


@admin.register(CohortLab)
class CohortLabAdmin(admin.ModelAdmin):
    list_display = ("cohort", "lab", "due_at", "position")
    list_filter = ("lab",)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("cohort", "user", "role", "joined_at")
    list_filter = ("role", "cohort")
    search_fields = ("user__username", "cohort__name")
    raw_id_fields = ("user",)
