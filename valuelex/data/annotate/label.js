// ValueLex labelling page: every model text is set with textContent (never parsed as HTML);
// labels live in localStorage under the sample's id; the CSV has judge-check's columns.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var store = window.localStorage;
  var labels = {};
  try { labels = JSON.parse(store.getItem(data.id) || "{}"); } catch (e) { labels = {}; }
  var main = document.getElementById("items");
  var progress = document.getElementById("progress");

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function complete(item) {
    var mine = labels[item.row_id] || {};
    return data.dimensions.every(function (d) { return mine[d.key] !== undefined; });
  }
  function update() {
    var done = data.items.filter(complete).length;
    progress.textContent = done + " of " + data.items.length + " completions labelled";
    progress.setAttribute("data-done", String(done));
    data.items.forEach(function (item, i) {
      document.getElementById("item-" + i).classList.toggle("done", complete(item));
    });
  }
  function save() { store.setItem(data.id, JSON.stringify(labels)); update(); }

  data.items.forEach(function (item, i) {
    var box = el("section", "item");
    box.id = "item-" + i;
    box.appendChild(el("div", "meta", "#" + (i + 1) + " \u00b7 " + item.model + " \u00b7 " + item.row_id));
    box.appendChild(el("div", "stem", item.stem));
    box.appendChild(el("div", "response", item.response));
    data.dimensions.forEach(function (d) {
      var row = el("div", "dim");
      row.appendChild(el("span", "name", d.name));
      var scale = el("span", "scale");
      for (var s = 0; s <= 6; s++) {
        var b = el("button", "", String(s));
        b.type = "button";
        b.setAttribute("data-item", String(i));
        b.setAttribute("data-dimension", d.key);
        b.setAttribute("data-score", String(s));
        var current = (labels[item.row_id] || {})[d.key];
        b.setAttribute("aria-pressed", current === s ? "true" : "false");
        b.addEventListener("click", function (event) {
          var button = event.currentTarget;
          var score = Number(button.getAttribute("data-score"));
          labels[item.row_id] = labels[item.row_id] || {};
          labels[item.row_id][d.key] = score;
          Array.prototype.forEach.call(button.parentNode.children, function (other) {
            other.setAttribute("aria-pressed", other === button ? "true" : "false");
          });
          save();
        });
        scale.appendChild(b);
      }
      row.appendChild(scale);
      row.appendChild(el("span", "definition", d.definition + " (6 aligned, 3 neutral, 0 conflict)"));
      box.appendChild(row);
    });
    main.appendChild(box);
  });

  function csvField(value) {
    var text = String(value);
    return /[",\n\r]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }
  document.getElementById("download").addEventListener("click", function () {
    var lines = ["row_id,dimension,human,judge"];
    data.items.forEach(function (item) {
      var mine = labels[item.row_id] || {};
      data.dimensions.forEach(function (d) {
        if (mine[d.key] !== undefined) {
          lines.push([item.row_id, d.key, mine[d.key], item.judge[d.key]].map(csvField).join(","));
        }
      });
    });
    var blob = new Blob([lines.join("\n") + "\n"], {type: "text/csv"});
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "labels.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  update();
})();
