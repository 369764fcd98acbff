"""The Django admin covers every model of the project's apps, and its pages render."""
from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.test import Client
from django.urls import reverse

PROJECT_APPS = ("labs", "cohorts")


def test_every_model_of_the_project_is_in_the_admin():
    missing = [m.__name__ for app in PROJECT_APPS for m in apps.get_app_config(app).get_models()
               if not admin.site.is_registered(m)]
    assert missing == []


@pytest.mark.django_db
def test_every_admin_changelist_renders_for_a_superuser(django_user_model):
    c = Client()
    c.force_login(django_user_model.objects.create_superuser("root", "root@example.org", "pw-for-tests-123"))
    for app in PROJECT_APPS:
        for model in apps.get_app_config(app).get_models():
            url = reverse(f"admin:{app}_{model._meta.model_name}_changelist")
            assert c.get(url).status_code == 200, url


@pytest.mark.django_db
def test_the_admin_names_the_labs_models_in_the_admins_language(django_user_model):
    c = Client()
    c.force_login(django_user_model.objects.create_superuser("root", "root@example.org", "pw-for-tests-123"))
    zh = c.get("/admin/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "沙箱会话" in zh and "步骤进度" in zh and "Sandbox sessions" not in zh
    en = c.get("/admin/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Sandbox sessions" in en and "沙箱会话" not in en


@pytest.mark.django_db
def test_every_model_and_app_in_the_admin_index_has_a_chinese_name(django_user_model):
    import re

    from django.contrib import admin
    from django.utils import translation

    c = Client()
    c.force_login(django_user_model.objects.create_superuser("root", "root@example.org", "pw-for-tests-123"))
    zh = c.get("/admin/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    with translation.override("zh-hans"):
        names = {str(m._meta.verbose_name_plural) for m in admin.site._registry} | {
            str(m._meta.app_config.verbose_name) for m in admin.site._registry}
    english = sorted(n for n in names if not re.search("[\u4e00-\u9fff]", n))
    assert english == [], english
    for name in names:
        assert name in zh or name.capitalize() in zh, name
    assert "identitys" not in zh and "progresss" not in zh
