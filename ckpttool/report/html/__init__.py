"""Self-contained HTML reports for ``inspect``, ``diff`` and ``validate-resume``.

One file per report: the command's own ``--json`` document embedded as
``<script type="application/json" id="ckpttool-data">``, and the scripts that draw it inline.
Nothing on the page asks the network for anything, so a report opens from a USB stick.

Charts use Apache ECharts 6 (Apache-2.0, vendored minified in ``assets/`` with its licence
notice) with the SVG renderer, so every label is text in the DOM. It was chosen over the other
well-kept libraries by size and by what the pages draw:

=================  ===========  =======  ================  =======  ===============
library            minified     treemap  sunburst          heatmap  SVG output
=================  ===========  =======  ================  =======  ===============
ECharts 6.1        1.1 MB       yes      yes               yes      yes (renderer)
Plotly.js 4.1      4.8 MB       yes      yes               yes      yes, heatmap not
Vega 6 + Lite 6    0.77 MB      Vega     Vega only         yes      yes (renderer)
=================  ===========  =======  ================  =======  ===============

Plotly alone would spend the whole size budget of a small report; Vega-Lite has no treemap or
sunburst (only Vega's lower-level transforms do); ECharts has drill-down treemaps built in.
Rendering needs the ``report`` extra (jinja2).
"""

from __future__ import annotations

from ckpttool.report.html.render import KINDS, render_html, require_extra
from ckpttool.report.html.write import is_report_file, write_html

__all__ = ["KINDS", "render_html", "require_extra", "write_html", "is_report_file"]
