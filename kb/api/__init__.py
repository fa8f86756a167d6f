"""The REST API for internal apps (/api/v1/): Django REST framework over the same services as the
staff UI and the console, with token authentication and an OpenAPI 3.1 schema."""
