// The exam portal's browser terminal (the server side is aiotlab/portal/terminal.py).
// The page loads, in this order: node_modules/@xterm/xterm/css/xterm.css, node_modules/@xterm/xterm/lib/xterm.js,
// node_modules/@xterm/addon-fit/lib/addon-fit.js, then this file; and has
//   <div id="terminal" data-ws="/path/of/the/websocket"></div>
// (optionally <div id="terminal-status"></div> for the status line; one is added under the terminal otherwise).
// Browser -> server: text frames of JSON, {"type":"input","data":"..."} and {"type":"resize","cols":N,"rows":M};
// server -> browser: binary frames, the shell's output.
(function () {
  "use strict";

  var el = document.getElementById("terminal");
  if (!el || typeof Terminal === "undefined" || typeof FitAddon === "undefined") {
    return;
  }

  var MAX_CHUNK = 16 * 1024; // characters per input message: at most 64 KiB of UTF-8, the server's bound

  var status = document.getElementById("terminal-status");
  if (!status) {
    status = document.createElement("div");
    status.id = "terminal-status";
    el.insertAdjacentElement("afterend", status);
  }
  status.setAttribute("role", "status");
  status.setAttribute("aria-live", "polite");

  function setStatus(state, zh, en) {
    status.dataset.state = state;
    status.textContent = zh + " / " + en;
  }

  // Why the server closed, by close code and reason (terminal.py: 1000 "shell exited", 1008 "deadline",
  // 1011 "error: ..."); anything else is shown as the browser reported it.
  function closedWhy(ev) {
    if (ev.code === 1008 && ev.reason === "deadline") {
      return ["考試時間已到或已交卷", "time is up or your work was submitted"];
    }
    if (ev.code === 1000 && ev.reason === "shell exited") {
      return ["殼層已結束", "the shell exited"];
    }
    if (ev.code === 1011) {
      return ["無法啟動殼層", "the shell could not start"];
    }
    if (ev.code === 1008 || ev.code === 4401 || ev.code === 4403) {
      return ["未登入或無權使用此終端機", "not signed in, or not allowed to use this terminal"];
    }
    if (ev.code === 1006) {
      return ["連線中斷", "connection lost"];
    }
    var detail = ev.reason ? ev.reason : "code " + ev.code;
    return ["連線已關閉（" + detail + "）", "connection closed (" + detail + ")"];
  }

  function socketUrl(path) {
    if (/^wss?:\/\//.test(path)) {
      return path;
    }
    var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return scheme + "//" + window.location.host + path;
  }

  var term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: '"DejaVu Sans Mono", "Noto Sans Mono CJK TC", "Noto Sans Mono", Menlo, Consolas, monospace',
    fontSize: 15,
  });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(el);

  var ws = null;
  var reconnect = null;

  function send(obj) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(obj));
    }
  }

  function sendResize() {
    send({ type: "resize", cols: term.cols, rows: term.rows });
  }

  function refit() {
    try {
      fit.fit();
    } catch (e) {
      // not laid out yet (hidden): the next resize fits it
    }
  }

  term.onData(function (data) {
    // A large paste goes in pieces, each within the server's bound (never splitting a surrogate pair).
    var chars = Array.from(data);
    for (var i = 0; i < chars.length; i += MAX_CHUNK) {
      send({ type: "input", data: chars.slice(i, i + MAX_CHUNK).join("") });
    }
  });
  term.onResize(sendResize);

  var pending = null;
  function onLayout() {
    if (pending) {
      clearTimeout(pending);
    }
    pending = setTimeout(function () {
      pending = null;
      refit();
    }, 100);
  }
  window.addEventListener("resize", onLayout);
  if (typeof ResizeObserver !== "undefined") {
    new ResizeObserver(onLayout).observe(el);
  }

  function showReconnect() {
    if (!reconnect) {
      reconnect = document.createElement("button");
      reconnect.type = "button";
      reconnect.className = "terminal-reconnect";
      reconnect.textContent = "重新連線 / Reconnect";
      reconnect.addEventListener("click", function () {
        reconnect.hidden = true;
        connect();
      });
      status.insertAdjacentElement("afterend", reconnect);
    }
    reconnect.hidden = false;
  }

  function connect() {
    setStatus("connecting", "連線中…", "connecting…");
    term.options.disableStdin = false;
    ws = new WebSocket(socketUrl(el.dataset.ws));
    ws.binaryType = "arraybuffer";
    ws.onopen = function () {
      setStatus("connected", "已連線", "connected");
      refit();
      sendResize();
      term.focus();
    };
    ws.onmessage = function (ev) {
      if (ev.data instanceof ArrayBuffer) {
        term.write(new Uint8Array(ev.data));
      } else {
        term.write(String(ev.data));
      }
    };
    ws.onclose = function (ev) {
      var why = closedWhy(ev);
      setStatus("closed", "已關閉：" + why[0], "closed: " + why[1]);
      term.options.disableStdin = true;
      ws = null;
      // After the deadline there is nothing to go back to; otherwise a new shell can be opened.
      if (ev.code !== 1008) {
        showReconnect();
      }
    };
  }

  refit();
  connect();
})();
