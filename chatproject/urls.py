from django.contrib import admin
from django.urls import include, path

# /healthz and /readyz are answered by chat.health.HealthCheckMiddleware.
urlpatterns = [
    path("admin/", admin.site.urls),
    # The language switcher's form posts here (django.views.i18n.set_language).
    path("i18n/", include("django.conf.urls.i18n")),
    path("", include("chat.urls")),
]
