// GET /docs: the API reference as a page people can read — every operation of /openapi.json, in the
// document's order, with a curl to copy, its parameters, request fields and answers, rendered in the browser
// by a few lines of script (no CDN, no framework: the page works offline and adds little to the bundle).
export const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Mailroom API</title>
<style>
body{font:15px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#18181b;max-width:960px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px;border-top:1px solid #e4e4e7;padding-top:16px}
code,.m{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:13px}
.m{display:inline-block;min-width:56px;font-weight:700;color:#2563eb}
table{border-collapse:collapse;width:100%;margin:6px 0}td,th{border:1px solid #e4e4e7;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f5}.r{color:#b91c1c}.muted{color:#71717a}
pre.example{background:#f4f4f5;padding:8px 12px;overflow-x:auto;font-size:13px}
</style>
</head>
<body>
<h1>Mailroom API</h1>
<p class="muted" id="intro">Loading <a href="/openapi.json">/openapi.json</a>…</p>
<main id="ops"></main>
<script>
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
const ref = (doc, s) => (s && s.$ref ? doc.components.schemas[s.$ref.split("/").pop()] : s);
function type(s) {
  if (!s) return "any";
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.anyOf) return s.anyOf.map(type).join(" | ");
  if (s.type === "array") return "array of " + type(s.items);
  return Array.isArray(s.type) ? s.type.join(" | ") : s.type || "any";
}
function rules(s) {
  const r = [];
  for (const k of ["minLength", "maxLength", "minItems", "maxItems", "pattern", "default", "description"]) if (s && s[k] !== undefined) r.push(k === "description" ? s[k] : k + ": " + JSON.stringify(s[k]));
  return r.join("; ");
}
function fields(doc, schema) {
  schema = ref(doc, schema);
  const target = schema && schema.type === "array" ? ref(doc, schema.items) : schema;
  if (!target || !target.properties) return "<p><code>" + esc(type(schema)) + "</code></p>";
  const required = new Set(target.required || []);
  const rows = Object.entries(target.properties).map(([name, s]) => {
    const nested = s.properties || (s.items && s.items.properties) ? fields(doc, s) : "";
    return "<tr><td><code>" + esc(name) + "</code>" + (required.has(name) ? ' <span class="r">required</span>' : "") + "</td><td><code>" + esc(type(s)) + "</code></td><td>" + esc(rules(s)) + nested + "</td></tr>";
  });
  return (schema.type === "array" ? "<p>an array (" + esc(rules(schema)) + ") of:</p>" : "") + "<table><tr><th>field</th><th>type</th><th>rules</th></tr>" + rows.join("") + "</table>";
}
const quote = (s) => "'" + s.replace(/'/g, "'\\\\''") + "'";
/** A request to copy: path parameters from their examples (else a shell variable: $ID), the body example. */
function curl(path, method, op) {
  const url = location.origin + path.replace(/\\{(\\w+)\\}/g, (_, name) => {
    const p = (op.parameters || []).find((p) => p.name === name);
    return p && p.example ? encodeURIComponent(p.example) : "$" + name.toUpperCase();
  });
  const lines = ["curl -s" + (method === "get" ? "" : " -X " + method.toUpperCase()) + ' "' + url + '"'];
  if (!(op.security && op.security.length === 0)) lines.push('-H "Authorization: Bearer $MAILROOM_API_KEY"');
  const body = op.requestBody && op.requestBody.content["application/json"].example;
  if (body !== undefined) lines.push('-H "Content-Type: application/json"', "-d " + quote(JSON.stringify(body, null, 2)));
  return lines.join(" \\\\\\n  ");
}
fetch("/openapi.json").then((r) => r.json()).then((doc) => {
  document.getElementById("intro").innerHTML = esc(doc.info.description) + ' The machine-readable document: <a href="/openapi.json">/openapi.json</a> (OpenAPI ' + esc(doc.openapi) + "). The examples read your key from <code>$MAILROOM_API_KEY</code> and an email's id from <code>$ID</code>.";
  const html = [];
  for (const [path, ops] of Object.entries(doc.paths)) for (const [method, op] of Object.entries(ops)) {
    html.push('<h2><span class="m">' + method.toUpperCase() + "</span> <code>" + esc(path) + "</code></h2><p>" + esc(op.summary) + (op.security && op.security.length === 0 ? "" : ' <span class="muted">(API key)</span>') + "</p>");
    html.push('<pre class="example">' + esc(curl(path, method, op)) + "</pre>");
    for (const p of op.parameters || []) html.push("<p>" + esc(p.in) + " parameter <code>" + esc(p.name) + "</code>" + (p.description ? ": " + esc(p.description) : "") + "</p>");
    if (op.requestBody) html.push("<h3>Request</h3>" + fields(doc, op.requestBody.content["application/json"].schema));
    for (const [status, answer] of Object.entries(op.responses)) {
      if (status.startsWith("2")) html.push("<h3>" + esc(status) + " " + esc(Object.keys(answer.content)[0]) + "</h3>" + fields(doc, Object.values(answer.content)[0].schema));
    }
    html.push('<p class="muted">Errors: ' + Object.keys(op.responses).filter((s) => !s.startsWith("2")).join(", ") + ", each as <code>Error</code> below.</p>");
  }
  html.push("<h2>Error</h2>" + fields(doc, doc.components.schemas.Error));
  document.getElementById("ops").innerHTML = html.join("");
});
</script>
</body>
</html>
`;
