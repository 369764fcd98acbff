"""The Django admin covers every model."""
from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from labs.models import (CheckRecord, Checkpoint, CommittedImage, Lab, LabUpload, LabVersion, QuizAnswer, Recording, Session,
                         SessionImage, Step, StepProgress)


admin.site.site_header = _("Container Image Lab · administration")
admin.site.site_title = _("Container Image Lab")
admin.site.index_title = _("Labs, sessions and cohorts")


class StepInline(admin.TabularInline):
    model = Step
    fields = ("position", "key", "title", "retired")
    extra = 0


@admin.register(Lab)
class LabAdmin(admin.ModelAdmin):
    list_display = ("slug", "owner", "image", "level", "minutes", "published", "version", "imported_at")
    list_filter = ("published", "level")
    inlines = [StepInline]


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = ("lab", "position", "key", "retired")
    list_filter = ("lab", "retired")
    search_fields = ("key",)


@admin.register(Session)
class SessionAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "lab", "host", "state", "created_at", "ended_at")

    def has_add_permission(self, request) -> bool:
        """Sessions are started by trainees (Start), never typed in here."""
        return False
    list_filter = ("state", "host", "lab")
    search_fields = ("id", "user__username")


@admin.register(StepProgress)
class StepProgressAdmin(admin.ModelAdmin):
    list_display = ("user", "step", "attempts", "hints_used", "solution_used", "passed_at", "passed_by")
    list_filter = ("step__lab",)


@admin.register(Recording)
class RecordingAdmin(admin.ModelAdmin):
    list_display = ("session", "created_at")
    search_fields = ("session__id", "session__user__username")
    readonly_fields = ("session", "cast", "created_at")


@admin.register(QuizAnswer)
class QuizAnswerAdmin(admin.ModelAdmin):
    list_display = ("user", "step", "correct", "at")
    list_filter = ("correct", "step__lab")


@admin.register(LabVersion)
class LabVersionAdmin(admin.ModelAdmin):
    list_display = ("lab", "number", "created_by", "created_at", "test_state", "published_at", "published_by")
    list_filter = ("test_state",)
    search_fields = ("lab__slug",)
    readonly_fields = ("lab", "number", "sha", "path", "files", "created_by", "created_at", "test_rows")


@admin.register(CheckRecord)
class CheckRecordAdmin(admin.ModelAdmin):
    list_display = ("user", "step", "passed", "by", "at")
    list_filter = ("passed", "step__lab")


class ReadOnlyAdmin(admin.ModelAdmin):
    """Made by the platform (docs/inside.md): shown, never edited by hand."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Checkpoint)
class CheckpointAdmin(ReadOnlyAdmin):
    list_display = ("id", "user", "session", "step", "diff_id", "size", "auto", "created_at")
    list_filter = ("auto",)


@admin.register(CommittedImage)
class CommittedImageAdmin(ReadOnlyAdmin):
    list_display = ("ref", "user", "digest", "size", "host", "created_at")


@admin.register(SessionImage)
class SessionImageAdmin(ReadOnlyAdmin):
    list_display = ("session", "ref")


@admin.register(LabUpload)
class LabUploadAdmin(ReadOnlyAdmin):
    list_display = ("id", "name", "user", "state", "phase", "created_at", "finished_at")
    list_filter = ("state",)
    search_fields = ("id", "name", "user__username")
    exclude = ("archive",)
