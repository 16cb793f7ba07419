"""The fleet protocol without a broker: the [mqtt] config, signed/encrypted envelopes, a
device's ordered and idempotent application of changes, command checks, the audit collector,
and the door's command port (relock, lockdown, remote unlock) on the real daemon loop.

The embeddings here are random unit vectors: these tests are about bookkeeping (signatures,
sequence numbers, atomic gallery writes), not recognition; tests/test_fleet_real_faces.py and
tests/test_fleet_broker.py carry real LFW templates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from doubles import FakeClock, ManualTimer, ScriptedIdentifier, enrolled

from edgeface.door.actuators import FailSecureActuator, FileRelayActuator, read_relay_state
from edgeface.door.audit import AuditLog, verify_files
from edgeface.door.config import parse_config
from edgeface.door.daemon import DoorDaemon
from edgeface.door.port import DoorCommand, TeeAudit
from edgeface.errors import ConfigError
from edgeface.fleet import envelope
from edgeface.fleet.apply import ChangeApplier, CommandGate, StateStore, content_hash, model_header
from edgeface.fleet.collect import AuditCollector
from edgeface.fleet.config import load_mqtt_section
from edgeface.fleet.discovery import discovery_messages
from edgeface.fleet.errors import RefusedMessage
from edgeface.gallery import GalleryFile, RawKey
from edgeface.gallery.store import ModelRef

MODEL = ModelRef("mobilefacenet", "ab" * 32)
OTHER = ModelRef("other-net", "cd" * 32)
FLEET_KEY = bytes(range(32))

# --- config -------------------------------------------------------------------------------


def door_raw(tmp_path: Path, **mqtt) -> dict:
    return {
        "camera": {"kind": "images", "path": str(tmp_path)},
        "actuator": {"kind": "dryrun"},
        "mqtt": {"host": "broker.lan", "device_id": "door-1", **mqtt},
    }


def test_mqtt_section_defaults(tmp_path: Path) -> None:
    cfg = parse_config(door_raw(tmp_path)).mqtt
    assert cfg is not None
    assert cfg.prefix == "edgeface/door-1" and cfg.user == "door-1" and cfg.port == 1883
    assert cfg.qos == 1 and not cfg.remote_unlock and not cfg.accepts_fleet
    assert parse_config(door_raw(tmp_path, tls=True)).mqtt.port == 8883
    assert parse_config({k: v for k, v in door_raw(tmp_path).items() if k != "mqtt"}).mqtt is None


@pytest.mark.parametrize(
    ("mqtt", "message"),
    [
        ({"device_id": "door/1"}, "mqtt.device_id: letters"),
        ({"device_id": "fleet"}, "operator's topic"),
        ({"qos": 3}, "mqtt.qos: 0, 1 or 2"),
        ({"port": 70000}, "mqtt.port"),
        ({"pasword_file": "x"}, "mqtt.pasword_file: unknown key"),
        (
            {"password_file": "a", "password_credential": "b"},
            "password_file or password_credential",
        ),
        ({"topic_prefix": "a/#"}, "mqtt.topic_prefix"),
        ({"ca_file": "ca.pem"}, "tls = false"),
        ({"cert_file": "c.pem", "tls": True}, "needs both cert_file and key_file"),
        ({"operator_public_key": "op.pub"}, "needs the fleet key"),
        ({"remote_unlock": True}, "needs operator_public_key"),
        ({"reconnect_min_s": 5.0, "reconnect_max_s": 1.0}, "reconnect_max_s"),
    ],
)
def test_mqtt_section_errors_name_the_key(tmp_path: Path, mqtt: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_config(door_raw(tmp_path, **mqtt))


def test_password_from_file_or_systemd_credential(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = load_mqtt_section({"host": "h", "device_id": "d", "password_file": "pw"}, tmp_path)
    assert cfg.password() == "s3cret"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "edgeface-mqtt.password").write_text("from-tpm")
    cfg = load_mqtt_section(
        {"host": "h", "device_id": "d", "password_credential": "edgeface-mqtt.password"}, tmp_path
    )
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY"):
        cfg.password()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert cfg.password() == "from-tpm"
    missing = load_mqtt_section({"host": "h", "device_id": "d", "password_file": "nope"}, tmp_path)
    with pytest.raises(ConfigError, match="cannot read the password"):
        missing.password()


# --- changes ------------------------------------------------------------------------------------


def person(rng: np.random.Generator, iid: str, name: str, n: int = 2) -> envelope.IdentityRecord:
    e = rng.standard_normal((n, 128)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    return envelope.IdentityRecord(iid, name, e, [0.99] * n, [1000.0] * n)


class Operator:
    def __init__(self, key: Ed25519PrivateKey | None = None, fleet_key: bytes = FLEET_KEY):
        self.key = key or Ed25519PrivateKey.generate()
        self.fleet_key = fleet_key

    def change(self, seq: int, op: str, body: bytes, model: ModelRef = MODEL, kind="change"):
        header = {
            "kind": kind,
            "op": op,
            "seq": seq,
            "issued": 0.0,
            "embedder": model_header(model),
        }
        return envelope.seal(header, envelope.encrypt(self.fleet_key, body, header), self.key)

    def upsert(self, seq: int, people, **kw) -> bytes:
        return self.change(seq, "upsert", envelope.pack_identities(people), **kw)

    def remove(self, seq: int, ids) -> bytes:
        return self.change(seq, "remove", json.dumps({"ids": ids}).encode())

    def snapshot(self, seq: int, people) -> bytes:
        return self.change(seq, "snapshot", envelope.pack_identities(people), kind="snapshot")


@pytest.fixture
def device(tmp_path: Path):
    op = Operator()
    gf = GalleryFile(tmp_path / "g.efg", RawKey(bytes(32)))
    gf.create(model=MODEL)
    seen: list = []
    return op, gf, make_applier(gf, op, tmp_path / "fleet", on_gallery=seen.append), seen


def make_applier(gf: GalleryFile, op: Operator, state_dir: Path, **kw) -> ChangeApplier:
    return ChangeApplier(
        gf,
        operator_key=op.key.public_key(),
        fleet_key=FLEET_KEY,
        state=StateStore(state_dir),
        model=MODEL,
        **kw,
    )


def ids(gf: GalleryFile) -> set[str]:
    return {i.id for i in gf.load().identities()}


def test_changes_apply_in_order_and_are_held_when_early(device, rng) -> None:
    op, gf, applier, seen = device
    a, b = person(rng, "id-a", "Ada"), person(rng, "id-b", "Bob")
    out = applier.offer(op.upsert(2, [b]))
    assert [(o.status, o.reason) for o in out] == [("pending", "out_of_order")]
    assert ids(gf) == set()
    out = applier.offer(op.upsert(1, [a]))
    assert [(o.status, o.seq) for o in out] == [("applied", 1), ("applied", 2)]
    assert ids(gf) == {"id-a", "id-b"} and applier.applied_seq == 2
    assert seen[-1].generation == gf.load().generation
    out = applier.offer(op.remove(3, ["id-a"]))
    assert out[0].status == "applied" and ids(gf) == {"id-b"}
    g = gf.load()
    assert g.info("id-b").name == "Bob"
    np.testing.assert_allclose(g.templates("id-b")[0].embedding, b.embeddings[0], atol=1e-6)


def test_forged_unsigned_tampered_replayed_and_foreign_model_are_refused(device, rng) -> None:
    op, gf, applier, _ = device
    good = op.upsert(1, [person(rng, "id-a", "Ada")])
    assert applier.offer(good)[0].status == "applied"
    gen = gf.load().generation

    def reason(payload: bytes, retained: bool = False) -> str:
        out = applier.offer(payload, retained=retained)
        assert out[0].status in ("refused", "duplicate"), out
        return out[0].reason or out[0].status

    assert reason(Operator().upsert(2, [person(rng, "x", "Eve")])) == "bad_signature"
    header, body = envelope.parse(op.upsert(2, [person(rng, "x", "Eve")]))
    header.pop("sig")
    assert reason(envelope.canonical(header) + b"\n" + body) == "unsigned"
    tampered = bytearray(op.upsert(2, [person(rng, "x", "Eve")]))
    tampered[-5] ^= 1
    assert reason(bytes(tampered)) == "bad_signature"
    assert reason(good) == "replayed"  # live again: an attack
    assert reason(good, retained=True) == "duplicate"  # the broker's retained log: normal
    assert reason(op.upsert(2, [person(rng, "x", "Eve")], model=OTHER)) == "embedder_mismatch"
    assert (
        reason(Operator(op.key, bytes(32)).upsert(2, [person(rng, "x", "Eve")])) == "bad_fleet_key"
    )
    for junk in (b"", b"no header", b"{not json}\nbody", b"[1,2]\n", os.urandom(64)):
        assert reason(junk) in ("malformed", "unsigned")
    assert ids(gf) == {"id-a"} and gf.load().generation == gen  # nothing was written


def test_apply_is_idempotent_across_a_crash(device, rng, tmp_path: Path) -> None:
    op, gf, applier, _ = device
    a = person(rng, "id-a", "Ada")
    msg = op.upsert(1, [a])
    applier.offer(msg)
    before = content_hash(gf.load())
    # a crash after the gallery was saved but before the state: the change comes again
    (tmp_path / "fleet" / "fleet-state.json").unlink()
    again = make_applier(gf, op, tmp_path / "fleet")
    assert again.offer(msg, retained=True)[0].status == "applied"
    assert content_hash(gf.load()) == before and len(gf.load()) == 1


def test_snapshot_replaces_the_gallery_and_skips_older_changes(device, rng) -> None:
    op, gf, applier, _ = device
    applier.offer(op.upsert(1, [person(rng, "id-old", "Old")]))
    people = [person(rng, f"id-{i}", f"P{i}") for i in range(20)]
    out = applier.offer(op.snapshot(7, people), retained=True)
    assert out[0].status == "applied" and out[0].identities == 20
    assert ids(gf) == {p.id for p in people} and applier.applied_seq == 7
    assert applier.offer(op.upsert(5, [people[0]]), retained=True)[0].status == "duplicate"
    assert applier.offer(op.remove(8, ["id-3"]))[0].status == "applied"
    assert "id-3" not in ids(gf)


def test_a_failing_write_applies_nothing(device, rng, tmp_path: Path) -> None:
    op, gf, applier, _ = device
    bad = person(rng, "id-a", "Ada")
    bad.embeddings[:] = np.nan
    out = applier.offer(op.upsert(1, [bad]))
    assert out[0].status == "refused" and out[0].reason == "apply_failed"
    assert applier.applied_seq == 0 and ids(gf) == set()


# --- commands ------------------------------------------------------------------------------------


def command(key, seq, cmd, *, target="*", issued=None, ttl=30.0, **extra) -> bytes:
    now = time.time() if issued is None else issued
    header = {
        "kind": "command",
        "seq": seq,
        "command": cmd,
        "target": target,
        "issued": now,
        "expires": now + ttl,
        **extra,
    }
    return envelope.seal(header, b"", key)


def test_command_gate(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    store = StateStore(tmp_path)
    gate = CommandGate(device_id="door-1", operator_key=key.public_key(), state=store)

    def refused(payload: bytes) -> str:
        with pytest.raises(RefusedMessage) as exc:
            gate.check(payload)
        return exc.value.reason

    assert gate.check(command(key, 1, "relock")).kind == "relock"
    assert refused(command(key, 1, "relock")) == "replayed"
    assert (
        gate.check(command(key, 2, "lockdown", value="on", target="door-1")).kind == "lockdown_on"
    )
    assert StateStore(tmp_path).state.lockdown is True  # survives a restart
    assert refused(command(key, 3, "relock", target="door-2")) == "wrong_target"
    assert refused(command(key, 4, "relock", issued=time.time() - 100, ttl=50)) == "expired"
    assert refused(command(key, 5, "relock", issued=time.time() + 3600)) == "malformed"
    assert refused(command(key, 6, "relock", ttl=3600)) == "malformed"  # too long-lived
    assert refused(command(key, 7, "unlock", target="door-1")) == "remote_unlock_disabled"
    assert refused(command(Ed25519PrivateKey.generate(), 8, "relock")) == "bad_signature"
    assert refused(command(key, 9, "open-sesame")) == "malformed"
    resend = gate.check(command(key, 12, "audit_resend", target="door-1", value="7"))
    assert resend.kind == "audit_resend" and resend.from_seq == 7  # type: ignore[union-attr]
    assert refused(command(key, 13, "audit_resend", target="door-1")) == "malformed"
    gate.remote_unlock = True
    assert refused(command(key, 14, "unlock", target="door-1", ttl=300)) == "malformed"
    cmd = gate.check(command(key, 15, "unlock", target="door-1", duration_s=60.0, ttl=10))
    assert cmd.kind == "unlock" and cmd.duration_s == 5.0  # capped by remote_unlock_max_s


# --- the door's port ---------------------------------------------------------------------------


def make_daemon(tmp_path: Path, lfw: Path, script) -> tuple[DoorDaemon, FakeClock, Path]:
    from edgeface.camera.replay import ImageDirectorySource

    clock = FakeClock()
    timers = ManualTimer(clock)
    cfg = parse_config(
        {
            "camera": {"kind": "images", "path": str(tmp_path)},
            "actuator": {"kind": "file", "path": str(tmp_path / "relay")},
            "audit": {"path": str(tmp_path / "audit.jsonl")},
            "recognition": {"max_fps": 5.0},
            "policy": {"unlock_s": 3.0},
        }
    )
    daemon = DoorDaemon(
        cfg,
        source=ImageDirectorySource(
            files=sorted((lfw / "Colin_Powell").glob("*.jpg"))[:3], loop=True, clock=clock
        ),
        identifier=ScriptedIdentifier(script),
        actuator=FailSecureActuator(
            FileRelayActuator(tmp_path / "relay"), timer_factory=timers.factory
        ),
        audit=AuditLog(tmp_path / "audit.jsonl"),
        clock=clock,
        sleep=clock.sleep,
    )
    return daemon, clock, tmp_path / "relay"


def test_lockdown_relock_and_remote_unlock_through_the_port(tmp_path: Path, lfw_dir: Path) -> None:
    daemon, clock, relay = make_daemon(tmp_path, lfw_dir / "images", [enrolled()])
    daemon.actuator.open()
    daemon.feed.start()
    events: list[dict] = []

    class Sink:
        def record_written(self, record: dict) -> None:
            events.append(record)

    class Broken:
        def record_written(self, record: dict) -> None:
            raise RuntimeError("sink down")

    daemon.audit = TeeAudit(daemon.audit, [Broken(), Sink()])
    daemon.submit(DoorCommand("lockdown_on", "test"))
    assert daemon.lockdown and read_relay_state(relay) == "locked"
    for _ in range(15):
        daemon.step()
    names = [e["event"] for e in events]
    assert names[0] == "lockdown_on" and "unlock" not in names and "unlock_refused" in names
    assert read_relay_state(relay) == "locked"
    daemon.submit(DoorCommand("unlock", "fleet command seq 9", 2.0))
    daemon.step()
    assert events[-1]["event"] == "unlock_refused" and events[-1]["origin"] == "fleet command seq 9"
    daemon.submit(DoorCommand("lockdown_off", "test"))
    for _ in range(30):
        daemon.step()
    assert "unlock" in [e["event"] for e in events]  # normal service again
    daemon.submit(DoorCommand("relock", "test"))
    assert read_relay_state(relay) == "locked"  # at once, before the loop runs
    daemon.step()
    assert any(e["event"] == "command_relock" for e in events)
    daemon.submit(DoorCommand("unlock", "remote", 30.0))
    daemon.step()
    ru = [e for e in events if e["event"] == "remote_unlock"][-1]
    assert ru["duration_s"] == 3.0  # never longer than policy.unlock_s
    status = daemon.status()
    assert status["relay"] in ("locked", "unlocked") and status["audit_seq"] == daemon.audit.seq
    daemon.actuator.lock()
    daemon.feed.close()
    assert verify_files([tmp_path / "audit.jsonl"]).ok
    with pytest.raises(ValueError):
        DoorCommand("open", "x")  # type: ignore[arg-type]
    del clock


# --- collection -------------------------------------------------------------------------


def audit_records(tmp_path: Path, n: int) -> list[dict]:
    log = AuditLog(tmp_path / "src.jsonl", fsync=False)
    return [log.append("tick", i=i) for i in range(n)]


def test_collector_checks_the_chain(tmp_path: Path) -> None:
    recs = audit_records(tmp_path, 8)
    c = AuditCollector(tmp_path / "out")
    assert [c.offer("door-1", r) for r in recs[:3]] == ["added"] * 3
    assert c.offer("door-1", recs[1]) == "duplicate"
    assert c.offer("door-1", recs[5]) == "held"
    assert c.offer("door-1", recs[3]) == "added"
    assert c.offer("door-1", recs[4]) == "added"  # and the held 5 follows
    assert c.devices["door-1"].last_seq == 5
    assert c.missing() == {}
    c.observe_state(
        "door-1", {"time": recs[7]["time"], "audit": {"seq": 7, "head": recs[7]["hash"]}}
    )
    assert c.missing() == {"door-1": 6}  # the door has more than arrived: ask again from 6
    forged = dict(recs[6], event="tock")
    assert c.offer("door-1", forged) == "bad"
    rep = c.report()["door-1"]
    assert rep["records"] == 6 and not rep["ok"] and "modified" in rep["problems"][0]
    # a fresh collector over the same directory continues where the file ends
    c2 = AuditCollector(tmp_path / "out")
    assert c2.offer("door-1", recs[6]) == "added" and c2.report()["door-1"]["ok"]
    assert c2.offer("../etc", recs[0]) == "bad"


def test_collector_reveals_a_cut_tail(tmp_path: Path) -> None:
    recs = audit_records(tmp_path, 6)
    c = AuditCollector(tmp_path / "out")
    for r in recs:
        c.offer("door-1", r)
    newest = recs[-1]["time"]
    c.observe_state("door-1", {"time": newest - 1, "audit": {"seq": 3, "head": recs[3]["hash"]}})
    assert c.report()["door-1"]["ok"]  # an older retained state is only stale
    c.observe_state("door-1", {"time": newest + 5, "audit": {"seq": 3, "head": recs[3]["hash"]}})
    problems = c.report()["door-1"]["problems"]
    assert problems and "records 4..5 were removed on the device" in problems[0]
    # the device cut its log after seq 2 and wrote on: the next records do not fit
    (tmp_path / "src.jsonl").write_text(
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in recs[:3])
    )
    log = AuditLog(tmp_path / "src.jsonl", fsync=False)
    # (the reopened log first records that it does not match its head file)
    rewritten = [log.append("tick", i=100 + i) for i in range(4)]
    at = {int(r["seq"]): r for r in rewritten}
    assert c.offer("door-1", at[4]) == "diverged"  # seq 4 again, another hash
    assert c.offer("door-1", at[6]) == "diverged"  # seq 6 does not link to seq 5


def test_discovery_payloads_have_what_home_assistant_needs(tmp_path: Path) -> None:
    cfg = load_mqtt_section({"host": "h", "device_id": "door.1"}, tmp_path)
    msgs = dict(discovery_messages(cfg, "edgeface 0.1.0"))
    assert set(msgs) == {
        "homeassistant/event/door_1/access/config",
        "homeassistant/binary_sensor/door_1/relay/config",
        "homeassistant/sensor/door_1/last_person/config",
        "homeassistant/sensor/door_1/lockout/config",
    }
    uids = set()
    for payload in msgs.values():
        c = json.loads(payload)
        assert c["availability_topic"] == "edgeface/door.1/availability"
        assert c["device"]["identifiers"] == ["edgeface_door.1"] and c["device"]["name"]
        assert c["state_topic"].startswith("edgeface/door.1/")
        uids.add(c["unique_id"])
    assert len(uids) == 4


# --- CLI ----------------------------------------------------------------------------------------


def test_help_does_not_import_paho() -> None:
    code = (
        "import sys; from edgeface.cli.main import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith(('paho', 'edgeface.fleet.link'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgeface.cli.main", "fleet", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = run("push", "--config", str(tmp_path / "missing.toml"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "not found" in out.stderr
    assert run("keys", "--dir", str(tmp_path / "k")).returncode == 0
    assert (tmp_path / "k" / "operator.key").stat().st_mode & 0o077 == 0
    again = run("keys", "--dir", str(tmp_path / "k"))
    assert again.returncode == 11 and "refusing to overwrite" in again.stderr
    (tmp_path / "fleet.toml").write_text('[mqtt]\nhost = "127.0.0.1"\n')
    out = run("push", "--config", str(tmp_path / "fleet.toml"))
    assert out.returncode == 2 and "mqtt.device_id: required" in out.stderr


def test_records_after_reads_across_rotated_files(tmp_path: Path) -> None:
    from edgeface.fleet.agent import records_after

    log = AuditLog(tmp_path / "door.jsonl", max_bytes=4096, fsync=False)
    recs = [log.append("tick", i=i, pad="x" * 200) for i in range(60)]
    assert len(list(tmp_path.glob("door.jsonl.*"))) >= 2  # the log rotated
    assert [r["seq"] for r in records_after(tmp_path / "door.jsonl", 9)] == list(range(10, 60))
    assert records_after(tmp_path / "door.jsonl", 59) == []
    got = records_after(tmp_path / "door.jsonl", -1, limit=5)
    assert [r["hash"] for r in got] == [r["hash"] for r in recs[:5]]
