"""The URL map: health, admin, the REST API and its docs, and the dashboard. /v1 never comes
here: config/asgi.py sends it to the gateway's own ASGI app."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apikeys import urls as apikeys_urls
from core import health
from projects import urls as projects_urls
from usage import urls as usage_urls

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script as a file: the page needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    path("api/v1/", include("projects.urls")),
    path("api/v1/", include("apikeys.urls")),
    path("api/v1/", include("usage.urls")),
    # The dashboard: server-rendered pages (projects/, apikeys/, usage/ views.py).
    path("", include(projects_urls.pages)),
    path("", include(apikeys_urls.pages)),
    path("", include(usage_urls.pages)),
]


handler403 = "core.views.permission_denied"
handler404 = "core.views.page_not_found"
handler500 = "core.views.server_error"
