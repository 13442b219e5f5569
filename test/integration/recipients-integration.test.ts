// Each recipient's own outcome: the ones the relay accepted get exactly one copy and are never sent it
// again, one refused temporarily is retried on its own, one refused for good is final, and the API shows
// every recipient's status. Through the real accept path and queue, and attempt by attempt.
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { api, inboxMessages, uniqueRecipient } from "../helpers/api";
import { deliver, insertQueuedMessage, loadMessage } from "../helpers/factories";

type EmailView = {
  status: string;
  attempts: number;
  last_error: string | null;
  last_event: string;
  recipients: { address: string; status: string; smtp_code: number | null; detail: string | null }[];
  events: { type: string; attempt: number | null; smtp_code: number | null; detail: string | null; recipient: string | null }[];
};

async function send(json: Record<string, unknown>): Promise<string> {
  const res = await api("/v1/emails", { method: "POST", json: { subject: "Hello", text: "Hi", ...json } });
  expect(res.status).toBe(202);
  return (await res.json<{ id: string }>()).id;
}

const waitForStatus = (id: string, status: string) =>
  vi.waitFor(
    async () => {
      const email = await (await api(`/v1/emails/${id}`)).json<EmailView>();
      if (email.status !== status) throw new Error(`status is ${email.status}`);
      return email;
    },
    { timeout: 10_000, interval: 20 },
  );

describe("per-recipient outcomes", () => {
  it("sends two accepted recipients one copy at once and the one answered 452 its copy on a later attempt", async () => {
    const [a, b, busy] = [uniqueRecipient("a"), uniqueRecipient("b"), uniqueRecipient("busy")];
    const id = await send({ to: [a, b], cc: busy });

    const email = await waitForStatus(id, "sent");

    const [first, ...moreForA] = await inboxMessages(a);
    expect(moreForA).toEqual([]);
    expect(first!.envelope.to).toEqual([a, b]);
    expect(await inboxMessages(b)).toHaveLength(1);
    const [later, ...moreForBusy] = await inboxMessages(busy);
    expect(moreForBusy).toEqual([]);
    expect(later!.envelope.to).toEqual([busy]);
    expect(later!.messageId).toBe(first!.messageId);

    expect(email.attempts).toBe(2);
    expect(email.recipients).toEqual([
      { address: a, status: "sent", smtp_code: 250, detail: expect.stringMatching(/^Message queued as/) },
      { address: b, status: "sent", smtp_code: 250, detail: expect.stringMatching(/^Message queued as/) },
      { address: busy, status: "sent", smtp_code: 250, detail: expect.stringMatching(/^Message queued as/) },
    ]);
    // One "sent" per attempt that reached someone new.
    expect(email.events.map((e) => [e.type, e.attempt, e.smtp_code])).toEqual([
      ["accepted", null, null],
      ["sent", 1, null],
      ["deferred", 1, 452],
      ["sent", 2, 250],
    ]);
    expect(email.events[1]!.detail).toMatch(new RegExp(`^Message queued as .* \\(for ${a}, ${b}\\)$`));
    expect(email.events[2]!.detail).toBe(`RCPT TO:<${busy}> answered 452 4.2.2 Mailbox busy, try again later`);
  });

  it("is sent when the relay refuses one recipient for good, and says who and why", async () => {
    const [good, gone] = [uniqueRecipient("good"), uniqueRecipient("reject")];
    const id = await send({ to: [good, gone] });
    const email = await waitForStatus(id, "sent");
    expect((await inboxMessages(good))[0]!.envelope.to).toEqual([good]);
    expect(email.recipients).toEqual([
      { address: good, status: "sent", smtp_code: 250, detail: expect.any(String) },
      { address: gone, status: "bounced", smtp_code: 550, detail: `RCPT TO:<${gone}> answered 550 5.1.1 Recipient address rejected: user unknown` },
    ]);
    expect(email.last_error).toBeNull();
    expect(email.events.map((e) => [e.type, e.recipient])).toEqual([["accepted", null], ["bounced", gone], ["sent", null]]);
    expect(email.last_event).toBe("sent");
    expect(email.events.at(-1)!.detail).toContain(`not delivered to ${gone} (RCPT TO:<${gone}> answered 550 5.1.1`);
  });

  it("fails when every recipient is refused for good", async () => {
    const id = await send({ to: [uniqueRecipient("reject"), uniqueRecipient("reject")] });
    const email = await waitForStatus(id, "failed");
    expect(email.attempts).toBe(1);
    expect(email.recipients.map((r) => [r.status, r.smtp_code])).toEqual([
      ["bounced", 550],
      ["bounced", 550],
    ]);
    // Each bounce is an event of its own; nothing was given up on, so no "failed" event.
    expect(email.events.map((e) => e.type)).toEqual(["accepted", "bounced", "bounced"]);
    expect(email.last_event).toBe("bounced");
  });

  it("retries a recipient answered 552 (too many recipients) on its own, never re-sending to the accepted one", async () => {
    const [good, full] = [uniqueRecipient("good"), uniqueRecipient("toomany")];
    const { id } = await insertQueuedMessage({ to: [good, full] });

    await deliver([id]);
    await deliver([id]);

    expect(await inboxMessages(good)).toHaveLength(1);
    const { message, recipients, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "retrying", attempts: 2 });
    expect(recipients.map((r) => [r.address, r.status, r.smtpCode])).toEqual([
      [good, "sent", 250],
      [full, "deferred", 552],
    ]);
    expect(message.lastError).toBe(`RCPT TO:<${full}> answered 552 5.5.3 Too many recipients`);
    expect(events.map((e) => [e.type, e.attempt])).toEqual([["accepted", null],
      ["sent", 1],
      ["deferred", 1],
      ["deferred", 2],
    ]);
  });

  it("is sent, not failed, when the window ends on a later attempt after an earlier one reached someone", async () => {
    const [good, full] = [uniqueRecipient("good"), uniqueRecipient("toomany")];
    const { id } = await insertQueuedMessage({ to: [good, full] });
    await deliver([id]);
    // The window ends before the next attempt, whose only recipient is refused again.
    await env.DB.prepare("UPDATE messages SET created_at = ?, next_attempt_at = ? WHERE id = ?").bind(new Date(Date.now() - 73 * 3600_000).toISOString(), new Date().toISOString(), id).run();
    await deliver([id]);

    expect(await inboxMessages(good)).toHaveLength(1);
    const { message, recipients, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sent", attempts: 2, lastError: null, sentAt: events.at(-1)!.at });
    expect(recipients.map((r) => [r.address, r.status])).toEqual([
      [good, "sent"],
      [full, "failed"],
    ]);
    expect(events.map((e) => [e.type, e.attempt])).toEqual([["accepted", null],
      ["sent", 1],
      ["deferred", 1],
      ["failed", 2],
    ]);
    expect(events[3]!.detail).toBe(`every recipient is settled; not delivered to ${full} (retry window of 72 h ended after 2 attempts; last error: RCPT TO:<${full}> answered 552 5.5.3 Too many recipients)`);
  });

  it("retries, naming the temporary refusal, when every recipient is refused and one of them only for now", async () => {
    const [gone, later] = [uniqueRecipient("reject"), uniqueRecipient("tempfail")];
    const { id } = await insertQueuedMessage({ to: [gone, later] });
    await deliver([id]);
    const { message, recipients, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "retrying", lastError: expect.stringMatching(new RegExp(`^RCPT TO:<${later}> answered 451`)) });
    expect(recipients.map((r) => [r.address, r.status, r.smtpCode])).toEqual([
      [gone, "bounced", 550],
      [later, "deferred", 451],
    ]);
    expect(events.map((e) => [e.type, e.smtpCode])).toEqual([["accepted", null], ["bounced", 550], ["deferred", 451]]);
  });

  it("lists every recipient as pending before the first attempt", async () => {
    const { id, to } = await insertQueuedMessage({ to: [uniqueRecipient(), uniqueRecipient()] });
    const email = await (await api(`/v1/emails/${id}`)).json<EmailView>();
    expect(email.recipients).toEqual([
      { address: to, status: "pending", smtp_code: null, detail: null },
      { address: expect.any(String), status: "pending", smtp_code: null, detail: null },
    ]);
  });
});
