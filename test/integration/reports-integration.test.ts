// Reports coming back through the Worker's real email() handler: mail is sent through the real consumer to
// the real inbox with per-message return paths, then the reports MTAs send (DSNs, ARF, plain bounces) are
// handed to email() as Email Routing hands them, and what they change is read back through the API and the
// webhooks they make. Forged, foreign, case-folded and replayed tokens, recipients that are not the
// message's, and a D1 that refuses the write are tried on purpose.
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import { envelopeIdFor, returnPathFor } from "../../src/core/return-path";
import { api, HOOKS_KEY, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage } from "../helpers/factories";
import { bounce, BOUNCES, handReport } from "../helpers/reports";
import { createWebhook, newEndpoint, receivedBy } from "../helpers/webhooks";
import { arfComplaint, FAILURE_DSNS, plainBounce, postfixBounce, postfixDelay, postfixSuccess } from "../fixtures/reports";

/** The real email() handler, with `overrides` of the env and the SMTP sender `from`. */
const report = (raw: string, to: string, overrides: Partial<Record<keyof Env, unknown>> = {}, from?: string) => handReport(raw, to, { overrides, from });

type EmailView = {
  status: string;
  last_event: string;
  recipients: { address: string; status: string; smtp_code: number | null; detail: string | null }[];
  events: { type: string; recipient: string | null; smtp_code: number | null; detail: string | null }[];
};
const view = async (id: string) => (await api(`/v1/emails/${id}`, { key: HOOKS_KEY })).json<EmailView>();


/** A message of the hooks key to `to`, delivered with return paths; its id, and the return path. */
async function deliveredTo(to: string[]) {
  const { id } = await insertQueuedMessage({ to, apiKeyName: "hooks" });
  await deliver([id], BOUNCES);
  return { id, returnPath: await returnPathFor(id, bounce) };
}

const created: string[] = [];
afterEach(async () => {
  for (const id of created.splice(0)) await api(`/v1/webhooks/${id}`, { method: "DELETE", key: HOOKS_KEY });
});

async function subscribe(events: string[]) {
  const endpoint = newEndpoint("reports");
  const webhook = await createWebhook(endpoint.url, events, HOOKS_KEY);
  created.push(webhook.id);
  return { ...endpoint, ...webhook };
}

const payloads = async (hook: { name: string; signing_secret: string }, count: number) =>
  (await receivedBy(hook.name, count)).map((d) => new Webhook(hook.signing_secret).verify(d.body, Object.fromEntries(Object.entries(d.headers).map(([k, v]) => [k, String(v)]))) as { type: string; data: Record<string, any> });

describe("reports through the email() handler", () => {
  it("records a DSN's failure as a bounce of that recipient, with its status and diagnostic, and sends email.bounced", async () => {
    const hook = await subscribe(["email.bounced"]);
    const [gone, fine] = [uniqueRecipient("gone"), uniqueRecipient("fine")];
    const { id, returnPath } = await deliveredTo([gone, fine]);
    const envelopeId = await envelopeIdFor(id, bounce.secret);
    expect(await report(postfixBounce({ to: returnPath, recipient: gone, envelopeId }), returnPath)).toEqual({});
    const email = await view(id);
    expect(email.status).toBe("sent");
    expect(email.last_event).toBe("bounced");
    expect(email.recipients).toEqual([
      { address: gone, status: "bounced", smtp_code: 550, detail: expect.stringMatching(/^a delivery status report said failed; Status 5\.1\.1; Diagnostic-Code: smtp; 550 5\.1\.1/) },
      { address: fine, status: "sent", smtp_code: 250, detail: expect.any(String) },
    ]);
    expect(email.events.at(-1)).toMatchObject({ type: "bounced", recipient: gone, smtp_code: 550 });
    const [event] = await payloads(hook, 1);
    expect(event).toMatchObject({ type: "email.bounced", data: { email_id: id, recipient: gone, bounce: { type: "Permanent", subType: "NoEmail" } } });
  });

  for (const [mta, build] of Object.entries(FAILURE_DSNS)) {
    it(`records ${mta}'s DSN`, async () => {
      const gone = uniqueRecipient(`gone-${mta}`);
      const { id, returnPath } = await deliveredTo([gone]);
      await report(build({ to: returnPath, recipient: gone }), returnPath);
      expect((await view(id)).recipients).toMatchObject([{ address: gone, status: "bounced", smtp_code: 550 }]);
    });
  }

  it("records a delay as deferred (the recipient stays sent) and a success report as delivered, with their webhooks", async () => {
    const hook = await subscribe(["email.delivery_delayed", "email.delivered"]);
    const to = uniqueRecipient("slow");
    const { id, returnPath } = await deliveredTo([to]);
    await report(postfixDelay({ to: returnPath, recipient: to }), returnPath);
    let email = await view(id);
    expect(email.recipients[0]!.status).toBe("sent");
    expect(email.events.at(-1)).toMatchObject({ type: "deferred", recipient: to });
    expect(email.last_event).toBe("delivery_delayed");
    await report(postfixSuccess({ to: returnPath, recipient: to }), returnPath);
    email = await view(id);
    expect(email.recipients[0]!.status).toBe("delivered");
    expect(email.last_event).toBe("delivered");
    expect((await payloads(hook, 2)).map((p) => [p.type, p.data.recipient])).toEqual([["email.delivery_delayed", to], ["email.delivered", to]]);
  });

  it("records an ARF complaint as complained, with email.complained", async () => {
    const hook = await subscribe(["email.complained"]);
    const to = uniqueRecipient("angry");
    const { id, returnPath } = await deliveredTo([to]);
    await report(arfComplaint({ to: returnPath, recipient: to }), returnPath);
    const email = await view(id);
    expect(email.recipients[0]).toMatchObject({ status: "complained", detail: "complaint (feedback type abuse)" });
    expect(email.last_event).toBe("complained");
    expect((await payloads(hook, 1))[0]).toMatchObject({ type: "email.complained", data: { email_id: id, recipient: to } });
  });

  it("records a plain-text bounce as undetermined, changing no recipient's status", async () => {
    const hook = await subscribe(["email.bounced"]);
    const to = uniqueRecipient("old");
    const { id, returnPath } = await deliveredTo([to]);
    await report(plainBounce({ to: returnPath, recipient: to }), returnPath);
    const email = await view(id);
    expect(email.recipients[0]!.status).toBe("sent");
    expect(email.events.at(-1)).toMatchObject({ type: "bounced", recipient: to, smtp_code: null });
    expect((await payloads(hook, 1))[0]!.data.bounce).toMatchObject({ type: "Undetermined", subType: "Undetermined" });
  });

  it("accepts a token whose case a relay changed", async () => {
    const gone = uniqueRecipient("case");
    const { id, returnPath } = await deliveredTo([gone]);
    const shouted = returnPath.toUpperCase();
    await report(postfixBounce({ to: shouted, recipient: gone.toUpperCase() }), shouted);
    expect((await view(id)).recipients[0]!.status).toBe("bounced");
  });

  it("changes nothing for a forged token, a report about someone else, another message's envelope id, or the same report again", async () => {
    const gone = uniqueRecipient("twice");
    const { id, returnPath } = await deliveredTo([gone]);
    const before = await view(id);
    const [local, domain] = returnPath.split("@") as [string, string];
    const forged = `${local.slice(0, 20)}${local[20] === "a" ? "b" : "a"}${local.slice(21)}@${domain}`;
    expect(await report(postfixBounce({ to: forged, recipient: gone }), forged)).toEqual({});
    expect(await report(postfixBounce({ to: returnPath, recipient: "stranger@example.com" }), returnPath)).toEqual({});
    await report(postfixBounce({ to: returnPath, recipient: gone, envelopeId: crypto.randomUUID() }), returnPath);
    expect(await view(id)).toEqual(before);

    await report(postfixBounce({ to: returnPath, recipient: gone }), returnPath);
    const once = await view(id);
    expect(once.events.filter((e) => e.type === "bounced")).toHaveLength(1);
    await report(postfixBounce({ to: returnPath, recipient: gone }), returnPath);
    expect(await view(id)).toEqual(once);
  });

  it("asks the sending MTA to try again when a report comes before the attempt's own record", async () => {
    const gone = uniqueRecipient("early");
    const { id } = await insertQueuedMessage({ to: [gone], apiKeyName: "hooks" });
    const returnPath = await returnPathFor(id, bounce);
    await expect(report(postfixBounce({ to: returnPath, recipient: gone }), returnPath)).rejects.toThrow(/not recorded as sent yet/);
    await deliver([id], BOUNCES);
    await report(postfixBounce({ to: returnPath, recipient: gone }), returnPath);
    expect((await view(id)).recipients[0]!.status).toBe("bounced");
  });

  it("asks again for a DSN that comes while the recipient waits after a lost reply, and applies it once the mail is sent", async () => {
    const busy = uniqueRecipient("busy"); // the inbox answers 452 once, then takes it
    const { id } = await insertQueuedMessage({ to: [busy], apiKeyName: "hooks" });
    await deliver([id], BOUNCES);
    expect((await view(id)).recipients[0]!.status).toBe("deferred");
    const returnPath = await returnPathFor(id, bounce);
    const dsn = postfixBounce({ to: returnPath, recipient: busy, envelopeId: await envelopeIdFor(id, bounce.secret) });
    await expect(report(dsn, returnPath)).rejects.toThrow(/not recorded as sent yet/);
    await deliver([id], BOUNCES);
    await report(dsn, returnPath);
    expect((await view(id)).recipients[0]!.status).toBe("bounced");
    expect(await (await api(`/v1/suppressions/${encodeURIComponent(busy)}`, { key: HOOKS_KEY })).json()).toMatchObject({ origin: "bounce", source_id: id });
  });

  it("lets only a DSN with the secret envelope id suppress a recipient of a mail to several; ignores an auto-reply", async () => {
    const [a, b] = [uniqueRecipient("several-a"), uniqueRecipient("several-b")];
    const { id, returnPath } = await deliveredTo([a, b]);
    await report(postfixBounce({ to: returnPath, recipient: a }), returnPath); // no ENVID: recorded, not suppressed
    await report(arfComplaint({ to: returnPath, recipient: b }), returnPath); // b's complaint, which a could have sent
    await report(`From: ${a}\r\nTo: ${returnPath}\r\nSubject: Out of office\r\nMessage-ID: <ooo@example.com>\r\n\r\nAway.\r\n`, returnPath, {}, a);
    const email = await view(id);
    expect(email.recipients.map((r) => r.status)).toEqual(["bounced", "complained"]);
    expect(email.events.filter((e) => e.type === "bounced")).toHaveLength(1);
    for (const address of [a, b]) expect((await api(`/v1/suppressions/${encodeURIComponent(address)}`, { key: HOOKS_KEY })).status).toBe(404);
    const [c, d] = [uniqueRecipient("several-c"), uniqueRecipient("several-d")];
    const second = await deliveredTo([c, d]);
    await report(postfixBounce({ to: second.returnPath, recipient: c, envelopeId: await envelopeIdFor(second.id, bounce.secret) }), second.returnPath);
    expect(await (await api(`/v1/suppressions/${encodeURIComponent(c)}`, { key: HOOKS_KEY })).json()).toMatchObject({ origin: "bounce", source_id: second.id });
  });

  it("refuses mail to any other address, and everything when no BOUNCE_ADDRESS is set", async () => {
    expect(await report(postfixBounce({ to: "postmaster@bounce.mailroom.test", recipient: "a@example.com" }), "postmaster@bounce.mailroom.test")).toEqual({ rejected: "5.1.1 no such mailbox" });
    expect(await report(postfixBounce({ to: "x@elsewhere.example", recipient: "a@example.com" }), "x@elsewhere.example")).toEqual({ rejected: "5.1.1 no such mailbox" });
    expect(await report("Subject: hi\r\n\r\nhello", "bounces@bounce.mailroom.test", { BOUNCE_ADDRESS: "" })).toEqual({ rejected: "5.1.1 this address does not accept mail" });
  });

  it("refuses a report larger than 1 MiB without reading it", async () => {
    const gone = uniqueRecipient("big");
    const { id, returnPath } = await deliveredTo([gone]);
    const big = postfixBounce({ to: returnPath, recipient: gone }) + "x".repeat(1024 * 1024);
    expect((await report(big, returnPath)).rejected).toMatch(/^5\.3\.4 reports are at most/);
    expect((await view(id)).recipients[0]!.status).toBe("sent");
  });

  it("fails when D1 refuses the write, so the sending MTA tries again; the retry is recorded once", async () => {
    const gone = uniqueRecipient("retry");
    const { id, returnPath } = await deliveredTo([gone]);
    const refusing = { prepare: (sql: string) => env.DB.prepare(sql), batch: () => Promise.reject(new Error("D1_ERROR: Network connection lost.")) } as unknown as D1Database;
    await expect(report(postfixBounce({ to: returnPath, recipient: gone }), returnPath, { DB: refusing })).rejects.toThrow(/Network connection lost/);
    expect((await view(id)).recipients[0]!.status).toBe("sent");
    await report(postfixBounce({ to: returnPath, recipient: gone }), returnPath);
    expect((await view(id)).events.filter((e) => e.type === "bounced")).toHaveLength(1);
  });
});
