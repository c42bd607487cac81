import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
application = get_wsgi_application()

# Import every view now (the URLconf pulls them in), then put every object that exists at this
# point out of the garbage collector's sight: they live as long as the process anyway, and a full
# collection that walks them (~90,000 objects) stalls every thread of the worker for about 45 ms
# on a 2-core machine, a pause that lands on the annotators' p99. Requests still collect their own
# garbage as usual.
get_resolver().url_patterns  # noqa: B018 (imports the views)
gc.freeze()
