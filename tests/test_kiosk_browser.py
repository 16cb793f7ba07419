"""The kiosk in a real browser: Debian's Chromium (headless) driven by Playwright, against a
real kiosk server on 127.0.0.1 with a replay camera of real LFW photos.

Flows: a stranger is "Not recognized"; the operator enrolls a person through the UI (PIN pad,
on-screen keyboard, consent, guided capture) and a *different* photo of that person is then
welcomed; operator screens (events, rename, change PIN, remove); an invitation code works
once and an expired one never; wrong PINs lock the pad; "forget me" removes the person. Every
test checks that the page loaded nothing from outside the server and logged no console error.
Screenshots of every screen go to ``out/kiosk-screens/`` (CI artifacts).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kiosk_support import PIN, SceneCamera, enroll_from_files, kiosk_config, running_kiosk

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCREENS = REPO / "out" / "kiosk-screens"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium missing: scripts/test.sh installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    shutil.rmtree(SCREENS, ignore_errors=True)
    SCREENS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def scenes(lfw_dir: Path) -> dict[str, list[Path]]:
    def photos(name: str, a: int, b: int) -> list[Path]:
        files = sorted((lfw_dir / "images" / name).glob("*.jpg"))[a:b]
        assert len(files) == b - a, name
        return files

    return {
        "stranger": photos("Tony_Blair", 1, 5),
        "enrollee": photos("Colin_Powell", 0, 4),
        "enrollee_other": photos("Colin_Powell", 10, 13),  # different photos, same person
        "invitee": photos("Hugo_Chavez", 0, 4),
        "forgetter_enroll": photos("Laura_Bush", 0, 4),
        "forgetter": photos("Laura_Bush", 8, 11),
    }


class Page:
    """A browser tab on the kiosk that records console errors and every request's URL."""

    def __init__(self, browser: Any, url: str, size: tuple[int, int], prefix: str) -> None:
        self.ctx = browser.new_context(viewport={"width": size[0], "height": size[1]})
        self.page = self.ctx.new_page()
        self.url = url
        self.prefix = prefix
        self.size = size
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.expected_status: set[int] = set()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("request", lambda req: self.requests.append(req.url))
        self.page.goto(url)
        self.page.wait_for_selector("#screen-idle.active")

    def _console(self, msg: Any) -> None:
        if msg.type not in ("error", "warning"):
            return
        text = msg.text
        # a refused PIN is an HTTP 403/429 answer, which Chromium reports on the console
        m = re.search(r"status of (\d{3})", text)
        if m and int(m.group(1)) in self.expected_status:
            return
        self.errors.append(f"{msg.type}: {text}")

    def shot(self, name: str) -> Path:
        path = SCREENS / f"{self.prefix}-{self.size[0]}x{self.size[1]}-{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def tap(self, selector: str) -> None:
        self.page.click(selector)

    def pin(self, digits: str) -> None:
        for d in digits:
            self.page.click(f"#pad .key[data-key='{d}']")
        self.page.click("#pad-ok")

    def type_name(self, name: str) -> None:
        for ch in name:
            key = "space" if ch == " " else ch.upper()
            self.page.click(f'#keyboard .key[data-kb="{key}"]')

    def screen(self, name: str, timeout: float = 60.0) -> None:
        self.page.wait_for_selector(f"#screen-{name}.active", timeout=timeout * 1000)

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def close_and_check(self) -> None:
        outside = [u for u in self.requests if not u.startswith(self.url)]
        self.ctx.close()
        assert not outside, f"external resources requested: {outside}"
        assert not self.errors, self.errors


def wait_result(p: Page, title: str, timeout: float = 60.0) -> None:
    # locator assertions, not wait_for_function: the page's CSP forbids eval, even Playwright's
    from playwright.sync_api import expect

    expect(p.page.locator("#screen-result.active #result-title")).to_have_text(
        re.compile("^" + re.escape(title)), timeout=timeout * 1000
    )


def wait_text(p: Page, selector: str, text: str | None = None, timeout: float = 30.0) -> None:
    """Wait until ``selector`` contains ``text`` (any text when None)."""
    from playwright.sync_api import expect

    loc = expect(p.page.locator(selector))
    if text is None:
        loc.not_to_be_empty(timeout=timeout * 1000)
    else:
        loc.to_contain_text(text, timeout=timeout * 1000)


def test_stranger_enroll_by_operator_welcome_and_operator_screens(
    browser: Any, pipeline: Any, scenes: dict[str, list[Path]], tmp_path: Path
) -> None:
    cam = SceneCamera(scenes)
    cfg = kiosk_config(tmp_path)
    with running_kiosk(cfg, cam, pipeline) as srv:
        p = Page(browser, srv.url, (800, 480), "a")
        p.shot("01-idle-empty")

        # a stranger, with nobody enrolled yet
        cam.show("stranger")
        wait_text(p, "#guidance")
        p.shot("02-idle-face")
        wait_result(p, "Not recognized")
        p.shot("03-not-recognized")
        cam.show(None)
        p.screen("idle", 15)

        # operator enrolls Colin Powell through the UI
        p.tap("#btn-enroll")
        p.screen("enroll-choice")
        p.shot("04-enroll-choice")
        p.tap("#btn-ask-operator")
        p.screen("pad")
        for d in PIN[:3]:
            p.page.click(f"#pad .key[data-key='{d}']")
        p.shot("05-pin-pad")
        for d in PIN[3:]:
            p.page.click(f"#pad .key[data-key='{d}']")
        p.tap("#pad-ok")
        p.screen("name")
        p.type_name("Colin Powell")
        assert p.page.input_value("#name-input") == "Colin Powell"
        p.shot("06-name-keyboard")
        p.tap("#btn-name-ok")
        p.screen("consent")
        assert "templates only" in p.text("#screen-consent")
        p.shot("07-consent")
        cam.show("enrollee")
        p.tap("#btn-consent")
        p.screen("capture")
        wait_text(p, "#capture-count")
        p.shot("08-capture")
        wait_result(p, "Enrolled", 90)
        p.shot("09-enrolled")
        cam.show(None)
        p.screen("operator", 20)
        rows = p.page.locator("#people tbody tr")
        assert rows.count() == 1
        assert "Colin Powell" in rows.first.inner_text()
        p.shot("10-operator-list")
        p.tap("#btn-op-logout")
        p.screen("idle")

        # a different photo of the same person is welcomed, hands-free
        cam.show("enrollee_other")
        wait_result(p, "Welcome, Colin Powell")
        p.shot("11-welcome")
        # and the stranger is still not recognized, now that someone is enrolled
        cam.show("stranger")
        wait_result(p, "Not recognized")
        cam.show(None)
        p.screen("idle", 15)

        # operator screens: events, rename, change PIN, remove
        p.tap("#btn-operator")
        p.screen("pad")
        p.pin(PIN)
        p.screen("operator")
        p.tap("#btn-op-events")
        p.screen("events")
        events = p.text("#events")
        assert "verify_accept" in events and "enroll" in events and "Colin Powell" in events
        p.shot("12-events")
        p.page.click("#screen-events .js-operator")
        p.screen("operator")
        p.page.click("#people tbody tr >> text=Rename")
        p.screen("name")
        p.page.fill("#name-input", "")
        p.type_name("C Powell")
        p.tap("#btn-name-ok")
        p.screen("operator")
        assert "C Powell" in p.text("#people")
        assert [i.name for i in srv.engine.gallery.identities()] == ["C Powell"]
        p.tap("#btn-op-pin")
        p.pin(PIN)
        p.pin("13579135")
        p.pin("13579135")
        p.screen("operator")
        assert "PIN changed" in p.text("#op-error")
        assert srv.kiosk.pins.check("13579135") and not srv.kiosk.pins.check(PIN)
        p.page.click("#people tbody tr >> text=Remove")
        p.screen("confirm")
        p.shot("13-confirm-remove")
        p.tap("#btn-confirm-yes")
        p.screen("operator")
        assert p.page.locator("#people tbody tr").count() == 0
        p.close_and_check()

        events = srv.audit_events()
        for e in ("start", "verify_reject", "operator_login", "enroll", "verify_accept"):
            assert e in events
        assert events.count("verify_accept") >= 1
        for e in ("rename", "pin_changed", "remove"):
            assert e in events
    from edgeface.door.audit import chain_files, verify_files

    assert verify_files(chain_files(cfg.audit.path)).ok


def test_invitation_works_once_and_expires(
    browser: Any, pipeline: Any, scenes: dict[str, list[Path]], tmp_path: Path
) -> None:
    from edgeface.kiosk.secrets_store import InviteStore

    cam = SceneCamera(scenes)
    cfg = kiosk_config(tmp_path)
    with running_kiosk(cfg, cam, pipeline) as srv:
        store = InviteStore(cfg.state_dir)
        code = store.create("Hugo Chavez", 3600)
        expired = InviteStore(cfg.state_dir, clock=lambda: time.time() - 7200).create("Old", 3600)
        p = Page(browser, srv.url, (1024, 600), "b")
        p.expected_status = {403}
        p.shot("01-idle")

        p.tap("#btn-enroll")
        p.tap("#btn-have-code")
        p.screen("pad")
        p.pin(expired)
        wait_text(p, "#pad-error", "Invalid")
        p.shot("02-expired-code")

        p.pin(code)
        p.screen("consent")
        assert "Hugo Chavez" in p.text("#consent-title")
        p.shot("03-consent")
        cam.show("invitee")
        p.tap("#btn-consent")
        p.screen("capture")
        p.shot("04-capture")
        wait_result(p, "Enrolled", 90)
        p.shot("05-enrolled")
        cam.show(None)
        p.screen("idle", 20)
        assert [i.name for i in srv.engine.gallery.identities()] == ["Hugo Chavez"]

        # the same code a second time: refused
        p.tap("#btn-enroll")
        p.tap("#btn-have-code")
        p.pin(code)
        wait_text(p, "#pad-error", "Invalid")
        p.shot("06-code-used")
        p.close_and_check()
        events = srv.audit_events()
        assert events.count("invite_redeemed") == 1 and events.count("invite_fail") == 2
        assert store.pending() == []


def test_wrong_pins_lock_the_pad(
    browser: Any, pipeline: Any, scenes: dict[str, list[Path]], tmp_path: Path
) -> None:
    cam = SceneCamera(scenes)
    cfg = kiosk_config(tmp_path)
    with running_kiosk(cfg, cam, pipeline) as srv:
        p = Page(browser, srv.url, (800, 480), "c")
        p.expected_status = {403, 429}
        p.tap("#btn-operator")
        p.screen("pad")
        for _ in range(2):
            p.pin("000000")
            wait_text(p, "#pad-error", "Wrong")
        p.pin("111111")
        wait_text(p, "#pad-error", "Too many")
        p.shot("01-locked")
        # even the right PIN is refused while the pad is locked
        p.pin(PIN)
        p.page.wait_for_timeout(500)
        assert "Too many" in p.text("#pad-error")
        assert p.page.locator("#screen-operator.active").count() == 0
        p.close_and_check()
        events = srv.audit_events()
        assert events.count("pin_fail") == 3 and "pin_lockout" in events
        assert "operator_login" not in events


def test_forget_me_removes_the_person(
    browser: Any, pipeline: Any, scenes: dict[str, list[Path]], tmp_path: Path
) -> None:
    from edgeface.kiosk.service import gallery_file

    cam = SceneCamera(scenes)
    cfg = kiosk_config(tmp_path)
    iid = enroll_from_files(cfg, pipeline, "Laura Bush", scenes["forgetter_enroll"])
    with running_kiosk(cfg, cam, pipeline) as srv:
        p = Page(browser, srv.url, (1024, 600), "d")
        p.tap("#btn-forget")
        p.screen("forget")
        cam.show("forgetter")
        p.shot("01-forget-verify")
        p.screen("forget-confirm", 60)
        assert "Laura Bush" in p.text("#forget-name")
        p.shot("02-forget-confirm")
        p.tap("#btn-forget-yes")
        wait_result(p, "Removed")
        p.shot("03-removed")
        assert len(srv.engine.gallery) == 0
        # now the same face is a stranger
        wait_result(p, "Not recognized", 60)
        cam.show(None)
        p.close_and_check()
        events = srv.audit_events()
        assert "forget_verified" in events and "forget" in events
    gf = gallery_file(cfg)
    assert len(gf.load()) == 0
    # the backup generation was overwritten too: the templates are gone from the disk
    assert iid not in {i.id for i in gf.load_backup().identities()}


def test_head_turn_challenge_prompts_then_welcomes(
    browser: Any, pipeline: Any, lfw_dir: Path, tmp_path: Path
) -> None:
    """``[verify] challenge = "head_turn"``: the match asks for a turn to the (pinned) left;
    the page says so, and the welcome comes only once the camera shows him turned and back.
    (The challenge's rules on real faces: test_kiosk_challenge.py.)"""
    d = lfw_dir / "images" / "Colin_Powell"
    front, turned = d / "Colin_Powell_0033.jpg", d / "Colin_Powell_0016.jpg"
    cam = SceneCamera({"front": [front], "turn_and_back": [turned, front]})
    cfg = kiosk_config(tmp_path, verify={"challenge": "head_turn", "challenge_timeout_s": 30})
    enroll_from_files(cfg, pipeline, "Colin Powell", [d / "Colin_Powell_0004.jpg"])
    with running_kiosk(cfg, cam, pipeline, challenge_side=lambda: "left") as srv:
        p = Page(browser, srv.url, (1024, 600), "f")
        cam.show("front")
        wait_text(p, "#idle-title", "Turn your head to your LEFT", 60)
        p.shot("01-challenge-turn")
        assert srv.audit_events().count("verify_accept") == 0
        cam.show("turn_and_back")
        wait_result(p, "Welcome, Colin Powell", 60)
        p.shot("02-challenge-welcome")
        cam.show(None)
        p.close_and_check()
        events = srv.audit_events()
    assert events.index("challenge_start") < events.index("verify_accept")


def test_screens_fit_both_panel_sizes(
    browser: Any, pipeline: Any, scenes: dict[str, list[Path]], tmp_path: Path
) -> None:
    """Every button of the start screen and the PIN pad is inside the screen and big enough
    for a finger (>= 48 px) on 800x480 and 1024x600 panels."""
    cam = SceneCamera(scenes)
    cfg = kiosk_config(tmp_path)
    with running_kiosk(cfg, cam, pipeline) as srv:
        for size in ((800, 480), (1024, 600)):
            p = Page(browser, srv.url, size, "e")
            for screen, opener in (("idle", None), ("pad", "#btn-operator")):
                if opener:
                    p.tap(opener)
                    p.screen(screen)
                for box in p.page.locator(f"#screen-{screen}.active button").all():
                    b = box.bounding_box()
                    assert b is not None
                    assert b["height"] >= 48 and b["width"] >= 48, (screen, size, b)
                    assert b["x"] >= 0 and b["y"] >= 0
                    assert b["x"] + b["width"] <= size[0] + 1, (screen, size, b)
                    assert b["y"] + b["height"] <= size[1] + 1, (screen, size, b)
                p.shot(f"fit-{screen}")
            p.close_and_check()
