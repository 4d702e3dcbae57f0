// The password rules checked while typing, and the show-password toggle. The server stays the judge:
// without this script the page works the same, and every rule is checked again on save.
(function () {
  "use strict";
  var rules = document.getElementById("new_password_rules");
  var password = document.getElementById("new_password");
  var confirm = document.getElementById("confirm_password");
  var toggle = document.getElementById("show_password");
  if (!rules || !password || !confirm) return;

  function fold(text) {
    return text.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }
  var min = parseInt(rules.dataset.min, 10) || 12;
  var username = fold(rules.dataset.username || "");
  var names = (rules.dataset.names || "").split(/[\s\-'.]+/).filter(function (part) {
    return part.length >= 3;
  }).map(fold);

  function mark(rule, state) {
    var item = rules.querySelector('[data-rule="' + rule + '"]');
    item.classList.remove("met", "unmet");
    if (state !== null) item.classList.add(state ? "met" : "unmet");
  }

  function check() {
    var value = password.value.normalize("NFKC");
    var folded = fold(value);
    var typed = value.length > 0;
    mark("length", typed ? value.length >= min && value.length <= 128 : null);
    var personal = (username && folded.indexOf(username) >= 0) ||
      names.some(function (part) { return folded.indexOf(part) >= 0; });
    mark("personal", typed ? !personal : null);
    mark("match", confirm.value ? confirm.value.normalize("NFKC") === value : null);
  }

  password.addEventListener("input", check);
  confirm.addEventListener("input", check);
  rules.classList.add("live");
  check();

  if (toggle) {
    toggle.parentElement.hidden = false;
    toggle.addEventListener("change", function () {
      var type = toggle.checked ? "text" : "password";
      document.querySelectorAll("input.secret, #new_password, #confirm_password").forEach(function (input) {
        input.type = type;
      });
    });
  }
})();
