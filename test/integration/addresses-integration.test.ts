// Addresses at their limits, through the real API, queue and SMTP server: RFC 5321's lengths are the
// boundary between 202 and 422, IDNs travel as punycode, a non-ASCII local part is refused (no SMTPUTF8),
// and display names full of quotes, commas, semicolons or non-ASCII letters arrive as exactly one
// mailbox each, as a mail client parses the headers. A refused address stores, queues and sends nothing.
import { describe, expect, it } from "vitest";
import { api, messageRowsFor, waitForMail } from "../helpers/api";

const unique = () => crypto.randomUUID().slice(0, 8);

async function delivered(to: string) {
  const [mail, ...more] = await waitForMail(to);
  expect(more).toHaveLength(0);
  return mail!;
}

describe("addresses", () => {
  it("delivers to a 64-octet local part", async () => {
    const to = `${unique()}${"a".repeat(56)}@example.com`;
    const res = await api("/v1/emails", { method: "POST", json: { to, subject: "At the limit", text: "x" } });
    expect(res.status).toBe(202);
    expect((await delivered(to)).envelope.to).toEqual([to]);
  });

  it("accepts a 254-octet address, the most RFC 5321 allows", async () => {
    // (Not delivered here: the test relay, smtp-server, refuses anything over 253.)
    const to = `${unique()}@${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}.${"e".repeat(45)}.example`;
    expect(to.length).toBe(254);
    const res = await api("/v1/emails", { method: "POST", json: { to, subject: "At the limit", text: "x", scheduled_at: new Date(Date.now() + 3600_000).toISOString() } });
    expect(res.status).toBe(202);
    const { id } = await res.json<{ id: string }>();
    const view = await (await api(`/v1/emails/${id}`)).json<{ recipients: { address: string }[] }>();
    expect(view.recipients.map((r) => r.address)).toEqual([to]);
    expect((await api(`/v1/emails/${id}/cancel`, { method: "POST" })).status).toBe(200);
  });

  it("sends to an IDN domain as punycode, in the envelope and in the header", async () => {
    const local = `idn-${unique()}`;
    const res = await api("/v1/emails", { method: "POST", json: { to: `Jürgen <${local}@Bücher.example>`, subject: "IDN", text: "x" } });
    expect(res.status).toBe(202);
    const { id } = await res.json<{ id: string }>();
    const view = await (await api(`/v1/emails/${id}`)).json<{ to: string[]; recipients: { address: string }[] }>();
    expect(view.recipients.map((r) => r.address)).toEqual([`${local}@xn--bcher-kva.example`]);
    expect(view.to).toEqual([`Jürgen <${local}@xn--bcher-kva.example>`]);
    // smtp-server shows the envelope's punycode domain decoded; the raw header is as it went out.
    const mail = await delivered(`${local}@bücher.example`);
    expect(mail.raw).toMatch(new RegExp(`^To: .*<${local}@xn--bcher-kva\\.example>\r$`, "m"));
  });

  it.each([
    ["a 65-octet local part", () => `${unique()}${"a".repeat(57)}@example.com`, "invalid local part"],
    ["a 255-octet address", () => `${unique()}@${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(63)}.${"e".repeat(46)}.example`, "longer than 254"],
    ["a 64-octet domain label", () => `${unique()}@${"b".repeat(64)}.example`, "invalid domain"],
    ["a non-ASCII local part (no SMTPUTF8)", () => `jürgen-${unique()}@example.com`, "invalid local part"],
    ["a NUL in the display name", () => `Eve\u0000 <eve-${unique()}@example.com>`, "control character"],
    ["a line break in the display name", () => `Eve\r\nBcc: x@evil.example <eve-${unique()}@example.com>`, "line break"],
    ["a line break in the address", () => `eve-${unique()}@example.com\r\nRCPT TO:<x@evil.example>`, "line break"],
  ])("refuses %s with 422 naming the field, and stores nothing", async (_name, make, error) => {
    const to = make();
    const res = await api("/v1/emails", { method: "POST", json: { to, subject: "Refused", text: "x" } });
    expect(res.status).toBe(422);
    const body = await res.json<{ message: string; error: { issues: { path: string; message: string }[] } }>();
    expect(body.error.issues).toEqual([{ path: "to.0", message: expect.stringContaining(error) }]);
    expect(body.message).toContain("to.0: ");
    expect(await messageRowsFor(to.replace(/[\r\n\u0000]/g, "").slice(0, 40))).toBe(0);
  });

  it("delivers display names with quotes, commas, semicolons and non-ASCII letters as exactly one mailbox each", async () => {
    const [a, b, c] = [`quotes-${unique()}@example.com`, `umlauts-${unique()}@example.com`, `comma-${unique()}@example.com`];
    const names = ['Doe, Jane; "JJ" \\ Jr.', "Zoë Müller, Ünïcode; 山田", "O'Brien; Sales, EMEA"];
    const res = await api("/v1/emails", {
      method: "POST",
      json: { to: [`"${names[0]!.replace(/["\\]/g, "\\$&")}" <${a}>`, `${names[1]} <${b}>`], cc: `${names[2]} <${c}>`, subject: "Names", text: "x" },
    });
    expect(res.status).toBe(202);
    const mail = await delivered(a);
    expect(mail.toMailboxes).toEqual([
      { name: names[0], address: a },
      { name: names[1], address: b },
    ]);
    expect(mail.ccMailboxes).toEqual([{ name: names[2], address: c }]);
  });
});
