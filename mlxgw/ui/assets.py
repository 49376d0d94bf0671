"""The page's inline stylesheet and script. Kept as strings (no package data, no network): the page is one
self-contained file. The script only enhances: everything but the resolver box is plain HTML.

The resolver follows `Snapshot.route` step by step over the table the server itself compiled (embedded
as JSON): exact name, then the prefixes in the server's order (longest first, ties in declared order),
then the regexes in declared order, each translated by mlxgw.ui.jsregex. All text goes into the DOM
with textContent, never innerHTML.
"""

CSS = r"""
:root {
  color-scheme: light dark;
  --bg: #ffffff; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --card: #f6f8fa;
  --accent: #0550ae; --accent-bg: #ddf4ff; --ok: #116329; --ok-bg: #dafbe1; --warn: #7d4e00;
  --warn-bg: #fff8c5; --err: #a40e26; --err-bg: #ffebe9; --local: #6639ba; --local-bg: #fbefff;
  --hit: #fff8c5; --focus: #0969da;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0d1117; --fg: #e6edf3; --muted: #9198a1; --line: #3d444d; --card: #161b22;
    --accent: #79c0ff; --accent-bg: #0c2d6b; --ok: #56d364; --ok-bg: #0f2d1a; --warn: #e3b341;
    --warn-bg: #3b2300; --err: #ff7b72; --err-bg: #490202; --local: #d2a8ff; --local-bg: #271052;
    --hit: #3b2f00; --focus: #58a6ff;
  }
}
* { box-sizing: border-box; }
html { background: var(--bg); color: var(--fg); }
body { margin: 0 auto; max-width: 78rem; padding: 1rem 1.5rem 3rem;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
  font-size: 0.92em; overflow-wrap: anywhere; }
h1 { font-size: 1.6rem; margin: 0.5rem 0 0.25rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 0.5rem; padding-bottom: 0.25rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 0 0 0.25rem; }
p { margin: 0.4rem 0; }
a { color: var(--accent); }
a:focus-visible, input:focus-visible, button:focus-visible, summary:focus-visible {
  outline: 3px solid var(--focus); outline-offset: 2px; }
.muted { color: var(--muted); }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: 0.5rem; background: var(--bg); padding: 0.25rem 0.5rem; z-index: 2; }
nav ul { list-style: none; padding: 0; margin: 0.5rem 0 0; display: flex; flex-wrap: wrap; gap: 0.25rem 1.25rem; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.badge { display: inline-block; padding: 0 0.45em; border-radius: 0.6em; font-size: 0.8rem; font-weight: 600;
  border: 1px solid currentColor; white-space: nowrap; vertical-align: 0.08em; }
.b-exact { color: var(--ok); background: var(--ok-bg); }
.b-prefix { color: var(--accent); background: var(--accent-bg); }
.b-regex { color: var(--local); background: var(--local-bg); }
.b-warn { color: var(--warn); background: var(--warn-bg); }
.b-err { color: var(--err); background: var(--err-bg); }
.b-local { color: var(--local); background: var(--local-bg); }
.b-api { color: var(--accent); background: var(--accent-bg); }
.b-ok { color: var(--ok); background: var(--ok-bg); }
/* key forms and change hints on provider cards (live page) */
.keyform { margin-top: 0.5rem; }
.keyform label { font-weight: 600; display: block; }
.keyform .row { display: flex; gap: 0.5rem; flex-wrap: wrap; }
.keyform input { font: inherit; flex: 1 1 12rem; padding: 0.3rem 0.5rem; border: 1px solid var(--muted);
  border-radius: 6px; background: var(--bg); color: var(--fg); }
.keyform button { font: inherit; padding: 0.3rem 0.8rem; border-radius: 6px; border: 1px solid var(--muted);
  background: var(--card); color: var(--fg); cursor: pointer; }
.change pre { overflow-x: auto; background: var(--card); padding: 0.4rem 0.6rem; border-radius: 6px; }
/* resolver */
.resolver { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 0.75rem 1rem; }
.resolver label { font-weight: 600; display: block; margin-bottom: 0.25rem; }
.resolver .row { display: flex; gap: 0.5rem; flex-wrap: wrap; }
.resolver input { font: inherit; font-family: ui-monospace, Menlo, Consolas, monospace; flex: 1 1 20rem;
  padding: 0.4rem 0.6rem; border: 1px solid var(--muted); border-radius: 6px; background: var(--bg); color: var(--fg); }
.resolver button { font: inherit; padding: 0.4rem 0.9rem; border-radius: 6px; border: 1px solid var(--muted);
  background: var(--bg); color: var(--fg); cursor: pointer; }
#resolver-answer { display: block; margin-top: 0.6rem; min-height: 1.5em; }
#resolver-answer .chain { margin-top: 0.35rem; }
/* routes diagram */
ol.routes { list-style: none; padding: 0; margin: 0; }
li.route { display: grid; grid-template-columns: minmax(13rem, 19rem) 1fr; gap: 0.75rem; align-items: center;
  padding: 0.6rem 0.75rem; border: 1px solid var(--line); border-radius: 8px; margin: 0.5rem 0; background: var(--bg); }
li.route.hit { background: var(--hit); border-color: var(--warn); }
li.route:target { outline: 2px solid var(--focus); }
.rule .num { font-weight: 700; margin-right: 0.35rem; color: var(--muted); }
.rule .name { font-weight: 600; }
.rule code.pattern { display: inline-block; margin-top: 0.15rem; }
.rule .why { font-size: 0.82rem; }
.chain { display: flex; flex-wrap: wrap; align-items: center; gap: 0.25rem; margin: 0; padding: 0; list-style: none; }
.chain li { display: flex; align-items: center; gap: 0.25rem; }
.box { border: 2px solid var(--accent); border-radius: 6px; padding: 0.2rem 0.55rem; background: var(--card);
  min-width: 7rem; line-height: 1.3; }
.box.local { border-color: var(--local); }
.box.fallback { border-style: dashed; }
.box.unknown { border-color: var(--err); }
.box .prov { font-weight: 600; }
.box .model { font-size: 0.85rem; }
.box a { color: inherit; text-decoration: none; }
.box a:hover { text-decoration: underline; }
.arrow { display: inline-flex; flex-direction: column; align-items: center; color: var(--muted); font-size: 0.7rem; }
.arrow svg { display: block; }
.arrow svg path { stroke: currentColor; fill: none; stroke-width: 2; }
.arrow svg polygon { fill: currentColor; }
.state { font-size: 0.75rem; }
/* tables and cards */
table { border-collapse: collapse; width: 100%; margin: 0.4rem 0 0.8rem; font-size: 0.92rem; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; background: var(--card); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr)); gap: 0.75rem; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 0.6rem 0.9rem; background: var(--bg); }
.card:target { outline: 2px solid var(--focus); }
.card.wide { grid-column: 1 / -1; }
.card code { overflow-wrap: break-word; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 0.1rem 0.75rem; margin: 0.4rem 0; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.chart { max-width: 46rem; }
.chart svg { width: 100%; height: auto; display: block; }
.chart .bar-ok { fill: var(--accent); }
.chart .bar-err { fill: var(--err); }
.chart .axis { stroke: var(--line); }
.chart text { fill: var(--muted); font-size: 10px; }
.legend { display: flex; gap: 1rem; font-size: 0.85rem; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; margin-right: 0.3em; vertical-align: -0.05em; }
.swatch.ok { background: var(--accent); } .swatch.err { background: var(--err); }
.notice { border-left: 4px solid var(--warn); background: var(--warn-bg); padding: 0.4rem 0.75rem; border-radius: 4px; }
footer { margin-top: 2.5rem; font-size: 0.85rem; }
@media (max-width: 44rem) { li.route { grid-template-columns: 1fr; } }
@media print { .resolver { display: none; } }
"""

JS = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("mlxgw-data").textContent);
  var routes = DATA.view.routes, table = DATA.view.table;
  var exact = new Map(table.exact);
  var aliases = new Map(Object.keys(table.aliases).map(function (p) {
    return [p, new Map(Object.entries(table.aliases[p]))];
  }));
  // Compile each regex once; null when Python-only syntax (or a RegExp this browser refuses).
  var compiled = new Map();
  table.regex.forEach(function (i) {
    var r = routes[i].regex;
    var rx = null;
    if (r && r.js !== null) { try { rx = new RegExp(r.js, r.flags); } catch (e) { rx = null; } }
    compiled.set(i, rx);
  });

  function backendModel(target, name) {
    if (target.model) return target.model;
    var a = aliases.get(target.provider);
    return a && a.has(name) ? a.get(name) : name;
  }

  // Snapshot.route, step by step.
  function resolve(name) {
    var cautions = [];
    if (exact.has(name)) return done(exact.get(name), "exact name", cautions);
    for (var k = 0; k < table.prefix.length; k++) {
      if (name.startsWith(table.prefix[k][0])) return done(table.prefix[k][1], "longest matching prefix", cautions);
    }
    for (var j = 0; j < table.regex.length; j++) {
      var i = table.regex[j], rx = compiled.get(i), r = routes[i];
      if (rx === null) {
        return {name: name, route: null, undecided: i, cautions: cautions,
                note: (r.regex && r.regex.note) || "this browser cannot evaluate the regex"};
      }
      if (!r.regex.exact) cautions.push(i);
      if (rx.test(name)) return done(i, "first regex in declared order that matches", cautions);
    }
    return {name: name, route: null, undecided: null, cautions: cautions};
    function done(i, why, c) {
      return {name: name, route: i, why: why, cautions: c,
              targets: routes[i].targets.map(function (t) {
                return {label: t.label, provider: t.provider, model: backendModel(t, name), local: t.local, known: t.known};
              })};
    }
  }
  // For tests and the curious: the page's answer in the shape of the server's.
  window.mlxgwResolve = function (name) {
    var a = resolve(String(name));
    return {route: a.route === null ? null : routes[a.route].key, undecided: a.undecided === null || a.undecided === undefined ? null : routes[a.undecided].key,
            targets: a.targets ? a.targets.map(function (t) { return t.provider + "/" + t.model; }) : [],
            exact: a.cautions.length === 0 && (a.undecided === null || a.undecided === undefined)};
  };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function code(text) { return el("code", null, text); }
  function arrow(label) {
    var NS = "http://www.w3.org/2000/svg";
    var wrap = el("span", "arrow"), svg = document.createElementNS(NS, "svg");
    var path = document.createElementNS(NS, "path"), head = document.createElementNS(NS, "polygon");
    wrap.setAttribute("aria-hidden", "true");
    svg.setAttribute("width", "34"); svg.setAttribute("height", "14"); svg.setAttribute("viewBox", "0 0 34 14");
    path.setAttribute("d", "M1 7 H26"); head.setAttribute("points", "25,2 33,7 25,12");
    svg.append(path, head);
    wrap.append(svg, el("span", null, label));
    return wrap;
  }
  function routeLink(i) {
    var a = el("a", null, "#" + routes[i].precedence + " " + routes[i].key);
    a.href = "#route-" + routes[i].precedence;
    return a;
  }

  // On /ui: put each local model's live state into its boxes in the diagram.
  var liveEl = document.getElementById("mlxgw-live");
  if (liveEl) {
    var live = JSON.parse(liveEl.textContent);
    var states = new Map(live.models.map(function (m) { return [m.provider + "/" + m.name, m.state]; }));
    var stateClass = {ready: "b-ok", starting: "b-warn", stopping: "b-warn", failed: "b-err"};
    document.querySelectorAll("[data-state-for]").forEach(function (s) {
      var st = states.get(s.getAttribute("data-state-for"));
      if (st === undefined) return;
      s.replaceChildren(el("br"), el("span", "badge " + (stateClass[st] || "b-api"), st));
    });
  }

  var input = document.getElementById("resolver-input");
  var out = document.getElementById("resolver-answer");
  var form = document.getElementById("resolver");
  if (!input || !out || !form) return;
  var serverAsk = DATA.live ? DATA.resolveUrl : null;

  function highlight(i) {
    document.querySelectorAll("li.route.hit").forEach(function (li) { li.classList.remove("hit"); });
    if (i !== null && i !== undefined) {
      var li = document.getElementById("route-" + routes[i].precedence);
      if (li) li.classList.add("hit");
    }
  }

  function show(name) {
    out.replaceChildren();
    if (name === "") { highlight(null); out.append(el("span", "muted", "Type a model name to see where a request would go.")); return; }
    var a = resolve(name);
    highlight(a.route !== null ? a.route : a.undecided);
    var p = el("p");
    if (a.route !== null) {
      var r = routes[a.route];
      p.append(code(name), " matches route ", routeLink(a.route), " (" + r.match_type + " ", code(r.pattern),
               "; " + a.why + ").");
      out.append(p);
      var chain = el("ol", "chain");
      chain.setAttribute("aria-label", "attempt order");
      a.targets.forEach(function (t, n) {
        var li = el("li");
        if (n > 0) li.append(arrow(n === 1 ? "fallback" : "then"), el("span", "sr-only", "then fallback " + n + ": "));
        var box = el("span", "box" + (t.local ? " local" : "") + (n > 0 ? " fallback" : "") + (t.known ? "" : " unknown"));
        box.append(el("span", "prov", t.provider), el("br"), el("span", "model mono", t.model));
        li.append(box);
        chain.append(li);
      });
      out.append(chain);
    } else if (a.undecided !== null) {
      var u = routes[a.undecided];
      p.append("No exact or prefix route matches ", code(name), ". Regex route ", routeLink(a.undecided), " ",
               code(u.pattern), " cannot be evaluated in the page (" + a.note + ").");
      out.append(p);
      if (serverAsk) askServer(name);
    } else {
      p.append("No route matches ", code(name), ": the server answers 404 (model not found).");
      out.append(p);
    }
    if (a.cautions.length) {
      var c = el("p", "notice");
      c.append("Regex " + (a.cautions.length > 1 ? "routes " : "route "));
      a.cautions.forEach(function (i, n) { if (n) c.append(", "); c.append(routeLink(i)); });
      c.append(" may match differently in the page than on the server: " +
               a.cautions.map(function (i) { return routes[i].regex.note; }).join("; ") + ".");
      out.append(c);
    }
  }

  function askServer(name) {
    var wait = el("p", "muted", "Asking the server…");
    out.append(wait);
    fetch(serverAsk + "?model=" + encodeURIComponent(name), {headers: {"accept": "application/json"}})
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (input.value !== name) return;
        wait.textContent = "";
        wait.className = "";
        if (j.route) {
          wait.append("The server says: route ", code(j.route), " → " + j.targets.join(" → ") + ".");
        } else {
          wait.append("The server says: no route matches (404).");
        }
      })
      .catch(function () { wait.textContent = "The server could not be asked."; });
  }

  form.addEventListener("submit", function (ev) { ev.preventDefault(); show(input.value); });
  input.addEventListener("input", function () { show(input.value); });
  var initial = new URLSearchParams(window.location.search).get("model");
  if (initial !== null && input.value === "") input.value = initial;
  show(input.value);
  document.documentElement.classList.add("js");
})();
"""
