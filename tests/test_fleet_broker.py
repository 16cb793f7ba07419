"""The fleet against a real Mosquitto (password file + per-device ACL): central enrollment,
catch-up after being offline, snapshots, forged/replayed/out-of-order messages, commands,
a broker killed mid-stream, a hung broker, Home Assistant discovery, audit collection.

The doors here are real daemons (images camera over real LFW photos, file relay, encrypted
gallery, audit log) with the scripted identifier: these scenarios are about the protocol and
the loop. tests/test_fleet_real_faces.py runs three real `edgeface door` processes with the
recognition pipeline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from doubles import ScriptedIdentifier, enrolled
from fleet_broker import Broker, HangingListener, Listener
from fleet_doors import FleetDoor, mqtt_table, wait_for, write_fleet_toml

from edgeface.door.identify import Observation
from edgeface.fleet import envelope, topics
from edgeface.fleet.apply import model_header
from edgeface.fleet.operator import Operator, create_operator_keys, load_operator_config
from edgeface.gallery import GalleryFile, create_key_file
from edgeface.gallery.store import ModelRef, Template
from edgeface.imaging import load_image

DEVICES = ["door-a", "door-b", "door-c", "door-d"]
PEOPLE = ["Colin_Powell", "Tony_Blair", "Laura_Bush"]


@pytest.fixture
def broker(tmp_path: Path):
    root = tmp_path / "broker"
    root.mkdir()
    b = Broker(root, ["operator", "homeassistant", *DEVICES])
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def faces(pipeline, lfw_dir: Path) -> dict[str, list[tuple[np.ndarray, float]]]:
    """Real templates: three LFW photos each of three people."""
    out = {}
    for name in PEOPLE:
        temps = []
        for n in (1, 2, 3):
            r = pipeline.best_face(load_image(lfw_dir / "images" / name / f"{name}_{n:04d}.jpg"))
            temps.append((r.embedding, float(r.face.score)))
        out[name] = temps
    return out


@pytest.fixture(scope="module")
def model(pipeline) -> ModelRef:
    return ModelRef.of(pipeline.embedder)


@pytest.fixture
def camera_dir(tmp_path: Path, lfw_dir: Path) -> Path:
    cam = tmp_path / "camera"
    cam.mkdir()
    for n in range(1, 4):
        (cam / f"{n}.jpg").symlink_to(lfw_dir / "images" / "Tony_Blair" / f"Tony_Blair_{n:04d}.jpg")
    return cam


class Fleet:
    """The operator's workstation: keys, gallery, fleet.toml, and the doors it runs."""

    def __init__(self, root: Path, broker: Broker, faces: dict, model: ModelRef, camera: Path):
        self.root = root
        self.broker = broker
        self.model = model
        self.camera = camera
        self.keys = create_operator_keys(root / "operator")
        gkey = create_key_file(root / "operator" / "gallery.key")
        self.gallery = GalleryFile(root / "operator" / "gallery.efg", gkey)
        self.gallery.create(model=model)
        self.ids: dict[str, str] = {}
        with self.gallery.edit() as g:
            for name, temps in faces.items():
                ts = [Template(e, q, model) for e, q in temps]
                self.ids[name] = g.add_identity(name.replace("_", " "), ts).id
        self.config = write_fleet_toml(root / "fleet.toml", broker, self.keys, root / "operator")
        self.doors: list[FleetDoor] = []

    def operator(self) -> Operator:
        return Operator(load_operator_config(self.config))

    def door(self, device: str, *, script: list | None = None, **mqtt: Any) -> FleetDoor:
        ident = ScriptedIdentifier(script or [enrolled("nobody", 0.1, 0.5)])
        ident.model_ref = self.model  # type: ignore[attr-defined]
        d = FleetDoor(
            self.root / device,
            device,
            camera_dir=self.camera,
            identifier=ident,
            model=self.model,
            mqtt=mqtt_table(self.broker, device, self.keys, self.root / device / "fleet", **mqtt),
        )
        self.doors.append(d)
        return d.start()

    def close(self) -> None:
        for d in self.doors:
            d.stop()


@pytest.fixture
def fleet(tmp_path, broker, faces, model, camera_dir):
    f = Fleet(tmp_path, broker, faces, model, camera_dir)
    yield f
    f.close()


def applied(door: FleetDoor) -> list[int]:
    return [
        r["fleet_seq"]
        for r in door.records()
        if r["event"] == "fleet_applied" and r["what"] == "change"
    ]


def refused(door: FleetDoor) -> list[str]:
    return [r["reason"] for r in door.records() if r["event"] in ("fleet_refused", "fleet_held")]


def edgeface(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeface.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def collect(fleet: Fleet, out_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return edgeface(
        "fleet", "collect", "--config", str(fleet.config), "--out", str(out_dir), "--json", *extra
    )


# --- scenarios --------------------------------------------------------------------------------


def test_enroll_reaches_every_door_and_an_offline_door_catches_up(fleet: Fleet) -> None:
    a, b, c = (fleet.door(d) for d in DEVICES[:3])
    powell, blair, arroyo = (fleet.ids[p] for p in PEOPLE)
    with fleet.operator() as op:
        assert op.enroll(["Colin Powell"])[0] == 1
    for d in (a, b, c):
        wait_for(lambda d=d: powell in d.gallery_ids(), what=f"{d.device} applies seq 1")
    c.stop()  # door-c goes offline for two changes
    with fleet.operator() as op:
        assert op.enroll([blair])[0] == 2
        assert op.remove(["Colin Powell"])[0] == 3
    for d in (a, b):
        wait_for(lambda d=d: d.gallery_ids() == {blair}, what=f"{d.device} applies seq 2, 3")
    assert c.gallery_ids() == {powell}
    c2 = fleet.door("door-c")  # same device, same gallery and state: back online
    wait_for(lambda: c2.gallery_ids() == {blair}, what="door-c catches up")
    # in order; seq 1 arrived again (retained) and was skipped
    wait_for(lambda: applied(c2) == [1, 2, 3], what="door-c's audit")
    assert refused(c2) == []
    # a snapshot compacts the log; a brand-new door gets everything from it
    with fleet.operator() as op:
        op.enroll([arroyo])
        seq, n = op.push()
    assert (seq, n) == (5, 2)
    d = fleet.door("door-d")
    wait_for(lambda: d.gallery_ids() == {blair, arroyo}, what="new door from the snapshot")
    wait_for(lambda: applied(d) == [5], what="door-d's audit")
    state = wait_for(lambda: d.agent.state()["fleet"]["applied_seq"] == 5 and d.agent.state())
    assert state["gallery"]["identities"] == 2
    for x in (a, b, c2):
        wait_for(lambda x=x: x.agent.state()["fleet"]["applied_seq"] == 5)
        assert x.gallery_ids() == {blair, arroyo}
    # the galleries are the same content everywhere (same fingerprint)
    hashes = {x.agent.state()["gallery"]["hash"] for x in (a, b, c2, d)}
    assert len(hashes) == 1


def _sealed(op: Operator, seq: int, fleet: Fleet, *, model: dict | None = None, key=None) -> bytes:
    """A change signed like the operator's, with chosen seq/model/key (for attack tests)."""
    g = fleet.gallery.load()
    body = envelope.pack_identities(op._records(g, [fleet.ids["Tony_Blair"]]))
    header = {
        "kind": "change",
        "op": "upsert",
        "seq": seq,
        "issued": time.time(),
        "embedder": model or model_header(fleet.model),
    }
    return envelope.seal(header, envelope.encrypt(op.fleet_key, body, header), key or op.signer)


def test_forged_replayed_and_out_of_order_changes_are_refused(fleet: Fleet) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    a = fleet.door("door-a")
    powell, blair = fleet.ids["Colin_Powell"], fleet.ids["Tony_Blair"]
    with fleet.operator() as op:
        op.enroll([powell])
        first = (op.state.message_path(1)).read_bytes()
        forged = _sealed(op, 2, fleet, key=Ed25519PrivateKey.generate())
        header, body = envelope.parse(_sealed(op, 2, fleet))
        header.pop("sig")
        unsigned = envelope.canonical(header) + b"\n" + body
        wrong_model = _sealed(op, 2, fleet, model={"id": "other-net", "sha256": "0" * 64})
        ahead = _sealed(op, 3, fleet)
        next_one = _sealed(op, 2, fleet)
    wait_for(lambda: a.gallery_ids() == {powell})
    # someone holding the operator's broker password, but not its signing key
    evil = Listener(fleet.broker, "operator", [])
    try:
        for payload in (forged, unsigned, wrong_model):
            evil.publish(topics.log_topic("edgeface/fleet", 2), payload)
        evil.publish(topics.log_topic("edgeface/fleet", 1), first)  # replay of seq 1, live
        evil.publish(topics.log_topic("edgeface/fleet", 3), ahead)  # seq 3 before seq 2
        wait_for(lambda: len(refused(a)) >= 5, what="five refusals")
        assert a.gallery_ids() == {powell}  # nothing applied
        assert refused(a) == [
            "bad_signature",
            "unsigned",
            "embedder_mismatch",
            "replayed",
            "out_of_order",
        ]
        # the missing seq 2 arrives: 2 then the held 3 are applied, in order
        evil.publish(topics.log_topic("edgeface/fleet", 2), next_one)
        wait_for(lambda: applied(a) == [1, 2, 3], what="seq 2 then the held 3")
        assert a.gallery_ids() == {powell, blair}
    finally:
        evil.close()
    # a door's own credentials cannot write the fleet log (the ACL drops it)
    door_client = Listener(fleet.broker, "door-a", [])
    try:
        door_client.publish(topics.log_topic("edgeface/fleet", 4), _sealed_by_nobody())
        time.sleep(1.0)
        assert 4 not in applied(a) and len(refused(a)) == 5
    finally:
        door_client.close()
    reports = [json.loads(p) for p in _retained_reports(fleet, "door-a")]
    assert {r.get("reason") for r in reports} >= {"bad_signature", "unsigned", "replayed"}


def _sealed_by_nobody() -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return envelope.seal(
        {"kind": "change", "op": "remove", "seq": 4}, b"", Ed25519PrivateKey.generate()
    )


def _retained_reports(fleet: Fleet, device: str) -> list[bytes]:
    door = next(d for d in fleet.doors if d.device == device)
    return [json.dumps(r).encode() for r in door.agent.reports]


def test_commands_relock_lockdown_and_remote_unlock(fleet: Fleet) -> None:
    a = fleet.door("door-a", script=[enrolled("someone", 0.9, 0.5)], remote_unlock=True)
    b = fleet.door("door-b", script=[enrolled("someone", 0.9, 0.5)])
    wait_for(lambda: "unlock" in a.events() and "unlock" in b.events(), what="scripted unlocks")
    with fleet.operator() as op:
        op.command("lockdown", value="on")
    for d in (a, b):
        wait_for(lambda d=d: "lockdown_on" in d.events(), what=f"{d.device} lockdown")
        wait_for(lambda d=d: "unlock_refused" in d.events(), what=f"{d.device} refuses")
    n_unlocks = {d.device: d.events().count("unlock") for d in (a, b)}
    time.sleep(1.5)
    for d in (a, b):
        assert d.events().count("unlock") == n_unlocks[d.device]  # no unlocking at all
        assert d.relay() == "locked"
    with fleet.operator() as op:
        op.command("unlock", target="door-a", duration_s=1.0, ttl_s=10)  # lockdown wins
        op.command("lockdown", value="off")
        op.command("unlock", target="door-b", duration_s=1.0, ttl_s=10)  # not enabled there
    wait_for(lambda: "lockdown_off" in a.events() and "lockdown_off" in b.events())
    rec = next(r for r in a.records() if r["event"] == "unlock_refused" and "origin" in r)
    assert rec["origin"] == "fleet command seq 2" and rec["reason"] == "lockdown"
    wait_for(lambda: "remote_unlock_disabled" in refused(b), what="door-b refuses remote unlock")
    wait_for(lambda: b.events().count("unlock") > n_unlocks["door-b"], what="door-b unlocks again")
    with fleet.operator() as op:
        op.command("unlock", target="door-a", duration_s=1.0, ttl_s=10)
        op.command("relock")
    wait_for(lambda: "remote_unlock" in a.events(), what="door-a remote unlock")
    wait_for(lambda: "command_relock" in a.events() and "command_relock" in b.events())
    ru = next(r for r in a.records() if r["event"] == "remote_unlock")
    assert ru["duration_s"] == 1.0 and ru["origin"].startswith("fleet command seq")
    # replayed and expired commands are refused
    cmd_file = fleet.root / "replay.bin"
    with fleet.operator() as op:
        old = envelope.seal(
            {
                "kind": "command",
                "seq": 1,
                "command": "lockdown",
                "value": "on",
                "target": "*",
                "issued": time.time(),
                "expires": time.time() + 60,
            },
            b"",
            op.signer,
        )
        expired = envelope.seal(
            {
                "kind": "command",
                "seq": 99,
                "command": "relock",
                "target": "*",
                "issued": time.time() - 120,
                "expires": time.time() - 60,
            },
            b"",
            op.signer,
        )
    cmd_file.write_bytes(old)
    evil = Listener(fleet.broker, "operator", [])
    try:
        evil.publish(topics.command_topic("edgeface/fleet", "all"), old)
        evil.publish(topics.command_topic("edgeface/fleet", "all"), expired)
    finally:
        evil.close()
    wait_for(lambda: {"replayed", "expired"} <= set(refused(a)), what="replay/expiry refused")
    assert not a.daemon.lockdown


def test_home_assistant_discovery_and_availability(fleet: Fleet) -> None:
    ha = Listener(fleet.broker, "homeassistant", ["homeassistant/#", "edgeface/+/availability"])
    try:
        a = fleet.door("door-a", script=[enrolled("someone", 0.9, 0.5)], display_names=True)
        cfg_topics = {
            "homeassistant/event/door-a/access/config",
            "homeassistant/binary_sensor/door-a/relay/config",
            "homeassistant/sensor/door-a/last_person/config",
            "homeassistant/sensor/door-a/lockout/config",
        }
        wait_for(lambda: all(ha.on(t) for t in cfg_topics), what="discovery configs")
        for t in cfg_topics:
            c = json.loads(ha.on(t)[-1])
            assert c["unique_id"].startswith("edgeface_door-a_")
            assert c["device"]["identifiers"] == ["edgeface_door-a"]
            assert c["availability_topic"] == "edgeface/door-a/availability"
            assert c["state_topic"].startswith("edgeface/door-a/")
        ev = json.loads(ha.on("homeassistant/event/door-a/access/config")[-1])
        assert "access_granted" in ev["event_types"] and "access_denied" in ev["event_types"]
        wait_for(lambda: ha.on("edgeface/door-a/availability")[-1:] == [b"online"])
        # Home Assistant restarts: every config is published again
        before = len(ha.on("homeassistant/sensor/door-a/lockout/config"))
        ha.publish("homeassistant/status", b"online")
        wait_for(lambda: len(ha.on("homeassistant/sensor/door-a/lockout/config")) > before)
        a.stop()
        wait_for(lambda: ha.on("edgeface/door-a/availability")[-1:] == [b"offline"])
    finally:
        ha.close()


def test_events_and_state_carry_no_biometrics(fleet: Fleet) -> None:
    with fleet.operator() as op:
        op.enroll(["Tony Blair"])
    blair = fleet.ids["Tony_Blair"]
    ha = Listener(fleet.broker, "homeassistant", ["edgeface/door-a/#"])
    try:
        a = fleet.door("door-a", script=[enrolled(blair, 0.9, 0.5)], display_names=True)
        wait_for(lambda: ha.on("edgeface/door-a/event"), what="an event")
        granted = wait_for(
            lambda: [
                json.loads(p)
                for p in ha.on("edgeface/door-a/event")
                if json.loads(p)["event_type"] == "access_granted"
            ]
        )
        assert granted[0]["identity_id"] == blair and granted[0]["name"] == "Tony Blair"
        st = wait_for(
            lambda: [json.loads(p) for p in ha.on("edgeface/door-a/state") if b"Tony" in p]
        )[-1]
        assert st["last_person"] == "Tony Blair"
        for key in ("software", "bundle", "gallery", "relay", "lockout", "camera", "uptime_s"):
            assert key in st
        assert st["gallery"]["identities"] == 1 and st["fleet"]["applied_seq"] == 1
        everything = b"".join(p for _, p, _ in ha.messages)
        assert b"embedding" not in everything and b"template" not in everything
        assert a.records()
    finally:
        ha.close()


def test_broker_killed_and_restarted_mid_stream(fleet: Fleet, tmp_path: Path) -> None:
    out_dir = tmp_path / "collected"
    # the collector's first run opens its persistent session; from then on the broker keeps
    # every audit record for it (QoS 1) until the next run
    assert collect(fleet, out_dir, "--seconds", "0.5").returncode == 0
    a = fleet.door("door-a")
    b = fleet.door("door-b")
    with fleet.operator() as op:
        op.enroll(["Colin Powell"])
    for d in (a, b):
        wait_for(lambda d=d: applied(d) == [1])
    fleet.broker.kill()
    frames = a.daemon.stats.processed
    out = edgeface("fleet", "enroll", "--config", str(fleet.config), "Tony Blair")
    assert out.returncode == 14 and "unreachable" in out.stderr
    assert out.stderr.count("\n") == 1
    # the doors go on deciding without the broker
    wait_for(lambda: a.daemon.stats.processed > frames + 5, what="frames while broker is down")
    assert a.code is None and b.code is None
    fleet.broker.start()
    for d in (a, b):
        wait_for(lambda d=d: d.agent.link.connects >= 2, timeout=30, what="reconnect")
    with fleet.operator() as op:
        op.enroll(["Tony Blair"])
        op.remove(["Colin Powell"])
    for d in (a, b):
        wait_for(lambda d=d: applied(d) == [1, 2, 3], what=f"{d.device} after the restart")
        assert d.gallery_ids() == {fleet.ids["Tony_Blair"]}
    # every audit record, also those written while the broker was gone, is collected
    res = collect(fleet, out_dir, "--idle", "3")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    for d in (a, b):
        r = report[d.device]
        assert r["ok"] and r["records"] >= 4
        lines = (out_dir / d.device / "audit.jsonl").read_text().splitlines()
        local = (d.root / "audit.jsonl").read_text().splitlines()
        assert lines == local[: len(lines)]


def test_hung_broker_does_not_delay_decisions(tmp_path: Path, fleet: Fleet) -> None:
    """Three doors decide side by side: one without MQTT (the reference), one whose "broker"
    accepts TCP and never answers, one whose real broker is frozen (SIGSTOP) while connected."""
    hang = HangingListener()
    doors: list[FleetDoor] = []

    def door(name: str, mqtt: dict | None) -> FleetDoor:
        d = FleetDoor(
            tmp_path / name,
            name,
            camera_dir=fleet.camera,
            identifier=ScriptedIdentifier([enrolled("someone", 0.9, 0.5)]),
            model=fleet.model,
            mqtt=mqtt,
        )
        doors.append(d)
        return d

    frozen = fleet.door("door-b", script=[Observation.no_face(0.5)])
    wait_for(lambda: frozen.agent.link.connected.is_set(), what="door-b connected")
    before = frozen.daemon.stats.processed
    ref = door("door-r", None)
    hung = door(
        "door-a",
        {
            "host": "127.0.0.1",
            "port": hang.port,
            "device_id": "door-a",
            "keepalive_s": 2,
            "state_dir": str(tmp_path / "door-a" / "fleet"),
        },
    )
    os.kill(fleet.broker.proc.pid, signal.SIGSTOP)
    try:
        for d in (ref, hung):
            d.start()
        for d in (ref, hung):
            wait_for(lambda d=d: d.events().count("unlock") >= 2, what=f"{d.device} unlocks")
        assert hang.accepted, "the agent did try the hung broker"
        assert not hung.agent.link.connected.is_set()
        assert frozen.daemon.stats.processed > before + 5  # still deciding, broker frozen

        def first_unlock_after_start(d: FleetDoor) -> float:
            recs = d.records()
            return next(r["time"] for r in recs if r["event"] == "unlock") - recs[0]["time"]

        # the same decision at the same moment as the door without MQTT (frames at 5 fps)
        delay = first_unlock_after_start(hung) - first_unlock_after_start(ref)
        assert abs(delay) < 0.5, delay
        st = hung.daemon.stats
        assert st.errors == 0 and ref.daemon.stats.errors == 0
        t1 = time.monotonic()
        for d in (ref, hung):
            d.stop()
        assert time.monotonic() - t1 < 10.0  # closing does not hang either
    finally:
        os.kill(fleet.broker.proc.pid, signal.SIGCONT)
        for d in doors:
            if d.thread is not None and d.thread.is_alive():
                d.stop()
        hang.close()


def test_collect_reveals_records_cut_from_a_door(fleet: Fleet, tmp_path: Path) -> None:
    out_dir = tmp_path / "collected"
    assert collect(fleet, out_dir, "--seconds", "0.5").returncode == 0
    a = fleet.door("door-a", script=[enrolled("someone", 0.9, 0.5)])
    wait_for(lambda: a.events().count("unlock") >= 2)
    a.stop()
    res = collect(fleet, out_dir, "--idle", "2")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)["door-a"]
    local = (a.root / "audit.jsonl").read_text().splitlines()
    assert report["ok"] and report["last_seq"] == len(local) - 1  # all of it, chain intact
    # someone with the SD card removes the last records: the door's head file shows it locally
    # (docs/door.md), and the collector, which holds the records, shows it independently
    (a.root / "audit.jsonl").write_text("\n".join(local[:-4]) + "\n")
    rep = edgeface("audit", "verify", str(a.root / "audit.jsonl"))
    assert rep.returncode == 1 and "cut off" in rep.stdout, rep.stdout
    b = fleet.door("door-a", script=[Observation.no_face(0.5)])  # the same door, restarted
    wait_for(lambda: b.agent.link.connects >= 1, what="door back online")
    res = collect(fleet, out_dir, "--idle", "2")
    assert res.returncode == 1, res.stdout
    problems = json.loads(res.stdout)["door-a"]["problems"]
    truncated = [p for p in problems if p.startswith("truncated")]
    assert len(truncated) == 1, problems
    assert re.search(rf"records \d+\.\.{len(local) - 1} were removed", truncated[0]), problems
    # the records the door wrote after the cut (its tamper warning first) reach the collector
    # although the broker had acknowledged higher seqs before: they diverge from the copy
    first_new = len(local) - 4
    assert any(p.startswith(f"diverged: seq {first_new} differs") for p in problems), problems
    assert (out_dir / "door-a" / "audit.jsonl").read_text().splitlines() == local  # kept as is


def test_door_check_reports_the_broker(fleet: Fleet, tmp_path: Path) -> None:
    from edgeface.door.health import _check
    from edgeface.fleet.config import load_mqtt_section
    from edgeface.fleet.health import check_mqtt

    good = mqtt_table(fleet.broker, "door-a", fleet.keys, tmp_path / "st")
    lines = [r.line() for r in check_mqtt(load_mqtt_section(good, tmp_path), _check)]
    assert lines[0].startswith("ok   mqtt keys") and lines[1].startswith("ok   mqtt broker")
    (tmp_path / "wrong.pw").write_text("not-the-password\n")
    bad = {**good, "password_file": str(tmp_path / "wrong.pw")}
    res = check_mqtt(load_mqtt_section(bad, tmp_path), _check)
    assert not res[1].ok and "refused" in res[1].message
    hang = HangingListener()
    try:
        hung = {**good, "port": hang.port}
        t0 = time.monotonic()
        res = check_mqtt(load_mqtt_section(hung, tmp_path), _check, timeout_s=2.0)
        assert not res[1].ok and "no MQTT answer" in res[1].message
        assert time.monotonic() - t0 < 10
    finally:
        hang.close()


def test_operator_refuses_unknown_people(fleet: Fleet) -> None:
    bad = edgeface("fleet", "remove", "--config", str(fleet.config), "Colin Powel")
    assert bad.returncode == 7 and "nobody named 'Colin Powel'" in bad.stderr
    bad = edgeface("fleet", "enroll", "--config", str(fleet.config), "Nobody Known")
    assert bad.returncode == 7 and bad.stderr.count("\n") == 1
    with fleet.operator() as op:
        assert op.state.read()["seq"] == 0  # no number was used
        seq, ids = op.remove(["0b5d3c3e-6a39-4a53-9a57-8a1b9d1c0f00"])  # an id gone here
    assert seq == 1 and ids == ["0b5d3c3e-6a39-4a53-9a57-8a1b9d1c0f00"]
