"""API keys: the principals file (API_KEYS_FILE) and the command that issues a key.

The file is a JSON or YAML list of `{"name": …, "roles": […], "key_sha256": …}`; only the
SHA-256 of each key is stored, so the file can be read by operators without leaking a key.

    python -m api.keys create alice --role approver      # or: orchestrator-keys create …
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from pathlib import Path

import click
import yaml
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from api.principals import Principal, Role

KEY_PREFIX = "orc_"


class KeyEntry(BaseModel):
    """One line of API_KEYS_FILE: who a key belongs to and what it may do."""

    name: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")


class KeyFileError(ValueError):
    """API_KEYS_FILE is missing or malformed; the message names the file and the problem."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    # 32 random bytes: guessing is hopeless, so a plain SHA-256 (no salt, no stretching) suffices.
    return KEY_PREFIX + secrets.token_urlsafe(32)


def load_key_entries(path: Path) -> list[KeyEntry]:
    try:
        text = path.read_text()
    except OSError as err:
        raise KeyFileError(f"API_KEYS_FILE {path} cannot be read: {err}") from err
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise KeyFileError(f"API_KEYS_FILE {path} is not valid JSON or YAML: {err}") from err
    try:
        entries = TypeAdapter(list[KeyEntry]).validate_python(raw or [])
    except ValidationError as err:
        raise KeyFileError(f"API_KEYS_FILE {path} has an invalid entry: {err}") from err
    hashes = [entry.key_sha256 for entry in entries]
    if len(set(hashes)) != len(hashes):
        raise KeyFileError(f"API_KEYS_FILE {path} lists the same key twice; keep one entry.")
    return entries


class KeyRegistry:
    """Finds the principal a presented key belongs to."""

    def __init__(self, entries: list[KeyEntry]) -> None:
        self._entries = entries

    @classmethod
    def from_file(cls, path: Path) -> KeyRegistry:
        return cls(load_key_entries(path))

    def principal_for(self, key: str) -> Principal | None:
        digest = hash_key(key)
        found: KeyEntry | None = None
        # Compare with every entry in constant time, without stopping early, so the response
        # time says nothing about which stored hash a guess came close to.
        for entry in self._entries:
            if hmac.compare_digest(entry.key_sha256, digest):
                found = entry
        if found is None:
            return None
        return Principal(name=found.name, roles=frozenset(found.roles))


@click.group()
def cli() -> None:
    """Manage API keys for AUTH_MODE=api_key."""


@cli.command()
@click.argument("name")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice([role.value for role in Role]),
    help="A role for the key; repeat for several.",
)
def create(name: str, roles: tuple[str, ...]) -> None:
    """Create a key for NAME, print it once and the entry to add to API_KEYS_FILE."""
    key = new_key()
    entry = KeyEntry(name=name, roles=[Role(role) for role in roles], key_sha256=hash_key(key))
    click.echo(f"API key for {name} (shown only now; hand it over securely):")
    click.echo(key)
    click.echo("Add this entry to the list in API_KEYS_FILE, then restart the API:")
    click.echo(entry.model_dump_json())


if __name__ == "__main__":
    cli()
