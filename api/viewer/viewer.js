// docground viewer: pages with citation boxes, and the ask-and-cite page. No build step, no dependencies.
"use strict";
const docground = (() => {
  const KEY = "docground_api_key";

  // An API key may arrive in the URL fragment (#key=...), which browsers never send to servers.
  function key() {
    const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
    if (fromHash) {
      localStorage.setItem(KEY, fromHash);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return localStorage.getItem(KEY) || "";
  }

  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {});
    const k = key();
    if (k) headers["Authorization"] = "Bearer " + k;
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).message || message; } catch (e) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  }

  function parseBoxes(text) {
    return text.split(";").map(b => b.split(",").map(Number)).filter(b => b.length === 4 && b.every(isFinite));
  }

  function say(element, message, isError) {
    element.textContent = message;
    element.classList.toggle("error", !!isError);
  }

  // The page image, with each box (0..1, top-left origin) drawn where it lies on the page.
  async function showPage(container, documentId, page, boxes) {
    const response = await api(`/v1/documents/${encodeURIComponent(documentId)}/pages/${page}/image`);
    const url = URL.createObjectURL(await response.blob());
    const frame = document.createElement("div");
    frame.className = "dg-page";
    const img = new Image();
    img.alt = `page ${page}`;
    const loaded = new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; });
    img.src = url;
    frame.appendChild(img);
    for (const [x0, y0, x1, y1] of boxes) {
      const box = document.createElement("div");
      box.className = "dg-box";
      Object.assign(box.style, { left: `${x0 * 100}%`, top: `${y0 * 100}%`,
                                 width: `${(x1 - x0) * 100}%`, height: `${(y1 - y0) * 100}%` });
      frame.appendChild(box);
    }
    container.replaceChildren(frame);
    await loaded;
    if (boxes.length) {
      const first = frame.querySelector(".dg-box");
      first.scrollIntoView({ block: "center" });
    }
    document.body.dataset.shown = `${documentId}:${page}`;
  }

  function escapeHtml(s) {
    return s.replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  // Server-sent events from a fetch response: yields [event, data] pairs.
  async function* events(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        yield [name, data ? JSON.parse(data) : null];
      }
    }
  }

  function askPage(params) {
    const form = document.getElementById("ask");
    const status = document.getElementById("status");
    const answer = document.getElementById("answer");
    const list = document.getElementById("citations");
    const pager = document.getElementById("pager");
    const pageBox = document.getElementById("page");
    let citations = [];

    for (const name of ["kb", "q", "mode"]) if (params.get(name)) form.elements[name].value = params.get(name);
    form.elements.key.value = key();

    function render(result) {
      citations = result.citations;
      answer.classList.toggle("not-found", result.answer === null);
      if (result.answer === null) {
        answer.textContent = "Nothing relevant was found in this knowledge base.";
      } else {
        const known = new Set(citations.map(c => c.n));
        answer.innerHTML = escapeHtml(result.answer).replace(/\[(\d+)\]/g, (m, n) =>
          known.has(Number(n)) ? `<a class="marker" data-n="${n}" href="#">[${n}]</a>` : m);
      }
      list.replaceChildren(...[...new Map(citations.map(c => [c.n, c])).values()].map(c => {
        const li = document.createElement("li");
        li.value = c.n;
        li.dataset.n = c.n;
        li.innerHTML = `<span class="where">${escapeHtml(c.filename)}, p. ${c.page}</span> — ${escapeHtml(c.quote)}`;
        return li;
      }));
      document.body.dataset.state = "answered";
    }

    async function open(n) {
      const mine = citations.filter(c => c.n === n);
      if (!mine.length) return;
      answer.querySelectorAll(".marker").forEach(m => m.classList.toggle("active", Number(m.dataset.n) === n));
      pager.replaceChildren(...mine.map(c => {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = `${c.filename} p. ${c.page}`;
        b.onclick = () => showPage(pageBox, c.document_id, c.page, c.boxes).catch(e => say(status, e.message, true));
        return b;
      }));
      await showPage(pageBox, mine[0].document_id, mine[0].page, mine[0].boxes);
    }

    answer.addEventListener("click", e => {
      const m = e.target.closest(".marker");
      if (m) { e.preventDefault(); open(Number(m.dataset.n)).catch(err => say(status, err.message, true)); }
    });
    list.addEventListener("click", e => {
      const li = e.target.closest("li");
      if (li) open(Number(li.dataset.n)).catch(err => say(status, err.message, true));
    });

    async function ask() {
      const kb = form.elements.kb.value.trim(), q = form.elements.q.value.trim();
      if (form.elements.key.value) localStorage.setItem(KEY, form.elements.key.value);
      else localStorage.removeItem(KEY);
      say(status, "asking…");
      answer.textContent = "";
      list.replaceChildren();
      const response = await api(`/v1/knowledge-bases/${encodeURIComponent(kb)}/query`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ query: q, top_k: 5, mode: form.elements.mode.value, stream: true }),
      });
      for await (const [name, data] of events(response)) {
        if (name === "delta") answer.textContent += data.text;
        else if (name === "done") render(data);
        else if (name === "error") throw new Error(data.message);
      }
      say(status, "");
    }

    form.addEventListener("submit", e => {
      e.preventDefault();
      ask().catch(err => say(status, err.message, true));
    });
    // Deep links: ?kb=..&q=.. asks at once; &cite=n also opens citation n.
    if (params.get("kb") && params.get("q")) {
      ask().then(() => params.get("cite") && open(Number(params.get("cite"))))
           .catch(err => say(status, err.message, true));
    }
  }

  return { api, askPage, events, parseBoxes, say, showPage };
})();
