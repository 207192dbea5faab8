/* ckpttool inspect page: summary, treemap of elements by module, dtype bars, tensor table, state, findings. */
"use strict";
(function () {
  var D = CK.data, el = CK.el;
  var sections = D.sections || {};
  var tensorSections = Object.keys(sections).filter(function (s) {
    return sections[s] && sections[s].tensors && Object.keys(sections[s].tensors).length;
  });
  var rows = [];
  tensorSections.forEach(function (s) {
    var ts = sections[s].tensors;
    Object.keys(ts).forEach(function (k) {
      var t = ts[k] || {};
      var st = t.stats || {};
      rows.push({ section: s, key: k, dtype: t.dtype || "?", shape: t.shape, nbytes: t.nbytes,
                  numel: t.shape ? CK.numel(t.shape) : 0, kind: t.kind || "", min: st.min, max: st.max,
                  mean: st.mean, std: st.std, nan: st.nan, inf: st.inf, stats: !!t.stats });
    });
  });
  var dtypes = Array.from(new Set(rows.map(function (r) { return r.dtype; }).concat(Object.keys((D.totals || {}).bytes_by_dtype || {})))).sort();
  var dtypeColour = CK.colourMap(dtypes);
  var sectionColour = CK.colourMap(tensorSections);

  /* summary */
  var totals = D.totals || {};
  var byDtype = totals.bytes_by_dtype || {};
  var globals = (D.globals || []).filter(function (g) { return g.kind !== "data"; }).map(function (g) { return g.name; });
  var meta = D.meta || {};
  CK.summary(document.getElementById("summary"), [
    ["file", D.path + (D.file_size !== undefined ? "  (" + CK.fmtBytes(D.file_size) + ")" : "")],
    ["format", D.format], ["layout", D.layout],
    ["sections", Object.keys(sections).map(function (s) {
      return s + (sections[s] && sections[s].source ? " ← " + sections[s].source : ""); }).join(", ")],
    ["tensors", CK.fmtCount(totals.tensors) + " tensors, " + CK.fmtCount(totals.parameters) + " parameters"],
    ["bytes by dtype", Object.keys(byDtype).sort().map(function (k) { return k + " " + CK.fmtBytes(byDtype[k]); }).join(", ")],
    ["epoch", meta.epoch], ["global step", meta.global_step],
    ["classes", globals.join(", ")],
    ["findings", String((D.findings || []).length)]
  ]);

  /* treemap */
  var select = document.getElementById("treemap-section-select");
  var colourSelect = document.getElementById("treemap-colour");
  tensorSections.forEach(function (s) { select.appendChild(el("option", { value: s, text: s })); });
  if (tensorSections.length > 1) select.appendChild(el("option", { value: "*", text: "all sections" }));
  var treemapDiv = document.getElementById("treemap-chart");
  var treemap = tensorSections.length ? CK.chart(treemapDiv) : null;
  if (!treemap) treemapDiv.replaceWith(CK.empty("No tensors to draw."));

  function tree(which, by) {
    var items = rows.filter(function (r) { return which === "*" || r.section === which; });
    var colours = by === "section" ? sectionColour : dtypeColour;
    var t = CK.moduleTree(items, function (r) { return which === "*" ? r.section + "." + r.key : r.key; },
      function (r) {
        return { value: r.numel, nbytes: r.nbytes, dtype: r.dtype, shape: r.shape, section: r.section,
                 itemStyle: { color: colours[by === "section" ? r.section : r.dtype] } };
      });
    (function paint(n) {  /* a module takes the colour of what holds most of its elements */
      if (!n.children) return [n];
      var leaves = [].concat.apply([], n.children.map(paint));
      var weight = {};
      n.nbytes = 0;
      leaves.forEach(function (l) {
        var c = by === "section" ? l.section : l.dtype;
        weight[c] = (weight[c] || 0) + l.value;
        n.nbytes += l.nbytes || 0;
      });
      var top = Object.keys(weight).sort(function (a, b) { return weight[b] - weight[a]; })[0];
      n.itemStyle = { color: colours[top], borderColor: "#5b6678" };
      n.dtype = Object.keys(weight).length > 1 ? "mixed" : top;
      return leaves;
    })(t);
    var top = CK.topLevel(t);
    return { data: top.children, colours: colours, root: top.path };
  }

  function tooltip(info) {
    var d = info.data || {};
    var lines = ["elements: " + CK.fmtCount(d.value), "bytes: " + CK.fmtBytes(d.nbytes)];
    if (d.dtype) lines.push("dtype: " + d.dtype);
    if (d.shape) lines.push("shape: " + CK.shapeText(d.shape));
    if (d.section) lines.push("section: " + d.section);
    return CK.tip(d.path || info.name, lines);
  }

  function drawTreemap() {
    var t = tree(select.value, colourSelect.value);
    var legend = document.getElementById("treemap-legend");
    legend.textContent = "";
    Object.keys(t.colours).forEach(function (k) {
      legend.appendChild(el("li", null, el("span", { cls: "swatch", style: "background:" + t.colours[k] }), k));
    });
    var modules = document.getElementById("treemap-modules"), total = 0;
    modules.textContent = "";
    t.data.forEach(function (n) { total += n.value; });
    t.data.slice().sort(function (a, b) { return b.value - a.value; }).forEach(function (n) {
      var share = total ? " (" + (100 * n.value / total).toFixed(1) + "%)" : "";
      modules.appendChild(el("li", { "data-module": n.path },
        el("span", { cls: "swatch", style: "background:" + n.itemStyle.color }),
        el("code", { text: n.path }), " " + CK.fmtCount(n.value) + " elements" + share + ", " + CK.fmtBytes(n.nbytes)));
    });
    return CK.draw(treemap, {
      tooltip: { formatter: tooltip },
      series: [{
        type: "treemap", name: t.root || (select.value === "*" ? "all sections" : select.value), data: t.data,
        roam: false, nodeClick: false, leafDepth: rows.length > 400 ? 2 : undefined, animation: false,
        top: 8, left: 4, right: 4, bottom: 30, visibleMin: 1, childrenVisibleMin: 1,
        breadcrumb: { show: true, bottom: 4 },
        label: { show: true, formatter: "{b}", overflow: "truncate" },
        upperLabel: { show: true, height: 18, color: "#fff", overflow: "truncate" },
        itemStyle: { borderWidth: 1, gapWidth: 1 },
        levels: [{ itemStyle: { borderWidth: 2, gapWidth: 2 } }, { itemStyle: { borderWidth: 2, gapWidth: 1 } },
                 { itemStyle: { borderWidth: 1, gapWidth: 1 } }]
      }]
    });
  }
  if (treemap) {
    CK.drillOnClick(treemap);
    select.addEventListener("change", drawTreemap);
    colourSelect.addEventListener("change", drawTreemap);
    drawTreemap();
  }

  /* bytes by dtype */
  var dtypeDiv = document.getElementById("dtypes");
  var names = Object.keys(byDtype).sort(function (a, b) { return byDtype[a] - byDtype[b]; });
  if (names.length) {
    var counts = {};
    rows.forEach(function (r) { counts[r.dtype] = (counts[r.dtype] || 0) + 1; });
    dtypeDiv.style.height = Math.max(120, 40 + 28 * names.length) + "px";
    CK.draw(CK.chart(dtypeDiv), {
      grid: { left: 110, right: 140, top: 10, bottom: 24 },
      tooltip: { formatter: function (p) { return CK.escape(p.name + ": " + CK.fmtBytes(p.value)); } },
      xAxis: { type: "value", axisLabel: { formatter: function (v) { return CK.fmtBytes(v); } } },
      yAxis: { type: "category", data: names },
      series: [{ type: "bar", data: names.map(function (n) {
        return { value: byDtype[n], itemStyle: { color: dtypeColour[n] || "#888" } }; }),
        label: { show: true, position: "right", formatter: function (p) {
          return CK.fmtBytes(p.value) + (counts[p.name] ? " · " + counts[p.name] + " tensors" : ""); } } }]
    });
  } else {
    dtypeDiv.replaceWith(CK.empty("No tensor bytes."));
  }

  /* tensor table */
  var tensorsBox = document.getElementById("tensors");
  if (rows.length) {
    CK.table(tensorsBox, {
      filter: true, rows: rows, pageSize: 5000,
      columns: [
        { key: "section", label: "section" },
        { key: "key", label: "key", cls: "key" },
        { key: "kind", label: "kind" },
        { key: "dtype", label: "dtype" },
        { key: "shape", label: "shape", text: function (r) { return CK.shapeText(r.shape); },
          value: function (r) { return r.numel; } },
        { key: "numel", label: "elements", num: true, text: function (r) { return CK.fmtCount(r.numel); } },
        { key: "nbytes", label: "bytes", num: true, text: function (r) { return CK.fmtCount(r.nbytes); } }
      ].concat(rows.some(function (r) { return r.stats; }) ?  /* inspect --stats */
        ["min", "max", "mean", "std", "nan", "inf"].map(function (k) { return { key: k, label: k, num: true }; }) : [])
    });
  } else {
    tensorsBox.appendChild(CK.empty("No tensors."));
  }

  /* optimizer / scheduler / scaler */
  var stateBox = document.getElementById("state");
  var stateNames = Object.keys(sections).filter(function (s) { return tensorSections.indexOf(s) < 0 && s !== "meta"; });
  stateNames.forEach(function (s) {
    var sec = sections[s] || {};
    stateBox.appendChild(el("h3", { text: s + (sec.source ? " ← " + sec.source : "") }));
    var dl = el("dl", { cls: "summary" });
    CK.summary(dl, Object.keys(sec).filter(function (k) {
      return k !== "source" && k !== "param_groups" && k !== "tensors";
    }).map(function (k) { return [k, typeof sec[k] === "object" ? JSON.stringify(sec[k]) : sec[k]]; }));
    stateBox.appendChild(dl);
    if (Array.isArray(sec.param_groups) && sec.param_groups.length) {
      var keys = [];
      sec.param_groups.forEach(function (g) { Object.keys(g).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); }); });
      var box = el("div", { cls: "table-box param-groups" });
      stateBox.appendChild(box);
      CK.table(box, { rows: sec.param_groups.map(function (g, i) { return Object.assign({ group: i }, g); }),
        columns: [{ key: "group", label: "group", num: true }].concat(keys.map(function (k) {
          return { key: k, label: k, num: true, text: function (r) {
            var v = r[k]; return typeof v === "number" ? CK.fmtNum(v) : (v === undefined ? "" : JSON.stringify(v)); } };
        })) });
    }
  });
  if (Object.keys(meta).length) {
    stateBox.appendChild(el("details", null, el("summary", { text: "meta: " + Object.keys(meta).join(", ") }),
                            el("pre", { cls: "mono", text: JSON.stringify(meta, null, 2) })));
  }
  if (!stateBox.childNodes.length) stateBox.appendChild(CK.empty("No optimizer, scheduler or scaler state."));

  CK.findings(document.getElementById("findings"), D.findings);
  CK.ready();
})();
