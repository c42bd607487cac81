from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import DatabaseError, connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render

from evalsite.core import workflows
from evalsite.core.decorators import staff_required
from evalsite.core.models import Workflow

# the site's mark: a green and a red bar (the figures' colours), the icon a browser asks every
# session for (without one, each session logged a 404)
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    '<rect x="1" y="3" width="9" height="4" fill="#3f7d4e"/><rect x="1" y="9" width="14" height="4" fill="#b5483f"/>'
    "</svg>"
)


def favicon(request):
    response = HttpResponse(FAVICON, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def healthz(request):
    """For load balancers and the demo's start-up wait: the database answers. JSON either way: 200
    when it does, 503 (what a balancer takes out of rotation) when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return JsonResponse({"ok": False, "database": f"unreachable: {type(exc).__name__}"}, status=503)
    return JsonResponse({"ok": True})


@staff_required
def workflow_list(request):
    """Every workflow with its steps as the last advance found them (reading changes no row)."""
    rows = []
    for flow in Workflow.objects.all()[:200]:
        kind = workflows.KINDS.get(flow.kind)
        try:
            link = kind.link(flow.subject_id) if kind else ""
        except ObjectDoesNotExist:
            link = ""
        steps = workflows.steps_of(flow)
        done = sum(step.state == "done" for step in steps)
        rows.append({"flow": flow, "link": link, "steps": steps, "done": done})
    return render(request, "core/workflows.html", {"rows": rows, "sweep": int(settings.WORKFLOW_SWEEP_SECONDS)})
