"""API tokens: created here (console, `create_token`), checked by the API's authentication.

A token is a random key; only its SHA-256 is stored, so a leaked database does not leak keys, and
lookups stay a single indexed equality (the key has 256 bits of entropy, so no slow hash is needed).
"""

import hashlib
import secrets
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from kb.models import ApiToken, Collection
from kb.services import audit

KEY_PREFIX = "kb_"
SHOWN_CHARACTERS = 8
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION_SECONDS = 60


@dataclass(frozen=True)
class NewToken:
    token: ApiToken
    key: str  # shown to its owner once; never stored


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def create_token(
    *,
    user,
    name: str,
    read_only: bool = False,
    collections: list[Collection] | tuple = (),
    actor=None,
    request=None,
) -> NewToken:
    """A new token for `user`; `collections` limits it to those (of the ones the user may read)."""
    token = ApiToken(user=user, name=name, read_only=read_only)
    key = assign_new_key(token)
    token.save()
    token.collections.set(collections)
    audit.record(
        action="create",
        actor=actor or user,
        target=token,
        request=request,
        user=user.get_username(),
        read_only=read_only,
        collections=sorted(collection.name for collection in collections),
    )
    return NewToken(token, key)


def assign_new_key(token: ApiToken) -> str:
    """Give an unsaved token a fresh key and return the key (the token keeps only its hash)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token.prefix = key[: len(KEY_PREFIX) + SHOWN_CHARACTERS]
    token.key_hash = hash_key(key)
    return key


def token_for_key(key: str) -> ApiToken | None:
    """The token with this key whose user is active, or None."""
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)).first()
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if (
        token.last_used_at is None
        or (now - token.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS
    ):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
