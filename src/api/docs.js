// The start of GET /docs (src/api/docs.rs): Swagger UI over this service's /openapi.json.
"use strict";
(function () {
  // The service that serves this page, behind a path prefix too: the folder of /docs.
  var base = new URL(".", window.location.href).href.replace(/\/$/, "");
  var root = document.getElementById("swagger-ui");

  function fail(error) {
    root.textContent = "Could not load " + base + "/openapi.json: " + error;
  }

  // Expands every GET operation that takes parameters (the logs endpoint; health, metrics
  // and the document take none), so that it and its parameters show without a click.
  function expand(ui, spec) {
    Object.keys(spec.paths || {}).forEach(function (path) {
      var get = spec.paths[path].get;
      if (get && get.operationId && (get.parameters || []).length > 0) {
        var tag = (get.tags || ["default"])[0];
        ui.layoutActions.show(["operations", tag, get.operationId], true);
      }
    });
  }

  fetch(base + "/openapi.json", { headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.json();
    })
    .then(function (spec) {
      // "Try it out" calls the service serving this page, not the documented default
      // address; the Content-Security-Policy lets the page reach no other.
      spec.servers = [{ url: base, description: "this service" }];
      var ui = SwaggerUIBundle({
        spec: spec,
        dom_id: "#swagger-ui",
        layout: "BaseLayout",
        deepLinking: true,
        docExpansion: "list",
        defaultModelsExpandDepth: 0,
        displayRequestDuration: true,
        showExtensions: true,
        validatorUrl: null,
        onComplete: function () {
          expand(ui, spec);
        },
      });
      window.ui = ui;
    })
    .catch(fail);
})();
