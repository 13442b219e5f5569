// API keys as tenants: a key reads, moves and cancels only the messages it sent (another key's message is a
// 404 exactly like an unknown one), a key with sender domains sends only from them (403 otherwise, nothing
// stored, queued or sent), and a key is taken only from the Authorization header.
import { describe, expect, it } from "vitest";
import { API_KEY, OTHER_KEY, SCOPED_KEY, api, inboxMessages, messageRowsFor, postCounted, uniqueRecipient } from "../helpers/api";

const send = (key: string, json: Record<string, unknown>, environment: Partial<Env> = {}) => postCounted(JSON.stringify(json), { key, environment });

const inAnHour = () => new Date(Date.now() + 3600_000).toISOString();

describe("each key sees only its own messages", () => {
  it("answers another key's message exactly as an unknown one, for GET, PATCH and cancel, and leaves it alone", async () => {
    const to = uniqueRecipient("tenant");
    const sent = await send(API_KEY, { to, subject: "Mine", text: "x", scheduled_at: inAnHour() });
    expect(sent.res.status).toBe(202);
    const id = sent.body.id as string;
    const unknown = crypto.randomUUID();
    const asUnknown = async (res: Response) => JSON.stringify(await res.json()).replaceAll(unknown, "<id>");
    const asTheirs = async (res: Response) => JSON.stringify(await res.json()).replaceAll(id, "<id>");

    const calls: [string, RequestInit & { json?: unknown }][] = [
      ["", {}],
      ["", { method: "PATCH", json: { scheduled_at: inAnHour() } }],
      ["/cancel", { method: "POST" }],
    ];
    for (const [suffix, init] of calls) {
      const theirs = await api(`/v1/emails/${id}${suffix}`, { ...init, key: OTHER_KEY });
      const nobody = await api(`/v1/emails/${unknown}${suffix}`, { ...init, key: OTHER_KEY });
      expect([theirs.status, nobody.status]).toEqual([404, 404]);
      expect(await asTheirs(theirs)).toBe(await asUnknown(nobody));
    }

    const mine = await api(`/v1/emails/${id}`);
    expect(mine.status).toBe(200);
    const view = await mine.json<{ status: string; events: { type: string }[] }>();
    expect(view.status).toBe("scheduled");
    expect(view.events.map((e) => e.type)).toEqual(["accepted"]); // neither moved nor canceled by the other key
    expect((await api(`/v1/emails/${id}/cancel`, { method: "POST" })).status).toBe(200);
  });
});

describe("sender domains", () => {
  it.each([
    ["an address at one of its domains", "App <noreply@mailroom.test>"],
    ["another letter case of a domain", "ops@EXAMPLE.org"],
    ["no from (MAIL_FROM, at one of its domains)", undefined],
  ])("lets a scoped key send from %s", async (_name, from) => {
    const to = uniqueRecipient("scoped");
    const { res, enqueued } = await send(SCOPED_KEY, { from, to, subject: "Scoped", text: "x" });
    expect(res.status).toBe(202);
    expect(enqueued).toBe(1);
  });

  it.each([
    ["a domain it was not given", "Eve <eve@evil.example>", {}],
    ["a subdomain of one of its domains", "news@mail.mailroom.test", {}],
    ["MAIL_FROM, when that is outside its domains", undefined, { MAIL_FROM: "Ops <ops@elsewhere.example>" }],
  ])("refuses a scoped key sending from %s: 403, nothing stored, queued or sent", async (_name, from, environment) => {
    const to = uniqueRecipient("forbidden");
    const { res, body, enqueued } = await send(SCOPED_KEY, { from, to, subject: "Not mine to send", text: "x" }, environment);
    expect(res.status).toBe(403);
    expect(body).toEqual({
      statusCode: 403,
      name: "forbidden",
      message: expect.stringMatching(/^this API key may send only from mailroom\.test, example\.org/),
      error: { code: "forbidden", message: body.message },
    });
    expect(enqueued).toBe(0);
    expect(await messageRowsFor(to)).toBe(0);
    expect(await inboxMessages(to)).toHaveLength(0);
  });

  it("lets a key without sender domains send from anywhere", async () => {
    const { res } = await send(OTHER_KEY, { from: "someone@anywhere.example", to: uniqueRecipient("free"), subject: "Free", text: "x" });
    expect(res.status).toBe(202);
  });
});

describe("where a key may come from", () => {
  it.each([
    ["the query string (api_key)", "?api_key=test-key"],
    ["the query string (key)", "?key=test-key"],
    ["the query string (token)", "?token=test-key"],
  ])("never takes a key from %s", async (_name, query) => {
    const to = uniqueRecipient("query");
    const res = await api(`/v1/emails${query}`, { method: "POST", key: null, json: { to, subject: "x", text: "x" } });
    expect(res.status).toBe(401);
    expect(res.headers.get("WWW-Authenticate")).toBe("Bearer");
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("takes the scheme in any letter case (RFC 7235 §2.1)", async () => {
    const res = await api("/v1/emails", { method: "POST", headers: { Authorization: `bearer ${API_KEY}` }, json: { to: uniqueRecipient("case"), subject: "x", text: "x" } });
    expect(res.status).toBe(202);
  });
});
