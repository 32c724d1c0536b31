from django.contrib import admin
from django.urls import include, path

# /healthz and /readyz are answered by chat.health.HealthCheckMiddleware.
urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("chat.urls")),
]
