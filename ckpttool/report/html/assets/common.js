/* ckpttool report: helpers shared by the three pages. The page's data is the embedded JSON. */
"use strict";
var CK = (function () {
  var root = document.getElementById("ckpttool-report");
  var data = JSON.parse(document.getElementById("ckpttool-data").textContent);
  var pending = [];
  window.addEventListener("error", function (e) { root.setAttribute("data-error", String(e.message)); });

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") node.textContent = attrs[k];
        else if (k === "cls") node.className = attrs[k];
        else if (attrs[k] !== null && attrs[k] !== undefined) node.setAttribute(k, attrs[k]);
      });
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return "—";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, v = n;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
  }
  function fmtCount(n) {
    if (n === null || n === undefined) return "—";
    return Number(n).toLocaleString("en-US");
  }
  function fmtNum(v) {
    if (v === null || v === undefined) return "—";
    if (typeof v !== "number") return String(v);
    if (v === 0 || Number.isInteger(v)) return String(v);
    var a = Math.abs(v);
    return (a >= 1e-3 && a < 1e5) ? String(Number(v.toPrecision(4))) : v.toExponential(3);
  }
  function escape(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]; });
  }
  /* ECharts tooltips take HTML: every line is escaped, since keys and dtypes come from the file. */
  function tip(title, lines) {
    return "<b>" + escape(title) + "</b>" + lines.map(function (l) { return "<br>" + escape(l); }).join("");
  }
  function numel(shape) {
    return (shape || []).reduce(function (a, b) { return a * b; }, 1);
  }
  function shapeText(shape) { return shape ? "[" + shape.join(", ") + "]" : "—"; }

  function summary(dl, pairs) {
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") return;
      dl.appendChild(el("dt", { text: p[0] }));
      dl.appendChild(el("dd", { text: String(p[1]) }));
    });
  }

  function empty(text) { return el("p", { cls: "empty", text: text }); }

  /* A table with an optional filter box, sortable columns and pages of pageSize rows. */
  function table(container, opts) {
    var cols = opts.columns, all = opts.rows, pageSize = opts.pageSize || 5000;
    var state = { rows: all.slice(), sortKey: null, desc: false, page: 0 };
    var count = el("span", { cls: "note count" });
    var pager = el("span", { cls: "pager" });
    var tools = el("div", { cls: "table-tools" });
    var input = null;
    if (opts.filter) {
      input = el("input", { type: "search", placeholder: opts.placeholder || "filter keys (space = and)",
                             "aria-label": "filter", cls: "filter" });
      tools.appendChild(input);
    }
    tools.appendChild(count);
    tools.appendChild(pager);
    var thead = el("tr");
    var tbody = el("tbody");
    var tbl = el("table", { cls: "data" }, el("thead", null, thead), tbody);
    cols.forEach(function (c) {
      var th = el("th", { cls: "sortable" + (c.num ? " num" : ""), "data-key": c.key, text: c.label });
      th.addEventListener("click", function () {
        state.desc = state.sortKey === c.key ? !state.desc : !!c.num;
        state.sortKey = c.key;
        thead.querySelectorAll("th").forEach(function (t) { t.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(state.desc ? "sorted-desc" : "sorted-asc");
        sort(); state.page = 0; draw();
      });
      thead.appendChild(th);
    });
    function value(row, c) { return c.value ? c.value(row) : row[c.key]; }
    function sort() {
      var c = cols.filter(function (x) { return x.key === state.sortKey; })[0];
      if (!c) return;
      var sign = state.desc ? -1 : 1;
      state.rows.sort(function (a, b) {
        var x = value(a, c), y = value(b, c);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * sign;
      });
    }
    function applyFilter() {
      var words = input ? input.value.toLowerCase().split(/\s+/).filter(Boolean) : [];
      state.rows = all.filter(function (r) {
        if (!words.length) return true;
        var hay = cols.map(function (c) { return String(c.text ? c.text(r) : value(r, c)); }).join(" ").toLowerCase();
        return words.every(function (w) { return hay.indexOf(w) >= 0; });
      });
      sort(); state.page = 0; draw();
    }
    function draw() {
      var pages = Math.max(1, Math.ceil(state.rows.length / pageSize));
      state.page = Math.min(state.page, pages - 1);
      var start = state.page * pageSize, rows = state.rows.slice(start, start + pageSize);
      var frag = document.createDocumentFragment();
      rows.forEach(function (r) {
        var tr = el("tr");
        cols.forEach(function (c) {
          var v = value(r, c);
          var td = el("td", { cls: (c.num ? "num" : "") + (c.cls ? " " + c.cls : ""),
                              text: c.text ? c.text(r) : (c.num ? fmtNum(v) : (v === null || v === undefined ? "—" : String(v))) });
          if (c.title) td.title = c.title(r);
          tr.appendChild(td);
        });
        if (opts.rowClass) tr.className = opts.rowClass(r);
        frag.appendChild(tr);
      });
      tbody.textContent = "";
      tbody.appendChild(frag);
      count.textContent = state.rows.length === all.length ? all.length + " rows"
        : state.rows.length + " of " + all.length + " rows";
      pager.textContent = "";
      if (pages > 1) {
        var prev = el("button", { type: "button", cls: "prev", text: "◀" });
        var next = el("button", { type: "button", cls: "next", text: "▶" });
        prev.disabled = state.page === 0; next.disabled = state.page === pages - 1;
        prev.addEventListener("click", function () { state.page--; draw(); });
        next.addEventListener("click", function () { state.page++; draw(); });
        pager.appendChild(prev);
        pager.appendChild(el("span", { cls: "page", text: " page " + (state.page + 1) + " of " + pages + " " }));
        pager.appendChild(next);
      }
    }
    if (input) input.addEventListener("input", applyFilter);
    container.appendChild(tools);
    container.appendChild(el("div", { cls: "table-scroll" }, tbl));
    if (opts.sortKey) { state.sortKey = opts.sortKey; state.desc = !!opts.desc; sort(); }
    draw();
    return { redraw: draw };
  }

  function findings(container, list) {
    if (!list || !list.length) { container.appendChild(empty("No findings.")); return; }
    table(container, {
      columns: [
        { key: "severity", label: "severity", cls: "sev", text: function (r) { return r.severity || ""; } },
        { key: "code", label: "code", cls: "mono" },
        { key: "message", label: "message", text: function (r) {
            return r.message + (r.where ? " (" + r.where + ")" : "") + (r.hint ? " — hint: " + r.hint : ""); } }
      ],
      rows: list,
      rowClass: function (r) { return "row-" + (r.severity || "info"); }
    });
  }

  /* Nest dotted keys into a treemap tree; leaf(item) gives {name, value, ...extra}. */
  function moduleTree(items, keyOf, leaf) {
    var rootNode = { name: "", path: "", children: [], index: {} };
    items.forEach(function (item) {
      var parts = keyOf(item).split(".");
      var node = rootNode;
      for (var i = 0; i < parts.length - 1; i++) {
        var child = node.index[parts[i]];
        if (!child) {
          var path = parts.slice(0, i + 1).join(".");
          child = { name: parts[i], path: path, id: path, children: [], index: {} };
          node.index[parts[i]] = child;
          node.children.push(child);
        }
        node = child;
      }
      var l = leaf(item);
      l.name = parts[parts.length - 1];
      l.path = l.id = keyOf(item);
      node.children.push(l);
    });
    (function sum(n) {
      if (!n.children) return n.value || 0;
      delete n.index;
      n.value = n.children.reduce(function (a, c) { return a + sum(c); }, 0);
      return n.value;
    })(rootNode);
    return rootNode;
  }

  /* Below a module that holds every tensor (a Lightning "model." wrapper), its children are the top level. */
  function topLevel(tree) {
    var top = tree;
    while (top.children.length === 1 && top.children[0].children) top = top.children[0];
    return top;
  }

  var palette = ["#5470c6", "#91cc75", "#fac858", "#ee6666", "#73c0de", "#3ba272", "#fc8452", "#9a60b4",
                 "#ea7ccc", "#2f4554", "#c23531", "#61a0a8"];
  function colourMap(names) {
    var m = {};
    names.forEach(function (n, i) { m[n] = palette[i % palette.length]; });
    return m;
  }

  function chart(div) {
    /* SVG so labels are DOM text; no animation so "drawn" is one well-defined moment. */
    var c = echarts.init(div, null, { renderer: "svg" });
    window.addEventListener("resize", function () { c.resize(); });
    return c;
  }
  /* Click a module to show only it (a tensor: its module); the path bar below goes back up.
     ECharts' own nodeClick only zooms, which does nothing for a module that already fills the view. */
  function drillOnClick(c) {
    c.on("click", function (p) {
      if (p.componentType !== "series" || !p.data || !p.data.path) return;
      var target = p.data.children ? p.data.path : p.data.path.split(".").slice(0, -1).join(".");
      if (target) c.dispatchAction({ type: "treemapRootToNode", seriesIndex: 0, targetNodeId: target });
    });
  }
  function draw(c, option) {
    option.animation = false;
    var done = new Promise(function (resolve) { c.on("finished", resolve); });
    c.setOption(option, true);
    pending.push(done);
    return done;
  }
  function ready() {
    Promise.all(pending).then(function () {
      root.setAttribute("data-drawn-ms", String(Math.round(performance.now())));  /* since navigation began */
      root.setAttribute("data-ready", "true");
    });
  }

  return { data: data, root: root, el: el, escape: escape, tip: tip, fmtBytes: fmtBytes, fmtCount: fmtCount, fmtNum: fmtNum,
           numel: numel, shapeText: shapeText, summary: summary, empty: empty, table: table,
           findings: findings, moduleTree: moduleTree, topLevel: topLevel, colourMap: colourMap, chart: chart,
           drillOnClick: drillOnClick,
           draw: draw,
           ready: ready };
})();
