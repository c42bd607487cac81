from django.db import DatabaseError, connection
from django.http import JsonResponse


def healthz(request):
    """For load balancers and the demo's start-up wait: the database answers. JSON either way: 200
    when it does, 503 (what a balancer takes out of rotation) when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return JsonResponse({"ok": False, "database": f"unreachable: {type(exc).__name__}"}, status=503)
    return JsonResponse({"ok": True})
