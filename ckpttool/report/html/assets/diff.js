/* ckpttool diff page: summary, module map coloured by change, changed tensors, one-sided keys, meta, rules. */
"use strict";
(function () {
  var D = CK.data, el = CK.el;
  var entries = (D.tensors || []).map(function (t) {
    var shape = t.shape_b || t.shape_a;
    var dtypeChanged = !!(t.dtype_a && t.dtype_b && t.dtype_a !== t.dtype_b);
    return Object.assign({}, t, { shape: shape, elements: shape ? CK.numel(shape) : 0,
      dtype_changed: dtypeChanged, marked: isDifferent(t.status, dtypeChanged) });
  });
  function isDifferent(status, dtypeChanged) {
    return ["changed", "shape", "only_a", "only_b"].indexOf(status) >= 0 || (dtypeChanged && !D.ignore_dtype);
  }
  var FIXED = { identical: "#c8ccd2", close: "#a9c7a4", shape: "#8e44ad", only_a: "#17a2a2", only_b: "#2c5fc9",
                dtype: "#d4a017" };
  var LABEL = { identical: "identical", close: "within tolerance", changed: "changed", shape: "shape changed",
                only_a: "only in A", only_b: "only in B", dtype: "dtype changed only" };

  /* summary */
  var n = function (k) { return (D[k] || []).length; };
  CK.summary(document.getElementById("summary"), [
    ["A", D.a], ["B", D.b], ["section", D.section], ["verdict", D.verdict],
    ["result", D.equal ? "equal" : "different" + (D.fail_on ? (D.failed ? " — a --fail-on rule is broken"
                                                                         : " — every --fail-on rule holds") : "")],
    ["tensors", entries.length + " compared keys: " + n("value_changed") + " changed, " + n("within_tolerance") +
      " within tolerance, " + n("identical") + " identical, " + n("only_in_a") + " only in A, " + n("only_in_b") +
      " only in B, " + n("shape_changed") + " shape, " + n("dtype_changed") + " dtype"],
    ["meta", n("meta_changed") + " non-tensor values changed"],
    ["tolerance", "rtol " + D.rtol + ", atol " + D.atol + (D.ignore_dtype ? ", dtype changes ignored" : "")]
  ]);

  /* module map */
  var metricSelect = document.getElementById("diff-metric");
  var chartDiv = document.getElementById("diff-treemap");
  var chart = entries.length ? CK.chart(chartDiv) : null;
  if (!chart) chartDiv.replaceWith(CK.empty("No tensors on either side."));

  function scale(metric) {
    var vals = entries.filter(function (e) { return e.status === "changed" && e[metric] > 0; })
      .map(function (e) { return Math.log10(e[metric]); });
    var lo = Math.min.apply(null, vals), hi = Math.max.apply(null, vals);
    return function (v) {
      if (!(v > 0) || !vals.length) return "#e34a33";
      var t = hi > lo ? (Math.log10(v) - lo) / (hi - lo) : 1;
      var a = [253, 212, 158], b = [179, 0, 0];
      return "rgb(" + a.map(function (x, i) { return Math.round(x + (b[i] - x) * t); }).join(",") + ")";
    };
  }
  function statusOf(e) {
    if (e.status === "changed" || e.status === "shape" || e.status === "only_a" || e.status === "only_b") return e.status;
    return e.dtype_changed && !D.ignore_dtype ? "dtype" : e.status;
  }
  var RANK = { identical: 0, close: 1, dtype: 2, changed: 3, only_a: 4, only_b: 4, shape: 5 };

  function build(metric) {
    var colour = scale(metric);
    var t = CK.moduleTree(entries, function (e) { return e.key; }, function (e) {
      var st = statusOf(e);
      return { value: Math.max(e.elements, 1), entry: e, status: st, worst: e.status === "changed" ? e[metric] : null,
               itemStyle: { color: st === "changed" ? colour(e[metric]) : FIXED[st] } };
    });
    (function roll(node) {
      if (!node.children) return node;
      var kids = node.children.map(roll);
      var marked = kids.some(function (k) { return k.marked !== undefined ? k.marked : k.entry.marked; });
      var worst = null, status = "identical";
      kids.forEach(function (k) {
        if (k.worst !== null && (worst === null || k.worst > worst)) worst = k.worst;
        if (RANK[k.status] > RANK[status]) status = k.status;
      });
      node.marked = marked; node.worst = worst; node.status = status;
      var band = worst !== null ? colour(worst) : FIXED[status];
      node.itemStyle = { color: band, borderColor: marked ? "#7a2e1f" : "#9aa1aa" };
      return node;
    })(t);
    return CK.topLevel(t);
  }

  function tooltip(info) {
    var d = info.data || {}, e = d.entry, metric = metricSelect.value, lines = [];
    if (e) {
      lines.push("status: " + LABEL[d.status]);
      if (e.shape_a || e.shape_b) lines.push("shape: " + CK.shapeText(e.shape_a) + " → " + CK.shapeText(e.shape_b));
      if (e.dtype_a || e.dtype_b) lines.push("dtype: " + (e.dtype_a || "—") + " → " + (e.dtype_b || "—"));
      ["max_abs", "rel_l2", "cosine", "mismatched"].forEach(function (k) {
        if (e[k] !== undefined && e[k] !== null) lines.push(k + ": " + CK.fmtNum(e[k]));
      });
    } else {
      lines.push(d.marked ? "changed" : LABEL[d.status] || d.status);
      if (d.worst !== null) lines.push("largest " + metric + ": " + CK.fmtNum(d.worst));
      lines.push("elements: " + CK.fmtCount(d.value));
    }
    return CK.tip(d.path || info.name, lines);
  }

  function moduleList(nodes, metric, depth) {
    var ul = el("ul", { cls: depth ? "module-subtree" : "" });
    nodes.filter(function (x) { return x.children; }).forEach(function (node) {
      var text = node.marked ? (node.worst !== null ? metric + " up to " + CK.fmtNum(node.worst) : LABEL[node.status])
                             : (node.status === "close" ? "within tolerance" : "identical");
      var li = el("li", { "data-module": node.path, "data-status": node.marked ? "changed" : node.status,
                          "data-changed": node.marked ? "true" : "false" },
        el("span", { cls: "swatch", style: "background:" + node.itemStyle.color }),
        el("code", { text: node.path }), " " + text);
      if (depth < 1) {
        var sub = moduleList(node.children, metric, depth + 1);
        if (sub.childNodes.length) li.appendChild(sub);
      }
      ul.appendChild(li);
    });
    return ul;
  }

  function drawMap() {
    var metric = metricSelect.value, top = build(metric), data = top.children;
    var list = document.getElementById("diff-modules");
    list.textContent = "";
    Array.from(moduleList(data, metric, 0).childNodes).forEach(function (li) { list.appendChild(li); });
    return CK.draw(chart, {
      tooltip: { formatter: tooltip },
      series: [{
        type: "treemap", name: top.path || D.section, data: data, roam: false, nodeClick: false, animation: false,
        leafDepth: entries.length > 400 ? 2 : undefined, top: 8, left: 4, right: 4, bottom: 30,
        visibleMin: 1, childrenVisibleMin: 1, breadcrumb: { show: true, bottom: 4 },
        label: { show: true, formatter: "{b}", overflow: "truncate", color: "#1d2330" },
        upperLabel: { show: true, height: 18, color: "#fff", overflow: "truncate" },
        itemStyle: { borderWidth: 1, gapWidth: 1 },
        levels: [{ itemStyle: { borderWidth: 2, gapWidth: 2 } }, { itemStyle: { borderWidth: 2, gapWidth: 1 } },
                 { itemStyle: { borderWidth: 1, gapWidth: 1 } }]
      }]
    });
  }
  if (chart) {
    CK.drillOnClick(chart);
    metricSelect.addEventListener("change", drawMap);
    drawMap();
    var legend = el("ul", { cls: "legend" });
    Object.keys(FIXED).forEach(function (k) {
      legend.appendChild(el("li", null, el("span", { cls: "swatch", style: "background:" + FIXED[k] }), LABEL[k]));
    });
    legend.appendChild(el("li", null, el("span", { cls: "swatch", style: "background:linear-gradient(90deg,#fdd49e,#b30000)" }),
                          "changed: small → large"));
    chartDiv.after(legend);
  }

  /* changed tensors */
  var changedBox = document.getElementById("changed");
  var changed = entries.filter(function (e) {
    return e.status === "changed" || e.status === "close" || e.status === "shape" || e.dtype_changed; });
  if (changed.length) {
    var numCol = function (k, label) { return { key: k, label: label || k, num: true }; };
    CK.table(changedBox, {
      filter: true, rows: changed, sortKey: "rel_l2", desc: true,
      columns: [
        { key: "key", label: "key", cls: "key" },
        { key: "status", label: "status", text: function (r) { return LABEL[statusOf(r)]; } },
        { key: "dtype", label: "dtype", text: function (r) {
            return r.dtype_changed ? r.dtype_a + " → " + r.dtype_b : (r.dtype_b || r.dtype_a || "—"); } },
        { key: "shape", label: "shape", text: function (r) {
            return r.status === "shape" ? CK.shapeText(r.shape_a) + " → " + CK.shapeText(r.shape_b) : CK.shapeText(r.shape); },
          value: function (r) { return r.elements; } },
        numCol("max_abs", "max |Δ|"), numCol("mean_abs", "mean |Δ|"), numCol("rel_l2", "rel L2"),
        { key: "cosine", label: "cosine", num: true, text: function (r) {
            var v = r.cosine; if (typeof v !== "number") return "—";
            return v < 1 && 1 - v < 1e-3 ? "1 − " + (1 - v).toExponential(2) : CK.fmtNum(v); } }, numCol("mismatched"), numCol("mismatched_fraction", "mismatched %")
      ],
      rowClass: function (r) { return "status-row-" + r.status; }
    });
  } else {
    changedBox.appendChild(CK.empty("No tensor changed."));
  }

  /* one-sided keys, shape and dtype changes */
  var sides = document.getElementById("sides");
  [["only_in_a", "only in A"], ["only_in_b", "only in B"]].forEach(function (p) {
    var keys = D[p[0]] || [];
    sides.appendChild(el("h3", { text: p[1] + " (" + keys.length + ")" }));
    if (!keys.length) { sides.appendChild(CK.empty("none")); return; }
    var ul = el("ul", { cls: "module-tree", id: p[0].replace(/_/g, "-") });
    keys.forEach(function (k) { ul.appendChild(el("li", null, el("code", { text: k }))); });
    sides.appendChild(ul);
  });
  [["shape_changed", "shape changed"], ["dtype_changed", "dtype changed"]].forEach(function (p) {
    var items = D[p[0]] || [];
    sides.appendChild(el("h3", { text: p[1] + " (" + items.length + ")" }));
    if (!items.length) { sides.appendChild(CK.empty("none")); return; }
    var box = el("div", { cls: "table-box" });
    sides.appendChild(box);
    CK.table(box, { rows: items, columns: [
      { key: "key", label: "key", cls: "key" },
      { key: "a", label: "A", text: function (r) { return Array.isArray(r.a) ? CK.shapeText(r.a) : String(r.a); } },
      { key: "b", label: "B", text: function (r) { return Array.isArray(r.b) ? CK.shapeText(r.b) : String(r.b); } }] });
  });

  /* meta */
  var metaBox = document.getElementById("meta");
  if ((D.meta_changed || []).length) {
    var show = function (v) { return v === null || v === undefined ? "—" : (typeof v === "object" ? JSON.stringify(v) : String(v)); };
    CK.table(metaBox, { filter: true, rows: D.meta_changed, columns: [
      { key: "path", label: "path", cls: "key" }, { key: "change", label: "change" },
      { key: "a", label: "A", text: function (r) { return show(r.a); } },
      { key: "b", label: "B", text: function (r) { return show(r.b); } }] });
  } else {
    metaBox.appendChild(CK.empty("No non-tensor value changed."));
  }

  /* --fail-on */
  var rulesBox = document.getElementById("rules");
  if (D.fail_on && D.fail_on.length) {
    CK.table(rulesBox, { rows: D.fail_on, columns: [
      { key: "rule", label: "rule", cls: "key" },
      { key: "failed", label: "outcome", cls: "status", text: function (r) { return r.failed ? "FAIL" : "PASS"; } },
      { key: "keys", label: "keys that broke it", text: function (r) { return (r.keys || []).join(", ") || "—"; } }],
      rowClass: function (r) { return r.failed ? "row-fail" : "row-pass"; } });
  } else {
    rulesBox.appendChild(CK.empty("No --fail-on rules given: any difference counts."));
  }

  CK.findings(document.getElementById("findings"), D.findings);
  CK.ready();
})();
