// Optional extras: the report reads fully without them.
(function () {
  "use strict";
  // Zoom the timeline horizontally by moving every coordinate right of the labels, so text keeps
  // its shape (a stretched viewBox would stretch the letters too).
  var fig = document.getElementById("timeline-figure");
  var svg = fig && fig.querySelector("svg");
  if (svg) {
    var left = parseFloat(svg.getAttribute("data-left"));
    var w0 = parseFloat(svg.getAttribute("width"));
    var h0 = parseFloat(svg.getAttribute("height"));
    var orig = null;
    var factor = 1;
    var s = function (v) { return v < left ? v : left + (v - left) * factor; };
    var keep = function () {
      orig = [];
      Array.prototype.forEach.call(svg.querySelectorAll("rect, line, text"), function (el) {
        var o = { el: el };
        ["x", "width", "x1", "x2"].forEach(function (a) {
          if (el.hasAttribute(a)) { o[a] = parseFloat(el.getAttribute(a)); }
        });
        orig.push(o);
      });
    };
    var apply = function () {
      if (!orig) { keep(); }
      orig.forEach(function (o) {
        if (o.x !== undefined) { o.el.setAttribute("x", s(o.x)); }
        if (o.width !== undefined) { o.el.setAttribute("width", s(o.x + o.width) - s(o.x)); }
        if (o.x1 !== undefined) { o.el.setAttribute("x1", s(o.x1)); o.el.setAttribute("x2", s(o.x2)); }
      });
      var w = left + (w0 - left) * factor;
      svg.setAttribute("width", w);
      svg.setAttribute("viewBox", "0 0 " + w + " " + h0);
    };
    var bar = document.createElement("div");
    bar.className = "zoom";
    [["zoom −", 0.5], ["zoom +", 2], ["reset zoom", 0]].forEach(function (z) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = z[0];
      b.addEventListener("click", function () {
        factor = z[1] === 0 ? 1 : Math.min(64, Math.max(1, factor * z[1]));
        apply();
      });
      bar.appendChild(b);
    });
    fig.parentNode.insertBefore(bar, fig);
  }
  // A copy button beside every command.
  Array.prototype.forEach.call(document.querySelectorAll("pre.copyable"), function (pre) {
    var b = document.createElement("button");
    b.type = "button";
    b.className = "copy";
    b.textContent = "copy";
    b.addEventListener("click", function () {
      var text = pre.textContent;
      var done = function () { b.textContent = "copied"; setTimeout(function () { b.textContent = "copy"; }, 1200); };
      try {
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(done, function () { selectText(pre); });
          return;
        }
      } catch (e) { /* fall back to selecting */ }
      selectText(pre);
      try { if (document.execCommand("copy")) { done(); } } catch (e) { /* selected; the user copies */ }
    });
    var wrap = document.createElement("div");
    wrap.className = "copywrap";
    pre.parentNode.insertBefore(wrap, pre);
    wrap.appendChild(pre);
    wrap.appendChild(b);
  });
  function selectText(el) {
    var r = document.createRange();
    r.selectNodeContents(el);
    var s = window.getSelection();
    s.removeAllRanges();
    s.addRange(r);
  }
})();
