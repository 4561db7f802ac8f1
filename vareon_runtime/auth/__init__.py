"""Accounts and access: users (and their view in memory), roles, argon2id passwords, JWTs,
sign-in limits, the mailer.

:class:`Auth` is the service the web front and the ``vareon user`` commands use; importing this
package also registers the ``users`` and ``refresh_tokens`` tables on the kernel's ``Base``
(migration ``0002_auth``).
"""

from vareon_runtime.auth.mail import Mail as Mail
from vareon_runtime.auth.mail import Mailer as Mailer
from vareon_runtime.auth.models import RefreshTokenRecord as RefreshTokenRecord
from vareon_runtime.auth.models import UserRecord as UserRecord
from vareon_runtime.auth.passwords import Passwords as Passwords
from vareon_runtime.auth.ratelimit import RateLimit as RateLimit
from vareon_runtime.auth.roles import Role as Role
from vareon_runtime.auth.schemas import Principal as Principal
from vareon_runtime.auth.schemas import TokenPair as TokenPair
from vareon_runtime.auth.schemas import User as User
from vareon_runtime.auth.service import PASSWORD_MAX as PASSWORD_MAX
from vareon_runtime.auth.service import PASSWORD_MIN as PASSWORD_MIN
from vareon_runtime.auth.service import Auth as Auth
from vareon_runtime.auth.service import check_email as check_email
from vareon_runtime.auth.service import check_password as check_password
from vareon_runtime.auth.service import check_username as check_username
from vareon_runtime.auth.shown import shown as shown
from vareon_runtime.auth.throttle import LoginThrottle as LoginThrottle
from vareon_runtime.auth.throttle import address_key as address_key
from vareon_runtime.auth.tokens import Tokens as Tokens
from vareon_runtime.auth.tokens import load_signing_key as load_signing_key
from vareon_runtime.auth.view import SignInWatch as SignInWatch
from vareon_runtime.auth.view import UserEntry as UserEntry
from vareon_runtime.auth.view import UserNotes as UserNotes
from vareon_runtime.auth.view import UserView as UserView

__all__ = [
    "PASSWORD_MAX",
    "PASSWORD_MIN",
    "Auth",
    "LoginThrottle",
    "Mail",
    "Mailer",
    "Passwords",
    "Principal",
    "RateLimit",
    "RefreshTokenRecord",
    "Role",
    "SignInWatch",
    "TokenPair",
    "Tokens",
    "User",
    "UserEntry",
    "UserNotes",
    "UserRecord",
    "UserView",
    "address_key",
    "check_email",
    "check_password",
    "check_username",
    "load_signing_key",
    "shown",
]
