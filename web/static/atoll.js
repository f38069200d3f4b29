// Shows the `detail` of a problem+json answer to a failed htmx request, so a person sees
// what to fix instead of a silent no-op.
document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  let message = `Request failed (${xhr.status}).`;
  try {
    const body = JSON.parse(xhr.responseText);
    if (body.detail) message = body.detail;
  } catch (_) { /* not JSON: keep the generic message */ }
  let flash = document.getElementById("flash");
  if (!flash) {
    flash = document.createElement("div");
    flash.id = "flash";
    document.body.appendChild(flash);
  }
  const item = document.createElement("div");
  item.className = "problem";
  item.setAttribute("role", "alert");
  item.textContent = message;
  flash.appendChild(item);
  setTimeout(() => item.remove(), 8000);
});
