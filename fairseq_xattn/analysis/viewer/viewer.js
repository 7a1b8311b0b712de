/* fairseq-xattn viewer: draws the JSON of the #xattn-data element (written by builder.py).
 * Plain JavaScript, no library, nothing fetched: it works from a file:// URL.
 * Test hooks: #row carries the drawn row (data-ca-row, data-sh-row, data-sx-row as JSON, with
 * data-utterance, data-token, data-layer, data-head); <body> carries data-draw-count and
 * data-first-draw-ms (performance.now() when the first utterance was drawn). */
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("xattn-data").textContent);
  const UTTS = DATA.utterances;
  const LEFT = 84, RIGHT = 12;               // plot margins (px), shared by every panel and the word track
  const $ = (id) => document.getElementById(id);
  const state = { u: 0, token: 0, layer: "avg", head: "avg", sortKey: null, sortDir: 1 };
  const decoded = new Map();                 // utterance index -> Promise of its maps
  let drawSeq = 0, drawCount = 0;

  // ------------------------------------------------------------------ colour maps
  // 9 evenly spaced anchors of matplotlib's viridis and magma, interpolated to 256 entries
  function makeLut(hexes) {
    const rgb = hexes.map((h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
    const lut = new Uint8ClampedArray(256 * 3);
    for (let k = 0; k < 256; k++) {
      const x = (k / 255) * (rgb.length - 1), i = Math.min(Math.floor(x), rgb.length - 2), f = x - i;
      for (let c = 0; c < 3; c++) lut[3 * k + c] = Math.round(rgb[i][c] + f * (rgb[i + 1][c] - rgb[i][c]));
    }
    return lut;
  }
  const VIRIDIS = makeLut(["#440154", "#472c7a", "#3b518b", "#2c718e", "#21908d", "#27ad81", "#5cc863", "#aadc32", "#fde725"]);
  const MAGMA = makeLut(["#000004", "#1c1044", "#4f127b", "#812581", "#b5367a", "#e55064", "#fb8761", "#fec287", "#fcfdbf"]);
  const LINE = { ca: "#d9480f", sh: "#1c7ed6", sx: "#2b8a3e" };

  // ------------------------------------------------------------------ decoding (see encode.py)
  function base64Bytes(b64) {
    const s = atob(b64), out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  async function inflate(bytes) {
    if (typeof DecompressionStream === "undefined") throw new Error("this browser lacks DecompressionStream (Chrome 80+, Firefox 113+, Safari 16.4+)");
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  function readMap(buf, e) {
    const [qo, qn] = e.q, last = e.shape[e.shape.length - 1];
    const q = buf.slice(qo, qo + qn);
    if (e.delta) for (let r = 0; r < qn; r += last) for (let k = 1; k < last; k++) q[r + k] = (q[r + k] + q[r + k - 1]) & 255;
    const f32 = (s) => new Float32Array(buf.buffer.slice(buf.byteOffset + s[0], buf.byteOffset + s[0] + 4 * s[1]));
    const lo = f32(e.lo), hi = f32(e.hi), size = qn / lo.length, v = new Float64Array(qn);
    for (let g = 0; g < lo.length; g++) {
      const a = lo[g], d = hi[g] - lo[g];
      for (let k = g * size; k < (g + 1) * size; k++) v[k] = a + (q[k] / e.levels) * d;
    }
    return { shape: e.shape, block: e.block || null, v };
  }
  function decode(ui) {
    if (!decoded.has(ui)) {
      decoded.set(ui, (async () => {
        const u = UTTS[ui], buf = await inflate(base64Bytes(u.blob)), maps = {};
        for (const [name, entry] of Object.entries(u.maps)) maps[name] = readMap(buf, entry);
        return maps;
      })());
      for (const key of decoded.keys()) { if (decoded.size <= 6) break; if (key !== ui) decoded.delete(key); }
    }
    return decoded.get(ui);
  }

  // ------------------------------------------------------------------ maths on the decoded maps
  const range = (n) => Array.from({ length: n }, (_, i) => i);
  function caMatrix(u, maps) {             // mean of the selected (layer, head) matrices: I x T'
    const n = u.I * u.Tp, out = new Float64Array(n), ca = maps.ca.v;
    const layers = state.layer === "avg" ? range(u.L) : [state.layer - 1];
    const heads = state.head === "avg" ? range(u.H) : [state.head - 1];
    for (const l of layers) for (const h of heads) {
      const off = (l * u.H + h) * n;
      for (let k = 0; k < n; k++) out[k] += ca[off + k];
    }
    for (let k = 0; k < n; k++) out[k] /= layers.length * heads.length;
    return out;
  }
  function extent(v, from = 0, to = v.length) {
    let lo = Infinity, hi = -Infinity;
    for (let k = from; k < to; k++) { if (v[k] < lo) lo = v[k]; if (v[k] > hi) hi = v[k]; }
    return [lo, hi];
  }
  const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(d));
  const tokenLabel = (t) => t.replace(/^[\u2581\u0120 ]/, "") || "\u2581";
  const selectionLabel = () =>
    state.layer === "avg" && state.head === "avg" ? "mean of all layers and heads"
      : state.layer === "avg" ? `head ${state.head}, mean over layers`
        : state.head === "avg" ? `layer ${state.layer}, mean over heads` : `layer ${state.layer}, head ${state.head}`;

  // ------------------------------------------------------------------ drawing
  function setup(canvas, cssH) {
    const dpr = window.devicePixelRatio || 1, w = canvas.parentNode.clientWidth;
    canvas.style.height = cssH + "px";
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(cssH * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, cssH);
    ctx.imageSmoothingEnabled = false;
    return { ctx, w, h: cssH, x0: LEFT, pw: w - LEFT - RIGHT };
  }
  // an image of cols x rows cells; value(x, y) with y = 0 the top row
  function cellImage(cols, rows, value, lo, hi, lut) {
    const c = document.createElement("canvas");
    c.width = cols; c.height = rows;
    const ctx = c.getContext("2d"), img = ctx.createImageData(cols, rows), px = img.data;
    const scale = hi > lo ? 255 / (hi - lo) : 0;
    for (let y = 0; y < rows; y++) for (let x = 0; x < cols; x++) {
      const k = Math.max(0, Math.min(255, Math.round((value(x, y) - lo) * scale))), p = 4 * (y * cols + x);
      px[p] = lut[3 * k]; px[p + 1] = lut[3 * k + 1]; px[p + 2] = lut[3 * k + 2]; px[p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }
  function timeOf(u) { return u.Tp * u.s * u.frame_shift; }   // seconds spanned by the plot width
  function wordSpan(u) {                                        // [start, end] of the selected token's word
    const k = u.word_of_token[state.token], words = u.hyp_words;
    const nWords = u.word_of_token[u.I - 1] + 1;
    if (!words || words.length !== nWords) return null;
    return [words[k][1], words[k][2]];
  }
  function markSpan(g, u, y, h) {
    const span = wordSpan(u);
    if (!span) return;
    const x = g.x0 + (span[0] / timeOf(u)) * g.pw, w = ((span[1] - span[0]) / timeOf(u)) * g.pw;
    g.ctx.strokeStyle = "#ffffff"; g.ctx.lineWidth = 1.5; g.ctx.setLineDash([4, 3]);
    g.ctx.strokeRect(x, y + 0.5, Math.max(w, 1), h - 1);
    g.ctx.setLineDash([]);
  }
  function sideLabel(g, text, y, bold) {
    g.ctx.fillStyle = bold ? LINE.ca : "#5f6b7a";
    g.ctx.font = (bold ? "600 " : "") + "11px ui-monospace, 'DejaVu Sans Mono', monospace";
    g.ctx.textAlign = "right"; g.ctx.textBaseline = "middle";
    g.ctx.fillText(text, LEFT - 6, y);
  }

  // a T x F picture (spectrogram, or SM^X of one token: ``offset`` skips the tokens before it); the
  // map may be block-averaged (``block`` frames x bins per cell)
  function drawPicture(canvasId, u, values, offset, lut, label) {
    const canvas = $(canvasId), nd = values.shape.length, F = values.shape[nd - 1], T = values.shape[nd - 2];
    const [bt, bf] = values.block || [1, 1];
    const g = setup(canvas, Math.max(80, Math.min(130, F * bf * 1.4)));
    const [lo, hi] = extent(values.v, offset, offset + T * F);
    const img = cellImage(T, F, (x, y) => values.v[offset + x * F + (F - 1 - y)], lo, hi, lut);
    const w = (g.pw * T * bt) / (u.Tp * u.s);
    g.ctx.drawImage(img, g.x0, 0, w, g.h);
    sideLabel(g, label, g.h / 2, false);
    markSpan(g, u, 0, g.h);
    canvas.dataset.range = `${lo} ${hi}`;
    canvas._hit = (x, y) => {
      const t = Math.floor(((x - g.x0) / w) * T), f = F - 1 - Math.floor((y / g.h) * F);
      if (t < 0 || t >= T || f < 0 || f >= F) return "";
      const frames = bt > 1 ? `frames ${t * bt}-${Math.min(u.T, (t + 1) * bt) - 1}` : `frame ${t}`;
      const bins = bf > 1 ? `bins ${f * bf}-${(f + 1) * bf - 1}` : `bin ${f}`;
      return `${label}  ${frames} (${(t * bt * u.frame_shift).toFixed(2)} s), ${bins}: ${values.v[offset + t * F + f].toPrecision(3)}`;
    };
    return [lo, hi];
  }
  const rangeText = ([lo, hi]) => `; colours ${lo.toPrecision(3)} to ${hi.toPrecision(3)}`;

  function drawMatrix(canvasId, u, m, name) {     // I x T' matrix, selected token's row outlined
    const canvas = $(canvasId), rowH = Math.max(7, Math.min(16, Math.floor(230 / u.I)));
    const g = setup(canvas, rowH * u.I);
    const [lo, hi] = extent(m);
    g.ctx.drawImage(cellImage(u.Tp, u.I, (x, y) => m[y * u.Tp + x], lo, hi, VIRIDIS), g.x0, 0, g.pw, g.h);
    for (let i = 0; i < u.I; i++) {
      if (rowH >= 10 || i === state.token) sideLabel(g, tokenLabel(u.tokens[i]), (i + 0.5) * rowH, i === state.token);
    }
    g.ctx.strokeStyle = LINE.ca; g.ctx.lineWidth = 2;
    g.ctx.strokeRect(g.x0 - 1, state.token * rowH, g.pw + 2, rowH);
    canvas._hit = (x, y) => {
      const j = Math.floor(((x - g.x0) / g.pw) * u.Tp), i = Math.floor(y / rowH);
      if (j < 0 || j >= u.Tp || i < 0 || i >= u.I) return "";
      const t0 = j * u.s * u.frame_shift;
      return `${name}  token ${i} "${tokenLabel(u.tokens[i])}", encoder frame ${j} (${t0.toFixed(2)}-${(t0 + u.s * u.frame_shift).toFixed(2)} s): ${m[i * u.Tp + j].toPrecision(4)}`;
    };
    canvas._row = (y) => Math.floor(y / rowH);
    return [lo, hi];
  }

  function timeAxis(g, u, y) {
    const span = timeOf(u), step = span > 8 ? 1 : span > 3 ? 0.5 : span > 1.2 ? 0.2 : 0.1;
    g.ctx.fillStyle = "#5f6b7a"; g.ctx.strokeStyle = "#e3e7ee"; g.ctx.lineWidth = 1;
    g.ctx.font = "11px system-ui, sans-serif"; g.ctx.textAlign = "center"; g.ctx.textBaseline = "top";
    for (let t = 0; t <= span + 1e-9; t += step) {
      const x = Math.round(g.x0 + (t / span) * g.pw) + 0.5;
      g.ctx.beginPath(); g.ctx.moveTo(x, 0); g.ctx.lineTo(x, y); g.ctx.stroke();
      g.ctx.fillText(`${t.toFixed(step < 1 ? 1 : 0)} s`, x, y + 2);
    }
  }

  function drawRows(u, rows) {                    // the selected token's rows on the T' grid, stepped
    const canvas = $("row"), g = setup(canvas, 128), plotH = g.h - 18;
    timeAxis(g, u, plotH);
    for (const [key, row] of Object.entries(rows)) {
      if (!row) continue;
      const [lo, hi] = extent(row), scale = hi > lo ? (plotH - 6) / (hi - lo) : 0;
      g.ctx.strokeStyle = LINE[key]; g.ctx.lineWidth = key === "ca" ? 2 : 1.5;
      g.ctx.beginPath();
      for (let j = 0; j < u.Tp; j++) {
        const y = plotH - 3 - (row[j] - lo) * scale;
        const xa = g.x0 + (j / u.Tp) * g.pw, xb = g.x0 + ((j + 1) / u.Tp) * g.pw;
        if (j === 0) g.ctx.moveTo(xa, y); else g.ctx.lineTo(xa, y);
        g.ctx.lineTo(xb, y);
      }
      g.ctx.stroke();
    }
    sideLabel(g, tokenLabel(u.tokens[state.token]), plotH / 2, true);
    const d = canvas.dataset;
    d.utterance = u.id; d.token = state.token; d.layer = state.layer; d.head = state.head;
    d.caRow = JSON.stringify(Array.from(rows.ca));
    d.shRow = rows.sh ? JSON.stringify(Array.from(rows.sh)) : "";
    d.sxRow = rows.sx ? JSON.stringify(Array.from(rows.sx)) : "";
    canvas._hit = (x) => {
      const j = Math.floor(((x - g.x0) / g.pw) * u.Tp);
      if (j < 0 || j >= u.Tp) return "";
      const parts = Object.entries(rows).filter(([, r]) => r).map(([k, r]) => `${k.toUpperCase()} ${r[j].toPrecision(4)}`);
      return `encoder frame ${j} (${(j * u.s * u.frame_shift).toFixed(2)} s): ${parts.join("  ")}`;
    };
  }

  function drawWords(u) {
    const box = $("words"), span = timeOf(u), sel = u.hyp_words ? wordSpan(u) : null;
    box.textContent = "";
    const tracks = [["reference", u.ref_words, "ref"], ["hypothesis", u.hyp_words, "hyp"]];
    let top = 0;
    for (const [name, words, cls] of tracks) {
      const track = document.createElement("div");
      track.className = "wtrack"; track.style.top = top + "px"; top += 23;
      const tag = document.createElement("span");
      tag.className = "tag"; tag.textContent = name;
      track.appendChild(tag);
      if (!words) {
        const none = document.createElement("span");
        none.className = "missing"; none.textContent = cls === "hyp" ? "no word times (--timestamps)" : "no reference word times";
        track.appendChild(none);
      } else {
        words.forEach(([w, s, e], k) => {
          const el = document.createElement("div");
          el.className = `word ${cls}`;
          if (cls === "hyp" && sel && k === u.word_of_token[state.token]) el.classList.add("selected");
          el.style.left = (100 * s) / span + "%";
          el.style.width = Math.max(0.2, (100 * (e - s)) / span) + "%";
          el.textContent = w; el.title = `${w}: ${s.toFixed(3)}-${e.toFixed(3)} s (click: play)`;
          el.dataset.start = s; el.dataset.end = e;
          el.addEventListener("click", () => play(s, e));
          track.appendChild(el);
        });
      }
      box.appendChild(track);
    }
  }

  function drawCorrelations(u) {
    const box = $("correlations");
    box.textContent = "";
    for (const [symbol, c] of Object.entries(u.corr)) {
      const t = document.createElement("table");
      t.className = "corr"; t.dataset.symbol = symbol;
      t.createCaption().textContent = `r(CA, ${symbol}) of this utterance`;
      const head = t.createTHead().insertRow();
      head.appendChild(document.createElement("th"));
      for (let h = 1; h <= u.H; h++) head.appendChild(Object.assign(document.createElement("th"), { textContent: `head ${h}` }));
      head.appendChild(Object.assign(document.createElement("th"), { textContent: "mean" }));
      const body = t.createTBody();
      const cell = (row, value, layer, headSel) => {
        const td = row.insertCell();
        td.textContent = fmt(value, 2);
        const a = value === null ? 0 : Math.min(1, Math.abs(value));
        td.style.background = value === null ? "#f4f4f4" : value >= 0 ? `rgba(217,72,15,${0.55 * a})` : `rgba(28,126,214,${0.55 * a})`;
        td.dataset.layer = layer; td.dataset.head = headSel;
        if (String(state.layer) === String(layer) && String(state.head) === String(headSel)) td.classList.add("current");
        td.title = `layer ${layer}, head ${headSel}: click to show`;
        td.addEventListener("click", () => select({ layer: layer === "avg" ? "avg" : +layer, head: headSel === "avg" ? "avg" : +headSel }));
      };
      for (let l = 0; l < u.L; l++) {
        const row = body.insertRow();
        row.appendChild(Object.assign(document.createElement("th"), { textContent: `layer ${l + 1}` }));
        for (let h = 0; h < u.H; h++) cell(row, c.grid[l][h], l + 1, h + 1);
        cell(row, c.head_avg[l], l + 1, "avg");
      }
      const row = body.insertRow();
      row.appendChild(Object.assign(document.createElement("th"), { textContent: "mean" }));
      for (let h = 0; h < u.H; h++) cell(row, c.layer_avg[h], "avg", h + 1);
      cell(row, c.full, "avg", "avg");
      box.appendChild(t);
    }
  }

  function drawControls(u) {
    const buttons = (id, n, key) => {
      const box = $(id);
      box.textContent = "";
      for (const value of ["avg", ...range(n).map((i) => i + 1)]) {
        const b = document.createElement("button");
        b.textContent = value === "avg" ? "mean" : value;
        b.dataset[key] = value;
        b.setAttribute("aria-pressed", String(state[key]) === String(value));
        b.addEventListener("click", () => select({ [key]: value }));
        box.appendChild(b);
      }
    };
    buttons("layer-buttons", u.L, "layer");
    buttons("head-buttons", u.H, "head");
    const tokens = $("tokens"), word = u.word_of_token[state.token];
    tokens.textContent = "";
    u.tokens.forEach((t, i) => {
      const b = document.createElement("button");
      b.textContent = tokenLabel(t);
      b.title = `token ${i}: ${t}`;
      b.dataset.tokenIndex = i;
      b.setAttribute("role", "option");
      b.setAttribute("aria-pressed", i === state.token);
      if (i > 0 && u.word_of_token[i] !== u.word_of_token[i - 1]) b.classList.add("word-start");
      if (i !== state.token && u.word_of_token[i] === word) b.classList.add("same-word");
      b.addEventListener("click", () => select({ token: i }));
      tokens.appendChild(b);
    });
    const span = wordSpan(u);
    $("play-all").disabled = !u.audio;
    $("play-word").disabled = !u.audio || !span;
    $("play-word").title = !u.hyp_words ? "no word times: pass --timestamps"
      : !span ? "the word times do not list one word per word of the tokens" : "play the selected token's word (w)";
  }

  async function draw() {
    const seq = ++drawSeq, ui = state.u, u = UTTS[ui];
    let maps;
    try { maps = await decode(ui); } catch (err) { $("readout").textContent = `cannot decode: ${err}`; throw err; }
    if (seq !== drawSeq) return;              // a newer selection is being drawn
    drawControls(u);
    $("panel-spec").style.display = maps.spec ? "" : "none";
    $("panel-sx").style.display = maps.sx ? "" : "none";
    $("panel-sh").style.display = maps.sh ? "" : "none";
    if (maps.spec) drawPicture("spec", u, maps.spec, 0, MAGMA, "log-mel");
    if (maps.sx) {
      const [, Ts, Fs] = maps.sx.shape, [bt, bf] = maps.sx.block || [1, 1];
      const cell = bt * bf > 1 ? `, ${bt} frames x ${bf} bins per cell` : "";
      const r = drawPicture("sx", u, maps.sx, state.token * Ts * Fs, VIRIDIS, "SM^X");
      $("sx-title").textContent = `SM^X of token ${state.token} "${tokenLabel(u.tokens[state.token])}" (input saliency, time x frequency${cell}${rangeText(r)})`;
    }
    const ca = caMatrix(u, maps);
    $("ca-title").textContent = `CA: ${selectionLabel()} (tokens x encoder frames${rangeText(drawMatrix("ca", u, ca, "CA"))})`;
    if (maps.sh) $("sh-title").textContent = `SM^H (encoder-output saliency${rangeText(drawMatrix("sh", u, maps.sh.v, "SM^H"))})`;
    const row = (m) => m && m.subarray(state.token * u.Tp, (state.token + 1) * u.Tp);
    const rows = { ca: row(ca), sh: maps.sh ? row(maps.sh.v) : null, sx: maps.sxp ? row(maps.sxp.v) : null };
    $("row-title").textContent = `token ${state.token} "${tokenLabel(u.tokens[state.token])}": rows on the encoder grid, each line scaled to its own range`;
    $("row-legend").innerHTML = "";
    for (const [key, name] of [["ca", `CA (${selectionLabel()})`], ["sh", "SM^H"], ["sx", `SM^X pooled (${DATA.settings.aggregation || ""})`]]) {
      if (!rows[key]) continue;
      const s = document.createElement("span");
      s.innerHTML = `<i style="background:${LINE[key]}"></i>`;
      s.appendChild(document.createTextNode(name));
      $("row-legend").appendChild(s);
    }
    drawRows(u, rows);
    drawWords(u);
    drawCorrelations(u);
    drawCount += 1;
    document.body.dataset.drawCount = drawCount;
    if (!document.body.dataset.firstDrawMs) document.body.dataset.firstDrawMs = Math.round(performance.now());
  }

  // ------------------------------------------------------------------ utterance header and index
  function showUtterance() {
    const u = UTTS[state.u];
    $("utt-title").textContent = u.id;
    $("utt-text").textContent = u.text;
    $("utt-reference").textContent = u.reference ?? "–";
    const parts = [];
    if (u.scores.wer !== null && u.scores.wer !== undefined) parts.push(`WER ${fmt(u.scores.wer, 1)}`);
    if (u.scores.bleu !== null && u.scores.bleu !== undefined) parts.push(`BLEU ${fmt(u.scores.bleu, 1)}`);
    for (const [symbol, c] of Object.entries(u.corr)) parts.push(`r(CA, ${symbol}) ${fmt(c.full, 3)}`);
    parts.push(`${(u.T * u.frame_shift).toFixed(2)} s, ${u.I} tokens`);
    $("utt-scores").textContent = parts.join(" · ");
    for (const tr of document.querySelectorAll("#index tbody tr")) tr.classList.toggle("current", +tr.dataset.index === state.u);
    history.replaceState(null, "", "#" + encodeURIComponent(u.id));
  }

  const symbols = [...new Set(UTTS.flatMap((u) => Object.keys(u.corr)))];
  const COLUMNS = [
    { key: "n", label: "#", num: true, value: (u, i) => i + 1 },
    { key: "id", label: "id", value: (u) => u.id },
    { key: "seconds", label: "s", num: true, value: (u) => u.T * u.frame_shift, digits: 2 },
    { key: "tokens", label: "tokens", num: true, value: (u) => u.I },
    { key: "wer", label: "WER", num: true, value: (u) => u.scores.wer, digits: 1 },
    { key: "bleu", label: "BLEU", num: true, value: (u) => u.scores.bleu, digits: 1 },
    ...symbols.map((s) => ({ key: `r ${s}`, label: `r(CA, ${s})`, num: true, value: (u) => (u.corr[s] ? u.corr[s].full : null), digits: 3 })),
    { key: "text", label: "hypothesis", value: (u) => u.text },
  ];
  function buildIndex() {
    const head = document.querySelector("#index thead"), row = head.insertRow();
    for (const col of COLUMNS) {
      const th = document.createElement("th");
      th.textContent = col.label; th.dataset.key = col.key; th.title = "click to sort";
      th.addEventListener("click", () => {
        state.sortDir = state.sortKey === col.key ? -state.sortDir : 1;
        state.sortKey = col.key;
        fillIndex();
      });
      row.appendChild(th);
    }
    fillIndex();
  }
  function fillIndex() {
    const order = range(UTTS.length), col = COLUMNS.find((c) => c.key === state.sortKey);
    if (col) {
      const val = (i) => col.value(UTTS[i], i);
      order.sort((a, b) => {
        const x = val(a), y = val(b), xm = x === null || x === undefined, ym = y === null || y === undefined;
        if (xm || ym) return xm - ym;               // missing values last, whatever the direction
        return (col.num ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true })) * state.sortDir || a - b;
      });
    }
    for (const th of document.querySelectorAll("#index th")) {
      th.setAttribute("aria-sort", th.dataset.key === state.sortKey ? (state.sortDir > 0 ? "ascending" : "descending") : "none");
    }
    const body = document.querySelector("#index tbody");
    body.textContent = "";
    for (const i of order) {
      const tr = body.insertRow(), u = UTTS[i];
      tr.dataset.index = i; tr.dataset.id = u.id;
      if (i === state.u) tr.classList.add("current");
      for (const c of COLUMNS) {
        const td = tr.insertCell(), v = c.value(u, i);
        td.className = c.key === "text" ? "text" : c.num ? "num" : "";
        td.textContent = c.digits !== undefined ? fmt(v, c.digits) : v ?? "–";
        if (c.num) td.dataset.value = v ?? "";
      }
      tr.addEventListener("click", () => select({ u: i }));
    }
  }
  function buildSummary() {
    const parts = [`${UTTS.length} utterance${UTTS.length === 1 ? "" : "s"}`];
    for (const s of symbols) {
      const rs = UTTS.map((u) => u.corr[s] && u.corr[s].full).filter((r) => r !== null && r !== undefined);
      if (rs.length) parts.push(`mean r(CA, ${s}) ${fmt(rs.reduce((a, b) => a + b, 0) / rs.length, 3)} over ${rs.length}`);
    }
    $("summary").textContent = parts.concat(DATA.notes || []).join(" · ");
    $("settings").textContent = JSON.stringify(DATA.settings, null, 1);
  }

  // ------------------------------------------------------------------ selection
  function select(change) {
    if (change.u !== undefined && change.u !== state.u) {
      stopAudio();
      state.u = change.u;
      const u = UTTS[state.u];
      state.token = Math.min(state.token, u.I - 1);
      if (state.layer !== "avg" && state.layer > u.L) state.layer = "avg";
      if (state.head !== "avg" && state.head > u.H) state.head = "avg";
      showUtterance();
    }
    for (const key of ["token", "layer", "head"]) {
      if (change[key] !== undefined) state[key] = change[key] === "avg" ? "avg" : +change[key];
    }
    return draw();
  }

  // ------------------------------------------------------------------ audio (Web Audio: exact spans)
  let actx = null, source = null, raf = 0;
  const buffers = new Map();
  function audioBuffer(ui) {
    if (!buffers.has(ui)) {
      buffers.set(ui, (async () => {
        if (!actx) actx = new (window.AudioContext || window.webkitAudioContext)();
        return actx.decodeAudioData(base64Bytes(UTTS[ui].audio.b64).buffer);
      })());
    }
    return buffers.get(ui);
  }
  function stopAudio() {
    if (source) { try { source.stop(); } catch (e) { /* already stopped */ } source = null; }
    cancelAnimationFrame(raf);
    $("cursor").style.display = "none";
    delete document.body.dataset.playing;
  }
  async function play(start, end) {
    const ui = state.u, u = UTTS[ui];
    if (!u.audio) return;
    stopAudio();
    const buf = await audioBuffer(ui);
    if (ui !== state.u) return;
    if (actx.state === "suspended") await actx.resume();
    const s0 = Math.max(0, Math.min(start, buf.duration)), dur = Math.max(0.02, Math.min(end, buf.duration) - s0);
    const src = actx.createBufferSource();
    src.buffer = buf; src.connect(actx.destination); src.start(0, s0, dur);
    source = src;
    $("play-all").dataset.audioSeconds = buf.duration.toFixed(3);
    document.body.dataset.playing = `${s0.toFixed(3)}-${(s0 + dur).toFixed(3)}`;
    src.onended = () => { if (source === src) stopAudio(); };
    const t0 = actx.currentTime, cursor = $("cursor"), span = timeOf(u);
    const tick = () => {
      const pos = s0 + (actx.currentTime - t0), width = $("panels").clientWidth - LEFT - RIGHT;
      cursor.style.left = LEFT + (Math.min(pos, s0 + dur) / span) * width + "px";
      cursor.style.display = "block";
      if (source === src) raf = requestAnimationFrame(tick);
    };
    tick();
  }

  // ------------------------------------------------------------------ events and start
  function wire() {
    $("prev").addEventListener("click", () => select({ u: (state.u + UTTS.length - 1) % UTTS.length }));
    $("next").addEventListener("click", () => select({ u: (state.u + 1) % UTTS.length }));
    $("play-all").addEventListener("click", () => play(0, Infinity));
    $("play-word").addEventListener("click", () => { const s = wordSpan(UTTS[state.u]); if (s) play(s[0], s[1]); });
    $("stop").addEventListener("click", stopAudio);
    for (const id of ["spec", "sx", "ca", "sh", "row"]) {
      const c = $(id);
      c.addEventListener("mousemove", (e) => { if (c._hit) $("readout").textContent = c._hit(e.offsetX, e.offsetY) || "\u00a0"; });
      c.addEventListener("click", (e) => {       // a click on a row of a matrix selects its token
        if (!c._row) return;
        const i = c._row(e.offsetY);
        if (i >= 0 && i < UTTS[state.u].I) select({ token: i });
      });
    }
    document.addEventListener("keydown", (e) => {
      if (e.target.tagName === "INPUT" || e.metaKey || e.ctrlKey || e.altKey) return;
      const u = UTTS[state.u];
      if (e.key === "ArrowRight") select({ token: Math.min(u.I - 1, state.token + 1) });
      else if (e.key === "ArrowLeft") select({ token: Math.max(0, state.token - 1) });
      else if (e.key === "j") $("next").click();
      else if (e.key === "k") $("prev").click();
      else if (e.key === "w") $("play-word").click();
      else if (e.key === " ") $("play-all").click();
      else return;
      e.preventDefault();
    });
    let pending = 0;
    window.addEventListener("resize", () => { clearTimeout(pending); pending = setTimeout(draw, 120); });
  }

  function start() {
    if (!UTTS.length) { $("detail").textContent = "No utterance."; return; }
    const wanted = decodeURIComponent(location.hash.slice(1));
    const found = UTTS.findIndex((u) => u.id === wanted);
    state.u = found >= 0 ? found : 0;
    buildSummary();
    buildIndex();
    wire();
    showUtterance();
    draw();
  }
  start();
  // for tests and the console: the state and a way to change it
  window.xattnViewer = { state, select, data: DATA };
})();
