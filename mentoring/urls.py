from django.urls import path


app_name = "mentoring"

urlpatterns: list = []
