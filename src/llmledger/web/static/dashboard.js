// llmledger dashboard: progressive enhancement only. Every page works without this file.
(function () {
  "use strict";

  // The period picker: the custom dates only when "Custom" is picked.
  function periodPicker() {
    document.querySelectorAll("form.filters").forEach(function (form) {
      var range = form.querySelector("[data-custom-range]");
      if (!range) return;
      function sync() {
        var picked = form.querySelector('input[name="period"]:checked');
        var custom = picked && picked.value === "custom";
        range.hidden = !custom;
        range.querySelectorAll("input").forEach(function (input) { input.disabled = !custom; });
      }
      form.querySelectorAll('input[name="period"]').forEach(function (radio) {
        radio.addEventListener("change", sync);
      });
      sync();
    });
  }

  // Blank filters are left out of the URL.
  function tidyForms() {
    document.querySelectorAll("form.filters").forEach(function (form) {
      form.addEventListener("submit", function () {
        form.querySelectorAll("input, select").forEach(function (el) {
          if (el.name && el.value === "" && !el.disabled) el.disabled = true;
        });
      });
    });
  }

  var PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
                 "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

  function costChart() {
    var canvas = document.getElementById("cost-chart");
    var source = document.getElementById("chart-data");
    if (!canvas || !source || typeof window.Chart === "undefined") return;
    var data = JSON.parse(source.textContent);
    var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
    var ink = dark ? "#e6e6e6" : "#1f1f1f";
    var grid = dark ? "rgba(255,255,255,0.15)" : "rgba(0,0,0,0.1)";
    var money = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD",
                                                 maximumFractionDigits: 4 });
    new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.datasets.map(function (ds, i) {
          return { label: ds.label, data: ds.data, backgroundColor: PALETTE[i % PALETTE.length],
                   borderWidth: 0 };
        })
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { position: "bottom", labels: { color: ink } },
          tooltip: { callbacks: { label: function (ctx) {
            return ctx.dataset.label + ": " + (ctx.raw === null ? "unpriced" : money.format(ctx.raw));
          } } }
        },
        scales: {
          x: { stacked: true, ticks: { color: ink }, grid: { color: grid } },
          y: { stacked: true, ticks: { color: ink, callback: function (v) { return money.format(v); } },
               grid: { color: grid }, title: { display: true, text: "USD", color: ink } }
        }
      }
    });
  }

  // Parts of a page that read more than the roll-up load after it.
  function fragments() {
    document.querySelectorAll("[data-fragment]").forEach(function (box) {
      var url = box.getAttribute("data-fragment");
      url += (url.indexOf("?") < 0 ? "?" : "&") + "fragment=1";
      box.setAttribute("aria-busy", "true");
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (!response.ok) throw new Error(response.status + " " + response.statusText);
          return response.text();
        })
        .then(function (html) { box.innerHTML = html; })
        .catch(function (error) {
          var note = document.createElement("p");
          note.className = "error";
          note.textContent = "Could not load this part (" + error.message + ").";
          box.appendChild(note);
        })
        .finally(function () { box.removeAttribute("aria-busy"); });
    });
  }

  function start() { periodPicker(); tidyForms(); costChart(); fragments(); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
