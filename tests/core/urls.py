"""The project's URLs plus views that raise, for tests/core/test_errors.py."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from core.errors import Forbidden, InvalidInput
from memcloud.urls import handler400, handler403, handler404, handler500  # noqa: F401 - Django reads them here
from memcloud.urls import urlpatterns as project_urlpatterns

RAISED = {
    "operational": lambda: OperationalError("connection refused"),
    "database": lambda: DatabaseError("relation does not exist"),
    "too-big": lambda: RequestDataTooBig("too big"),
    "suspicious": lambda: SuspiciousOperation("Invalid HTTP_HOST header: 'evil'"),
    "denied": lambda: PermissionDenied(),
    "missing": lambda: Http404("gone"),
    "forbidden": lambda: Forbidden("tenant 'x' is inactive"),
    "invalid": lambda: InvalidInput("reward: must be a number"),
    "bug": lambda: ZeroDivisionError("division by zero"),
}


@csrf_exempt
def plain(request: HttpRequest, what: str) -> HttpResponse:
    raise RAISED[what]()


class Drf(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request, what: str):
        raise RAISED[what]()


urlpatterns = [
    path("raise/plain/<str:what>", plain),
    path("raise/drf/<str:what>", Drf.as_view()),
    *project_urlpatterns,
]
