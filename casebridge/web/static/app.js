// Progressive enhancement: every page works without this. With it, work lists and case pages
// follow the server's event stream and refresh themselves when a case changes.
(function () {
  if (!window.EventSource) return;
  var list = document.querySelector("[data-live-list]");
  var page = document.querySelector(".case-page[data-case]");
  if (!list && !page) return;
  var note = document.querySelector("[data-live]");
  if (note) note.hidden = false;
  var source = new EventSource("/live");
  var pending = false;
  function refreshList() {
    if (pending) return;
    pending = true;
    fetch(list.getAttribute("data-live-list"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) list.innerHTML = html; })
      .finally(function () { pending = false; });
  }
  function refreshCase() {
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main");
        var active = document.activeElement;
        // keep what the user is typing or has chosen (a photo): only refresh when no form
        // field has focus and none holds anything yet
        var filled = Array.prototype.some.call(
          document.querySelectorAll("main input[type=file], main input[type=text], main textarea"),
          function (f) { return f.files ? f.files.length > 0 : f.value !== ""; });
        if (fresh && !filled && !(active && /INPUT|TEXTAREA|SELECT/.test(active.tagName))) {
          document.querySelector("main").innerHTML = fresh.innerHTML;
        }
      });
  }
  // the session ended (signed out, expired, revoked): stop following, do not reconnect
  source.addEventListener("signed-out", function () { source.close(); });
  source.addEventListener("case", function (e) {
    var data = JSON.parse(e.data);
    if (list) refreshList();
    if (page && data.case === page.getAttribute("data-case")) refreshCase();
  });
})();
