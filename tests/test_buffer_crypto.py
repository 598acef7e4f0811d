"""Encryption at rest of the disk buffer: key loading, AES-GCM sealing, wrong keys reported."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from logcap.messages import Entries
from logcap.origin import FILE_KIND, ReadToken
from logcap.state.buffer import SegmentStore, verify_directory
from logcap.state.buffer.crypto import (
    KEY_BYTES,
    SEALED_OVERHEAD_BYTES,
    Cipher,
    DecryptionError,
    KeyLoadError,
    cipher_from_settings,
    load_key,
    parse_key,
)
from logcap.state.buffer.record import HEADER_BYTES

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def batch(n: int, *, marker: str = "secret-payload") -> list[Entries]:
    return [Entries("src", "/var/log/app.log", (("job", "app"),),
                    [f"{marker} {n} {i}" for i in range(20)], 1_000 * n,
                    ReadToken("src", FILE_KIND, None, n, n + 1, "1:1", 0), 100)]


def open_store(directory: Path, cipher: Cipher | None) -> SegmentStore:
    store = SegmentStore(directory, ["loki"], max_file_size=4096, max_total_size=1 << 20,
                         cipher=cipher)
    store.open()
    return store


# --- key material ----------------------------------------------------------------------------


@pytest.mark.parametrize("encode", [
    lambda k: k.hex(),
    lambda k: k.hex().upper(),
    lambda k: base64.b64encode(k).decode(),
    lambda k: base64.b64encode(k).decode().rstrip("="),
    lambda k: base64.urlsafe_b64encode(k).decode(),
    lambda k: f"  {k.hex()}\n",
])
def test_a_key_is_accepted_as_hex_or_base64(encode: object) -> None:
    key = bytes([0xFB, 0xFF] * 16)
    assert parse_key(encode(key), origin="test") == key  # type: ignore[operator]


def test_a_key_file_may_hold_the_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(KEY)
    assert load_key(key_file=str(path)) == KEY


@pytest.mark.parametrize("material", ["", "abcd", "00" * 31, "00" * 33,
                                      base64.b64encode(b"x" * 31).decode(), "not a key at all!"])
def test_a_key_of_the_wrong_size_is_refused_naming_its_origin(material: str) -> None:
    with pytest.raises(KeyLoadError, match="environment variable 'K'") as caught:
        parse_key(material, origin="environment variable 'K'")
    assert material.strip() == "" or material not in str(caught.value)


def test_the_key_is_loaded_from_the_named_environment_variable() -> None:
    environ = {"LOGCAP_BUFFER_KEY": base64.b64encode(KEY).decode()}
    assert load_key(key_env="LOGCAP_BUFFER_KEY", environ=environ) == KEY
    with pytest.raises(KeyLoadError, match="'MISSING' is not set"):
        load_key(key_env="MISSING", environ=environ)
    with pytest.raises(KeyLoadError, match="'EMPTY' is not set or empty"):
        load_key(key_env="EMPTY", environ={"EMPTY": ""})


def test_a_missing_or_oversized_key_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match="nope"):
        load_key(key_file=str(tmp_path / "nope"))
    big = tmp_path / "big"
    big.write_bytes(b"0" * 10_000)
    with pytest.raises(KeyLoadError, match="too large"):
        load_key(key_file=str(big))


def test_exactly_one_key_source_must_be_given() -> None:
    with pytest.raises(KeyLoadError, match="exactly one"):
        load_key()
    with pytest.raises(KeyLoadError, match="exactly one"):
        load_key(key_env="A", key_file="/b")


def test_cipher_from_settings_is_none_when_disabled() -> None:
    assert cipher_from_settings(enabled=False, key_env="X") is None
    environ = {"K": KEY.hex()}
    cipher = cipher_from_settings(enabled=True, key_env="K", environ=environ)
    assert cipher is not None and cipher.key_id == Cipher(KEY).key_id


# --- sealing ---------------------------------------------------------------------------------


def test_sealing_round_trips_and_uses_a_fresh_nonce_each_time() -> None:
    cipher = Cipher(KEY)
    first, second = cipher.seal(b"hello", b"aad"), cipher.seal(b"hello", b"aad")
    assert first != second
    assert len(first) == 5 + SEALED_OVERHEAD_BYTES
    assert cipher.open(first, b"aad", where="f", seq=1) == b"hello"
    assert repr(cipher) == f"Cipher(key_id={cipher.key_id.hex()})"
    assert KEY.hex() not in repr(cipher)


def test_a_payload_sealed_under_another_key_is_reported_as_a_wrong_key() -> None:
    sealed = Cipher(OTHER_KEY).seal(b"data", b"aad")
    with pytest.raises(DecryptionError, match=r"seg-1\.seg: record 9: wrong key") as caught:
        Cipher(KEY).open(sealed, b"aad", where="seg-1.seg", seq=9)
    assert caught.value.where == "seg-1.seg" and caught.value.seq == 9
    assert Cipher(OTHER_KEY).key_id.hex() in str(caught.value)


@pytest.mark.parametrize("damage", ["ciphertext", "aad", "short"])
def test_a_tampered_payload_fails_authentication(damage: str) -> None:
    cipher = Cipher(KEY)
    sealed = bytearray(cipher.seal(b"data" * 10, b"aad"))
    aad = b"aad"
    if damage == "ciphertext":
        sealed[-1] ^= 1
    elif damage == "aad":
        aad = b"other"
    else:
        sealed = sealed[:10]
    with pytest.raises(DecryptionError):
        cipher.open(bytes(sealed), aad, where="f", seq=1)


def test_a_key_of_the_wrong_length_cannot_make_a_cipher() -> None:
    with pytest.raises(KeyLoadError):
        Cipher(b"short")
    assert KEY_BYTES == 32


# --- in the store ----------------------------------------------------------------------------


def test_an_encrypted_buffer_round_trips_and_holds_no_plaintext(tmp_path: Path) -> None:
    store = open_store(tmp_path, Cipher(KEY))
    for n in range(1, 11):
        store.append(batch(n))
    assert [b for _, b in store.read("loki", 100)] == [batch(n) for n in range(1, 11)]
    store.close()
    for segment in tmp_path.glob("*.seg"):
        assert b"secret-payload" not in segment.read_bytes()
    store = open_store(tmp_path, Cipher(KEY))
    assert [seq for seq, _ in store.read("loki", 100)] == list(range(1, 11))
    store.close()


def test_a_wrong_key_is_reported_at_open_and_read_never_yields_garbage(tmp_path: Path) -> None:
    store = open_store(tmp_path, Cipher(KEY))
    for n in range(1, 4):
        store.append(batch(n))
    store.close()
    store = SegmentStore(tmp_path, ["loki"], cipher=Cipher(OTHER_KEY))
    report = store.open()
    assert report.key_problems and "0000000000000001.seg" in report.key_problems[0]
    assert "key id" in report.key_problems[0]
    with pytest.raises(DecryptionError, match=r"0000000000000001\.seg: record 1: wrong key"):
        store.read("loki", 10)
    with pytest.raises(DecryptionError):
        store.read("loki", 10)
    assert store.stats()["dropped"]["corrupt"]["batches"] == 0
    store.close()
    store = open_store(tmp_path, Cipher(KEY))
    assert [seq for seq, _ in store.read("loki", 10)] == [1, 2, 3]
    store.close()


def test_encrypted_records_without_a_key_are_reported_not_skipped(tmp_path: Path) -> None:
    store = open_store(tmp_path, Cipher(KEY))
    store.append(batch(1))
    store.close()
    store = SegmentStore(tmp_path, ["loki"])
    report = store.open()
    assert any("no key is configured" in problem for problem in report.key_problems)
    with pytest.raises(DecryptionError, match="no key is configured"):
        store.read("loki", 1)
    store.close()


def test_turning_encryption_on_keeps_old_plain_records_readable(tmp_path: Path) -> None:
    store = open_store(tmp_path, None)
    store.append(batch(1))
    store.close()
    store = open_store(tmp_path, Cipher(KEY))
    store.append(batch(2))
    assert [b for _, b in store.read("loki", 10)] == [batch(1), batch(2)]
    store.close()


def test_a_read_returns_what_precedes_a_key_problem_then_raises(tmp_path: Path) -> None:
    store = open_store(tmp_path, None)
    store.append(batch(1))
    store.close()
    store = open_store(tmp_path, Cipher(KEY))
    store.append(batch(2))
    store.close()
    store = open_store(tmp_path, None)
    assert [seq for seq, _ in store.read("loki", 10)] == [1]
    with pytest.raises(DecryptionError):
        store.read("loki", 10)
    store.close()


def test_damage_to_an_encrypted_record_is_corruption_not_a_key_error(tmp_path: Path) -> None:
    store = open_store(tmp_path, Cipher(KEY))
    for n in range(1, 4):
        store.append(batch(n))
    offset = store.segments()[0].bytes
    store.close()
    path = tmp_path / "0000000000000001.seg"
    data = bytearray(path.read_bytes())
    first_size = int.from_bytes(data[5:9], "little") + HEADER_BYTES
    data[first_size + HEADER_BYTES + 20] ^= 0x01
    path.write_bytes(bytes(data))
    assert offset == len(data)
    store = open_store(tmp_path, Cipher(KEY))
    assert [seq for seq, _ in store.read("loki", 10)] == [1, 3]
    assert store.stats()["dropped"]["corrupt"]["batches"] == 1
    store.close()


def test_verify_names_the_file_of_every_record_the_key_cannot_open(tmp_path: Path) -> None:
    store = open_store(tmp_path, Cipher(KEY))
    for n in range(1, 4):
        store.append(batch(n))
    store.close()
    good = verify_directory(tmp_path, cipher=Cipher(KEY))
    assert good.ok, good.format()
    bad = verify_directory(tmp_path, cipher=Cipher(OTHER_KEY))
    assert not bad.ok and bad.segments[0].undecodable == 3
    assert "0000000000000001.seg: record 1: wrong key" in bad.format()
    unchecked = verify_directory(tmp_path)
    assert unchecked.ok and unchecked.segments[0].encrypted_unchecked == 3
    assert os.listdir(tmp_path)
