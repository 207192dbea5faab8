/* ckpttool validate-resume page: LR curves with the resume point, the checklist, the fixes. */
"use strict";
(function () {
  var D = CK.data, el = CK.el;
  var lr = D.lr || {}, sched = D.schedule || {};
  var curves = D.full_curve || D.curve || {};
  var jump = lr.jump;
  var jumpText = jump === null || jump === undefined ? null : (jump >= 0 ? "+" : "") + (100 * jump).toFixed(2) + "%";

  CK.summary(document.getElementById("summary"), [
    ["file", D.path], ["layout", D.layout],
    ["result", D.ok ? "every check passes" : "a check failed"],
    ["epochs", D.start_epoch === null || D.start_epoch === undefined ? null :
      D.epochs_done + " done, restart at epoch " + D.start_epoch + ", new total " + D.new_total_epochs +
      " (old total " + (D.old_total_epochs === null ? "?" : D.old_total_epochs) + ")"],
    ["learning rate", lr.resume_old === undefined ? null : "last trained " + CK.fmtNum(lr.last_trained) + ", resume " +
      CK.fmtNum(lr.resume_old) + " (old plan) → " + CK.fmtNum(lr.resume_new) + " (resumed run)" +
      (jumpText ? ", jump " + jumpText : "")]
  ]);

  /* LR chart */
  var chartDiv = document.getElementById("lr-chart");
  var old = curves.old || [], neu = curves["new"] || [];
  if (old.length || neu.length) {
    var failedJump = (D.checks || []).some(function (c) { return c.code === "resume.lr-jump" && c.status !== "pass"; });
    var markers = [];
    if (D.start_epoch !== null && D.start_epoch !== undefined) {
      markers.push({ xAxis: D.start_epoch, name: "resume", lineStyle: { color: "#1d2330", type: "dashed", width: 1.5 },
                     label: { formatter: "resume at epoch " + D.start_epoch, position: "end", color: "#1d2330" } });
    }
    if (D.overflow && D.overflow.epoch !== undefined) {
      markers.push({ xAxis: D.overflow.epoch, name: "scheduler fails", lineStyle: { color: "#c62828", width: 2 },
                     label: { formatter: "scheduler fails at epoch " + D.overflow.epoch, position: "insideEndBottom",
                              color: "#c62828" } });
    }
    var points = [];
    if (jumpText && neu.length) {
      points.push({ coord: neu[0], name: "jump", value: jumpText, symbol: "circle", symbolSize: 10,
                    itemStyle: { color: failedJump ? "#c62828" : "#2e7d32" },
                    label: { formatter: "jump " + jumpText, position: "right", distance: 6, offset: [0, 10], color: failedJump ? "#c62828" : "#2e7d32",
                             fontWeight: "bold" } });
    }
    var unit = (sched.unit || "").indexOf("step") >= 0 && sched.steps_per_epoch ? " (points per epoch)" : "";
    var groups = D.group_curves || [];
    var series = [], names = [], colours = [];
    var shades = ["#5470c6", "#ee6666", "#3ba272", "#fc8452", "#9a60b4", "#73c0de", "#fac858", "#ea7ccc"];
    function pair(oldData, newData, suffix, colour, newColour) {
      names.push("old plan" + suffix, "resumed run" + suffix);
      colours.push(colour, newColour);
      series.push({ name: "old plan" + suffix, type: "line", data: oldData, showSymbol: false, sampling: "lttb",
                    lineStyle: { width: 2 } },
                  { name: "resumed run" + suffix, type: "line", data: newData, showSymbol: false, sampling: "lttb",
                    lineStyle: { width: 2, type: "dashed" } });
    }
    if (groups.length > 1) {
      groups.forEach(function (g, i) {
        var c = shades[i % shades.length];
        pair(g.old, g["new"], " · group " + g.group, c, c);
      });
    } else {
      pair(old, neu, "", shades[0], shades[1]);
    }
    series[0].markLine = { symbol: "none", silent: true, data: markers };
    series[1].markPoint = { data: points };
    CK.draw(CK.chart(chartDiv), {
      color: colours,
      legend: { data: names, top: 4 },
      grid: { left: 80, right: 40, top: 64, bottom: 48 },
      tooltip: { trigger: "axis", valueFormatter: function (v) { return CK.fmtNum(v); } },
      xAxis: { type: "value", name: "epoch" + unit, nameLocation: "middle", nameGap: 28, min: "dataMin", max: "dataMax" },
      yAxis: { type: "value", name: "learning rate", scale: true, nameLocation: "middle", nameGap: 58,
               axisLabel: { formatter: function (v) { return CK.fmtNum(v); } } },
      series: series
    });
  } else {
    chartDiv.replaceWith(CK.empty("No learning-rate curve: " + (sched.old || "the schedule is unknown") + "."));
  }
  var figures = document.getElementById("lr-figures");
  figures.textContent = "old plan: " + (sched.old || "—") + ". Resumed run: " + (sched["new"] || "—") + ".";

  /* checks */
  var checksBox = document.getElementById("checks");
  var checks = D.checks || [];
  if (checks.length) {
    CK.table(checksBox, { rows: checks, columns: [
      { key: "status", label: "status", cls: "status", text: function (r) { return String(r.status).toUpperCase(); } },
      { key: "code", label: "check", cls: "mono" },
      { key: "message", label: "message" },
      { key: "hint", label: "hint", cls: "hint", text: function (r) { return r.hint || ""; } }],
      rowClass: function (r) { return "row-" + r.status; } });
  } else {
    checksBox.appendChild(CK.empty("No checks ran."));
  }

  /* fixes */
  var fixes = document.getElementById("fixes");
  (D.fixes || []).forEach(function (f) { fixes.appendChild(el("li", { cls: "mono", text: f })); });
  if (!(D.fixes || []).length) fixes.replaceWith(CK.empty("Nothing to fix."));

  /* schedule facts */
  CK.summary(document.getElementById("schedule"), [
    ["mode", sched.mode], ["old plan", sched.old], ["resumed run", sched["new"]], ["unit", sched.unit],
    ["steps per epoch", sched.steps_per_epoch], ["base LR", sched.base_lr === undefined ? null :
      CK.fmtNum(sched.base_lr) + (sched.base_lr_source ? " (" + sched.base_lr_source + ")" : "")],
    ["convention", sched.convention], ["notes", (sched.notes || []).join(" · ")],
    ["--epochs read as", D.epochs_readings && D.epochs_readings.total !== undefined ?
      "total " + D.epochs_readings.total + " / additional " + D.epochs_readings.additional : null],
    ["written", D.written ? JSON.stringify(D.written) : null]
  ]);

  CK.ready();
})();
