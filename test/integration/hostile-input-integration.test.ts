// Inputs that cost more than they look, at the sizes that used to hurt (issue 17): each gets its answer,
// and nothing is stored, queued or sent for a refused one. No timing is asserted: the regexes they used to
// stall are gone, and test/static/regex-safety.test.ts keeps any super-linear one out of src/.
import { describe, expect, it, vi } from "vitest";
import { MAX_MAILBOX_LENGTH } from "../../src/core/address";
import { MAX_JSON_DEPTH } from "../../src/http/json-body";
import { MAX_LOGGED_PATH } from "../../src/http/middleware/request-log";
import { api, captureLogs, fetchWorker, messageRowsFor, postCounted, uniqueRecipient, waitForMail } from "../helpers/api";

const headerBlock = (raw: string) => raw.slice(0, raw.indexOf("\r\n\r\n"));
/** A header's value as a receiver reads it: unfolded (RFC 5322 §2.2.3), untouched otherwise. */
const headerValue = (raw: string, name: string) => new RegExp(`^${name}: (.*(?:\\r\\n[ \\t].*)*)`, "mi").exec(headerBlock(raw))?.[1]?.replace(/\r\n(?=[ \t])/g, "");

describe("hostile input", () => {
  it("a 16 KB path: 404, and its log line carries the path cut to its first characters, masked", async () => {
    const { lines, restore } = captureLogs();
    try {
      const path = `/${"a".repeat(8000)}user@example.com${"b".repeat(8000)}`;
      const res = await api(path, { key: null });
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ error: { code: "not_found" } });
      await new Promise((resolve) => setTimeout(resolve, 0));
      const line = lines.map((l) => JSON.parse(l)).find((e) => e.msg === "request");
      expect(line.path).toBe(`/${"a".repeat(MAX_LOGGED_PATH - 1)}…`);
    } finally {
      restore();
    }
  });

  it("an address padded with 40,000 spaces: 422 naming the field and the limit; nothing stored or queued", async () => {
    // The cap leaves room for a 200-character display name written with an escape before each character.
    const escaped = `"${'\\"'.repeat(200)}" <${uniqueRecipient("escaped")}>`;
    expect((await postCounted(JSON.stringify({ to: escaped, subject: "x", text: "x", scheduled_at: new Date(Date.now() + 3600_000).toISOString() }))).res.status).toBe(202);
    const to = `a${" ".repeat(40_000)}b@example.com`;
    const { res, body, enqueued } = await postCounted(JSON.stringify({ to, cc: [uniqueRecipient("pad")], subject: "x", text: "x" }));
    expect(res.status).toBe(422);
    expect(body.error.issues).toEqual([{ path: "to.0", message: expect.stringContaining(`is longer than ${MAX_MAILBOX_LENGTH} characters`) }]);
    expect(JSON.stringify(body).length).toBeLessThan(2000); // the issue quotes the first 100 characters only
    expect(enqueued).toBe(0);
  });

  it("refuses the same padding in every address field of a batch (40 messages: 6.4 MB, inside the request limit) with one answer, storing nothing", async () => {
    const padded = `a${" ".repeat(40_000)}b@example.com`;
    const to = uniqueRecipient("padbatch");
    const batch = Array.from({ length: 40 }, () => ({ from: padded, to, cc: padded, bcc: padded, reply_to: padded, subject: "x", text: "x" }));
    const { res, body, enqueued } = await postCounted(JSON.stringify(batch), { path: "/v1/emails/batch" });
    expect(res.status).toBe(422);
    expect(body.error.code).toBe("validation_error");
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("List-Unsubscribe with a 96-character one-click URL, and long References, arrive verbatim: folded only at spaces, never encoded", async () => {
    const to = uniqueRecipient("unsubscribe");
    const url = `https://news.acme.example/unsubscribe?list=weekly&token=${"t".repeat(96 - 56)}`;
    expect(url).toHaveLength(96);
    const references = Array.from({ length: 6 }, (_, i) => `<${"x".repeat(70)}.${i}@mail.acme.example>`).join(" ");
    const headers = { "List-Unsubscribe": `<${url}>`, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click", References: references, "In-Reply-To": `<${"y".repeat(120)}@mail.acme.example>` };
    const res = await api("/v1/emails", { method: "POST", json: { to, subject: "Weekly", text: "News", headers } });
    expect(res.status).toBe(202);
    const [mail] = await waitForMail(to);
    expect(headerBlock(mail!.raw)).not.toContain("=?UTF-8?");
    for (const [name, value] of Object.entries(headers)) expect(headerValue(mail!.raw, name), name).toBe(value);
    expect(headerBlock(mail!.raw).split("\r\n").every((line) => line.length <= 998)).toBe(true);
  });

  it("200,000 header entries: 422 with one issue naming the limit, a small answer; nothing queued", async () => {
    const headers = Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`Bad Name ${i}`, ""]));
    const to = uniqueRecipient("headers");
    const { res, body, enqueued } = await postCounted(JSON.stringify({ to, subject: "x", text: "x", headers }));
    expect(res.status).toBe(422);
    expect(body.error.issues).toEqual([{ path: "headers", message: "at most 20 headers" }]);
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("an error answer lists at most 50 issues, then how many more", async () => {
    const batch = Array.from({ length: 100 }, () => ({ to: "not an address", subject: "", text: "" }));
    const { res, body, enqueued } = await postCounted(JSON.stringify(batch), { path: "/v1/emails/batch" });
    expect(res.status).toBe(422);
    expect(body.error.issues).toHaveLength(51);
    expect(body.error.issues.at(-1)).toEqual({ path: "(body)", message: "and 250 more issues" });
    expect(enqueued).toBe(0);
  });

  it("JSON nested 100,000 deep, under an Idempotency-Key: 422 (it was a 500 from the canonicaliser); nothing queued", async () => {
    const deep = `${"[".repeat(100_000)}${"]".repeat(100_000)}`;
    const to = uniqueRecipient("deep");
    const { res, body, enqueued } = await postCounted(`{"to":"${to}","subject":"x","text":"x","tags":${deep}}`, { headers: { "Idempotency-Key": `deep-${to}` } });
    expect(res.status).toBe(422);
    expect(body.error).toMatchObject({ code: "validation_error", message: `the JSON is nested more than ${MAX_JSON_DEPTH} levels deep` });
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
    // Brackets inside strings are text, not nesting: such a request is served.
    const fine = await postCounted(JSON.stringify({ to: uniqueRecipient("brackets"), subject: "[".repeat(500), text: "{".repeat(5000) }));
    expect(fine.res.status).toBe(202);
  });

  it("checks the API key before reading the body: a caller without one gets 401 while its body is still arriving", async () => {
    let pulled = 0;
    const endless = new ReadableStream<Uint8Array>({ pull: (controller) => void (pulled++, controller.enqueue(new Uint8Array(64 * 1024))) }, { highWaterMark: 0 });
    const res = await fetchWorker(new Request("https://mailroom.test/v1/emails", { method: "POST", headers: { "Content-Type": "application/json" }, body: endless }));
    expect(res.status).toBe(401);
    expect(pulled).toBeLessThan(4); // at most what the runtime buffers ahead; the 8 MiB limit never came into it
    await endless.cancel().catch(() => {});
  });

  it("answers and logs Mailroom's own request id; a client's X-Request-Id is logged beside it, cut to 64 characters", async () => {
    const { lines, restore } = captureLogs();
    try {
      const res = await api("/healthz", { key: null, headers: { "X-Request-Id": `client-${"x".repeat(200)}` } });
      const id = res.headers.get("X-Request-Id");
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      await vi.waitFor(() => expect(lines.some((l) => l.includes('"msg":"request"'))).toBe(true));
      const line = lines.map((l) => JSON.parse(l)).find((e) => e.msg === "request");
      expect(line).toMatchObject({ request_id: id, client_request_id: `client-${"x".repeat(57)}` });
      // An error answer carries it too.
      expect((await api("/nope", { key: null })).headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      restore();
    }
  });

  it("a template section over 300,000 items: 422 once the HTML passes its limit (rendering stops there); nothing stored or queued", async () => {
    const to = uniqueRecipient("sections");
    const variables = { service: "api", summary: "down", severity: "high", started_at: "now", button_url: "https://status.example", button_label: "Open", details: Array.from({ length: 300_000 }, () => ({ label: "x", value: "y" })) };
    const { res, body, enqueued } = await postCounted(JSON.stringify({ to, template: { id: "alert", variables } }));
    expect(res.status).toBe(422);
    expect(body.error.issues).toEqual([{ path: "template.variables", message: "the rendered html is longer than 262144 characters" }]);
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
    const render = await api("/v1/templates/alert/render", { method: "POST", json: { variables } });
    expect(render.status).toBe(422);
  });
});
