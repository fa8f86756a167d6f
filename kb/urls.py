from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from kb import console, views
from kb.auth import SignInForm

handler500 = "kb.views.server_error"

urlpatterns = [
    path("", views.ask_page, name="ask"),
    path("conversations/<int:conversation_id>", views.ask_page, name="conversation"),
    path("conversations/<int:conversation_id>/rename", views.rename, name="rename-conversation"),
    path("conversations/<int:conversation_id>/delete", views.delete, name="delete-conversation"),
    path("questions/<int:question_id>", views.question_page, name="question"),
    path("questions/<int:question_id>/feedback", views.feedback, name="feedback"),
    path("ask", views.ask_stream, name="ask-stream"),
    path("citations/<int:citation_id>", views.citation_panel, name="citation"),
    path("files/<int:version_id>", views.original_file, name="original-file"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=SignInForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("healthz", views.healthz, name="healthz"),
    path("admin/dashboard/", admin.site.admin_view(console.dashboard_view), name="dashboard"),
    path("admin/review/", admin.site.admin_view(console.review_queue_view), name="review-queue"),
    path("admin/review/<int:answer_id>/", admin.site.admin_view(console.review_view), name="review"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("kb.api.urls")),
]
