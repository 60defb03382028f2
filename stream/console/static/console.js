// The segments console's only script (no inline script: the Content-Security-Policy forbids it).
// It touches the page through textContent and createElement only, never innerHTML: what the server
// sends back (problems, messages) is text, whatever characters it holds.
"use strict";

(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin", body: body,
      headers: {"Content-Type": "text/plain;charset=UTF-8", "X-CSRF-Token": csrf},
    }).then(function (response) {
      return response.json().then(function (data) { return {status: response.status, data: data}; });
    });
  }

  function show(box, className, lines) {
    box.className = className;
    const items = lines.map(function (line) {
      const item = document.createElement(lines.length > 1 ? "li" : "p");
      item.textContent = line;
      return item;
    });
    if (items.length > 1) {
      const list = document.createElement("ul");
      list.replaceChildren.apply(list, items);
      box.replaceChildren(list);
    } else {
      box.replaceChildren.apply(box, items);
    }
  }

  const editor = document.getElementById("editor");
  if (!editor) { return; }
  const nameBox = document.getElementById("segment-name");
  const text = document.getElementById("definition");
  const problems = document.getElementById("problems");
  const preview = document.getElementById("preview");
  const outcome = document.getElementById("outcome");
  let timer = null;
  let asked = 0;      // answers to earlier checks than the latest are dropped

  function url(kind) {
    return editor.dataset[kind] + "?name=" + encodeURIComponent(nameBox.value.trim());
  }

  function check() {
    const mine = ++asked;
    problems.className = "checking";
    post(url("check"), text.value).then(function (answer) {
      if (mine !== asked) { return; }
      const found = answer.data.problems || [answer.data.error || "the check failed"];
      if (found.length) {
        show(problems, "problems", found);
      } else {
        show(problems, "valid", ["valid"]);
      }
      const p = answer.data.preview;
      if (!p) {
        show(preview, "preview", []);
      } else if (p.unavailable) {
        show(preview, "preview muted", ["no preview: " + p.unavailable]);
      } else {
        let rest = " (all of them)";
        if (p.cut_short) {
          rest = " (cut short after " + p.seconds + " s, of about " + p.stored_about.toLocaleString() +
            " stored: about " + Math.round(p.holding * p.stored_about / Math.max(p.read, 1)).toLocaleString() +
            " if the rest are alike)";
        }
        show(preview, "preview", ["would hold " + p.holding.toLocaleString() + " of the " +
          p.read.toLocaleString() + " customers read" + rest]);
      }
    }).catch(function (error) { show(problems, "problems", ["the check failed: " + error]); });
  }

  function later() {
    clearTimeout(timer);
    timer = setTimeout(check, 400);
  }

  function said(answer) {
    const d = answer.data;
    show(outcome, d.ok ? "outcome ok" : "outcome problems",
         [d.message || d.error || "failed"].concat(d.problems || []));
    if (d.ok) {
      const link = document.createElement("a");
      link.href = editor.dataset.segments + "/" + encodeURIComponent(nameBox.value.trim());
      link.textContent = "open the segment";
      link.id = "open-segment";
      outcome.appendChild(link);
    }
  }

  text.addEventListener("input", later);
  nameBox.addEventListener("input", later);
  document.getElementById("publish").addEventListener("click", function () {
    post(url("publish"), text.value).then(said)
      .catch(function (error) { show(outcome, "outcome problems", ["publishing failed: " + error]); });
  });
  document.getElementById("remove").addEventListener("click", function () {
    if (window.confirm("Remove segment " + nameBox.value.trim() + "? Its members exit.")) {
      post(url("remove"), "").then(said)
        .catch(function (error) { show(outcome, "outcome problems", ["removing failed: " + error]); });
    }
  });
  check();
})();
