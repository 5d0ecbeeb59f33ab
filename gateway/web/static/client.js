// holdfast's web client: a telnet client over WebSocket
// (telnet.mudstandards.org) that renders ANSI colour with ansi_up, keeps
// scrollback and input history, masks the input while the game has echo
// off, shows prompts, and comes back to the same session when the
// connection breaks.
//
// What the game sends is never taken for the gateway's word: the gateway's
// notices come in text messages, which only the gateway sends, and are
// shown apart; and a link in the game's output (OSC 8) is live only to an
// origin the operator allowed (-ws-link-origins), with its address shown.
import { AnsiUp } from "./ansi_up.js";

const IAC = 255, DONT = 254, DO = 253, WONT = 252, WILL = 251, SB = 250,
  GA = 249, SE = 240, EOR = 239;
const ECHO = 1, SGA = 3, TTYPE = 24, OPT_EOR = 25, NAWS = 31, CHARSET = 42;
const MAX_LINES = 5000;       // scrollback kept, in output chunks
const ACK_EVERY = 8192;       // bytes received between acknowledgements
// Or this long after output: what a page had not acknowledged when its
// gateway died comes again through the next.
const ACK_AFTER = 250;
const MAX_QUEUED = 65536;     // bytes typed while reconnecting, sent once back
const MAX_SENT_LOG = 65536;   // bytes sent kept, for the gateway to have again

const $ = (id) => document.getElementById(id);
const out = $("out"), input = $("input"), promptEl = $("prompt");
const ansi = new AnsiUp();
ansi.use_classes = false;
const decoder = new TextDecoder("utf-8");
const linkOrigins = new Set(
  (document.querySelector('meta[name="holdfast-link-origins"]')?.content || "").split(/\s+/).filter(Boolean));
const encoder = new TextEncoder();

let ws = null;
let ready = false;     // the gateway has given this connection its session
let queued = [];       // what was typed while reconnecting
let queuedBytes = 0;
let sentLog = [];      // what was sent lately: {at, bytes}, at counting from the session's start
let sentTotal = 0;
let token = null;      // resumes this session; never shown or stored
// A page may come back through another gateway (several behind a
// balancer): it keeps what it typed until the game has it, by the game's
// count of input bytes (the gateway's telnet decoding: a line and "\n").
let sessionId = "";    // the session's id, which the gateway says
let inAcked = 0;       // the game has the input up to here
let typed = [];        // lines typed: {at, len, bytes}, at in the game's count
let typedTotal = 0;
// The game's output this session, counted as the game wrote it: for such a
// page the gateway sends each byte of it as one unit (CR LF for "\n", CR
// NUL for "\r", IAC IAC for 255), so that the next gateway sends the rest.
let gameGot = 0;
let afterCR = false;
let got = 0;           // output bytes received this session
let acked = 0;
let ackTimer = null;
let retry = 0;
let reconnectTimer = null;
let ended = false;
let gameAway = false;  // the gateway said the game is restarting
let partial = "";      // the text since the last line end: a prompt, maybe
const history = [];
let histPos = 0;

// Telnet state.
let tstate = 0, verb = 0, sbOpt = 0, sb = [];
const hisOn = new Set(), ourOn = new Set();
let ttypeAnswers = 0;

function setState(text, cls) {
  $("state").textContent = text;
  document.body.className = cls;
  window.holdfastState = text;
}

// liveLinks keeps the links in rendered output that go to an allowed
// origin, opening in a new tab with no hold on this page and their address
// shown; any other becomes its plain text.
function liveLinks(root) {
  for (const a of root.querySelectorAll("a")) {
    let url = null;
    try { url = new URL(a.getAttribute("href")); } catch (e) { url = null; }
    if (url && (url.protocol === "https:" || url.protocol === "http:") && linkOrigins.has(url.origin)) {
      a.href = url.href;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      a.title = url.href;
      if (a.textContent !== url.href) a.after(document.createTextNode(" <" + url.href + ">"));
    } else {
      a.replaceWith(document.createTextNode(a.textContent));
    }
  }
}

function appendNode(node) {
  const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
  out.appendChild(node);
  while (out.childNodes.length > MAX_LINES) out.removeChild(out.firstChild);
  if (atBottom) out.scrollTop = out.scrollHeight;
}

function append(html, cls) {
  const t = document.createElement("template");
  t.innerHTML = html;
  liveLinks(t.content);
  const span = document.createElement("span");
  if (cls) span.className = cls;
  span.appendChild(t.content);
  appendNode(span);
}

// showNotice shows a notice from the gateway itself, apart from the game's
// output; the game's comings and goings are known from them.
function showNotice(text) {
  if (text.startsWith("[holdfast] The game is restarting") || text.startsWith("[holdfast] The game is not running")) {
    gameAway = true;
  } else if (text.startsWith("[holdfast] The game is back")) {
    gameAway = false;
  }
  const div = document.createElement("span");
  div.className = "gateway-notice";
  div.setAttribute("role", "status");
  div.textContent = text.replace(/\s+$/, "");
  appendNode(div);
  if (ready) showConnected();
}

// showConnected shows the state of a page that is connected: the game's
// own comings and goings are known from the gateway's notices.
function showConnected() {
  if (gameAway) setState("the game is restarting", "waiting");
  else setState("connected", "connected");
}

function showText(text) {
  if (!text) return;
  append(ansi.ansi_to_html(text));
  const nl = text.lastIndexOf("\n");
  partial = nl < 0 ? partial + text : text.slice(nl + 1);
}

// transmit sends one input message and keeps it: a connection that breaks
// may have lost it, and the gateway says what it has when the page is back.
function transmit(bytes) {
  ws.send(new Uint8Array(bytes));
  sentLog.push({ at: sentTotal, bytes });
  sentTotal += bytes.length;
  while (sentLog.length > 1 && sentTotal - sentLog[0].at > MAX_SENT_LOG) sentLog.shift();
}

function send(bytes) {
  if (ws && ready && ws.readyState === WebSocket.OPEN) {
    transmit(bytes);
  } else if (!ended && queuedBytes + bytes.length <= MAX_QUEUED) {
    queued.push(bytes);
    queuedBytes += bytes.length;
  }
}

function naws() {
  const m = $("measure");
  const cw = m.getBoundingClientRect().width / 10 || 8;
  const lh = parseFloat(getComputedStyle(out).lineHeight) || 18;
  const cols = Math.max(20, Math.min(500, Math.floor((out.clientWidth - 16) / cw)));
  const rows = Math.max(5, Math.min(500, Math.floor((out.clientHeight - 8) / lh)));
  return subneg(NAWS, [cols >> 8, cols & 255, rows >> 8, rows & 255]);
}

function subneg(opt, payload) {
  const b = [IAC, SB, opt];
  for (const c of payload) { if (c === IAC) b.push(IAC); b.push(c); }
  b.push(IAC, SE);
  return b;
}

function setEcho(off) {
  input.type = off ? "password" : "text";
  input.autocomplete = off ? "current-password" : "off";
}

// negotiate answers WILL/WONT/DO/DONT. Options are answered only when
// their state changes, so that no two sides loop (RFC 1143).
function negotiate(v, opt) {
  if (v === WILL || v === WONT) {
    const want = v === WILL;
    const agree = [ECHO, SGA, OPT_EOR, CHARSET].includes(opt);
    if (want && !agree) { send([IAC, DONT, opt]); return; }
    if (want === hisOn.has(opt)) return;
    if (want) hisOn.add(opt); else hisOn.delete(opt);
    send([IAC, want ? DO : DONT, opt]);
    if (opt === ECHO) setEcho(want);
    return;
  }
  const want = v === DO;
  const agree = [TTYPE, NAWS, CHARSET].includes(opt);
  if (want && !agree) { send([IAC, WONT, opt]); return; }
  if (want === ourOn.has(opt)) return;
  if (want) ourOn.add(opt); else ourOn.delete(opt);
  send([IAC, want ? WILL : WONT, opt]);
  if (want && opt === TTYPE) ttypeAnswers = 0;
  if (want && opt === NAWS) send(naws());
}

function subnegotiation(opt, p) {
  if (opt === TTYPE && p[0] === 1) {
    const tls = location.protocol === "https:" ? 2048 : 0;
    const answers = ["holdfast-web", "ANSI-TRUECOLOR", "MTTS " + (1 + 4 + 8 + 256 + tls)];
    const a = answers[Math.min(ttypeAnswers++, answers.length - 1)];
    send(subneg(TTYPE, [0, ...encoder.encode(a)]));
  } else if (opt === CHARSET && p[0] === 1) {
    const list = new TextDecoder().decode(new Uint8Array(p.slice(2))).split(String.fromCharCode(p[1]));
    const utf8 = list.some((c) => c.toUpperCase() === "UTF-8");
    send(subneg(CHARSET, utf8 ? [2, ...encoder.encode("UTF-8")] : [3]));
  }
}

// receive parses telnet from the game's output.
function receive(bytes) {
  const data = [];
  const flush = () => {
    if (data.length) showText(decoder.decode(new Uint8Array(data), { stream: true }));
    data.length = 0;
  };
  const text = (c) => {
    if (afterCR && (c === 10 || c === 0)) {
      afterCR = false;
      if (c === 10) data.push(c);
      return;
    }
    gameGot++;
    afterCR = c === 13;
    data.push(c);
  };
  for (const c of bytes) {
    switch (tstate) {
      case 0:
        if (c === IAC) tstate = 1; else text(c);
        break;
      case 1:
        if (c === IAC) { text(c); tstate = 0; }
        else if (c >= WILL) { verb = c; tstate = 2; }
        else if (c === SB) tstate = 3;
        else {
          if (c === GA || c === EOR) { flush(); promptEl.textContent = stripAnsi(partial); }
          tstate = 0;
        }
        break;
      case 2:
        flush();
        negotiate(verb, c);
        tstate = 0;
        break;
      case 3:
        sbOpt = c; sb = []; tstate = 4;
        break;
      case 4:
        if (c === IAC) tstate = 5; else if (sb.length < 4096) sb.push(c);
        break;
      case 5:
        if (c === SE) { subnegotiation(sbOpt, sb); tstate = 0; }
        else if (c === IAC) { sb.push(c); tstate = 4; }
        else tstate = 0;
        break;
    }
  }
  flush();
}

function stripAnsi(s) {
  return s.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "").replace(/\r/g, "").slice(-60);
}

// gameHas forgets the typing the game has.
function gameHas(n) {
  inAcked = Math.max(inAcked, n);
  while (typed.length > 0 && typed[0].at + typed[0].len <= inAcked) typed.shift();
}

function ack(now) {
  clearTimeout(ackTimer);
  ackTimer = null;
  if (got > acked && ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ ack: got }));
    acked = got;
  }
  if (!now && got > acked) ackTimer = setTimeout(() => ack(true), ACK_AFTER);
}

function connect() {
  ended = false;
  $("connect").hidden = true;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // A page with a token comes back to its session, which has its place
  // within the gateway's limits already.
  ws = new WebSocket(scheme + "//" + location.host + "/ws?hold" + (token ? "&resume" : ""), ["telnet.mudstandards.org"]);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    // in: where the typing kept starts, which the game may have in part.
    const from = typed.length ? typed[0].at : typedTotal;
    ws.send(JSON.stringify(token ? { resume: token, got, session: sessionId, in: from, out: gameGot } : {}));
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      const m = JSON.parse(ev.data);
      if (typeof m.notice === "string") { showNotice(m.notice); return; }
      if (m.token === undefined) {
        // Said on the way: the session's id, or how much of the typing
        // the game has.
        if (m.session) sessionId = m.session;
        if (typeof m.in === "number") gameHas(m.in);
        return;
      }
      if (m.session) sessionId = m.session;
      if (typeof m.in === "number") gameHas(m.in);
      if (m.elsewhere) {
        // The session, claimed from another gateway: a new connection to
        // it, whose telnet starts again. The typing kept goes again (the
        // game skips what it has); the rest of what was sent is forgotten.
        hisOn.clear(); ourOn.clear(); tstate = 0; setEcho(false); afterCR = false;
        got = 0; acked = 0; sentLog = []; sentTotal = 0;
        queued = []; queuedBytes = 0;
        token = m.token;
        ws.send(JSON.stringify({ kept_token: true }));
        ready = true;
        for (const e of typed) transmit(e.bytes);
        retry = 0;
        showConnected();
        return;
      }
      if (m.token) {
        // The token it had resumes the session until the gateway hears
        // that this one is kept.
        token = m.token;
        ws.send(JSON.stringify({ kept_token: true }));
      }
      ready = true;
      if (m.resumed) {
        // Again what the gateway did not get, then what was typed meanwhile.
        const again = sentLog.filter((e) => e.at >= m.received);
        sentLog = sentLog.filter((e) => e.at < m.received);
        sentTotal = m.received;
        for (const e of again) transmit(e.bytes);
      }
      for (const b of queued) transmit(b);
      queued = []; queuedBytes = 0;
      if (m.missed) {
        got += m.missed;
        append("[" + m.missed + " bytes of output were missed while away]\n", "notice");
      }
      retry = 0;
      showConnected();
      return;
    }
    const bytes = new Uint8Array(ev.data);
    got += bytes.length;
    receive(bytes);
    if (got - acked >= ACK_EVERY) ack(true);
    else if (!ackTimer) ackTimer = setTimeout(() => ack(true), ACK_AFTER);
  };
  ws.onclose = (ev) => {
    ws = null;
    ready = false;
    if (ev.code === 1000 || ev.code === 4404 || ev.code === 4429 || !token) {
      ended = true;
      token = null; got = 0; acked = 0; gameAway = false;
      sessionId = ""; inAcked = 0; typed = []; typedTotal = 0; gameGot = 0; afterCR = false;
      queued = []; queuedBytes = 0; sentLog = []; sentTotal = 0;
      hisOn.clear(); ourOn.clear(); tstate = 0; setEcho(false);
      setState(ev.code === 1000 ? "disconnected" : "session over: " + (ev.reason || "connection closed"), "offline");
      $("connect").hidden = false;
      return;
    }
    const delay = Math.min(5000, 250 * 2 ** retry++);
    setState("reconnecting…", "offline");
    reconnectTimer = setTimeout(() => { reconnectTimer = null; connect(); }, delay);
  };
}

$("line").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = input.value;
  input.value = "";
  if (input.type === "password") {
    append("\n");
  } else {
    append(ansi.ansi_to_html(text) + "\n", "echo");
    if (text && history[history.length - 1] !== text) history.push(text);
    if (history.length > 500) history.shift();
    histPos = history.length;
  }
  promptEl.textContent = "";
  partial = "";
  const b = [];
  const data = encoder.encode(text.replace(/[\r\n\0]/g, "") + "\r\n");
  for (const c of data) { if (c === IAC) b.push(IAC); b.push(c); }
  // The gateway makes "\r\n" one "\n": the game counts a byte less.
  typed.push({ at: typedTotal, len: data.length - 1, bytes: b });
  typedTotal += data.length - 1;
  while (typed.length > 1 && typedTotal - typed[0].at > MAX_SENT_LOG) typed.shift();
  send(b);
});

input.addEventListener("keydown", (ev) => {
  if (input.type === "password") return;
  if (ev.key === "ArrowUp" && histPos > 0) {
    input.value = history[--histPos];
    ev.preventDefault();
  } else if (ev.key === "ArrowDown" && histPos < history.length) {
    input.value = history[++histPos] ?? "";
    ev.preventDefault();
  }
});

$("connect").addEventListener("click", connect);
window.addEventListener("resize", () => { if (ourOn.has(NAWS)) send(naws()); });
// Back on the network: no need to wait out the backoff.
window.addEventListener("online", () => {
  if (reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; connect(); }
});
connect();
