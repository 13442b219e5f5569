// The largest message the API accepts is storable: D1 refuses a row over 2 MB, and two 256 KiB CJK bodies
// (3 bytes a character), inline attachments just under the R2 threshold, long CJK names and 20 headers of
// 900 characters are more than that. Such a message keeps its attachments in R2, and is accepted and sent.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MAX_ATTACHMENTS, MAX_BODY_CHARS, MAX_HEADER_VALUE_CHARS, MAX_HEADERS, MAX_RECIPIENTS, MAX_SUBJECT_LENGTH, MAX_TAGS } from "../../src/core/schema";
import { INLINE_ATTACHMENT_BYTES } from "../../src/store/attachment-objects";
import { api, uniqueRecipient } from "../helpers/api";

const base64 = (bytes: number) => btoa(String.fromCharCode(...new Uint8Array(bytes).map((_, i) => i % 251)));

describe("the largest valid message", () => {
  it("is stored (attachments in R2 when the row would pass D1's 2 MB) and answered 202", async () => {
    const to = uniqueRecipient("largest");
    const name = "張".repeat(200);
    const headers = Object.fromEntries(Array.from({ length: MAX_HEADERS }, (_, i) => [`X-Big-${i}`, "標".repeat(MAX_HEADER_VALUE_CHARS)]));
    const chunk = Math.floor((INLINE_ATTACHMENT_BYTES - 1024) / MAX_ATTACHMENTS);
    const attachments = Array.from({ length: MAX_ATTACHMENTS }, (_, i) => ({ filename: `${"文".repeat(245)}-${i}.bin`, content: base64(chunk) }));
    const cc = Array.from({ length: MAX_RECIPIENTS - 1 }, (_, i) => `${name} <cc${i}-${to}>`);
    const tags = Array.from({ length: MAX_TAGS }, (_, i) => ({ name: `${i}`.padEnd(256, "n"), value: "v".repeat(256) }));
    const res = await api("/v1/emails", {
      method: "POST",
      json: { from: `${name} <noreply@mailroom.test>`, to: `${name} <${to}>`, cc, tags, reply_to: `${name} <reply@mailroom.test>`, subject: "題".repeat(MAX_SUBJECT_LENGTH), text: "漢".repeat(MAX_BODY_CHARS), html: "字".repeat(MAX_BODY_CHARS), headers, attachments, scheduled_at: new Date(Date.now() + 3600_000).toISOString() },
    });
    expect(res.status).toBe(202);
    const { id } = await res.json<{ id: string }>();
    const row = await env.DB.prepare("SELECT attachments_key, attachments_json, length(CAST(text_body AS BLOB)) AS text_bytes FROM messages WHERE id = ?").bind(id).first<{ attachments_key: string | null; attachments_json: string; text_bytes: number }>();
    expect(row).toMatchObject({ attachments_key: expect.any(String), attachments_json: "[]", text_bytes: MAX_BODY_CHARS * 3 });
    // What D1 limits: the row, every column of it, under 2,000,000 bytes.
    const columns = await env.DB.prepare("SELECT name FROM pragma_table_info('messages')").all<{ name: string }>();
    const sum = columns.results.map(({ name }) => `coalesce(length(CAST(${name} AS BLOB)), 0)`).join(" + ");
    const { bytes } = (await env.DB.prepare(`SELECT ${sum} AS bytes FROM messages WHERE id = ?`).bind(id).first<{ bytes: number }>())!;
    expect(bytes).toBeGreaterThan(1_500_000);
    expect(bytes).toBeLessThan(2_000_000);
    expect((await api(`/v1/emails/${id}`)).status).toBe(200);
  });
});
