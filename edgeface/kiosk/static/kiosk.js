// edgeface kiosk page. No framework, no external resource, no inline script (the CSP forbids
// both). The server decides (recognition, guidance, PIN checks); this file shows screens,
// forwards taps and polls /api/state.
"use strict";

const POLL_MS = 250;
const RESULT_TEXT = {
  welcome: ["Welcome", "good"],
  not_recognized: ["Not recognized", "bad"],
  not_live: ["Not a live face", "bad"],
  challenge_failed: ["Not confirmed", "bad"],
  enrolled: ["Enrolled", "good"],
  duplicate: ["Already enrolled", "bad"],
  forgotten: ["Removed", "info"],
  capture_timeout: ["Enrollment timed out", "bad"],
  enroll_failed: ["Enrollment failed", "bad"],
};

const K = {
  csrf: "", role: "anonymous", pinSet: false, pinDigits: [6, 12], idleMs: 60000,
  screen: "idle", padPurpose: null, padValue: "", nameCallback: null, confirmCallback: null,
  pinStep: null, pinNew: "", lastTouch: Date.now(), previewTimer: null, state: null,
};

const $ = (id) => document.getElementById(id);

function show(screen) {
  K.screen = screen;
  for (const s of document.querySelectorAll(".screen")) {
    s.classList.toggle("active", s.dataset.screen === screen);
  }
  document.body.dataset.screen = screen;
}

async function api(path, body) {
  const opts = body === undefined ? { method: "GET" } : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": K.csrf },
    body: JSON.stringify(body),
  };
  opts.credentials = "same-origin";
  const r = await fetch(path, opts);
  let data = {};
  try { data = await r.json(); } catch (e) { data = {}; }
  return { ok: r.ok, status: r.status, data };
}

async function loadSession() {
  const r = await api("/api/session");
  if (r.ok) applySession(r.data);
}

function applySession(d) {
  K.csrf = d.csrf; K.role = d.role; K.pinSet = d.pin_set; K.pinDigits = d.pin_digits;
  K.idleMs = d.idle_timeout_s * 1000;
}

// --- preview ------------------------------------------------------------------------------
function startPreview() {
  $("preview").src = "/preview.mjpg?t=" + Date.now();
  clearTimeout(K.previewTimer);
  K.previewTimer = setTimeout(startPreview, 240000);  // the server ends a stream after 300 s
}

// --- PIN pad --------------------------------------------------------------------------------
function openPad(purpose, title) {
  K.padPurpose = purpose; K.padValue = "";
  $("pad-title").textContent = title;
  $("pad-error").textContent = "";
  renderPad();
  show("pad");
}

function renderPad() {
  const secret = K.padPurpose !== "invite";
  $("pad-display").textContent = secret ? "\u2022".repeat(K.padValue.length) : K.padValue;
}

function padKey(key) {
  if (key === "back") K.padValue = K.padValue.slice(0, -1);
  else if (key === "ok") { submitPad(); return; }
  else if (K.padValue.length < 12) K.padValue += key;
  renderPad();
}

function lockedText(s) { return "Too many wrong entries. Try again in " + Math.ceil(s) + " s."; }

async function submitPad() {
  const value = K.padValue;
  K.padValue = ""; renderPad();
  if (K.padPurpose === "operator" || K.padPurpose === "enroll-operator") {
    if (!K.pinSet) { $("pad-error").textContent = "No operator PIN is set on this kiosk."; return; }
    const r = await api("/api/pin", { pin: value });
    if (!r.ok) { padError(r, "Wrong PIN."); return; }
    applySession(r.data);
    if (K.padPurpose === "enroll-operator") askName("Name of the new person", startOperatorEnroll);
    else openOperator();
  } else if (K.padPurpose === "invite") {
    const r = await api("/api/invite", { code: value });
    if (!r.ok) { padError(r, "Invalid or expired code."); return; }
    applySession(r.data);
    $("consent-title").textContent = "Welcome, " + r.data.invite_name;
    K.enroll = { consent: true };
    show("consent");
  } else if (K.padPurpose === "pin-current") {
    K.pinCurrent = value; openPad("pin-new", "New PIN (" + K.pinDigits[0] + "-12 digits)");
  } else if (K.padPurpose === "pin-new") {
    K.pinNew = value; openPad("pin-repeat", "Repeat the new PIN");
  } else if (K.padPurpose === "pin-repeat") {
    if (value !== K.pinNew) { openPad("pin-new", "PINs differ. New PIN"); return; }
    const r = await api("/api/pin/change", { current: K.pinCurrent, new: value });
    K.pinCurrent = ""; K.pinNew = "";
    if (!r.ok) { padError(r, "Wrong current PIN."); return; }
    openOperator("PIN changed.");
  }
}

function padError(r, wrong) {
  if (r.status === 429) $("pad-error").textContent = lockedText(r.data.locked_s || 0);
  else if (r.status === 403 && wrong) $("pad-error").textContent = wrong;
  else $("pad-error").textContent = r.data.error || "Refused.";
}

// --- name keyboard --------------------------------------------------------------------------
function buildKeyboard() {
  const kb = $("keyboard");
  const rows = "QWERTYUIOPASDFGHJKL-ZXCVBNM'.";
  for (const ch of rows) addKbKey(kb, ch, ch);
  addKbKey(kb, "space", "Space", "wide");
  addKbKey(kb, "back", "\u232b", "fn");
}

function addKbKey(kb, key, label, cls) {
  const b = document.createElement("button");
  b.className = "key" + (cls ? " " + cls : "");
  b.textContent = label;
  b.dataset.kb = key;
  kb.appendChild(b);
}

function kbKey(key) {
  const input = $("name-input");
  if (key === "back") input.value = input.value.slice(0, -1);
  else if (key === "space") input.value += " ";
  else {
    const v = input.value;
    const lower = v.length > 0 && v[v.length - 1] !== " " && v[v.length - 1] !== "-";
    input.value = v + (lower ? key.toLowerCase() : key);
  }
}

function askName(title, callback, initial) {
  $("name-title").textContent = title;
  $("name-input").value = initial || "";
  K.nameCallback = callback;
  show("name");
}

// --- flows ----------------------------------------------------------------------------------
function startOperatorEnroll(name) {
  K.enroll = { consent: true, name: name };
  $("consent-title").textContent = "Enrolling " + name;
  show("consent");
}

async function consentGiven() {
  const r = await api("/api/enroll/start", K.enroll);
  if (!r.ok) { showResult("Cannot enroll now", r.data.error || "", "bad"); return; }
  $("capture-title").textContent = K.enroll.title || "Enrolling";
  show("capture");
}

async function cancelMode() {
  await api("/api/cancel", {});
  if (K.role === "operator") openOperator(); else goHome();
}

async function startForget() {
  const r = await api("/api/forget/start", {});
  if (!r.ok) { showResult("Busy", r.data.error || "", "bad"); return; }
  show("forget");
}

async function forgetYes() {
  const r = await api("/api/forget/confirm", { confirm: true });
  if (!r.ok) showResult("Not removed", r.data.error || "", "bad");
}

// --- operator -------------------------------------------------------------------------------
async function openOperator(message) {
  const r = await api("/api/people");
  if (!r.ok) { goHome(); return; }
  $("op-error").textContent = message || "";
  const body = $("people").tBodies[0];
  body.replaceChildren();
  for (const p of r.data.people) {
    const tr = document.createElement("tr");
    tr.dataset.id = p.id;
    cell(tr, p.name);
    cell(tr, String(p.templates));
    cell(tr, new Date(p.created * 1000).toISOString().slice(0, 10));
    const td = document.createElement("td");
    rowButton(td, "Rename", "secondary", () => askName("New name for " + p.name, (n) => renamePerson(p.id, n), p.name));
    rowButton(td, "Re-enroll", "secondary", () => {
      K.enroll = { consent: true, id: p.id, title: "Re-enrolling " + p.name };
      $("consent-title").textContent = "Re-enrolling " + p.name;
      show("consent");
    });
    rowButton(td, "Remove", "danger", () => confirmRemove(p));
    tr.appendChild(td);
    body.appendChild(tr);
  }
  show("operator");
}

function cell(tr, text) {
  const td = document.createElement("td");
  td.textContent = text;
  tr.appendChild(td);
}

function rowButton(td, label, cls, fn) {
  const b = document.createElement("button");
  b.className = "btn row " + cls;
  b.textContent = label;
  b.addEventListener("click", fn);
  td.appendChild(b);
}

async function renamePerson(id, name) {
  const r = await api("/api/people/rename", { id, name });
  openOperator(r.ok ? "Renamed." : (r.data.error || "Rename failed."));
}

function confirmRemove(p) {
  $("confirm-title").textContent = "Remove " + p.name + "?";
  K.confirmCallback = async () => {
    const r = await api("/api/people/remove", { id: p.id });
    openOperator(r.ok ? "Removed." : (r.data.error || "Remove failed."));
  };
  show("confirm");
}

async function openEvents() {
  const r = await api("/api/events");
  if (!r.ok) { goHome(); return; }
  const body = $("events").tBodies[0];
  body.replaceChildren();
  for (const e of r.data.events.slice().reverse()) {
    const tr = document.createElement("tr");
    cell(tr, (e.iso || "").replace("T", " ").replace("Z", ""));
    cell(tr, e.event || "");
    cell(tr, e.name || "");
    body.appendChild(tr);
  }
  show("events");
}

async function logout() {
  await api("/api/logout", {});
  goHome();
}

// --- results and polling --------------------------------------------------------------------
function showResult(title, sub, tone) {
  $("result-title").textContent = title;
  $("result-sub").textContent = sub || "";
  $("result-box").className = "result " + tone;
  show("result");
  K.resultUntil = Date.now() + 3000;
}

function goHome() { K.padValue = ""; show("idle"); }

function applyState(st) {
  K.state = st;
  const guidance = $("guidance");
  const onPreview = ["idle", "capture", "forget"].includes(K.screen);
  // during a head-turn challenge the title asks for the turn; "Hold still" would contradict it
  guidance.textContent = onPreview && st.faces > 0 && !st.challenge ? st.guidance_text : "";
  const res = st.result;
  if (res && res.kind === "forget_match") {
    if (st.mine && K.screen !== "forget-confirm") {
      $("forget-name").textContent = "You are " + res.name + ".";
      show("forget-confirm");
    }
    return;
  }
  if (res && RESULT_TEXT[res.kind] && ["idle", "capture", "forget", "forget-confirm", "result"].includes(K.screen)) {
    const [title, tone] = RESULT_TEXT[res.kind];
    let sub = "";
    if (res.kind === "welcome") { $("result-title").textContent = "Welcome, " + res.name; }
    if (res.kind === "enrolled") sub = res.name + " can now be recognized.";
    if (res.kind === "forgotten") sub = res.name + " was removed from this kiosk.";
    if (res.kind === "duplicate") sub = res.detail ? "Matches " + res.detail + "." : "This face is already enrolled. Ask the operator.";
    if (res.kind === "enroll_failed") sub = res.detail || "";
    if (res.kind === "not_live") sub = "Use your own face, not a photo or a screen.";
    if (res.kind === "challenge_failed") sub = res.detail === "wrong_side" ? "That was the other side. Please try again." : "Please try again and turn your head as asked.";
    $("result-title").textContent = res.kind === "welcome" ? "Welcome, " + res.name : title;
    $("result-sub").textContent = sub;
    $("result-box").className = "result " + tone;
    show("result");
    K.resultKind = res.kind;
    return;
  }
  if (K.screen === "result" && (!K.resultUntil || Date.now() > K.resultUntil)) {
    if (K.role === "operator" && ["enrolled", "duplicate", "capture_timeout", "enroll_failed"].includes(K.resultKind)) openOperator();
    else goHome();
    K.resultKind = null;
  }
  if (K.screen === "capture") {
    if (st.mode !== "enroll" || !st.mine) return;
    const [got, need] = st.progress;
    $("capture-hint").textContent = st.faces > 0 ? st.guidance_text : "Look at the camera";
    $("capture-bar").style.width = Math.round(100 * got / need) + "%";
    $("capture-count").textContent = got + " of " + need + " pictures taken";
  }
  if (K.screen === "forget" && st.mode !== "forget") goHome();
  if (K.screen === "idle") {
    if (st.locked_s) {
      $("idle-title").textContent = "Please wait";
      $("idle-sub").textContent = "Too many unrecognized attempts. Recognition resumes in " + Math.ceil(st.locked_s) + " s.";
    } else if (st.challenge) {
      const c = st.challenge;
      $("idle-title").textContent = c.turned ? "Now look back at the screen" : "Turn your head to your " + c.side.toUpperCase();
      $("idle-sub").textContent = (c.turned ? "" : "Slowly, then look back at the screen. ") + Math.ceil(c.left_s) + " s left.";
    } else if (st.camera !== "ok") {
      $("idle-title").textContent = "Camera unavailable";
      $("idle-sub").textContent = "Please ask the operator.";
    } else {
      $("idle-title").textContent = st.faces > 0 ? st.guidance_text : "Look at the camera";
      $("idle-sub").textContent = "Stand in front of the screen to be recognized.";
    }
  }
}

async function poll() {
  try {
    const r = await api("/api/state");
    if (r.ok) applyState(r.data);
  } catch (e) {
    // the server restarts (systemd): keep polling quietly
  }
  const idle = Date.now() - K.lastTouch > K.idleMs;
  if (idle && !["idle", "result", "capture", "forget"].includes(K.screen)) {
    if (K.role === "operator") logout(); else goHome();
  }
  setTimeout(poll, POLL_MS);
}

// --- wiring ---------------------------------------------------------------------------------
function wire() {
  document.addEventListener("pointerdown", () => { K.lastTouch = Date.now(); }, true);
  $("btn-enroll").addEventListener("click", () => show("enroll-choice"));
  $("btn-have-code").addEventListener("click", () => openPad("invite", "Invitation code"));
  $("btn-ask-operator").addEventListener("click", () => openPad("enroll-operator", "Operator PIN"));
  $("btn-operator").addEventListener("click", () => openPad("operator", "Operator PIN"));
  $("btn-forget").addEventListener("click", startForget);
  $("btn-forget-yes").addEventListener("click", forgetYes);
  $("btn-consent").addEventListener("click", consentGiven);
  $("btn-op-enroll").addEventListener("click", () => askName("Name of the new person", startOperatorEnroll));
  $("btn-op-events").addEventListener("click", openEvents);
  $("btn-op-pin").addEventListener("click", () => openPad("pin-current", "Current PIN"));
  $("btn-op-logout").addEventListener("click", logout);
  $("btn-name-ok").addEventListener("click", () => {
    const v = $("name-input").value.trim();
    if (v && K.nameCallback) K.nameCallback(v);
  });
  $("btn-confirm-yes").addEventListener("click", () => K.confirmCallback && K.confirmCallback());
  $("pad").addEventListener("click", (e) => { const k = e.target.dataset.key; if (k) padKey(k); });
  $("keyboard").addEventListener("click", (e) => { const k = e.target.dataset.kb; if (k) kbKey(k); });
  for (const b of document.querySelectorAll(".js-home")) b.addEventListener("click", goHome);
  for (const b of document.querySelectorAll(".js-cancel")) b.addEventListener("click", cancelMode);
  for (const b of document.querySelectorAll(".js-operator")) b.addEventListener("click", () => openOperator());
}

document.addEventListener("DOMContentLoaded", async () => {
  buildKeyboard();
  wire();
  show("idle");
  await loadSession();
  startPreview();
  poll();
});
