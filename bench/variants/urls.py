from django.contrib import admin
from django.urls import include, path

from bench.variants import views

accounts = (
    [
        path("", views.signup, name="signup"),
        path("thanks/", views.thanks, name="thanks"),
    ],
    "accounts",
)
urlpatterns = [
    path("", include(accounts)),
    path("admin/", admin.site.urls),
]
