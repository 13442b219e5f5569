// /v1/emails: accept a message for delivery, and read its status and history back.
import { Hono } from "hono";
import { acceptEmail } from "../../accept";
import { getConfig } from "../../config";
import { formatMailbox } from "../../core/address";
import { sendEmailSchema, validate } from "../../core/schema";
import { getMessageWithHistory, type MessageHistory } from "../../store/messages";
import type { AppEnv } from "../context";
import { defer } from "../defer";
import { ApiError } from "../errors";
import { readJsonBody } from "../json-body";

const ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const emailRoutes = new Hono<AppEnv>()
  .post("/", async (c) => {
    if (c.req.header("Idempotency-Key") !== undefined) {
      // Accepting the header without honouring it would let a client's retry send the mail twice.
      throw new ApiError("validation_error", "Idempotency-Key is not supported yet; send the request without it", [
        { path: "headers.Idempotency-Key", message: "not supported yet" },
      ]);
    }
    const validated = validate(sendEmailSchema, await readJsonBody(c));
    if (!validated.ok) throw new ApiError("validation_error", "the request is not a valid email", validated.issues);
    const accepted = await acceptEmail(c.env, getConfig(c.env), validated.value, { apiKeyName: c.var.apiKeyName, requestId: c.var.requestId });
    defer(c, accepted.afterResponse);
    c.var.log.info("email accepted", { email_id: accepted.id, recipient_count: validated.value.to.length + (validated.value.cc?.length ?? 0) });
    c.header("Location", `/v1/emails/${accepted.id}`);
    return c.json({ id: accepted.id, status: "queued" as const }, 202);
  })
  .get("/:id", async (c) => {
    const id = c.req.param("id");
    const history = ID_PATTERN.test(id) ? await getMessageWithHistory(c.env.DB, id) : null;
    if (!history) throw new ApiError("not_found", `no email with id ${id}`);
    return c.json(toEmailView(history));
  });

function toEmailView({ message: m, events, recipients }: MessageHistory) {
  return {
    id: m.id,
    status: m.status,
    from: formatMailbox(m.from),
    to: m.to.map(formatMailbox),
    cc: m.cc.map(formatMailbox),
    bcc: m.bcc.map(formatMailbox),
    subject: m.subject,
    template: m.template,
    tags: m.tags,
    created_at: m.createdAt,
    updated_at: m.updatedAt,
    scheduled_at: m.scheduledAt,
    sent_at: m.sentAt,
    attempts: m.attempts,
    last_error: m.lastError,
    recipients: recipients.map((r) => ({ address: r.address, status: r.status, smtp_code: r.smtpCode, detail: r.detail })),
    events: events.map((e) => ({ at: e.at, type: e.type, attempt: e.attempt, smtp_code: e.smtpCode, detail: e.detail })),
  };
}
