from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, StringConstraints

from emporium.kit.schemas import Schema, TrimmedStr, reject_nul

MAX_EMAIL_LENGTH = 320
PASSWORD_MIN, PASSWORD_MAX = 8, 256
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def normalise_email(value: str) -> str:
    """Emails are compared and stored in lower case; the result must still fit the column."""
    email = value.strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not email.isprintable() or not _EMAIL.fullmatch(email):
        raise ValueError("must be a valid email address")
    return email


# Length limits come before the NUL check so that a too-long value gets the plain message.
Email = Annotated[
    str,
    StringConstraints(max_length=MAX_EMAIL_LENGTH),
    AfterValidator(reject_nul),
    AfterValidator(normalise_email),
]
NewPassword = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX),
    AfterValidator(reject_nul),
]
# Optional, but a name given must show something: "   " and "\u200b" are refused like "".
Name = Annotated[TrimmedStr, StringConstraints(min_length=1, max_length=200)]


class RegisterRequest(Schema):
    email: Email
    password: NewPassword
    name: Name = ""


# No minimum here: a short password is simply wrong credentials.
GivenPassword = Annotated[
    str, StringConstraints(min_length=1, max_length=PASSWORD_MAX), AfterValidator(reject_nul)
]


class LoginRequest(Schema):
    email: Email
    password: GivenPassword


class PasswordChange(Schema):
    current_password: GivenPassword
    new_password: NewPassword


class UserOut(Schema):
    id: int
    email: str
    name: str
    role: str
    seller_id: int | None


class LoginResponse(Schema):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserOut
