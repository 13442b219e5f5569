// Attachments through the real API, queue and SMTP server: binary content arrives byte-identical, file
// names of any kind (quotes, semicolons, non-ASCII, very long) arrive as sent (RFC 2231 where needed),
// a content_id makes an inline part; `path` (a URL to fetch), bad base64, control characters in a name,
// too many or too large attachments are refused with 422, and nothing is stored, queued or sent. Large
// attachments (R2) are in large-attachments-integration.test.ts.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MAX_ATTACHMENT_BYTES } from "../../src/core/schema";
import { messageRowsFor, postCounted, uniqueRecipient, waitForMail } from "../helpers/api";
import { base64, binary, sha256 } from "../helpers/files";

describe("attachments", () => {
  it("delivers binary files byte-identical, with their names and types, and an inline part for a content_id", async () => {
    const to = uniqueRecipient("attach");
    const [pdf, png, csv] = [binary(40_000), binary(3_000), new TextEncoder().encode("a,b\r\n1,2\r\n.\r\n")];
    const names = ['Bericht – März 2026 "final"; v2.pdf', `x${"長い名前".repeat(30)}.png`, "data.csv"];
    const { res } = await postCounted(
      JSON.stringify({
        to,
        subject: "Files",
        html: '<p>See the chart: <img src="cid:chart-1@mailroom.test"></p>',
        attachments: [
          { filename: names[0], content: base64(pdf) },
          { filename: names[1], content: base64(png), content_type: "image/png", content_id: "chart-1@mailroom.test" },
          { filename: names[2], content: base64(csv) },
        ],
      }),
    );
    expect(res.status).toBe(202);
    const [mail] = await waitForMail(to);
    expect(mail!.attachments).toEqual([
      { filename: names[0], contentType: "application/pdf", disposition: "attachment", contentId: null, size: pdf.length, sha256: await sha256(pdf) },
      { filename: names[1], contentType: "image/png", disposition: "inline", contentId: "chart-1@mailroom.test", size: png.length, sha256: await sha256(png) },
      { filename: names[2], contentType: "text/csv", disposition: "attachment", contentId: null, size: csv.length, sha256: await sha256(csv) },
    ]);
    expect(mail!.raw.split("\r\n").every((line) => line.length <= 998)).toBe(true);
    // RFC 2231 §4.1: each continued segment is percent-encoded on its own, so none may end inside a %XX.
    const segments = [...mail!.raw.matchAll(/filename\*\d+\*=(?:UTF-8'')?([^;\r\n]*)/g)].map((m) => m[1]!);
    expect(segments.length).toBeGreaterThan(2);
    for (const segment of segments) expect(segment).toMatch(/^(?:[^%]|%[0-9A-F]{2})*$/);
    expect(mail!.raw.replace(/\r\n/g, "")).not.toMatch(/[\r\n]/);
  });

  it.each([
    ["a path (a URL to fetch)", { filename: "a.pdf", content: "QUJD", path: "https://example.com/a.pdf" }, "attachments.0.path"],
    ["no content", { filename: "a.pdf" }, "attachments.0.content"],
    ["content that is not base64", { filename: "a.pdf", content: "not base64!" }, "attachments.0.content"],
    ["base64 with a line break", { filename: "a.pdf", content: "QUJD\r\nQUJD" }, "attachments.0.content"],
    ["base64 without its padding", { filename: "a.pdf", content: "QUJDRA" }, "attachments.0.content"],
    ["a CR/LF in the file name", { filename: 'a.pdf"\r\nContent-Type: text/html', content: "QUJD" }, "attachments.0.filename"],
    ["a NUL in the file name", { filename: "a\u0000.pdf", content: "QUJD" }, "attachments.0.filename"],
    ["an empty file name", { filename: "", content: "QUJD" }, "attachments.0.filename"],
    ["a content_type with a line break", { filename: "a.pdf", content: "QUJD", content_type: "text/html\r\nX-Injected: 1" }, "attachments.0.content_type"],
    ["a content_id with angle brackets", { filename: "a.png", content: "QUJD", content_id: "<x>" }, "attachments.0.content_id"],
  ])("refuses an attachment with %s: 422 naming the field, nothing stored or queued", async (_name, item, path) => {
    const to = uniqueRecipient("badattach");
    const { res, body, enqueued } = await postCounted(JSON.stringify({ to, subject: "Files", text: "x", attachments: [item] }));
    expect(res.status).toBe(422);
    expect(body.error.issues.map((i: { path: string }) => i.path)).toContain(path);
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
  });

  it.each([
    ["11 attachments", Array.from({ length: 11 }, (_, i) => ({ filename: `f${i}.txt`, content: "QUJD" }))],
    ["more than 5 MiB in all, decoded", [{ filename: "a.bin", content: base64(binary(MAX_ATTACHMENT_BYTES / 2)) }, { filename: "b.bin", content: base64(binary(MAX_ATTACHMENT_BYTES / 2 + 1)) }]],
  ])("refuses %s: 422, nothing stored (D1 or R2) or queued", async (_name, items) => {
    const to = uniqueRecipient("manyattach");
    const objects = async () => (await env.ATTACHMENTS.list({ prefix: "attachments/" })).objects.length;
    const before = await objects();
    const { res, body, enqueued } = await postCounted(JSON.stringify({ to, subject: "Files", text: "x", attachments: items }));
    expect(res.status).toBe(422);
    expect(body.error.issues.map((i: { path: string }) => i.path)).toContain("attachments");
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
    expect(await objects()).toBe(before);
  });
});
