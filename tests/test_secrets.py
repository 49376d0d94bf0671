"""Keys are stored only encrypted and never appear in clear in the database, output, export or errors."""

from __future__ import annotations

import os
import stat

from cryptography.fernet import Fernet

from tests.conftest import EXAMPLES, SENTINEL_ANTHROPIC, SENTINEL_OPENAI, run_process

CLOUD = str(EXAMPLES / "cloud-only.yaml")
SENTINELS = (SENTINEL_OPENAI, SENTINEL_ANTHROPIC)


def all_bytes(home) -> bytes:
    data = b""
    for p in home.rglob("*"):
        if p.is_file():
            data += p.read_bytes()
    return data


def test_sentinel_never_in_clear(home, cli, tmp_path):
    outputs = []
    for args in (("validate", "-f", CLOUD), ("diff", "-f", CLOUD), ("apply", "-f", CLOUD, "--yes"),
                 ("diff", "-f", CLOUD, "--json"), ("export",), ("providers", "list"), ("providers", "list", "--json")):
        code, out, err = cli(*args)
        assert code == 0, (args, out, err)
        outputs.append(out + err)
    text = "\n".join(outputs)
    for s in SENTINELS:
        assert s not in text
        assert s.encode() not in all_bytes(home)  # the SQLite file, WAL and all
    assert "sha256:" in text  # fingerprints are shown instead


def test_keys_decrypt_for_the_server(home, cli):
    assert cli("apply", "-f", CLOUD, "--yes")[0] == 0
    from mlxgw.store.db import Store
    from mlxgw.store.state import load_runtime

    revision, config, keys = load_runtime(Store())
    assert revision == 1
    assert keys == {"openai": SENTINEL_OPENAI, "anthropic": SENTINEL_ANTHROPIC}
    assert config["providers"][0]["api_key"] == "${env:OPENAI_API_KEY}"


def test_changed_env_value_is_a_masked_secret_change(home, cli, monkeypatch):
    assert cli("apply", "-f", CLOUD, "--yes")[0] == 0
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SENTINEL-rotated-99")
    code, out, err = cli("diff", "-f", CLOUD, "--exit-code")
    assert code == 2
    assert "~ secret openai: api_key from ${env:OPENAI_API_KEY} (sha256:" in out
    assert "SENTINEL" not in out + err


def test_unset_env_keeps_stored_key_but_fails_without_one(home, cli, monkeypatch):
    assert cli("apply", "-f", CLOUD, "--yes")[0] == 0
    monkeypatch.delenv("OPENAI_API_KEY")
    code, out, _ = cli("diff", "-f", CLOUD, "--exit-code")
    assert code == 0, out
    monkeypatch.setenv("MLXGW_HOME", str(home) + "-other")
    code, out, err = cli("apply", "-f", CLOUD, "--yes")
    assert code == 1
    assert "environment variable OPENAI_API_KEY is not set and the store holds no key for provider 'openai'" in err
    assert "mlxgw providers set-key openai" in err


def test_key_file_created_0600_and_named(home, cli, monkeypatch):
    monkeypatch.delenv("MLXGW_MASTER_KEY")
    code, out, err = cli("apply", "-f", CLOUD, "--yes")
    assert code == 0
    key_file = home / "master.key"
    assert f"created a new master key file {key_file}" in err
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    # Second use reads the same file and says nothing.
    code, out, err = cli("providers", "list")
    assert code == 0 and "created" not in err


def test_wrong_master_key_is_a_clear_error_and_changes_nothing(home, cli, monkeypatch):
    assert cli("apply", "-f", CLOUD, "--yes")[0] == 0
    before = cli("export")[1]
    monkeypatch.setenv("MLXGW_MASTER_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SENTINEL-new")
    code, out, err = cli("apply", "-f", CLOUD, "--yes")
    assert code == 1
    assert "the master key from MLXGW_MASTER_KEY cannot decrypt the key of provider 'openai'" in err
    assert cli("export")[1] == before


def test_malformed_master_key(home, tmp_path, cli, monkeypatch):
    monkeypatch.setenv("MLXGW_MASTER_KEY", "not-a-key-SENTINEL")
    code, out, err = cli("apply", "-f", CLOUD, "--yes")
    assert code == 1
    assert "MLXGW_MASTER_KEY does not hold a valid Fernet key" in err
    assert "not-a-key-SENTINEL" not in out + err
    assert "mlxgw keys generate" in err


def test_set_key_from_stdin_and_list(home, cli, tmp_path):
    assert cli("apply", "-f", CLOUD, "--yes")[0] == 0
    code, out, err = cli("providers", "set-key", "lan-box", input="sk-SENTINEL-lan\n")
    assert code == 0, err
    assert "sha256:" in out and "SENTINEL" not in out
    code, out, _ = cli("providers", "list", "--json")
    rows = {r["name"]: r for r in __import__("json").loads(out)}
    assert rows["lan-box"]["key_source"] == "set-key" and rows["lan-box"]["key"].startswith("sha256:")
    assert b"sk-SENTINEL-lan" not in all_bytes(home)
    # A key set outside the file survives re-applying the file.
    assert cli("diff", "-f", CLOUD, "--exit-code")[0] == 0
    code, _, err = cli("providers", "set-key", "ghost", input="x\n")
    assert code == 1 and "no provider named 'ghost'" in err


def test_set_key_in_a_real_process_never_reads_argv(home):
    r = run_process("providers", "set-key", "openai", "sk-SENTINEL-argv")
    assert r.returncode == 2  # an extra argument is a usage error, the key is not taken
    assert "Traceback" not in r.stderr


def test_rotate_with_key_file(home, cli, monkeypatch):
    monkeypatch.delenv("MLXGW_MASTER_KEY")
    assert cli("apply", "-f", CLOUD, "--yes")[0] == 0
    old = (home / "master.key").read_text()
    code, out, err = cli("keys", "rotate")
    assert code == 0 and "re-encrypted 2 secret(s)" in out
    new = (home / "master.key").read_text()
    assert new != old and len(new.split()) == 1
    from mlxgw.store.db import Store
    from mlxgw.store.state import load_runtime

    assert load_runtime(Store())[2]["openai"] == SENTINEL_OPENAI


def test_rotate_with_env_keys(home, cli, monkeypatch):
    old = os.environ["MLXGW_MASTER_KEY"]
    assert cli("apply", "-f", CLOUD, "--yes")[0] == 0
    code, _, err = cli("keys", "rotate")
    assert code == 1 and "MLXGW_MASTER_KEY=NEW,OLD" in err
    new = Fernet.generate_key().decode()
    monkeypatch.setenv("MLXGW_MASTER_KEY", f"{new},{old}")
    assert cli("keys", "rotate")[0] == 0
    monkeypatch.setenv("MLXGW_MASTER_KEY", new)
    assert cli("diff", "-f", CLOUD, "--exit-code")[0] == 0  # decrypts under the new key alone
