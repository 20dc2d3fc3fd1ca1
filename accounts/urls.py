from django.urls import path

from accounts import views

app_name = "accounts"
urlpatterns = [
    path("", views.signup, name="signup"),
    path("thanks/", views.thanks, name="thanks"),
    path("confirm/<str:token>/", views.confirm, name="confirm"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
