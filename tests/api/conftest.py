"""An API client that checks every response against the served OpenAPI schema."""

import re

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import resolve
from jsonschema import Draft202012Validator, FormatChecker
from rest_framework.test import APIClient

from kb.models import Collection
from kb.services.tokens import create_token


def schema_path(path: str) -> str:
    """/api/v1/documents/7/versions -> /api/v1/documents/{id}/versions, as the schema names it."""
    route = resolve(path).route
    return "/" + re.sub(r"<(?:\w+:)?pk>", "{id}", route)


class OpenApiSchema:
    def __init__(self, document: dict):
        self.document = document

    def check(self, response) -> None:
        """The response's status, content type and body are those the schema documents."""
        path = schema_path(response.request["PATH_INFO"])
        method = response.request["REQUEST_METHOD"].lower()
        operation = self.document["paths"][path].get(method)
        if operation is None:  # a method the endpoint does not have: a 405 in the error format
            assert response.status_code == 405
            self._validate(response.json(), {"$ref": "#/components/schemas/Error"})
            return
        documented = operation["responses"]
        assert str(response.status_code) in documented, (
            f"{method.upper()} {path} answered {response.status_code}, which the schema does not document"
        )
        content = documented[str(response.status_code)].get("content")
        if content is None:
            assert not response.content
            return
        media_type = response["Content-Type"].split(";")[0]
        assert media_type in content, f"{method.upper()} {path}: {media_type} not documented"
        if media_type == "application/json":
            self._validate(response.json(), content[media_type]["schema"])

    def _validate(self, body, schema: dict) -> None:
        schema = {**schema, "components": self.document["components"]}
        Draft202012Validator(schema, format_checker=FormatChecker()).validate(body)


class CheckedClient(APIClient):
    """REST framework's test client whose every response is validated against the schema."""

    def __init__(self, schema: OpenApiSchema, **defaults):
        super().__init__(**defaults)
        self.schema = schema

    def request(self, **kwargs):
        response = super().request(**kwargs)
        self.schema.check(response)
        return response


@pytest.fixture(scope="session")
def openapi_schema(django_db_setup):
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return OpenApiSchema(response.json())


@pytest.fixture
def api(openapi_schema):
    """api(user, read_only=False, collections=()) -> a client sending that user's new token."""

    def client_for(user=None, **token_options):
        client = CheckedClient(openapi_schema)
        if user is not None:
            key = create_token(user=user, name="test", **token_options).key
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return client_for


@pytest.fixture
def curator(db):
    """carol, who reads and curates the collection HR."""
    collection = Collection.objects.create(name="HR")
    curators = Group.objects.create(name="hr-curators")
    collection.reader_groups.add(curators)
    collection.curator_groups.add(curators)
    carol = User.objects.create_user("carol", password="pw-carol-123")
    carol.groups.add(curators)
    return carol
