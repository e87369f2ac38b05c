"""`Authorization: Bearer <session token>` for the management API."""

from rest_framework import authentication, exceptions

from projects.services import session_user


class SessionTokenAuthentication(authentication.BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != self.keyword:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("malformed Authorization header: use 'Bearer <token>'")
        found = session_user(header[1])
        if found is None:
            raise exceptions.AuthenticationFailed("invalid or expired session token")
        return found  # (user, SessionToken): the token is request.auth, for logout

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
