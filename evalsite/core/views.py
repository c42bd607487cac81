from django.contrib.auth.decorators import login_required
from django.db import connection
from django.db.models import Count
from django.http import JsonResponse
from django.shortcuts import redirect, render

from evalsite.catalog.models import PromptSet, System


def healthz(request):
    """For load balancers and the demo's start-up wait: the database answers."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"ok": True})


@login_required
def home(request):
    if not request.user.is_staff:
        return redirect("annotation:home")
    context = {
        "prompt_sets": PromptSet.objects.annotate(n=Count("prompts")),
        "systems": System.objects.annotate(n=Count("responses")),
    }
    return render(request, "core/home.html", context)
