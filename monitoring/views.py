"""GET /metrics: Prometheus text format, behind a bearer token (METRICS_TOKEN)."""
from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from labs.redis import sync_redis
from monitoring.collector import LabCollector


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Off (404) without METRICS_TOKEN; 401 without a bearer token, 403 with a wrong one."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("metrics are off")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        response = HttpResponse("bearer token required\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HttpResponse("wrong token\n", status=403, content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LabCollector(sync_redis()))
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
