// Status changes are guarded: once a message is sent or failed, no late or repeated outcome moves it,
// and the history records only the outcomes that were applied. Exercised on the store directly and
// through the dead-letter consumer, whose job can arrive for a message that did go out.
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { beginAttempt, markFailed, markRetrying, markSent } from "../../src/store/messages";
import { deliver, insertQueuedMessage, loadMessage, runQueue } from "../helpers/factories";

const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();

describe("guarded status changes", () => {
  it("a failed message stays failed: later sent/retrying/failed outcomes change nothing and add no event", async () => {
    const { id } = await insertQueuedMessage();
    await beginAttempt(env.DB, id, at(1));
    expect(await markFailed(env.DB, id, at(2), "failed", "RCPT TO answered 550 user unknown", 1, 550)).toBe(true);

    await markSent(env.DB, id, at(3), 2, 250, "queued as 9");
    await markRetrying(env.DB, id, at(4), 3, "451 try later", 451);
    expect(await markFailed(env.DB, id, at(5), "dead_lettered", "retries exhausted")).toBe(false);

    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "failed", lastError: "RCPT TO answered 550 user unknown", sentAt: null, updatedAt: at(2) });
    expect(events.map((e) => [e.type, e.attempt, e.smtpCode])).toEqual([["failed", 1, 550]]);
  });

  it("a sent message stays sent: a late retry or failure changes nothing and adds no event", async () => {
    const { id } = await insertQueuedMessage();
    await beginAttempt(env.DB, id, at(1));
    await markSent(env.DB, id, at(2), 1, 250, "queued as 1");

    await markRetrying(env.DB, id, at(3), 1, "451 try later", 451);
    expect(await markFailed(env.DB, id, at(4), "failed", "554 rejected", 1, 554)).toBe(false);
    await markSent(env.DB, id, at(5), 2, 250, "queued as 2");

    const { message, events } = await loadMessage(id);
    expect(message).toMatchObject({ status: "sent", lastError: null, sentAt: at(2), updatedAt: at(2) });
    expect(events.map((e) => [e.type, e.detail])).toEqual([["sent", "queued as 1"]]);
  });

  it("a dead letter for a message that was sent after all leaves it sent", async () => {
    const { id } = await insertQueuedMessage();
    await deliver([id]);
    expect((await loadMessage(id)).message.status).toBe("sent");

    const { result } = await runQueue("mailroom-dead-letter", [id]);

    expect(result.explicitAcks).toEqual([`job-${id}`]);
    const { message, events } = await loadMessage(id);
    expect(message.status).toBe("sent");
    expect(message.lastError).toBeNull();
    expect(events.map((e) => e.type)).toEqual(["sent"]);
  });
});
