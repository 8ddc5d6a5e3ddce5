import functools

from django.contrib import admin
from django.core.exceptions import BadRequest, PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from core.errors import UNHANDLED, error_response, exception_response
from memcloud import schema  # noqa: F401 - registers the OpenAPI extensions
from ops import dashboard
from ops import views as ops_views
from ops.access import scrapers_only
from ops.metrics import metrics_view


@csrf_exempt
def mcp_view(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """/mcp, its protocol modules imported on the first MCP request: the SDK's types (pydantic
    models of every message) cost a worker about 40 MB, which workers that never serve MCP keep."""
    return _mcp_api()(request, *args, **kwargs)


@functools.cache
def _mcp_api():
    from mcpserver.views import McpApi

    return McpApi.as_view()


urlpatterns = [
    # The API first: Django tries patterns in order, and these take nearly every request.
    path("v1/openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("v1/", include("episodes.urls")),
    path("mcp", mcp_view, name="mcp"),
    path("health", ops_views.health, name="health"),
    path("ready", ops_views.ready, name="ready"),
    path("docs", SpectacularSwaggerView.as_view(url_name="openapi"), name="docs"),
    path("admin/", admin.site.urls),
    path("metrics", scrapers_only(metrics_view), name="metrics"),
    path("dashboard", dashboard.dashboard, name="dashboard"),
]


# Errors outside DRF views answer JSON too (docs/api.md §4: never an HTML page), from the same table.
def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return exception_response(exception or BadRequest())


def json_permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return exception_response(exception or PermissionDenied())


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return error_response(404, f"no such endpoint: {request.path}")


def json_server_error(request: HttpRequest) -> HttpResponse:
    return error_response(UNHANDLED.status, UNHANDLED.message)


# Last: any other path is a JSON 404, also with DEBUG on (whose 404 page would be HTML). CSRF-exempt:
# else a POST to an unknown path would get the CSRF failure page (HTML 403) instead.
urlpatterns.append(re_path(r"^.*$", csrf_exempt(json_not_found)))

handler400 = json_bad_request
handler403 = json_permission_denied
handler404 = json_not_found
handler500 = json_server_error
