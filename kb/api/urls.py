from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerView

from kb.api import views
from kb.api.errors import not_found

app_name = "api"
urlpatterns = [
    path("collections", views.CollectionList.as_view(), name="collections"),
    path("documents", views.DocumentList.as_view(), name="documents"),
    path("documents/<int:pk>", views.DocumentDetail.as_view(), name="document"),
    path("documents/<int:pk>/versions", views.DocumentVersions.as_view(), name="document-versions"),
    path("jobs", views.JobList.as_view(), name="jobs"),
    path("jobs/<int:pk>", views.JobDetail.as_view(), name="job"),
    path("search", views.Search.as_view(), name="search"),
    path("ask", views.Ask.as_view(), name="ask"),
    path("conversations", views.ConversationList.as_view(), name="conversations"),
    path("conversations/<int:pk>", views.ConversationDetail.as_view(), name="conversation"),
    path("questions", views.QuestionList.as_view(), name="questions"),
    path("questions/<int:pk>", views.QuestionDetail.as_view(), name="question"),
    path("questions/<int:pk>/feedback", views.QuestionFeedback.as_view(), name="feedback"),
    path("batches", views.BatchCreate.as_view(), name="batches"),
    path("batches/<int:pk>", views.BatchDetail.as_view(), name="batch"),
    path("openapi.json", SpectacularJSONAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^.*$", not_found),
]
