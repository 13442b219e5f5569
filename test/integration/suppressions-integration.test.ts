// Suppression lists per API key, through the real API, the real consumer and inbox, and the real email()
// handler: Resend's suppressions API; addresses added by themselves on a refusal that says the address is
// bad (in the SMTP session or in a later DSN) and on a complaint, never on a policy refusal or a full
// mailbox; listed recipients skipped while the others are served; a message with nobody else failed
// without reaching the relay; suppression.added/removed and email.suppressed webhooks; lists kept apart.
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, inject, it } from "vitest";
import { envelopeIdFor, returnPathFor } from "../../src/core/return-path";
import { api, HOOKS_KEY, inboxMessages, OTHER_KEY, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage } from "../helpers/factories";
import { BOUNCES, handReport } from "../helpers/reports";
import { createWebhook, newEndpoint, receivedBy } from "../helpers/webhooks";
import { arfComplaint, postfixBounce } from "../fixtures/reports";

type Entry = { object?: string; id: string; email: string; origin: string; source_id: string | null; created_at: string };
type EmailView = { status: string; last_error: string | null; last_event: string; recipients: { address: string; status: string; detail: string | null }[]; events: { type: string; recipient: string | null }[] };

const suppressions = (path = "", init: Parameters<typeof api>[1] = {}) => api(`/v1/suppressions${path}`, { key: HOOKS_KEY, ...init });
const view = async (id: string) => (await api(`/v1/emails/${id}`, { key: HOOKS_KEY })).json<EmailView>();
const entry = async (email: string) => (await suppressions(`/${encodeURIComponent(email)}`)).json<Entry>();

const webhooks: string[] = [];
afterEach(async () => {
  for (const id of webhooks.splice(0)) await api(`/v1/webhooks/${id}`, { method: "DELETE", key: HOOKS_KEY });
});

const report = (raw: string, to: string) => handReport(raw, to);

describe("the suppressions API", () => {
  it("adds, reads (by id or address), lists, and removes entries, as Resend's SDK expects", async () => {
    const email = uniqueRecipient("manual");
    const added = await suppressions("", { method: "POST", json: { email } });
    expect(added.status).toBe(201);
    const { id } = await added.json<{ object: string; id: string }>();
    const again = await suppressions("", { method: "POST", json: { email: email.toUpperCase() } });
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ object: "suppression", id });
    expect(await entry(email.toUpperCase())).toEqual({ object: "suppression", id, email, origin: "manual", source_id: null, created_at: expect.any(String) });
    expect(await (await suppressions(`/${id}`)).json()).toMatchObject({ id, email });
    const list = await (await suppressions("?origin=manual&limit=100")).json<{ object: string; has_more: boolean; data: Entry[] }>();
    expect(list.object).toBe("list");
    expect(list.data).toContainEqual({ id, email, origin: "manual", source_id: null, created_at: expect.any(String) });
    expect((await (await suppressions("?origin=bounce&limit=100")).json<{ data: Entry[] }>()).data.map((e) => e.id)).not.toContain(id);
    expect(await (await suppressions(`/${encodeURIComponent(email)}`, { method: "DELETE" })).json()).toEqual({ object: "suppression", id, deleted: true });
    expect((await suppressions(`/${id}`)).status).toBe(404);
    expect((await suppressions(`/${id}`, { method: "DELETE" })).status).toBe(404);
  });

  it("adds and removes in batches, saying which were not listed", async () => {
    const [a, b, c] = [uniqueRecipient("ba"), uniqueRecipient("bb"), uniqueRecipient("bc")];
    const added = await (await suppressions("/batch/add", { method: "POST", json: { emails: [a, b] } })).json<{ data: { object: string; id: string }[] }>();
    expect(added.data).toHaveLength(2);
    const removed = await (await suppressions("/batch/remove", { method: "POST", json: { emails: [a, c] } })).json<{ data: { id: string; deleted: boolean }[] }>();
    expect(removed.data).toEqual([{ object: "suppression", id: added.data[0]!.id, deleted: true }, { object: "suppression", id: c, deleted: false }]);
    const byId = await (await suppressions("/batch/remove", { method: "POST", json: { ids: [added.data[1]!.id] } })).json<{ data: { deleted: boolean }[] }>();
    expect(byId.data[0]!.deleted).toBe(true);
  });

  it("refuses what is not a bare address, both emails and ids, and too many, changing nothing", async () => {
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM suppressions").first("n");
    for (const [path, json] of [
      ["", { email: "Ada <ada@example.com>" }],
      ["", { email: "not an address" }],
      ["", { email: "a@example.com", origin: "bounce" }],
      ["/batch/add", { emails: [] }],
      ["/batch/add", { emails: Array.from({ length: 101 }, (_, i) => `a${i}@example.com`) }],
      ["/batch/remove", { emails: ["a@example.com"], ids: ["x"] }],
    ] as const) {
      expect((await suppressions(path, { method: "POST", json })).status, JSON.stringify(json).slice(0, 80)).toBe(422);
    }
    expect((await suppressions("?origin=spam")).status).toBe(422);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM suppressions").first("n")).toBe(before);
  });

  it("keeps each key's list apart: another key sees none of it, and its mail is not suppressed", async () => {
    const email = uniqueRecipient("apart");
    await suppressions("", { method: "POST", json: { email } });
    expect((await api(`/v1/suppressions/${encodeURIComponent(email)}`, { key: OTHER_KEY })).status).toBe(404);
    const res = await api("/v1/emails", { method: "POST", key: OTHER_KEY, json: { to: email, subject: "theirs", text: "x" } });
    expect(res.status).toBe(202);
    const [mail] = await (async () => {
      for (let i = 0; i < 200; i++) {
        const got = await inboxMessages(email);
        if (got.length) return got;
        await new Promise((r) => setTimeout(r, 20));
      }
      return [];
    })();
    expect(mail?.envelope.to).toEqual([email]);
  });
});

describe("suppressions in delivery", () => {
  it("skips a listed recipient (suppressed, email.suppressed) and serves the others", async () => {
    const endpoint = newEndpoint("supp");
    const hook = await createWebhook(endpoint.url, ["email.suppressed"], HOOKS_KEY);
    webhooks.push(hook.id);
    const [listed, fine] = [uniqueRecipient("listed"), uniqueRecipient("fine")];
    await suppressions("", { method: "POST", json: { email: listed } });
    const { id } = await insertQueuedMessage({ to: [listed, fine], apiKeyName: "hooks" });
    await deliver([id]);
    expect((await inboxMessages(fine))[0]!.envelope.to).toEqual([fine]);
    expect(await inboxMessages(listed)).toEqual([]);
    const email = await view(id);
    expect(email.status).toBe("sent");
    expect(email.recipients).toMatchObject([{ address: listed, status: "suppressed", detail: "not sent: the address is on the suppression list (manual)" }, { address: fine, status: "sent" }]);
    const [delivery] = await receivedBy(endpoint.name, 1);
    const payload = new Webhook(hook.signing_secret).verify(delivery!.body, Object.fromEntries(Object.entries(delivery!.headers).map(([k, v]) => [k, String(v)]))) as { type: string; data: Record<string, any> };
    expect(payload).toMatchObject({ type: "email.suppressed", data: { email_id: id, recipient: listed, suppressed: { type: "OnAccountSuppressionList" } } });
  });

  it("fails a message whose every recipient is listed, saying so, without reaching the relay", async () => {
    const listed = uniqueRecipient("only");
    await suppressions("", { method: "POST", json: { email: listed } });
    const gate = await (await fetch(`http://127.0.0.1:${inject("smtp").gate.controlPort}/gate/open`)).json<{ connections: number }>();
    const { id } = await insertQueuedMessage({ to: [listed], apiKeyName: "hooks" });
    await deliver([id]);
    const email = await view(id);
    expect(email).toMatchObject({ status: "failed", last_error: "not sent: every recipient is on the suppression list; nothing went to the relay", last_event: "failed" });
    expect(email.events.map((e) => e.type)).toEqual(["accepted", "suppressed", "failed"]);
    expect((await (await fetch(`http://127.0.0.1:${inject("smtp").gate.controlPort}/gate/open`)).json<{ connections: number }>()).connections).toEqual(gate.connections);
  });

  it("lists an address the relay refused as unknown (5.1.1), with the email as its source, and sends suppression.added", async () => {
    const endpoint = newEndpoint("added");
    const hook = await createWebhook(endpoint.url, ["suppression.added", "suppression.removed"], HOOKS_KEY);
    webhooks.push(hook.id);
    const gone = uniqueRecipient("reject"); // the inbox answers 550 5.1.1
    const { id } = await insertQueuedMessage({ to: [gone], apiKeyName: "hooks" });
    await deliver([id]);
    const listed = await entry(gone);
    expect(listed).toMatchObject({ email: gone, origin: "bounce", source_id: id });
    await suppressions(`/${listed.id}`, { method: "DELETE" });
    const payloads = (await receivedBy(endpoint.name, 2)).map((d) => JSON.parse(d.body) as { type: string; data: Entry });
    expect(payloads.map((p) => [p.type, p.data.id, p.data.email, p.data.origin, p.data.source_id])).toEqual([
      ["suppression.added", listed.id, gone, "bounce", id],
      ["suppression.removed", listed.id, gone, "bounce", id],
    ]);
  });

  it("does not list an address refused for its content (5.6.0) or temporarily", async () => {
    const [content, busy] = [uniqueRecipient("data554"), uniqueRecipient("tempfail")];
    const first = await insertQueuedMessage({ to: [content], apiKeyName: "hooks" });
    await deliver([first.id], { SMTP_PORT: String(inject("smtp").dataPolicy.smtpPort) });
    const second = await insertQueuedMessage({ to: [busy], apiKeyName: "hooks" });
    await deliver([second.id]);
    expect((await view(first.id)).recipients[0]!.status).toBe("bounced");
    for (const address of [content, busy]) expect((await suppressions(`/${encodeURIComponent(address)}`)).status).toBe(404);
  });

  it("lists an address a later DSN reports unknown, and one that complained; not one reported with a full mailbox", async () => {
    const [gone, full, angry] = [uniqueRecipient("dsn-gone"), uniqueRecipient("full"), uniqueRecipient("angry")];
    const { id } = await insertQueuedMessage({ to: [gone, full], apiKeyName: "hooks" });
    await deliver([id], BOUNCES);
    const secret = BOUNCES.BOUNCE_SECRET;
    const returnPath = await returnPathFor(id, { bounceAddress: BOUNCES.BOUNCE_ADDRESS, secret });
    const envelopeId = await envelopeIdFor(id, secret);
    await report(postfixBounce({ to: returnPath, recipient: gone, envelopeId }), returnPath);
    await report(postfixBounce({ to: returnPath, recipient: full, envelopeId }).replace(/5\.1\.1/g, "5.2.2"), returnPath);
    const single = await insertQueuedMessage({ to: [angry], apiKeyName: "hooks" });
    await deliver([single.id], BOUNCES);
    const singlePath = await returnPathFor(single.id, { bounceAddress: BOUNCES.BOUNCE_ADDRESS, secret });
    await report(arfComplaint({ to: singlePath, recipient: angry }), singlePath);
    expect(await entry(gone)).toMatchObject({ origin: "bounce", source_id: id });
    expect(await entry(angry)).toMatchObject({ origin: "complaint", source_id: single.id });
    expect((await suppressions(`/${encodeURIComponent(full)}`)).status).toBe(404);
    expect((await view(id)).recipients.map((r) => r.status)).toEqual(["bounced", "bounced"]);
  });
});
