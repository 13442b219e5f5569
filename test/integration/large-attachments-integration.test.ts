// Attachments too large for a D1 row (over 256 KiB per message, decoded) go to R2 — the real local bucket —
// never into the row or the queue job: they arrive byte-identical; an R2 that refuses the write gets a 500
// with nothing stored or queued; a withdrawn accept deletes its object; an attempt that cannot read the
// object retries (and fails for good, with the reason, when the object is gone).
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { MAX_ATTACHMENT_BYTES } from "../../src/core/schema";
import { INLINE_ATTACHMENT_BYTES } from "../../src/store/attachment-objects";
import { captureLogs, inboxMessages, messageRowsFor, postCounted, uniqueRecipient, waitForMail } from "../helpers/api";
import { deliver, loadMessage } from "../helpers/factories";
import { base64, binary, sha256 } from "../helpers/files";

async function storedObjects(): Promise<string[]> {
  const listed = await env.ATTACHMENTS.list({ prefix: "attachments/" });
  return listed.objects.map((o) => o.key);
}

async function row(id: string) {
  return env.DB.prepare("SELECT attachments_json, attachments_key FROM messages WHERE id = ?").bind(id).first<{ attachments_json: string; attachments_key: string | null }>();
}

/** A queue that takes jobs and never delivers them, so a test runs the consumer itself. */
const heldOutbox = { send: async () => {} } as unknown as Queue;

const largeMail = (to: string, size = 300 * 1024) => {
  const file = binary(size);
  return { file, body: JSON.stringify({ to, subject: "Large", text: "x", attachments: [{ filename: "large.bin", content: base64(file) }] }) };
};

describe("attachments in R2", () => {
  it("keeps 5 MiB of attachments (the limit) in R2, not in the row or the job, and delivers them byte-identical", { timeout: 30_000 }, async () => {
    const to = uniqueRecipient("r2big");
    const [first, second] = [binary(MAX_ATTACHMENT_BYTES - 1000), binary(1000)];
    const jobs: unknown[] = [];
    const outbox = { send: (job: unknown, options: QueueSendOptions) => (jobs.push(job), env.OUTBOX.send(job, options)) } as unknown as Queue;
    const attachments = [
      { filename: "report.pdf", content: base64(first) },
      { filename: "notes.txt", content: base64(second), content_type: "text/plain" },
    ];
    const { res, body } = await postCounted(JSON.stringify({ to, subject: "Big", text: "x", attachments }), { environment: { OUTBOX: outbox } });
    expect(res.status).toBe(202);
    expect(await row(body.id)).toEqual({ attachments_json: "[]", attachments_key: `attachments/${body.id}` });
    expect(JSON.stringify(jobs).length).toBeLessThan(200); // the job is the id, nothing more
    const [mail] = await waitForMail(to);
    expect(mail!.attachments).toEqual([
      { filename: "report.pdf", contentType: "application/pdf", disposition: "attachment", contentId: null, size: first.length, sha256: await sha256(first) },
      { filename: "notes.txt", contentType: "text/plain", disposition: "attachment", contentId: null, size: second.length, sha256: await sha256(second) },
    ]);
    // The relay has it; the outcome is recorded a moment later.
    await vi.waitFor(async () => expect((await loadMessage(body.id)).message.status).toBe("sent"), { timeout: 10_000, interval: 50 });
  });

  it("keeps attachments of 256 KiB in all in the row, and R2 is not used", async () => {
    const to = uniqueRecipient("r2inline");
    const before = await storedObjects();
    expect(INLINE_ATTACHMENT_BYTES).toBe(256 * 1024); // the limit the README gives
    const file = binary(256 * 1024);
    const { res, body } = await postCounted(JSON.stringify({ to, subject: "Inline", text: "x", attachments: [{ filename: "a.bin", content: base64(file) }] }));
    expect(res.status).toBe(202);
    expect(await row(body.id)).toEqual({ attachments_json: JSON.stringify([{ filename: "a.bin", content: base64(file) }]), attachments_key: null });
    expect(await storedObjects()).toEqual(before);
    const [mail] = await waitForMail(to);
    expect(mail!.attachments[0]!.sha256).toBe(await sha256(file));
  });

  it("delivers one batch that mixes attachments in R2 and in rows, each message whole, and settles an unreadable one on the way", async () => {
    const posts = await Promise.all(
      [400 * 1024, 1000, 600 * 1024, 2000, 300 * 1024].map(async (size, i) => {
        const to = uniqueRecipient(`r2mix${i}`);
        const { file, body } = largeMail(to, size);
        const { res, body: answer } = await postCounted(body, { environment: { OUTBOX: heldOutbox } });
        expect(res.status).toBe(202);
        return { to, file, id: answer.id as string };
      }),
    );
    await env.ATTACHMENTS.delete(`attachments/${posts[2]!.id}`); // this one cannot be built any more
    await deliver(posts.map((p) => p.id));
    for (const [i, { to, file, id }] of posts.entries()) {
      if (i === 2) {
        expect((await loadMessage(id)).message.status).toBe("failed");
        expect(await inboxMessages(to)).toEqual([]);
        continue;
      }
      const [mail] = await waitForMail(to);
      expect(mail!.attachments[0]!.sha256).toBe(await sha256(file));
    }
  });

  it("answers 500 and stores and queues nothing when R2 refuses the write", async () => {
    const to = uniqueRecipient("r2refuses");
    const refusing = { put: async () => Promise.reject(new Error("put: We encountered an internal error. Please try again. (10001)")) } as unknown as R2Bucket;
    const logs = captureLogs();
    try {
      const { res, body, enqueued } = await postCounted(largeMail(to).body, { environment: { ATTACHMENTS: refusing } });
      expect(res.status).toBe(500);
      expect(body.error).toEqual({ code: "internal_error", message: "internal error" });
      expect(enqueued).toBe(0);
    } finally {
      logs.restore();
    }
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("deletes the R2 object again when the queue refuses the job and the message is withdrawn", async () => {
    const to = uniqueRecipient("r2withdrawn");
    const before = await storedObjects();
    const written: string[] = [];
    const watching = {
      put: (key: string, ...rest: [string]) => (written.push(key), env.ATTACHMENTS.put(key, ...rest)),
      delete: (keys: string[]) => env.ATTACHMENTS.delete(keys),
    } as unknown as R2Bucket;
    const refusingOutbox = { send: async () => Promise.reject(new Error("Queue send failed")) } as unknown as Queue;
    const logs = captureLogs();
    try {
      const { res } = await postCounted(largeMail(to).body, { environment: { ATTACHMENTS: watching, OUTBOX: refusingOutbox } });
      expect(res.status).toBe(500);
    } finally {
      logs.restore();
    }
    expect(written).toHaveLength(1); // it was written, and is gone again
    expect(await env.ATTACHMENTS.head(written[0]!)).toBeNull();
    expect(await storedObjects()).toEqual(before);
    expect(await messageRowsFor(to)).toBe(0);
  });

  it("logs the object it could not delete when a withdrawn message's R2 delete fails, and still answers 500", async () => {
    const to = uniqueRecipient("r2orphan");
    const stubborn = {
      put: (key: string, value: string) => env.ATTACHMENTS.put(key, value),
      delete: async () => Promise.reject(new Error("delete: We encountered an internal error. Please try again. (10001)")),
    } as unknown as R2Bucket;
    const refusingOutbox = { send: async () => Promise.reject(new Error("Queue send failed")) } as unknown as Queue;
    const logs = captureLogs();
    let status: number;
    try {
      status = (await postCounted(largeMail(to).body, { environment: { ATTACHMENTS: stubborn, OUTBOX: refusingOutbox } })).res.status;
    } finally {
      logs.restore();
    }
    expect(status).toBe(500);
    const line = logs.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "the attachments of a withdrawn message could not be deleted from R2");
    expect(line).toMatchObject({ level: "error", object_keys: [expect.stringMatching(/^attachments\/[0-9a-f-]{36}$/)] });
    await env.ATTACHMENTS.delete(line.object_keys);
  });

  it("retries an attempt that cannot read the attachments from R2, and delivers on the next", async () => {
    const to = uniqueRecipient("r2unreadable");
    const { file, body: request } = largeMail(to);
    const { res, body } = await postCounted(request, { environment: { OUTBOX: heldOutbox } });
    expect(res.status).toBe(202);
    const unreadable = { get: async () => Promise.reject(new Error("get: We encountered an internal error. Please try again. (10001)")) } as unknown as R2Bucket;
    await deliver([body.id], { ATTACHMENTS: unreadable });
    const retrying = await loadMessage(body.id);
    expect(retrying.message.status).toBe("retrying");
    expect(retrying.message.lastError).toMatch(/^the attachments could not be read from R2: /);
    expect(await inboxMessages(to)).toEqual([]);

    await env.DB.prepare("UPDATE messages SET next_attempt_at = ? WHERE id = ?").bind(new Date().toISOString(), body.id).run();
    await deliver([body.id]);
    const [mail] = await waitForMail(to);
    expect(mail!.attachments[0]!.sha256).toBe(await sha256(file));
    expect((await loadMessage(body.id)).message.status).toBe("sent");
  });

  it("fails a message whose R2 object is gone, with the reason, and sends nothing", async () => {
    const to = uniqueRecipient("r2gone");
    const { res, body } = await postCounted(largeMail(to).body, { environment: { OUTBOX: heldOutbox } });
    expect(res.status).toBe(202);
    await env.ATTACHMENTS.delete(`attachments/${body.id}`);
    await deliver([body.id]);
    const { message, recipients } = await loadMessage(body.id);
    expect(message.status).toBe("failed");
    expect(message.lastError).toBe("the message's attachments are no longer stored (the R2 object is gone)");
    expect(recipients.map((r) => r.status)).toEqual(["failed"]);
    expect(await inboxMessages(to)).toEqual([]);
  });

  it("keeps the R2 object when the insert's answer was lost and the withdraw fails too: the row may be there, and is delivered whole", async () => {
    const to = uniqueRecipient("r2unknown");
    const { file, body: request } = largeMail(to);
    // The insert commits and its answer is lost; the withdraw that follows cannot reach D1 at all.
    const forgetful = {
      prepare: (sql: string) => env.DB.prepare(sql),
      batch: async (statements: D1PreparedStatement[]) => {
        if (statements.length === 3) await env.DB.batch(statements);
        throw new Error("D1_ERROR: Network connection lost.");
      },
    } as unknown as D1Database;
    const logs = captureLogs();
    try {
      const { res } = await postCounted(request, { environment: { DB: forgetful, OUTBOX: heldOutbox } });
      expect(res.status).toBe(500);
    } finally {
      logs.restore();
    }
    const { id } = (await env.DB.prepare("SELECT id FROM messages WHERE to_json LIKE ?").bind(`%${to}%`).first<{ id: string }>())!;
    expect(await env.ATTACHMENTS.head(`attachments/${id}`)).not.toBeNull();
    await deliver([id]); // as the sweep would
    const [mail] = await waitForMail(to);
    expect(mail!.attachments[0]!.sha256).toBe(await sha256(file));
  });
  it("puts attachments of 256 KiB and one byte in all in R2, counting every attachment of the message", async () => {
    const to = uniqueRecipient("r2sum");
    const [first, second] = [binary(128 * 1024), binary(128 * 1024 + 1)];
    const attachments = [
      { filename: "a.bin", content: base64(first) },
      { filename: "b.bin", content: base64(second) },
    ];
    const { res, body } = await postCounted(JSON.stringify({ to, subject: "Sum", text: "x", attachments }));
    expect(res.status).toBe(202);
    expect(await row(body.id)).toEqual({ attachments_json: "[]", attachments_key: `attachments/${body.id}` });
    const mails = await waitForMail(to);
    expect(mails[0]!.attachments.map((a) => a.sha256)).toEqual([await sha256(first), await sha256(second)]);
  });

  it("leaves no R2 object behind when a put wrote the object but its answer was lost", async () => {
    const to = uniqueRecipient("r2lostput");
    const written: string[] = [];
    const forgetful = {
      put: async (key: string, ...rest: [string]) => {
        await env.ATTACHMENTS.put(key, ...rest);
        written.push(key);
        throw new Error("put: Network connection lost.");
      },
      delete: (keys: string[]) => env.ATTACHMENTS.delete(keys),
    } as unknown as R2Bucket;
    const logs = captureLogs();
    try {
      const { res } = await postCounted(largeMail(to).body, { environment: { ATTACHMENTS: forgetful } });
      expect(res.status).toBe(500);
    } finally {
      logs.restore();
    }
    expect(written).toHaveLength(1);
    const left = await env.ATTACHMENTS.head(written[0]!);
    await env.ATTACHMENTS.delete(written[0]!); // leave nothing to the other tests either way
    expect(left).toBeNull();
  });
});
