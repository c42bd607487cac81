import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_staff_sees_the_seeded_catalogue_in_the_admin_and_home(staff_client):
    call_command("seed")
    page = staff_client.get("/admin/catalog/promptset/")
    assert page.status_code == 200
    assert b"lima-style-test" in page.content and b"lima-style-dev" in page.content
    page = staff_client.get("/admin/catalog/prompt/?q=lighthouse")
    assert b"lighthouse keeper" in page.content
    page = staff_client.get("/admin/catalog/system/")
    assert b"smollm2-135m-instruct" in page.content
    home = staff_client.get("/")
    assert b"lima-style-train" in home.content
    for url in ("/admin/catalog/response/", "/admin/core/selftestjob/"):
        assert staff_client.get(url).status_code == 200


def test_annotators_cannot_open_the_admin(annotator_client):
    page = annotator_client.get("/admin/catalog/prompt/")
    assert page.status_code == 302 and "/admin/login/" in page["Location"]
    assert b"lima-style" not in annotator_client.get("/").content


def test_anonymous_users_are_sent_to_login(client):
    page = client.get("/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    assert client.get("/healthz").json() == {"ok": True}


def test_the_annotators_group_exists_after_migrate():
    """The migration that makes the group, run as migrate runs it (a transactional test earlier in
    the same test process may have flushed the rows migrations made)."""
    from importlib import import_module

    from django.apps import apps
    from django.contrib.auth.models import Group

    migration = import_module("evalsite.core.migrations.0002_annotators_group")
    Group.objects.filter(name="annotators").delete()
    migration.create_group(apps, None)
    migration.create_group(apps, None)  # and again: migrating twice makes one
    assert Group.objects.filter(name="annotators").count() == 1
