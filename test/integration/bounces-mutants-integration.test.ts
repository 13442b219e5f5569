// The edges of bounces, complaints and suppression lists that the other integration tests leave open, each
// pinned by a case a mutation pass found unguarded, through the real email() handler, API, consumer and
// D1: an envelope id a relay upper-cased, the report size limit (declared and actual), which status a
// report may move a recipient from, what makes two reports the same one, a suppression removed by hand
// that a repeated report must not bring back, suppression events only once and only to enabled webhooks
// subscribed to them, suppressed recipients on a retry and in another case, the claim's byte budget at
// its edge and its query plan, and the suppressions API's limits.
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it } from "vitest";
import { envelopeIdFor, returnPathFor } from "../../src/core/return-path";
import { MAX_REPORT_BYTES } from "../../src/delivery/reports";
import { claimMessages } from "../../src/store/attempts";
import { api, HOOKS_KEY, inboxMessages, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage } from "../helpers/factories";
import { bounce, BOUNCES, handReport } from "../helpers/reports";
import { createWebhook, newEndpoint } from "../helpers/webhooks";
import { arfComplaint, FAILURE_DSNS, postfixBounce, postfixDelay, postfixSuccess } from "../fixtures/reports";

const report = (raw: string, to: string, { rawSize }: { rawSize?: number } = {}) => handReport(raw, to, { rawSize });

type EmailView = {
  status: string;
  last_error: string | null;
  recipients: { address: string; status: string }[];
  events: { type: string; recipient: string | null; detail: string | null }[];
};
const view = async (id: string, key = HOOKS_KEY) => (await api(`/v1/emails/${id}`, { key })).json<EmailView>();
const suppressions = (path = "", init: Parameters<typeof api>[1] = {}) => api(`/v1/suppressions${path}`, { key: HOOKS_KEY, ...init });
const listed = async (email: string) => (await suppressions(`/${encodeURIComponent(email)}`)).status === 200;
const eventsOf = async (id: string, type: string) => (await view(id)).events.filter((e) => e.type === type);


/** A message of the hooks key to `to`, delivered with return paths; its id, return path and envelope id. */
async function deliveredTo(to: string[]) {
  const { id } = await insertQueuedMessage({ to, apiKeyName: "hooks" });
  await deliver([id], BOUNCES);
  return { id, returnPath: await returnPathFor(id, bounce), envelopeId: await envelopeIdFor(id, bounce.secret) };
}

/** A DSN (Postfix's layout) with one group per recipient, in the order given. */
function dsn({ to, envelopeId, groups }: { to: string; envelopeId?: string; groups: { recipient: string; action: string; status: string; diagnostic: string }[] }): string {
  const fields = groups.map((g) => `Final-Recipient: rfc822; ${g.recipient}\r\nOriginal-Recipient: rfc822;${g.recipient}\r\nAction: ${g.action}\r\nStatus: ${g.status}\r\nDiagnostic-Code: ${g.diagnostic}\r\n`).join("\r\n");
  return [
    "From: MAILER-DAEMON@relay.example (Mail Delivery System)",
    `To: ${to}`,
    "Subject: Delivery Status Notification",
    "MIME-Version: 1.0",
    'Content-Type: multipart/report; report-type=delivery-status; boundary="B"',
    "",
    "--B",
    "Content-Type: text/plain; charset=us-ascii",
    "",
    "This is the mail system at host relay.example.",
    "",
    "--B",
    "Content-Type: message/delivery-status",
    "",
    `Reporting-MTA: dns; relay.example${envelopeId ? `\r\nOriginal-Envelope-Id: ${envelopeId}` : ""}`,
    "",
    fields,
    "--B--",
    "",
  ].join("\r\n");
}

const webhookIds: string[] = [];
afterEach(async () => {
  for (const id of webhookIds.splice(0)) await api(`/v1/webhooks/${id}`, { method: "DELETE", key: HOOKS_KEY });
});
async function hook(events: string[]) {
  const webhook = await createWebhook(newEndpoint("mutants").url, events, HOOKS_KEY);
  webhookIds.push(webhook.id);
  return webhook;
}
/** The webhook events made for `webhookId` about the suppression of `email`. */
const suppressionEventsFor = async (webhookId: string, email: string) =>
  (
    await env.DB.prepare("SELECT type FROM webhook_events WHERE webhook_id = ? AND json_extract(payload, '$.data.email') = ? ORDER BY created_at").bind(webhookId, email.toLowerCase()).all<{ type: string }>()
  ).results.map((r) => r.type);

describe("reports through the email() handler", () => {
  it("takes an envelope id a relay echoed in upper case as the message's: recorded, and it may suppress in a mail to several", async () => {
    const [gone, fine] = [uniqueRecipient("envid-case"), uniqueRecipient("envid-fine")];
    const { id, returnPath, envelopeId } = await deliveredTo([gone, fine]);
    await report(postfixBounce({ to: returnPath, recipient: gone, envelopeId: envelopeId.toUpperCase() }), returnPath);
    expect((await view(id)).recipients.map((r) => r.status)).toEqual(["bounced", "sent"]);
    expect(await listed(gone)).toBe(true);
  });

  it("reads a report of exactly MAX_REPORT_BYTES", async () => {
    const gone = uniqueRecipient("exact");
    const { id, returnPath } = await deliveredTo([gone]);
    const raw = postfixBounce({ to: returnPath, recipient: gone });
    const marker = "This is the mail system at host relay.example.\r\n";
    let remaining = MAX_REPORT_BYTES - new TextEncoder().encode(raw).byteLength;
    let filler = "";
    for (; remaining > 80; remaining -= 78) filler += `${"x".repeat(76)}\r\n`;
    filler += `${"x".repeat(remaining - 2)}\r\n`;
    const exact = raw.replace(marker, marker + filler);
    expect(new TextEncoder().encode(exact).byteLength).toBe(MAX_REPORT_BYTES);
    expect(await report(exact, returnPath)).toEqual({});
    expect((await view(id)).recipients[0]!.status).toBe("bounced");
  });

  it("ignores a report larger than it said it was, without reading it into a record", async () => {
    const gone = uniqueRecipient("liar");
    const { id, returnPath } = await deliveredTo([gone]);
    const raw = postfixBounce({ to: returnPath, recipient: gone }).replace("This is the mail system", `${"x".repeat(76)}\r\n`.repeat(15_000) + "This is the mail system");
    expect(await report(raw, returnPath, { rawSize: 4096 })).toEqual({});
    expect((await view(id)).recipients[0]!.status).toBe("sent");
    expect(await eventsOf(id, "bounced")).toEqual([]);
  });

  it("moves a delivered recipient to bounced, and to complained; a bounced one to neither delivered nor complained", async () => {
    const [late, angry, full] = [uniqueRecipient("late-bounce"), uniqueRecipient("late-angry"), uniqueRecipient("full-then")];
    const first = await deliveredTo([late]);
    await report(postfixSuccess({ to: first.returnPath, recipient: late }), first.returnPath);
    expect((await view(first.id)).recipients[0]!.status).toBe("delivered");
    await report(postfixBounce({ to: first.returnPath, recipient: late }), first.returnPath);
    expect((await view(first.id)).recipients[0]!.status).toBe("bounced");

    const second = await deliveredTo([angry]);
    await report(postfixSuccess({ to: second.returnPath, recipient: angry }), second.returnPath);
    await report(arfComplaint({ to: second.returnPath, recipient: angry }), second.returnPath);
    expect((await view(second.id)).recipients[0]!.status).toBe("complained");
    expect((await (await suppressions(`/${encodeURIComponent(angry)}`)).json<{ origin: string }>()).origin).toBe("complaint");

    // A full mailbox (5.2.2) bounces without suppressing; a success report or a complaint after it changes nothing.
    const third = await deliveredTo([full]);
    await report(postfixBounce({ to: third.returnPath, recipient: full }).replace(/5\.1\.1/g, "5.2.2"), third.returnPath);
    await report(postfixSuccess({ to: third.returnPath, recipient: full }), third.returnPath);
    await report(arfComplaint({ to: third.returnPath, recipient: full }), third.returnPath);
    const email = await view(third.id);
    expect(email.recipients[0]!.status).toBe("bounced");
    expect(email.events.filter((e) => e.type === "delivered" || e.type === "complained")).toEqual([]);
    expect(await listed(full)).toBe(false);
  });

  it("records a delay once however often it comes, but two delays that say different things twice", async () => {
    const slow = uniqueRecipient("slow-twice");
    const { id, returnPath } = await deliveredTo([slow]);
    const delay = postfixDelay({ to: returnPath, recipient: slow });
    await report(delay, returnPath);
    await report(delay, returnPath);
    expect(await eventsOf(id, "deferred")).toHaveLength(1);
    await report(delay.replace("Connection\r\n    timed out", "Connection\r\n    refused"), returnPath);
    const deferred = await eventsOf(id, "deferred");
    expect(deferred.map((e) => e.detail)).toEqual([expect.stringMatching(/timed out$/), expect.stringMatching(/refused$/)]);
  });

  it("takes a report that lists the same recipients in another order for the same report", async () => {
    const [a, b] = [uniqueRecipient("order-a"), uniqueRecipient("order-b")];
    const { id, returnPath, envelopeId } = await deliveredTo([a, b]);
    const group = (recipient: string) => ({ recipient, action: "delayed", status: "4.4.1", diagnostic: "smtp; 451 4.4.1 try again later" });
    await report(dsn({ to: returnPath, envelopeId, groups: [group(a), group(b)] }), returnPath);
    await report(dsn({ to: returnPath, envelopeId, groups: [group(b), group(a)] }), returnPath);
    expect((await eventsOf(id, "deferred")).map((e) => e.recipient)).toEqual([a, b]);
  });

  it("does not put back on the list an address removed by hand when the same report comes again", async () => {
    const gone = uniqueRecipient("removed");
    const { id, returnPath } = await deliveredTo([gone]);
    const bounceReport = postfixBounce({ to: returnPath, recipient: gone });
    await report(bounceReport, returnPath);
    expect(await listed(gone)).toBe(true);
    expect((await suppressions(`/${encodeURIComponent(gone)}`, { method: "DELETE" })).status).toBe(200);
    await report(bounceReport, returnPath);
    expect(await listed(gone)).toBe(false);
    expect(await eventsOf(id, "bounced")).toHaveLength(1);
  });

  it("lists an address Exchange reports with 5.1.10 (null MX)", async () => {
    const gone = uniqueRecipient("nullmx");
    const { id, returnPath } = await deliveredTo([gone]);
    await report(FAILURE_DSNS.exchange({ to: returnPath, recipient: gone }), returnPath);
    expect(await (await suppressions(`/${encodeURIComponent(gone)}`)).json()).toMatchObject({ origin: "bounce", source_id: id });
  });
});

describe("suppression events", () => {
  it("are made once for an address added twice, only for webhooks subscribed to them", async () => {
    const subscribed = await hook(["suppression.added"]);
    const other = await hook(["email.bounced"]);
    const email = uniqueRecipient("twice");
    expect((await suppressions("", { method: "POST", json: { email } })).status).toBe(201);
    expect((await suppressions("", { method: "POST", json: { email } })).status).toBe(200);
    await suppressions("/batch/add", { method: "POST", json: { emails: [email] } });
    expect(await suppressionEventsFor(subscribed.id, email)).toEqual(["suppression.added"]);
    expect(await suppressionEventsFor(other.id, email)).toEqual([]);
  });

  it("are not made for a disabled webhook", async () => {
    const disabled = await hook(["suppression.added", "suppression.removed"]);
    expect((await api(`/v1/webhooks/${disabled.id}`, { method: "PATCH", key: HOOKS_KEY, json: { status: "disabled" } })).status).toBe(200);
    const email = uniqueRecipient("disabled-hook");
    await suppressions("", { method: "POST", json: { email } });
    await suppressions(`/${encodeURIComponent(email)}`, { method: "DELETE" });
    expect(await suppressionEventsFor(disabled.id, email)).toEqual([]);
  });
});

describe("suppressed recipients in delivery", () => {
  it("leaves a recipient served by an earlier attempt alone when it is listed before a retry", async () => {
    const [served, busy] = [uniqueRecipient("served"), uniqueRecipient("tempfail")]; // the inbox answers tempfail-* with 451
    const { id } = await insertQueuedMessage({ to: [served, busy], apiKeyName: "hooks" });
    try {
      await deliver([id]);
      expect((await view(id)).recipients.map((r) => r.status)).toEqual(["sent", "deferred"]);
      await suppressions("", { method: "POST", json: { email: served } });
      await deliver([id]);
      const email = await view(id);
      expect(email.recipients.map((r) => r.status)).toEqual(["sent", "deferred"]);
      expect(email.events.filter((e) => e.type === "suppressed")).toEqual([]);
      expect(await inboxMessages(served)).toHaveLength(1);
    } finally {
      // Left retrying, a sweep elsewhere in the suite would keep trying the tempfail recipient.
      await env.DB.prepare("UPDATE messages SET status = 'canceled' WHERE id = ?").bind(id).run();
    }
  });

  it("suppresses a recipient written in another case than its entry", async () => {
    const entry = uniqueRecipient("mixedcase");
    await suppressions("", { method: "POST", json: { email: entry } });
    const shouted = entry.split("@")[0]!.toUpperCase() + "@example.com";
    const { id } = await insertQueuedMessage({ to: [shouted], apiKeyName: "hooks" });
    await deliver([id]);
    const email = await view(id);
    expect(email.recipients).toMatchObject([{ address: shouted, status: "suppressed" }]);
    expect(email.status).toBe("failed");
    expect(await inboxMessages(entry)).toEqual([]);
  });
});

describe("claims by bytes", () => {
  const release = (ids: string[]) => env.DB.prepare("UPDATE messages SET status = 'canceled' WHERE id IN (SELECT value FROM json_each(?))").bind(JSON.stringify(ids)).run();

  it("leave out the message before which the sizes reach the budget exactly", async () => {
    const ids = [(await insertQueuedMessage()).id, (await insertQueuedMessage()).id];
    try {
      const size = (await env.DB.prepare("SELECT size_bytes FROM messages WHERE id = ?").bind(ids[0]).first<number>("size_bytes"))!;
      const claims = await claimMessages(env.DB, ids, { now: new Date(), leaseMs: 60_000, budgetBytes: size });
      expect(ids.map((id) => claims.get(id)!.kind)).toEqual(["claimed", "over_budget"]);
      const more = await claimMessages(env.DB, [ids[1]!, crypto.randomUUID()], { now: new Date(), leaseMs: 60_000, budgetBytes: 1 });
      expect(more.get(ids[1]!)!.kind).toBe("claimed");
    } finally {
      await release(ids);
    }
  });

  it("look their messages up by primary key, never by the due-time index", async () => {
    const { id } = await insertQueuedMessage();
    const statements: string[] = [];
    const spying = { prepare: (sql: string) => (statements.push(sql), env.DB.prepare(sql)), batch: (s: D1PreparedStatement[]) => env.DB.batch(s) } as unknown as D1Database;
    try {
      await claimMessages(spying, [id], { now: new Date(), leaseMs: 60_000 });
      for (const sql of statements.filter((s) => s.startsWith("UPDATE messages SET status = 'sending'") || s.includes("'interrupted'"))) {
        const plan = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`).bind(new Date().toISOString(), JSON.stringify([id]), null, Number.MAX_SAFE_INTEGER).all<{ detail: string }>();
        const details = plan.results.map((r) => r.detail);
        expect(details.join("\n")).not.toMatch(/messages_due|SCAN m\b|SCAN messages\b/);
        expect(details).toContainEqual(expect.stringMatching(/^SEARCH m USING (COVERING )?INDEX sqlite_autoindex_messages_1 \(id=\?\)$/));
      }
      expect(statements.filter((s) => s.startsWith("UPDATE messages SET status = 'sending'"))).toHaveLength(1);
    } finally {
      await release([id]);
    }
  });
});

describe("the suppressions API", () => {
  it("refuses more than 100 ids to remove, and an address in angle brackets", async () => {
    expect((await suppressions("/batch/remove", { method: "POST", json: { ids: Array.from({ length: 101 }, () => crypto.randomUUID()) } })).status).toBe(422);
    const email = uniqueRecipient("brackets");
    expect((await suppressions("", { method: "POST", json: { email: `<${email}>` } })).status).toBe(422);
    expect(await listed(email)).toBe(false);
  });
});
