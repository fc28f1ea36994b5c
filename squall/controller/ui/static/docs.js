// The API reference page: Swagger UI over the description this server serves.
"use strict";
window.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // No request leaves this server: the public validator badge is off.
    validatorUrl: null,
    // The description has no host: requests go to this page's own origin.
    persistAuthorization: false,
  });
});
