from django.contrib import admin
from django.http import HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template import loader
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apikeys import urls as apikeys_urls
from gateway import health
from gateway.api import error_body
from projects import urls as projects_urls
from usage import urls as usage_urls

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include("projects.urls")),
    path("api/v1/", include("apikeys.urls")),
    path("api/v1/", include("usage.urls")),
    # The dashboard: server-rendered pages (projects/, apikeys/, usage/ views.py).
    path("", include(projects_urls.pages)),
    path("", include(apikeys_urls.pages)),
    path("", include(usage_urls.pages)),
]


def _json_for_api(request) -> bool:
    return request.path.startswith(("/api/", "/v1/"))


def handler404(request, exception=None):
    if _json_for_api(request):
        return JsonResponse(error_body("no such endpoint", "not_found"), status=404)
    context = {"title": "Page not found", "status": 404, "request_path": request.path}
    return render(request, "404.html", context, status=404)


def handler403(request, exception=None):
    if _json_for_api(request):
        return JsonResponse(error_body("not allowed", "permission_denied"), status=403)
    context = {"title": "Not allowed", "status": 403, "exception": str(exception or "")}
    return render(request, "403.html", context, status=403)


def handler500(request):
    if _json_for_api(request):
        return JsonResponse(error_body("internal error; it has been logged", "internal_error"), status=500)
    # Rendered without a request context: the page must not need the database.
    return HttpResponseServerError(loader.get_template("500.html").render())
