// /v1/emails: accept a message or a batch of up to 100 (at once or scheduled, idempotently under an Idempotency-Key), read its
// status and history back, list a key's emails, move a scheduled send, cancel what has not reached the relay.
// Paths, fields and answers follow Resend's, so its SDKs' emails.send/get/list/update/cancel work against them unchanged. A key
// sends only from its sender domains, and sees and changes only the messages it sent: another key's
// message is a 404, exactly like one that does not exist.
import { Hono } from "hono";
import { formatMailbox } from "../../core/address";
import { resolveSchedule } from "../../core/schedule";
import { rescheduleSchema, sendEmailSchema, validate } from "../../core/schema";
import { requeue } from "../../delivery/outbox";
import { cancelMessage, rescheduleMessage, type Change } from "../../store/client-changes";
import { getMessageWithHistory, isSettled, type MessageHistory, type MessageRecord } from "../../store/messages";
import type * as z from "zod";
import type { AppEnv } from "../context";
import type { acceptedSchema, batchAcceptedSchema, canceledSchema, emailListSchema, emailViewSchema, rescheduledSchema } from "../responses";
import { lastEventOf } from "../../core/webhook-events";
import { enqueueWebhookEvents } from "../../delivery/webhooks";
import { listEmails } from "../../store/email-list";
import { cursorNotFound, readPageRequest } from "../pagination";
import { ApiError } from "../errors";
import { ID_PATTERN } from "../ids";
import { sendRateLimit } from "../middleware/send-rate-limit";
import { readJsonBody } from "../json-body";
import { sendBatchFromBody, sendFromBody } from "../send";

export const emailRoutes = new Hono<AppEnv>()
  .get("/", async (c) => {
    const page = readPageRequest(c.req.query());
    const found = await listEmails(c.env.DB, c.var.apiKey.name, page);
    if (!found) throw cursorNotFound(page, "email");
    return c.json({
      object: "list",
      has_more: found.hasMore,
      data: found.emails.map((m) => ({
        id: m.id,
        message_id: m.messageId,
        ...addressesOf(m),
        subject: m.subject,
        created_at: m.createdAt,
        scheduled_at: m.scheduledAt,
        last_event: lastEventOf(m.lastEventType, m.status),
      })),
    } satisfies z.output<typeof emailListSchema>);
  })
  .post("/", sendRateLimit(), async (c) => {
    const accepted = await sendFromBody(c, sendEmailSchema, "email");
    return c.json({ id: accepted.id, status: accepted.status } satisfies z.output<typeof acceptedSchema>, 202);
  })
  .post("/batch", sendRateLimit(), async (c) => {
    const accepted = await sendBatchFromBody(c);
    return c.json({ data: accepted.map(({ id }) => ({ id })) } satisfies z.output<typeof batchAcceptedSchema>, 202);
  })
  .get("/:id", async (c) => {
    const id = c.req.param("id");
    const history = ID_PATTERN.test(id) ? await getMessageWithHistory(c.env.DB, id) : null;
    if (!history || history.message.apiKeyName !== c.var.apiKey.name) throw notFound(id);
    return c.json(toEmailView(history));
  })
  .patch("/:id", async (c) => {
    const id = c.req.param("id");
    const validated = validate(rescheduleSchema, await readJsonBody(c));
    if (!validated.ok) throw new ApiError("validation_error", "the request is not a valid reschedule", validated.issues);
    const now = new Date();
    const schedule = resolveSchedule(validated.value.scheduledAt, now);
    if (!schedule.ok) throw new ApiError("validation_error", "the request is not a valid reschedule", [{ path: "scheduled_at", message: schedule.message }]);
    const scheduledAt = (schedule.at ?? now).toISOString();
    const change = ID_PATTERN.test(id) ? await rescheduleMessage(c.env.DB, { id, apiKeyName: c.var.apiKey.name, at: now.toISOString(), scheduledAt, sendNow: schedule.at === null }) : ({ kind: "unknown" } as const);
    refuseUnchanged(change, id, "only a scheduled email can be rescheduled");
    // A job for the new time; the one for the old time, if it comes first, finds the message not due.
    await requeue(c.env.OUTBOX, { id, request_id: c.var.requestId }, scheduledAt).catch((error) =>
      c.var.log.error("rescheduled, but its job could not be queued; the sweep sends it", { error, email_id: id }),
    );
    c.var.log.info("email rescheduled", { email_id: id });
    return c.json({ object: "email", id } satisfies z.output<typeof rescheduledSchema>);
  })
  .post("/:id/cancel", async (c) => {
    const id = c.req.param("id");
    const change = ID_PATTERN.test(id) ? await cancelMessage(c.env.DB, { id, apiKeyName: c.var.apiKey.name, at: new Date().toISOString() }) : ({ kind: "unknown" } as const);
    refuseUnchanged(change, id, "only an email not yet handed to the relay can be canceled");
    if (change.kind === "changed") await enqueueWebhookEvents(c.env.WEBHOOKS, change.webhookEvents, c.var.log);
    c.var.log.info("email canceled", { email_id: id });
    return c.json({ object: "email", id, status: "canceled" } satisfies z.output<typeof canceledSchema>);
  });

const notFound = (id: string) => new ApiError("not_found", `no email with id ${id}`);

/** 404 for an unknown message, 409 (saying why) for one whose status does not allow the change. */
function refuseUnchanged(change: Change, id: string, rule: string): void {
  if (change.kind === "changed") return;
  if (change.kind === "unknown") throw notFound(id);
  const why =
    change.status === "sending"
      ? "a delivery attempt is in progress; try again once it is over"
      : !isSettled(change.status) && change.partlySent
        ? "it has already been delivered to some recipients"
        : `it is ${change.status}`;
  throw new ApiError("conflict", `${rule}; ${why}`);
}

/** An email's addresses as the API shows them ("Name <address>"). */
function addressesOf(m: Pick<MessageRecord, "from" | "to" | "cc" | "bcc" | "replyTo">) {
  return { from: formatMailbox(m.from), to: m.to.map(formatMailbox), cc: m.cc.map(formatMailbox), bcc: m.bcc.map(formatMailbox), reply_to: m.replyTo.map(formatMailbox) };
}

function toEmailView({ message: m, events, recipients }: MessageHistory): z.output<typeof emailViewSchema> {
  return {
    id: m.id,
    status: m.status,
    ...addressesOf(m),
    subject: m.subject,
    template: m.template ?? null,
    tags: m.tags,
    created_at: m.createdAt,
    updated_at: m.updatedAt,
    scheduled_at: m.scheduledAt,
    sent_at: m.sentAt,
    attempts: m.attempts,
    last_error: m.lastError,
    last_event: lastEventOf(events.filter((e) => e.type !== "interrupted").at(-1)?.type ?? null, m.status),
    recipients: recipients.map((r) => ({ address: r.address, status: r.status, smtp_code: r.smtpCode, detail: r.detail })),
    events: events.map((e) => ({ at: e.at, type: e.type, attempt: e.attempt, smtp_code: e.smtpCode, detail: e.detail, recipient: e.recipient, transport: e.transport })),
  };
}
