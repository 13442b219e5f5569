// The rest of the message surface through the real API, queue and SMTP server: bcc only in the envelope,
// reply_to, the client's own headers (X-* and a short allowlist; any name Mailroom writes is refused in
// any letter case), tags stored and returned but never sent, recipients counted once across to, cc and
// bcc. Every refusal is a 422 naming the field, and stores, queues and sends nothing.
import { describe, expect, it } from "vitest";
import { api, messageRowsFor, postCounted, uniqueRecipient, waitForMail } from "../helpers/api";

const post = (json: Record<string, unknown>) => postCounted(JSON.stringify(json));

const headerBlock = (raw: string) => raw.slice(0, raw.indexOf("\r\n\r\n"));

describe("the message surface", () => {
  it("delivers bcc only through the envelope, with reply_to, the client's headers and tags kept apart", async () => {
    const [to, cc, hidden] = [uniqueRecipient("to"), uniqueRecipient("cc"), uniqueRecipient("hidden")];
    const { res, body } = await post({
      to,
      cc,
      bcc: [`Hidden Person <${hidden}>`, to], // to again: one copy, one recipient
      reply_to: ["Support <support@mailroom.test>", "billing@mailroom.test"],
      headers: { "X-Campaign": "spring-2026", "x-note": "Grüße aus Köln", "List-Unsubscribe": "<https://mailroom.test/u/1>, <mailto:u@mailroom.test>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" },
      tags: [{ name: "category", value: "secret_tag_value" }],
      subject: "Everything",
      text: "Hello",
    });
    expect(res.status).toBe(202);

    const [copy] = await waitForMail(hidden);
    const [toCopy, ...more] = await waitForMail(to);
    expect(more).toHaveLength(0);
    expect(toCopy!.id).toBe(copy!.id); // one message to all three
    expect([...copy!.envelope.to].sort()).toEqual([to, cc, hidden].sort());
    const head = headerBlock(copy!.raw);
    expect(head).not.toMatch(/^bcc:/im);
    expect(copy!.raw).not.toContain(hidden);
    expect(copy!.raw).not.toContain("secret_tag_value");
    expect(head).toMatch(/^Reply-To: Support <support@mailroom\.test>, billing@mailroom\.test$/m);
    expect(head).toMatch(/^X-Campaign: spring-2026$/m);
    expect(head).toMatch(/^x-note: =\?UTF-8\?B\?/m);
    expect(head).toMatch(/^List-Unsubscribe: <https:\/\/mailroom\.test\/u\/1>, <mailto:u@mailroom\.test>$/m);
    expect(head).toMatch(/^List-Unsubscribe-Post: List-Unsubscribe=One-Click$/m);

    const view = await (await api(`/v1/emails/${body.id}`)).json<Record<string, unknown>>();
    expect(view).toMatchObject({
      status: "sent",
      to: [to],
      cc: [cc],
      bcc: [`Hidden Person <${hidden}>`, to],
      reply_to: ["Support <support@mailroom.test>", "billing@mailroom.test"],
      tags: [{ name: "category", value: "secret_tag_value" }],
    });
    expect((view.recipients as { address: string }[]).map((r) => r.address)).toEqual([to, cc, hidden]);
  });

  const refusals: [string, Record<string, unknown>, string][] = [
    ...["From", "to", "CC", "bCC", "Subject", "DATE", "Message-Id", "MIME-Version", "Content-Type", "content-transfer-encoding", "Return-Path", "DKIM-Signature", "Received", "Reply-To", "Sender"].map(
      (name): [string, Record<string, unknown>, string] => [`the reserved header ${name}`, { headers: { [name]: "x" } }, `headers.${name}`],
    ),
    ["a header that is neither X-* nor allowed", { headers: { Priority: "urgent" } }, "headers.Priority"],
    ["a header name with a space", { headers: { "X-Bad Name": "x" } }, "headers.X-Bad Name"],
    ["a header name with a colon", { headers: { "X-Bad:Name": "x" } }, "headers.X-Bad:Name"],
    ["CR/LF in a header value", { headers: { "X-Note": "a\r\nBcc: x@evil.example" } }, "headers.X-Note"],
    ["a lone LF in a header value", { headers: { "X-Note": "a\nb" } }, "headers.X-Note"],
    ["NUL in a header value", { headers: { "X-Note": "a\u0000b" } }, "headers.X-Note"],
    ["one header twice in different case", { headers: { "X-Note": "a", "x-note": "b" } }, "headers"],
    ["21 headers", { headers: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`X-H${i}`, "x"])) }, "headers"],
    ["CR/LF in a tag value", { tags: [{ name: "a", value: "b\r\nX-Injected: 1" }] }, "tags.0.value"],
    ["a tag name with a space", { tags: [{ name: "a b", value: "c" }] }, "tags.0.name"],
    ["a tag with more than name and value", { tags: [{ name: "a", value: "b", extra: 1 }] }, "tags.0"],
    ["a line break in a bcc display name", { bcc: "Eve\r\nX-Injected: 1 <eve@example.com>" }, "bcc.0"],
    ["a malformed reply_to", { reply_to: "not an address" }, "reply_to.0"],
    ["51 recipients across to, cc and bcc", { cc: Array.from({ length: 25 }, (_, i) => `cc${i}@example.com`), bcc: Array.from({ length: 25 }, (_, i) => `bcc${i}@example.com`) }, "to"],
  ];

  it.each(refusals)("refuses %s: 422 naming the field, nothing stored or queued", async (_name, extra, path) => {
    const to = uniqueRecipient("refused");
    const { res, body, enqueued } = await post({ to, subject: "Refused", text: "x", ...extra });
    expect(res.status).toBe(422);
    expect(body.error.issues.map((i: { path: string }) => i.path)).toContain(path);
    expect(body.message).toContain(`${path}: `);
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("counts an address once across to, cc and bcc: 50 distinct among more entries are allowed", async () => {
    const fifty = Array.from({ length: 50 }, () => uniqueRecipient("many"));
    const { res } = await post({ to: fifty.slice(0, 30), cc: fifty.slice(20, 40), bcc: fifty.slice(30), subject: "Fifty", text: "x", scheduled_at: new Date(Date.now() + 3600_000).toISOString() });
    expect(res.status).toBe(202);
  });
});
