"""OpenAPI details drf-spectacular cannot guess from our views."""

import re
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


class Schema(AutoSchema):
    def get_operation_id(self) -> str:
        # Our collections answer {"projects": [...]}: a GET on a path that does not end in
        # an id is a list, which drf-spectacular cannot see through the envelope.
        if self.method == "GET" and not re.search(r"\{[^}]+\}$", self.path):
            tokens = [t.replace("-", "_") for t in self._tokenize_path()]
            return "_".join(tokens + ["list"])
        return super().get_operation_id()


# drf-spectacular leaves its extensions' __init_subclass__ (the registration) unannotated
class SessionTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "projects.auth.SessionTokenAuthentication"
    name = "sessionToken"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {"type": "http", "scheme": "bearer", "description": "a session token from /api/v1/auth/login"}
