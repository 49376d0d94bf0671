"""The secret box: API keys are only ever stored Fernet-encrypted.

The master key comes from MLXGW_MASTER_KEY (one Fernet key, or several separated by commas: the first
encrypts, all decrypt, which is how a rotation is rolled out), else from the key file
`$MLXGW_HOME/master.key`, created with mode 0600 on first use. Nothing here ever puts a key, master or
provider, into an exception message.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from mlxgw.errors import SecretError

ENV = "MLXGW_MASTER_KEY"


def _parse(text: str, source: str) -> list[bytes]:
    keys = []
    for part in (p.strip() for p in text.replace("\n", ",").split(",")):
        if not part:
            continue
        try:
            Fernet(part.encode())
        except (ValueError, TypeError):
            raise SecretError(
                f"{source} does not hold a valid Fernet key (32 url-safe base64-encoded bytes)",
                "generate one with `mlxgw keys generate`",
            ) from None
        keys.append(part.encode())
    if not keys:
        raise SecretError(f"{source} is empty", "set it to a key from `mlxgw keys generate`")
    return keys


class SecretBox:
    def __init__(self, keys: list[bytes], source: str, created: Path | None = None):
        self.keys = keys
        self.source = source  # "MLXGW_MASTER_KEY" or the key file's path, for messages
        self.created = created  # set when this call created the key file, so the CLI can say so
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def load(cls, home: Path, environ=os.environ, create: bool = True, holding: int = 0) -> SecretBox:
        """The box from MLXGW_MASTER_KEY or the key file; without either, a new key file when `create`.
        `holding`: how many secrets the store holds (named in the error when there is no key)."""
        if environ.get(ENV):
            return cls(_parse(environ[ENV], ENV), ENV)
        path = home / "master.key"
        if path.exists():
            try:
                text = path.read_text()
            except OSError as exc:
                raise SecretError(f"cannot read the master key file {path}: {exc.strerror}",
                                  "fix its permissions or set MLXGW_MASTER_KEY") from None
            return cls(_parse(text, f"the master key file {path}"), str(path))
        if not create:
            held = f"the store holds {holding} encrypted secret(s) but " if holding else ""
            raise SecretError(f"no master key: {held}MLXGW_MASTER_KEY is unset and there is no key file {path}",
                              f"restore {path} (from a backup), or set MLXGW_MASTER_KEY to the key the secrets "
                              "were stored with; a new key cannot read them")
        key = Fernet.generate_key()
        write_key_file(path, [key])
        return cls([key], str(path), created=path)

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str, what: str = "a stored secret") -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretError(
                f"the master key from {self.source} cannot decrypt {what}",
                f"set {ENV} to the key the secrets were stored with (a rotation keeps the old key as "
                f"`NEW,OLD` until `mlxgw keys rotate` finishes)",
            ) from None

    def rotate(self, token: str) -> str:
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise SecretError(f"the master key from {self.source} cannot decrypt a stored secret",
                              f"add the old key after the new one: {ENV}=NEW,OLD") from None


def write_key_file(path: Path, keys: list[bytes]) -> None:
    """Write keys atomically with mode 0600 (the file is never readable by others, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(k.decode() for k in keys) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
