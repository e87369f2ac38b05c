// Small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // Copy buttons: <button data-copy="#input-id">
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.value || source.textContent;
    var done = function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { source.select(); document.execCommand("copy"); done(); });
    } else {
      source.select();
      document.execCommand("copy");
      done();
    }
  });

  // IAM rule form: show only the fields of the chosen rule type.
  function syncRuleForm(root) {
    (root || document).querySelectorAll("form.rule-form").forEach(function (form) {
      var select = form.querySelector("select[name=rule_type]");
      if (!select) return;
      var kind = select.value.split("_").slice(1).join("_");
      form.querySelectorAll(".rule-part").forEach(function (part) {
        part.hidden = part.getAttribute("data-kind") !== kind;
      });
    });
  }

  // Provider key form: name and base URL matter for custom providers.
  function syncProviderForm(root) {
    (root || document).querySelectorAll("select[name=provider]").forEach(function (select) {
      var fields = select.form && select.form.querySelector(".custom-fields");
      if (fields) fields.classList.toggle("secondary-fields", select.value !== "custom");
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches("form.rule-form select[name=rule_type]")) syncRuleForm();
    if (event.target.matches("select[name=provider]")) syncProviderForm();
  });
  document.addEventListener("DOMContentLoaded", function () { syncRuleForm(); syncProviderForm(); });
  document.addEventListener("htmx:afterSettle", function () { syncRuleForm(); syncProviderForm(); });
})();
